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
    /// Manage gitgate's certificate authority.
    Ca {
        /// What to do with the CA.
        #[command(subcommand)]
        command: CaCommand,
    },
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
