//! What each subcommand does.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context;
use gitgate_certs::CertificateAuthority;
use gitgate_proxy::Tokens;
use gitgate_proxy::token::DoctorRow;

use crate::cli::{CaCommand, Cli, Command, LogFormat, LoginTarget};
use crate::config::{Config, ConfigError};
use crate::reload::{self, Watcher};
use crate::{EXIT_CONFIG, explain, health, logging, login, run, sandbox_env};

pub(crate) fn dispatch(cli: Cli) -> ExitCode {
    // `run` and `doctor` log through `tracing`: with JSON logs, their failure is a JSON
    // line too, for the collector that reads the others.
    let json_failure = cli.log_format == LogFormat::Json
        && matches!(cli.command, Command::Run { .. } | Command::Doctor { .. });
    let fail = |message: &str| {
        if json_failure {
            tracing::error!("{message}");
        } else {
            eprintln!("gitgate: {message}");
        }
    };
    let result = match cli.command {
        Command::Run { config } => {
            logging::init(cli.log_format);
            with_config(&config, |config| runtime()?.block_on(serve(config)))
        }
        Command::Check { config } => with_config(&config, check),
        Command::Doctor { config } => {
            logging::init(cli.log_format);
            with_config(&config, |config| runtime()?.block_on(doctor(config)))
        }
        Command::Explain {
            config,
            profile,
            action,
            repo,
            refs,
        } => with_public_config(&config, |config| {
            let policy = explain::policy_of(&config, profile.as_deref()).map_err(Failure::Usage)?;
            let (lines, allowed) =
                explain::explain(&policy, action, &repo, &refs).map_err(Failure::Usage)?;
            for line in lines {
                say!("{line}");
            }
            if allowed {
                Ok(())
            } else {
                Err(Failure::Denied)
            }
        }),
        Command::Env {
            config,
            format,
            proxy_url,
            ca_file,
        } => with_public_config(&config, |config| {
            if proxy_url.is_none() && config.settings.listen.port() == 0 {
                return Err(anyhow::anyhow!(
                    "listen has port 0 (a port chosen at start); pass --proxy-url with the address gitgate listens on"
                )
                .into());
            }
            let proxy_url = proxy_url.unwrap_or_else(|| default_proxy_url(config.settings.listen));
            // The sandbox does not share this shell's directory: name the CA absolutely.
            let ca_file = match ca_file {
                Some(given) => given,
                None => std::path::absolute(&config.ca_cert)?,
            };
            let ca_file = ca_file.display().to_string();
            say_raw!(
                "{}",
                sandbox_env::render(&sandbox_env::variables(&proxy_url, &ca_file), format)
            );
            Ok(())
        }),
        Command::Health { url } => {
            health::probe(&url).map_err(|e| Failure::Other(anyhow::anyhow!(e)))
        }
        Command::Login { target, no_wait } => with_target(&target, |base, profile| {
            login::login(base, profile, !no_wait)
        }),
        Command::Status { target } => with_target(&target, |base, profile| {
            match login::status(base, profile)? {
                true => Ok(()),
                false => Err(String::new()),
            }
        }),
        Command::Logout { target } => with_target(&target, login::logout),
        Command::Ca {
            command: CaCommand::Init { out },
        } => ca_init(&out),
        Command::Ca {
            command: CaCommand::Print { config },
        } => with_public_config(&config, ca_print),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(error)) => {
            fail(&error.to_string());
            ExitCode::from(EXIT_CONFIG)
        }
        Err(Failure::Other(error)) => {
            fail(&chain(&error));
            ExitCode::FAILURE
        }
        Err(Failure::Usage(error)) => {
            fail(&error);
            ExitCode::from(EXIT_CONFIG)
        }
        Err(Failure::Denied) => ExitCode::FAILURE,
    }
}

/// The error and its causes, `: `-joined, leaving out a cause whose text the message
/// already holds (most errors here already say their cause).
fn chain(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !message.contains(&text) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
    }
    message
}

