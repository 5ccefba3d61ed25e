//! A lingering close. When gitgate answers and closes a connection whose client is still
//! sending (a refused push past `limits.maxDrainBytes`), closing with its bytes unread
//! makes the kernel reset the connection, and a reset throws away the answer the client
//! has not read yet: git would show "connection reset" instead of why. So closing first
//! ends gitgate's side (TLS `close_notify`, then FIN), then reads and discards what the
//! client still sends until it closes too, or for at most [`LINGER`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// How long a closing connection reads what its client still sends.
pub(crate) const LINGER: Duration = Duration::from_secs(2);

/// `T`, whose shutdown lingers.
pub(crate) struct LingerIo<T> {
    inner: T,
    lingering: Option<Lingering>,
}

/// While lingering: until when, and where discarded bytes go.
struct Lingering {
    until: Pin<Box<Sleep>>,
    scratch: Box<[u8]>,
}

impl<T> LingerIo<T> {
    pub(crate) fn new(inner: T) -> Self {
        Self {
            inner,
            lingering: None,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for LingerIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for LingerIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, bytes)
    }

    // Without these, hyper would see a stream that cannot take a vectored write and copy
    // every response body into its own buffer before writing it.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.lingering.is_none() {
            std::task::ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            this.lingering = Some(Lingering {
                until: Box::pin(tokio::time::sleep(LINGER)),
                scratch: vec![0; 4096].into_boxed_slice(),
            });
        }
        let Lingering { until, scratch } = this.lingering.as_mut().expect("lingering");
        loop {
            if until.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            let mut discard = ReadBuf::new(scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut discard) {
                Poll::Ready(Ok(())) if !discard.filled().is_empty() => continue,
                // The client closed, or the connection failed: nothing to wait for.
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_closing_side_reads_what_is_still_sent_until_the_peer_closes() {
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let mut ours = LingerIo::new(ours);
        ours.write_all(b"the answer").await.unwrap();
        // The peer is still sending more than the pipe holds when we close.
        let sending = tokio::spawn(async move {
            let sent = theirs.write_all(&[b'x'; 64 << 10]).await;
            let mut answer = Vec::new();
            theirs.read_to_end(&mut answer).await.unwrap();
            (sent, answer)
        });
        tokio::time::timeout(LINGER, ours.shutdown())
            .await
            .unwrap()
            .unwrap();
        let (sent, answer) = sending.await.unwrap();
        assert!(sent.is_ok(), "all it sent was read");
        assert_eq!(answer, b"the answer");
    }

    #[tokio::test]
    async fn a_peer_that_neither_sends_nor_closes_is_left_after_the_linger_time() {
        let (ours, _theirs) = tokio::io::duplex(1024);
        let mut ours = LingerIo::new(ours);
        let started = tokio::time::Instant::now();
        ours.shutdown().await.unwrap();
        let waited = started.elapsed();
        assert!(waited >= LINGER && waited < LINGER * 2, "{waited:?}");
    }

    /// A stream that takes vectored writes and records how many pieces each one had.
    #[derive(Default)]
    struct Vectored(Vec<usize>);

    impl AsyncRead for Vectored {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Vectored {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bytes: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().0.push(1);
            Poll::Ready(Ok(bytes.len()))
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().0.push(bufs.len());
            Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    // hyper copies every body into its own buffer for a stream that says it cannot take
    // vectored writes: the wrapper must not hide that its TLS stream can.
    #[tokio::test]
    async fn vectored_writes_pass_through_whole() {
        let mut ours = LingerIo::new(Vectored::default());
        assert!(ours.is_write_vectored());
        let pieces = [io::IoSlice::new(b"head"), io::IoSlice::new(b"body")];
        assert_eq!(ours.write_vectored(&pieces).await.unwrap(), 8);
        assert_eq!(ours.inner.0, [2]);
    }
}
