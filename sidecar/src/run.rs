//! Turning a validated config into a running proxy.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use gitgate_certs::{CertificateAuthority, Provenance};
use gitgate_proxy::Proxy;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Config;

/// A proxy serving in the background.
pub struct Running {
    /// The address it listens on (useful with port 0).
    pub addr: SocketAddr,
    /// The CA certificate sandboxes must trust.
    pub ca_cert: PathBuf,
    proxy: Arc<Proxy>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Running {
    /// The running proxy (to swap its policy).
    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// Stops accepting, lets in-flight requests finish within the grace period, returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Loads (or generates) the CA, binds the listener and starts serving.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let (ca, provenance) = CertificateAuthority::load_or_generate(&config.ca_cert, &config.ca_key)
        .with_context(|| "cannot set up gitgate's CA")?;
    if provenance == Provenance::Generated {
        tracing::info!(
            cert = %config.ca_cert.display(),
            key = %config.ca_key.display(),
            "generated a new CA; sandboxes must trust the certificate"
        );
    }
    let listener = TcpListener::bind(config.settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.settings.listen))?;
    let addr = listener.local_addr()?;
    let ca_cert = config.ca_cert.clone();
    let proxy = Arc::new(Proxy::new(
        config.settings,
        ca,
        config.policy,
        config.tokens,
    )?);
    tracing::info!(tokens = proxy.tokens().kind(), "credential source");
    if proxy.tokens().kind() == "none" {
        tracing::warn!(
            "no github.app or github.token configured: requests reach GitHub without a credential (public repositories only)"
        );
    }
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = proxy.clone();
    let task = tokio::spawn(async move {
        serving
            .serve(listener, async {
                let _ = stopped.await;
            })
            .await;
    });
    tracing::info!(%addr, "listening");
    Ok(Running {
        addr,
        ca_cert,
        proxy,
        stop,
        task,
    })
}