/// Runs `f` with the URL of the running gitgate named by `target` and its profile.
/// An empty error means "already reported".
fn with_target(
    target: &LoginTarget,
    f: impl FnOnce(&str, Option<&str>) -> Result<(), String>,
) -> Result<(), Failure> {
    // The running gitgate holds the credentials; these commands need only its address.
    with_public_config(&target.config, |config| {
        let has_profiles = matches!(config.policies().0, gitgate_policy::Policies::Profiles(_));
        if has_profiles && config.admin.is_none() && target.url.is_none() {
            // The proxy port answers only an identified sandbox, for its own profile.
            return Err(Failure::Usage(format!(
                "{} has profiles: gitgate login, status and logout talk to the admin listener, which {} does not set (add admin: 127.0.0.1:PORT, or pass --url); a sandbox can also log itself in with POST /login on the proxy port",
                config.file.display(),
                config.file.display()
            )));
        }
        let base = target
            .url
            .clone()
            .unwrap_or_else(|| default_proxy_url(config.admin.unwrap_or(config.settings.listen)));
        match f(&base, target.profile.as_deref()) {
            Ok(()) => Ok(()),
            Err(error) if error.is_empty() => Err(Failure::Denied),
            Err(error) => Err(Failure::Other(anyhow::anyhow!(error))),
        }
    })
}

enum Failure {
    Config(ConfigError),
    Other(anyhow::Error),
    /// An argument names nothing the config has, or is not well-formed (`explain`).
    Usage(String),
    /// `explain` found a denial (already printed).
    Denied,
}

/// `http://ADDR` for the listen address, with an unspecified IP replaced by loopback.
fn default_proxy_url(listen: std::net::SocketAddr) -> String {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    format!("http://{addr}")
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure::Other(error)
    }
}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Self {
        Failure::Other(error.into())
    }
}

fn with_config(path: &Path, f: impl FnOnce(Config) -> Result<(), Failure>) -> Result<(), Failure> {
    f(Config::load(path).map_err(Failure::Config)?)
}

/// [`with_config`] for commands that use no credential.
fn with_public_config(
    path: &Path,
    f: impl FnOnce(Config) -> Result<(), Failure>,
) -> Result<(), Failure> {
    f(Config::load_without_credentials(path).map_err(Failure::Config)?)
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

async fn serve(config: Config) -> Result<(), Failure> {
    use tokio::signal::unix::{SignalKind, signal};
    let (path, known) = (config.file.clone(), reload::Known::of(&config));
    // Before starting: what starts may renew a restored session, and nothing after it
    // should fail.
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let running = run::start(config).await?;
    let watcher = Arc::new(Watcher::new(running.proxy().clone(), path, known));
    let polling = tokio::spawn(watcher.clone().run());
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reopening the audit log and reloading the policy");
                running.proxy().reopen_audit();
                watcher.hangup();
            }
        }
    }
    polling.abort();
    tracing::info!("signal received; draining (send it again to stop at once)");
    let proxy = running.proxy().clone();
    let shutdown = running.shutdown();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = term.recv() => proxy.close_now(),
            _ = int.recv() => proxy.close_now(),
        }
    }
    tracing::info!("stopped");
    Ok(())
}

fn check(config: Config) -> Result<(), Failure> {
    let problems = start_problems(&config);
    if let Some((last, others)) = problems.split_last() {
        for problem in others {
            eprintln!("gitgate: {problem}");
        }
        return Err(Failure::Config(last.clone()));
    }
    let s = &config.settings;
    say!("config: {} is valid", config.file.display());
    say!("listen: {}", s.listen);
    // Both files or neither: start_problems refused one without the other.
    let ca_state = match config.ca_cert.exists() {
        true => "present",
        false => "absent: generated on first run",
    };
    say!(
        "ca: cert {} key {} ({ca_state})",
        config.ca_cert.display(),
        config.ca_key.display()
    );
    say!("github.host: {}", s.github_host);
    say!("github.apiUrl: {}", s.api_url);
    say!("credentials: {}", describe_tokens(&config.tokens));
    for (host, addr) in &s.upstream.resolve {
        say!("upstream.resolve: {host} -> {addr}");
    }
    say!(
        "upstream.caFile: {} extra trust anchor(s)",
        s.upstream.extra_roots.len()
    );
    if let Some(tls) = &s.listen_tls {
        say!(
            "listenTls: {} (certificate for {}; client certificates: {})",
            config.listen_tls.map_or(String::new(), |a| a.to_string()),
            tls.names.join(", "),
            if tls.client_ca.is_empty() {
                "not asked for (no clientCa)".to_owned()
            } else {
                format!(
                    "verified against {} clientCa certificate(s)",
                    tls.client_ca.len()
                )
            }
        );
    }
    let (policies, rejected) = config.policies();
    match &policies {
        gitgate_policy::Policies::Single(_) => say!("{}", config.policy),
        gitgate_policy::Policies::Profiles(set) => {
            say!(
                "profiles: {} (top-level policy not used; unidentified clients get 407)",
                set.len()
            );
            let mut profiles: Vec<_> = set.iter().collect();
            profiles.sort_by(|a, b| a.name.cmp(&b.name));
            for profile in profiles {
                say!(
                    "profile {}: {}",
                    profile.name,
                    profile.identities().join(", ")
                );
                for line in profile.policy.to_string().lines() {
                    say!("  {line}");
                }
            }
        }
    }
    if rejected.is_empty() {
        return Ok(());
    }
    for (_, error) in &rejected {
        eprintln!("gitgate: {error}");
    }
    // Errors in files of the config, as the config's own are.
    Err(Failure::Usage(format!(
        "{} profile file(s) would be left out; their sandboxes would be refused",
        rejected.len()
    )))
}

