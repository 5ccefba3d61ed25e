//! An idle timeout on a connection: when no byte moves either way for the configured
//! time, reads and writes fail and the connection closes. Bounds dead peers and bodies
//! that stall midway; long transfers that keep moving are never cut.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// `T` with an idle timeout.
pub(crate) struct IdleIo<T> {
    inner: T,
    timeout: Duration,
    /// Armed for the timeout after the activity seen when it was last set; moved on only
    /// when it fires, so the byte path never touches the timer.
    deadline: Pin<Box<Sleep>>,
    last_activity: Instant,
}

impl<T> IdleIo<T> {
    pub(crate) fn new(inner: T, timeout: Duration) -> Self {
        let now = Instant::now();
        Self {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep_until(now + timeout)),
            last_activity: now,
        }
    }

    fn activity(&mut self) {
        self.last_activity = Instant::now();
    }

    /// Whether `timeout` has passed since the last activity; re-arms the deadline when it
    /// fires early (there was activity since it was set).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        while self.deadline.as_mut().poll(cx).is_ready() {
            let due = self.last_activity + self.timeout;
            if due <= Instant::now() {
                return true;
            }
            self.deadline.as_mut().reset(due);
        }
        false
    }
}

fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "connection idle for too long (limits.idleTimeout)",
    )
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.activity();
                }
                Poll::Ready(result)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, data) {
            Poll::Ready(result) => {
                self.activity();
                Poll::Ready(result)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => {
                self.activity();
                Poll::Ready(result)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    forward_write_control!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A timeout shorter than any clock granularity still holds while bytes keep coming,
    /// and fires once they stop.
    #[tokio::test]
    async fn a_short_timeout_holds_while_bytes_move_and_fires_when_they_stop() {
        let timeout = Duration::from_millis(300);
        let (mut writer, reader) = tokio::io::duplex(64);
        let mut idle = IdleIo::new(reader, timeout);
        let started = Instant::now();
        let mut byte = [0u8; 1];
        for _ in 0..12 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            writer.write_all(b"x").await.unwrap();
            idle.read_exact(&mut byte).await.unwrap();
        }
        assert!(started.elapsed() >= Duration::from_millis(1200));
        let quiet = Instant::now();
        let error = idle.read_exact(&mut byte).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        let waited = quiet.elapsed();
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
    }
}
