//! Interception of a GitHub host: TLS toward the client with a leaf from gitgate's CA,
//! then the decrypted HTTP/1.1 requests, each decided and forwarded on its own.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::SystemTime;

use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio_rustls::LazyConfigAcceptor;

use crate::connect::Target;
use crate::framing;
use crate::github;
use crate::linger::LingerIo;
use crate::serve;
use crate::state::{ConnCtx, State};

/// Accepts the client's TLS and serves the requests inside it.
pub(crate) async fn serve(
    state: Arc<State>,
    ctx: ConnCtx,
    target: Target,
    (profile, presented): (Option<Arc<str>>, crate::identity::Presented),
    upgraded: Upgraded,
) {
    let limits = &state.settings.limits;
    let acceptor =
        LazyConfigAcceptor::new(rustls::server::Acceptor::default(), TokioIo::new(upgraded));
    let start = match tokio::time::timeout(limits.tls_handshake_timeout, acceptor).await {
        Ok(Ok(start)) => start,
        Ok(Err(error)) => return handshake_failed(&state, &ctx, &target, &error),
        Err(_) => return handshake_timeout(&state, &ctx, &target),
    };
    // The upstream is always the CONNECT authority; an SNI naming another host is
    // remembered and every request on this connection is refused.
    let sni = start
        .client_hello()
        .server_name()
        .map(str::to_ascii_lowercase);
    let host = target.host.to_string();
    let sni_mismatch = sni.filter(|sni| sni.trim_end_matches('.') != host);
    let config = match state.ca.server_config(&host, SystemTime::now()) {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%error, "cannot mint a leaf certificate");
            let reason = format!("gitgate cannot make a certificate for {host}: {error}");
            return serve::closed_for(&state, &ctx, &host, "tls", 0, &reason);
        }
    };
    let tls =
        match tokio::time::timeout(limits.tls_handshake_timeout, start.into_stream(config)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => return handshake_failed(&state, &ctx, &target, &error),
            Err(_) => return handshake_timeout(&state, &ctx, &target),
        };
    let lifecycle = ctx.lifecycle.clone();
    let (tls, framing) = framing::watch(tls);
    let session = Arc::new(github::Session {
        target,
        sni_mismatch,
        framing,
        ctx,
        profile,
        presented,
    });
    let service = {
        let (state, session) = (state.clone(), session.clone());
        service_fn(move |req| {
            let (state, session) = (state.clone(), session.clone());
            async move { Ok::<_, Infallible>(github::handle(&state, &session, req).await) }
        })
    };
    // Not on the proxy port: a tunnel's client side must never be read by a close.
    let io = TokioIo::new(LingerIo::new(tls));
    let conn = serve::builder(limits).serve_connection(io, service);
    if let Err(error) = serve::until_shutdown(conn, lifecycle).await {
        let host = session.target.host.to_string();
        serve::connection_error(&state, &session.ctx, (&host, &session.framing), &error);
    }
}

/// Records a client TLS handshake that failed, saying what to do when the client does
/// not trust gitgate's CA (the usual cause).
fn handshake_failed(state: &State, ctx: &ConnCtx, target: &Target, error: &std::io::Error) {
    tracing::info!(%error, "client TLS handshake failed");
    let distrusted = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .is_some_and(|e| {
            matches!(
                e,
                rustls::Error::AlertReceived(
                    rustls::AlertDescription::UnknownCA
                        | rustls::AlertDescription::BadCertificate
                        | rustls::AlertDescription::CertificateUnknown
                )
            )
        });
    let host = target.host.to_string();
    let reason = match distrusted {
        true => format!(
            "the client refused gitgate's certificate for {host} ({error}): the sandbox must trust gitgate's CA certificate (ca.cert; for git, http.sslCAInfo or GIT_SSL_CAINFO; for curl and most tools, SSL_CERT_FILE or the system store)"
        ),
        false => format!("the client's TLS handshake for {host} failed: {error}"),
    };
    serve::closed_for(state, ctx, &host, "tls", 0, &reason);
}

fn handshake_timeout(state: &State, ctx: &ConnCtx, target: &Target) {
    serve::closed_for(
        state,
        ctx,
        &target.host.to_string(),
        "limits.tlsHandshakeTimeout",
        408,
        "client TLS handshake not completed in time (limits.tlsHandshakeTimeout)",
    );
}