/// What would stop `gitgate run` from starting with `config` here, beyond the config's
/// own validity: a CA that is half present or does not load, a missing token.
fn start_problems(config: &Config) -> Vec<ConfigError> {
    use gitgate_proxy::TokenConfig;
    let problem = |key: &str, message: String| config.error_at(key, message);
    let mut problems = Vec::new();
    if config.ca_cert.exists() != config.ca_key.exists() {
        let (present, missing) = match config.ca_cert.exists() {
            true => (&config.ca_cert, &config.ca_key),
            false => (&config.ca_key, &config.ca_cert),
        };
        problems.push(problem(
            "ca",
            format!(
                "{} exists but {} does not; gitgate run refuses to start: provide both, or remove both to have a CA generated",
                present.display(),
                missing.display()
            ),
        ));
    } else if config.ca_cert.exists()
        && let Err(error) =
            gitgate_certs::CertificateAuthority::load(&config.ca_cert, &config.ca_key)
    {
        problems.push(problem(
            "ca",
            format!("{error}; gitgate run refuses to start"),
        ));
    }
    match &config.tokens {
        TokenConfig::Env(name) if std::env::var_os(name).is_none_or(|v| v.is_empty()) => {
            problems.push(problem(
                "github.token.env",
                format!("{name} is not set in this environment; gitgate run needs it"),
            ));
        }
        TokenConfig::File(path) if !path.is_file() => problems.push(problem(
            "github.token.file",
            format!(
                "{} is not a readable file; gitgate run needs it",
                path.display()
            ),
        )),
        TokenConfig::User(user) => {
            // What `gitgate run` would refuse: the key, the directory, the file's owner.
            let host = config.settings.github_web();
            let opened = user.sessions.as_ref().map(|files| {
                files
                    .open()
                    .and_then(|store| store.saved(&user.client_id, &host, SystemTime::now()))
            });
            if let Some(Err(e)) = opened {
                problems.push(problem(e.key(), e.detail()));
            }
        }
        _ => {}
    }
    problems
}

fn describe_tokens(tokens: &gitgate_proxy::TokenConfig) -> String {
    use gitgate_proxy::TokenConfig;
    match tokens {
        TokenConfig::None => "none (requests reach GitHub without a credential)".into(),
        TokenConfig::File(path) => format!("static token from file {}", path.display()),
        TokenConfig::Env(name) => format!("static token from environment variable {name}"),
        TokenConfig::User(user) => format!(
            "GitHub user via the device flow, App client {} (log in with `gitgate login`; renewed {} s before expiry; {}; {})",
            user.client_id,
            user.refresh_margin.as_secs(),
            if user.client_secret.is_some() {
                "revoked at GitHub on logout"
            } else {
                "not revoked on logout: no clientSecretFile"
            },
            match &user.sessions {
                Some(files) => format!(
                    "sessions sealed in {} under the key in {}",
                    files.file.display(),
                    files.key_file.display()
                ),
                None => "sessions in memory only: a restart logs everyone out".into(),
            }
        ),
        TokenConfig::App(app) => format!(
            "GitHub App {} (JWTs signed by {}; refresh {} s before expiry; {} installation override(s))",
            app.id,
            app.signer.describe(),
            app.refresh_margin.as_secs(),
            app.installations.len()
        ),
    }
}

