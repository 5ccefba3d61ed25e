//! gitgate's main job, on this machine, in one command:
//!
//! ```text
//! cargo run --release --example demo
//! ```
//!
//! Starts the local GitHub stand-in, starts gitgate with `examples/demo.yaml`, runs a real
//! `git clone` and `git push` through it (with no credential anywhere on the client side),
//! shows two denials the way git prints them, then keeps running and prints the `export`
//! lines to try it from another shell.

use std::path::Path;
use std::process::Command;

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let standin =
        gitgate_standin::StandIn::start(Default::default()).context("start the GitHub stand-in")?;
    let dir = tempfile::Builder::new().prefix("gitgate-demo-").tempdir()?;
    let template = include_str!("demo.yaml");
    let config_text = template
        .replace("${APP_ID}", standin.app_id())
        .replace(
            "${APP_KEY}",
            &standin.app_key_pkcs8_file().display().to_string(),
        )
        .replace("${STANDIN_CA}", &standin.ca_file().display().to_string())
        .replace("${STANDIN}", &standin.addr().to_string());
    let config_path = dir.path().join("gitgate.yaml");
    std::fs::write(&config_path, &config_text)?;
    let config = gitgate::config::Config::load(&config_path).map_err(|e| anyhow::anyhow!("{e}"))?;

    let runtime = tokio::runtime::Runtime::new()?;
    let running = runtime.block_on(gitgate::start(config))?;
    let proxy = format!("http://{}", running.addr);
    let ca = running.ca_cert.clone();
    println!(
        "gitgate is listening on {} (config {})\n",
        running.addr,
        config_path.display()
    );

    let sandbox = dir.path().join("sandbox");
    std::fs::create_dir_all(&sandbox)?;
    let git = |cwd: &Path, args: &[&str]| -> anyhow::Result<bool> {
        println!("$ git {}", args.join(" "));
        let status = Command::new("git")
            .args(args)
            .current_dir(cwd)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &sandbox)
            .env("HTTPS_PROXY", &proxy)
            .env("GIT_SSL_CAINFO", &ca)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_AUTHOR_NAME", "Demo")
            .env("GIT_AUTHOR_EMAIL", "demo@example.invalid")
            .env("GIT_COMMITTER_NAME", "Demo")
            .env("GIT_COMMITTER_EMAIL", "demo@example.invalid")
            .status()?;
        println!("  -> exit {}\n", status.code().unwrap_or(-1));
        Ok(status.success())
    };
    let work = sandbox.join("app");
    anyhow::ensure!(
        git(
            &sandbox,
            &["clone", "https://github.com/acme/app.git", "app"]
        )?,
        "clone failed"
    );
    std::fs::write(work.join("hello.txt"), "pushed through gitgate\n")?;
    git(&work, &["add", "hello.txt"])?;
    git(&work, &["commit", "-q", "-m", "Say hello through gitgate"])?;
    anyhow::ensure!(
        git(&work, &["push", "origin", "HEAD:main"])?,
        "push to main failed"
    );
    println!("# Denied by allowedRefs: the sandbox may push main and release/*, not dev.");
    git(&work, &["push", "origin", "HEAD:dev"])?;
    println!("# Denied by allowedRepos: acme/secret is not in the policy.");
    git(&sandbox, &["clone", "https://github.com/acme/secret.git"])?;
    println!(
        "No credential exists on the client side: HOME is {}, and .git/config holds only the URL.\n",
        sandbox.display()
    );

    println!("gitgate keeps running. In another shell:\n");
    println!("  export HTTPS_PROXY={proxy}");
    println!("  export GIT_SSL_CAINFO={}", ca.display());
    println!("  git clone https://github.com/acme/app.git /tmp/app-through-gitgate\n");
    println!("Press Ctrl-C to stop.");
    runtime.block_on(tokio::signal::ctrl_c())?;
    runtime.block_on(running.shutdown());
    Ok(())
}
