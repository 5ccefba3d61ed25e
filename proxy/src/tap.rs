//! An I/O object that shows the bytes passing through it to a [`Tap`].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Sees the traffic of a [`TapIo`].
pub(crate) trait Tap {
    /// Bytes were read.
    fn read(&mut self, bytes: &[u8]);
    /// `n` bytes were written.
    fn written(&mut self, _n: usize) {}
}

/// `inner`, with its traffic shown to `tap`.
pub(crate) struct TapIo<T, W> {
    inner: T,
    pub(crate) tap: W,
}

impl<T, W> TapIo<T, W> {
    pub(crate) fn new(inner: T, tap: W) -> Self {
        Self { inner, tap }
    }
}

impl<T: AsyncRead + Unpin, W: Tap + Unpin> AsyncRead for TapIo<T, W> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.tap.read(&buf.filled()[before..]);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin, W: Tap + Unpin> AsyncWrite for TapIo<T, W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = polled {
            self.tap.written(n);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            self.tap.written(n);
        }
        polled
    }

    forward_write_control!();
}
