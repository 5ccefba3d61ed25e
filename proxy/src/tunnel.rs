//! Opaque TCP tunnels to allow-listed hosts: bytes pass untouched, nothing is injected.

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::audit::Record;
use crate::state::{ConnCtx, State};
use crate::tap::{Tap, TapIo};

/// Copies both ways until either side closes, then writes the tunnel's audit record.
/// Shutdown does not cut tunnels short; the grace period bounds them.
pub(crate) async fn run(
    state: &State,
    ctx: ConnCtx,
    mut record: Record,
    client: Upgraded,
    mut upstream: TcpStream,
) {
    let _lifecycle = ctx.lifecycle;
    let _open = state.observer.metrics.tunnel_opened();
    let mut client = TapIo::new(TokioIo::new(client), Counter::default());
    if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(%error, "tunnel ended with an error");
    }
    record.bytes_in = client.tap.read;
    record.bytes_out = client.tap.written;
    state.observer.emit(record);
}

/// Counts what passes, so the totals survive a tunnel that ends in an error.
#[derive(Default)]
struct Counter {
    read: u64,
    written: u64,
}

impl Tap for Counter {
    fn read(&mut self, bytes: &[u8]) {
        self.read += bytes.len() as u64;
    }

    fn written(&mut self, n: usize) {
        self.written += n as u64;
    }
}
