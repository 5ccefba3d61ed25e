//! Runs a stand-in until stdin closes (or a line is entered), printing how to reach it.
//!
//! ```sh
//! cargo run -p gitgate-standin --example standin
//! ```

use std::io::BufRead as _;

use gitgate_standin::{Config, StandIn, basic_auth};

fn main() -> anyhow::Result<()> {
    let standin = StandIn::start(Config::default())?;
    let mint = standin.issue_token(1001, None, None)?;
    let port = standin.port();
    println!("stand-in listening on {}", standin.addr());
    println!("test CA:        {}", standin.ca_file().display());
    println!("App id:         {}", standin.app_id());
    println!("App key PKCS#1: {}", standin.app_key_pkcs1_file().display());
    println!("App key PKCS#8: {}", standin.app_key_pkcs8_file().display());
    println!("a token for acme/*: {}", mint.token);
    println!();
    println!("try (GIT_SSL_CAINFO, if set, would override http.sslCAInfo):");
    println!(
        "  env -u GIT_SSL_CAINFO git -c http.sslCAInfo={} -c 'http.extraHeader=Authorization: {}' \\\n    \
         -c http.curloptResolve=github.com:{port}:127.0.0.1 clone {}",
        standin.ca_file().display(),
        basic_auth(&mint.token),
        standin.git_url("acme", "app"),
    );
    println!(
        "  curl --cacert {} --resolve tunnel.test:{port}:127.0.0.1 https://tunnel.test:{port}/",
        standin.ca_file().display()
    );
    println!();
    println!("press Enter (or close stdin) to stop");
    let _ = std::io::stdin().lock().lines().next();
    for r in standin.requests() {
        println!("{} {} {} -> {:?}", r.host, r.method, r.target, r.status);
    }
    standin.shutdown();
    Ok(())
}
