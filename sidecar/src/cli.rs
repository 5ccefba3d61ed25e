//! Command-line arguments.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// gitgate: an egress proxy that lets sandboxes use GitHub without holding a credential.
#[derive(Debug, Parser)]
#[command(name = "gitgate", version, about)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Diagnostic log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable.
    Human,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy.
    Run {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file and print the effective settings and policy.
    Check {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check the GitHub App: key, JWT, installations, and a token per owner.
    Doctor {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the decision and the rule for a hypothetical request (no network).
    /// Exits 0 when everything asked about is allowed, 1 when something is denied.
    Explain {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
        /// The sandbox profile to decide for (required when the config has profiles).
        #[arg(long)]
        profile: Option<String>,
        /// `clone` (also fetch), `push` or `api`.
        #[arg(value_enum)]
        action: ExplainAction,
        /// OWNER/REPO; for `api`, the call: `'PUT /repos/acme/app/contents/a.md'`.
        repo: String,
        /// Refs a push updates: `main`, `refs/tags/v1`; `:main` deletes. For `api`, the
        /// call's JSON body, if any.
        refs: Vec<String>,
    },
    /// Print the environment a sandbox needs to use this gitgate.
    Env {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = EnvFormat::Sh)]
        format: EnvFormat,
        /// The proxy URL as the sandbox reaches it (default: from `listen`).
        #[arg(long)]
        proxy_url: Option<String>,
        /// Where the sandbox finds gitgate's CA certificate (default: `ca.cert`).
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
    /// Probe an admin endpoint (for container health checks, where there is no curl):
    /// exits 0 when it answers 200.
    Health {
        /// The endpoint.
        #[arg(long, default_value = "http://127.0.0.1:9901/healthz")]
        url: String,
    },
    /// Log in to GitHub as yourself (github.user): starts the device flow in the running
    /// gitgate, prints the code to enter at GitHub, and waits until it is entered.
    Login {
        #[command(flatten)]
        target: LoginTarget,
        /// Print the code and return without waiting.
        #[arg(long)]
        no_wait: bool,
    },
    /// Show who is logged in to GitHub through the running gitgate, and until when.
    /// Exits 0 only when every session shown is logged in, 1 otherwise.
    Status {
        #[command(flatten)]
        target: LoginTarget,
    },
    /// Log out of GitHub: the running gitgate forgets the user token and revokes it
    /// (when github.user.clientSecretFile is set).
    Logout {
        #[command(flatten)]
        target: LoginTarget,
    },
    /// Manage gitgate's certificate authority.
    Ca {
        /// What to do with the CA.
        #[command(subcommand)]
        command: CaCommand,
    },
}

/// Which running gitgate and profile `login`, `status` and `logout` talk to.
#[derive(Debug, clap::Args)]
pub struct LoginTarget {
    /// The config file of the running gitgate.
    #[arg(long, short)]
    pub config: PathBuf,
    /// The profile whose session this is about (one session per profile; required when
    /// the config has profiles).
    #[arg(long)]
    pub profile: Option<String>,
    /// gitgate's URL (default: the admin listener if configured, else the proxy port).
    #[arg(long)]
    pub url: Option<String>,
}

/// `gitgate ca …`.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a new CA: DIR/ca.pem and DIR/ca-key.pem (mode 0600).
    Init {
        /// Where to write the files.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the CA certificate (PEM) for sandboxes to trust.
    Print {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
    },
}

/// What `gitgate explain` asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExplainAction {
    /// Clone or fetch.
    Clone,
    /// Push.
    Push,
    /// A GitHub API call: REPO is `'METHOD PATH'`, the optional next argument its JSON
    /// body (required for `POST /graphql`).
    Api,
}

/// How `gitgate env` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EnvFormat {
    /// `export NAME='value'` lines for sh.
    Sh,
    /// `NAME=value` lines (docker compose `env_file`, systemd `EnvironmentFile`).
    Dotenv,
    /// A Kubernetes container `env:` list.
    K8s,
}
