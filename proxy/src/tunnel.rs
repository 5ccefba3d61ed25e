//! Opaque TCP tunnels to allow-listed hosts: bytes pass untouched, nothing is injected.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::audit::Record;
use crate::state::{ConnCtx, State};

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
    let mut client = CountingIo::new(TokioIo::new(client));
    if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(%error, "tunnel ended with an error");
    }
    record.bytes_in = client.read;
    record.bytes_out = client.written;
    state.observer.emit(&record);
}

/// Counts what passes, so the totals survive a tunnel that ends in an error.
struct CountingIo<T> {
    inner: T,
    read: u64,
    written: u64,
}

impl<T> CountingIo<T> {
    fn new(inner: T) -> Self {
        Self {
            inner,
            read: 0,
            written: 0,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for CountingIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.read += (buf.filled().len() - before) as u64;
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CountingIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = polled {
            self.written += n as u64;
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