async fn doctor(config: Config) -> Result<(), Failure> {
    let (policies, _) = config.policies();
    let session_file = match &config.tokens {
        gitgate_proxy::TokenConfig::User(user) => {
            let host = config.settings.github_web();
            user.sessions
                .clone()
                .map(|s| (s, user.client_id.clone(), host))
        }
        _ => None,
    };
    let tokens =
        Tokens::standalone(config.tokens, &config.settings).map_err(anyhow::Error::from)?;
    say!("credentials: {}", tokens.kind());
    if tokens.is_none() {
        return Err(anyhow::anyhow!(
            "no GitHub credential is configured (github.app, github.token or github.user), so there is nothing to check; git requests would reach GitHub without one"
        )
        .into());
    }
    if tokens.acts_for_people() {
        say!(
            "doctor: the token comes from a person's login, held only by the running gitgate; see `gitgate status --config FILE`"
        );
        if let Some((files, client_id, host)) = session_file {
            saved_sessions(&files, &client_id, &host)?;
        }
        return Ok(());
    }
    // Every policy in force: the top-level one, or each profile's.
    let (mut app, mut rows) = (None, Vec::new());
    for policy in policies.all() {
        let (checked, found) = tokens
            .doctor(policy, &policy.named_repos())
            .await
            .map_err(anyhow::Error::from)?;
        app = app.or(checked);
        for row in found {
            let seen = rows.iter().any(|r: &DoctorRow| {
                (&r.owner, r.installation, &r.scope) == (&row.owner, row.installation, &row.scope)
            });
            if !seen {
                rows.push(row);
            }
        }
    }
    if let Some(app) = app {
        say!("app: id {} ({}), JWT accepted", app.id, app.slug);
    }
    if rows.is_empty() {
        say!(
            "doctor: no policy names an owner to mint a token for (patterns like */x name none); nothing more to check"
        );
        return Ok(());
    }
    say!(
        "{:<20} {:>13}  {:<40} {:<28} expires in",
        "owner",
        "installation",
        "repositories",
        "permissions"
    );
    for row in rows {
        let repositories = row
            .scope
            .repositories
            .as_ref()
            .map_or("(all of the installation)".into(), |r| r.join(","));
        let permissions: Vec<String> = row
            .scope
            .permissions
            .iter()
            .map(|(p, a)| format!("{p}:{}", a.as_str()))
            .collect();
        let left = row
            .expires_at
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .as_secs();
        say!(
            "{:<20} {:>13}  {:<40} {:<28} {}m{:02}s",
            row.owner,
            row.installation,
            repositories,
            permissions.join(","),
            left / 60,
            left % 60
        );
    }
    say!("doctor: all checks passed");
    Ok(())
}

/// `gitgate doctor` with `github.user.sessionFile`: whether the file opens with its key,
/// and whose sessions a restart would take back.
fn saved_sessions(
    files: &gitgate_proxy::token::SessionFiles,
    client_id: &str,
    host: &str,
) -> Result<(), Failure> {
    let store = files.open().map_err(anyhow::Error::from)?;
    let file = store.path().display();
    let now = SystemTime::now();
    let saved = store.saved(client_id, host, now);
    let Some(sessions) = saved.map_err(anyhow::Error::from)? else {
        say!("doctor: {file} does not exist yet; the running gitgate writes it when it starts");
        return Ok(());
    };
    say!(
        "doctor: {file} opens with github.user.sessionKeyFile; {} saved session(s)",
        sessions.len()
    );
    for s in sessions {
        let token = match s.expires_at.map(|at| at.duration_since(now)) {
            None => "a token that does not expire".to_owned(),
            Some(Ok(left)) => format!("a token valid {} min more", left.as_secs() / 60),
            Some(Err(_)) => "an expired token".to_owned(),
        };
        let fate = match (s.restorable, s.renewable) {
            (true, true) => "renewable",
            (true, false) => "not renewable",
            (false, _) => "no longer usable: gitgate run drops it",
        };
        say!("  {}: {} with {token}, {fate}", s.profile, s.login);
    }
    Ok(())
}

fn ca_init(out: &Path) -> Result<(), Failure> {
    let cert = out.join("ca.pem");
    let key = out.join("ca-key.pem");
    if let Some(existing) = [&cert, &key].into_iter().find(|p| p.exists()) {
        return Err(anyhow::anyhow!(
            "{} already exists; `gitgate ca init` never overwrites a CA: choose another --out, or remove the files",
            existing.display()
        )
        .into());
    }
    CertificateAuthority::create(&cert, &key).context("cannot create the CA")?;
    say!(
        "wrote {} (certificate: give this to sandboxes)",
        cert.display()
    );
    say!(
        "wrote {} (private key, mode 0600: keep it with gitgate only)",
        key.display()
    );
    Ok(())
}

fn ca_print(config: Config) -> Result<(), Failure> {
    let pem = std::fs::read_to_string(&config.ca_cert).with_context(|| {
        format!(
            "cannot read ca.cert {}; create it with `gitgate ca init` or let `gitgate run` generate it",
            config.ca_cert.display()
        )
    })?;
    say_raw!("{pem}");
    Ok(())
}
