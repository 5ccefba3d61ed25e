//! The `gitgate` binary as a library: the CLI, config loading, and the wiring that
//! turns a config file into a running proxy. `main.rs` only calls [`main`].
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

/// `println!` and `print!` that stop quietly once standard output is closed (`gitgate
/// check | head`), where the std macros panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

macro_rules! say_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

pub mod cli;
mod commands;
pub mod config;
mod descriptors;
mod explain;
mod explain_api;
mod health;
mod logging;
mod login;
mod reload;
mod run;
mod sandbox_env;

pub use run::{Running, start};

/// Exit status for a bad config or bad arguments (`EX_USAGE`).
pub const EXIT_CONFIG: u8 = 64;

/// Runs the command line and returns the process exit status: [`EXIT_CONFIG`] for
/// arguments that are wrong, after saying why.
pub fn main() -> std::process::ExitCode {
    match <cli::Cli as clap::Parser>::try_parse() {
        Ok(cli) => commands::dispatch(cli),
        Err(error) => {
            let _ = error.print();
            match error.use_stderr() {
                true => std::process::ExitCode::from(EXIT_CONFIG),
                false => std::process::ExitCode::SUCCESS, // --help, --version
            }
        }
    }
}
