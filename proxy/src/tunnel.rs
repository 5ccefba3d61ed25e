//! Opaque TCP tunnels to allow-listed hosts: bytes pass untouched, nothing is injected.

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::state::ConnCtx;

/// Copies both ways until either side closes. Shutdown does not cut tunnels short;
/// the grace period bounds them.
pub(crate) async fn run(ctx: ConnCtx, client: Upgraded, mut upstream: TcpStream) {
    let _lifecycle = ctx.lifecycle;
    let mut client = TokioIo::new(client);
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((up, down)) => tracing::info!(bytes_up = up, bytes_down = down, "tunnel closed"),
        Err(error) => tracing::debug!(%error, "tunnel ended with an error"),
    }
}
