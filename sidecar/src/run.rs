//! Turning a validated config into a running proxy.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use gitgate_certs::{CertificateAuthority, Provenance};
use gitgate_proxy::Proxy;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, profiles};

/// A proxy serving in the background.
pub struct Running {
    /// The address it listens on (useful with port 0).
    pub addr: SocketAddr,
    /// The admin listener's address, when configured.
    pub admin: Option<SocketAddr>,
    /// The HTTPS proxy listener's address, when configured.
    pub tls: Option<SocketAddr>,
    /// The CA certificate sandboxes must trust.
    pub ca_cert: PathBuf,
    proxy: Arc<Proxy>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// The running proxy (to swap its policy).
    pub fn proxy(&self) -> &Arc<Proxy> {
        &self.proxy
    }

    /// Stops accepting, lets in-flight requests finish within the grace period (then
    /// closes what is left), lets renewals under way end (starting none), seals the user
    /// sessions one last time, writes the last audit records, returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        let tokens = self.proxy.tokens();
        tokens.settle_sessions().await;
        if let Err(error) = tokens.save_sessions().await {
            tracing::error!(%error, "cannot save the GitHub user sessions before stopping");
        }
        self.proxy.close_audit().await;
    }
}

/// Binds the optional listener `key` (a config key, for the error) and says where.
async fn bind_optional(
    addr: Option<SocketAddr>,
    key: &str,
) -> anyhow::Result<(Option<TcpListener>, Option<SocketAddr>)> {
    let Some(addr) = addr else {
        return Ok((None, None));
    };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {key} {addr}"))?;
    let bound = listener.local_addr()?;
    Ok((Some(listener), Some(bound)))
}

/// Loads (or generates) the CA, binds the listeners and starts serving.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let descriptors = crate::descriptors::raise();
    if let Some(short) = crate::descriptors::shortfall(&config.settings.limits, descriptors) {
        tracing::warn!("{short}");
    }
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
    // Messages that tell clients where gitgate is use the port actually bound.
    let mut config = config;
    config.settings.listen = addr;
    let (admin_listener, admin) = bind_optional(config.admin, "admin").await?;
    let (tls_listener, tls) = bind_optional(config.listen_tls, "listenTls").await?;
    let ca_cert = config.ca_cert.clone();
    let (policies, rejected) = config.policies();
    let proxy = Arc::new(Proxy::new(config.settings, ca, policies, config.tokens)?);
    // On record as a refused reload would be: in the audit log and the metrics.
    for (file, error) in &rejected {
        tracing::error!(file = %file.display(), %error, "profile file left out; its clients are refused until it is fixed");
        proxy.reload_failed(&file.display().to_string(), &error.to_string());
    }
    // Sessions of profiles whose file did not load are kept aside, not dropped.
    let unloaded: Vec<String> = rejected
        .iter()
        .filter_map(|(file, _)| profiles::profile_name(file).map(str::to_owned))
        .collect();
    proxy.restore_sessions(&unloaded)?;
    tracing::info!(tokens = proxy.tokens().kind(), "credential source");
    if proxy.tokens().kind() == "none" {
        tracing::warn!(
            "no github.app or github.token configured: requests reach GitHub without a credential (public repositories only)"
        );
    }
    let (stop, stopped) = watch::channel(false);
    let until_stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let mut tasks = Vec::new();
    let serving = proxy.clone();
    let rx = stopped.clone();
    tasks.push(tokio::spawn(async move {
        serving.serve(listener, until_stopped(rx)).await;
    }));
    if let Some(tls_listener) = tls_listener {
        let serving = proxy.clone();
        let rx = stopped.clone();
        tasks.push(tokio::spawn(async move {
            serving.serve_tls(tls_listener, until_stopped(rx)).await;
        }));
        tracing::info!(addr = %tls.unwrap_or(addr), "HTTPS proxy listening");
    }
    if let Some(admin_listener) = admin_listener {
        let serving = proxy.clone();
        tasks.push(tokio::spawn(async move {
            serving
                .serve_admin(admin_listener, until_stopped(stopped))
                .await;
        }));
        tracing::info!(addr = %admin.unwrap_or(addr), "admin listening");
    }
    tracing::info!(%addr, "listening");
    Ok(Running {
        addr,
        admin,
        tls,
        ca_cert,
        proxy,
        stop,
        tasks,
    })
}
