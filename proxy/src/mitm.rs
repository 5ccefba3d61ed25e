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
        Ok(Err(error)) => return tracing::info!(%error, "client TLS hello refused"),
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
        Err(error) => return tracing::error!(%error, "cannot mint a leaf certificate"),
    };
    let tls =
        match tokio::time::timeout(limits.tls_handshake_timeout, start.into_stream(config)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => return tracing::info!(%error, "client TLS handshake failed"),
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
    let conn = serve::builder(limits).serve_connection(TokioIo::new(tls), service);
    if let Err(error) = serve::until_shutdown(conn, lifecycle).await {
        let host = session.target.host.to_string();
        serve::connection_error(&state, &session.ctx, (&host, &session.framing), &error);
    }
}

fn handshake_timeout(state: &State, ctx: &ConnCtx, target: &Target) {
    serve::limit_hit(
        state,
        ctx,
        &target.host.to_string(),
        "limits.tlsHandshakeTimeout",
        408,
        "client TLS handshake not completed in time (limits.tlsHandshakeTimeout)",
    );
}
