//! Reading an upstream socket in large steps.
//!
//! rustls asks its socket for at most one TLS record (about 16 KiB) per read, so a large
//! download costs one `recv` (and one window-update ACK) per record. [`ReadAhead`] reads up
//! to [`STEP`] bytes at once and hands them out from memory. The buffer is held only while
//! data is flowing: it is given back as soon as the socket has nothing more to read, so an
//! idle pooled connection costs no memory for it. Each thread keeps one given-back buffer
//! for the next reader, so a small response does not cost a 64 KiB allocation and free.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How much one read from the socket may bring in.
pub(crate) const STEP: usize = 64 * 1024;

thread_local! {
    /// An empty buffer of [`STEP`] bytes, given back by a reader whose socket ran dry.
    static SPARE: Cell<Option<BytesMut>> = const { Cell::new(None) };
}

/// A buffer of at least [`STEP`] bytes: this thread's spare, or a new one.
fn take_spare() -> BytesMut {
    let mut buf = SPARE.take().unwrap_or_default();
    buf.reserve(STEP);
    buf
}

/// Keeps an emptied buffer as this thread's spare (one at most; any other is freed).
fn give_back(mut buf: BytesMut) {
    buf.clear();
    if buf.capacity() > 0 {
        SPARE.set(Some(buf));
    }
}

/// `inner`, read [`STEP`] bytes at a time.
pub(crate) struct ReadAhead<T> {
    inner: T,
    buf: BytesMut,
}

impl<T> ReadAhead<T> {
    pub(crate) fn new(inner: T) -> Self {
        Self {
            inner,
            buf: BytesMut::new(),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ReadAhead<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        dst: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.buf.is_empty() {
            if dst.remaining() >= STEP {
                return Pin::new(&mut this.inner).poll_read(cx, dst);
            }
            if this.buf.capacity() == 0 {
                this.buf = take_spare();
            } else {
                this.buf.reserve(STEP);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut this.inner), cx, &mut this.buf) {
                Poll::Pending => {
                    // Nothing to read now: the connection may stay idle for long.
                    give_back(std::mem::take(&mut this.buf));
                    return Poll::Pending;
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Ready(Ok(_)) => {}
            }
        }
        let n = dst.remaining().min(this.buf.len());
        dst.put_slice(&this.buf[..n]);
        this.buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ReadAhead<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    forward_write_control!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    /// Serves `chunks` one per read (at most what the reader asks for), with a `Pending`
    /// before each, then EOF; counts its reads.
    struct Script {
        chunks: VecDeque<Vec<u8>>,
        pending_next: bool,
        reads: usize,
    }

    impl Script {
        fn new(chunks: Vec<Vec<u8>>) -> Self {
            Self {
                chunks: chunks.into(),
                pending_next: true,
                reads: 0,
            }
        }
    }

    impl AsyncRead for Script {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if self.pending_next {
                self.pending_next = false;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.pending_next = true;
            self.reads += 1;
            if let Some(mut chunk) = self.chunks.pop_front() {
                let n = chunk.len().min(buf.remaining());
                buf.put_slice(&chunk[..n]);
                if n < chunk.len() {
                    self.chunks.push_front(chunk.split_off(n));
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    /// Reads everything through `ReadAhead` in `step`-sized reads; returns the bytes, the
    /// inner reads, and the largest buffer capacity seen after a `Pending`.
    fn drain(chunks: Vec<Vec<u8>>, step: usize) -> (Vec<u8>, usize, usize) {
        let mut io = ReadAhead::new(Script::new(chunks));
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let (mut out, mut held_while_pending) = (Vec::new(), 0);
        let mut scratch = vec![0; step];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut io).poll_read(&mut cx, &mut buf) {
                Poll::Pending => held_while_pending = held_while_pending.max(io.buf.capacity()),
                Poll::Ready(result) => {
                    result.unwrap();
                    if buf.filled().is_empty() {
                        break;
                    }
                    out.extend_from_slice(buf.filled());
                }
            }
        }
        (out, io.inner.reads, held_while_pending)
    }

    #[test]
    fn record_sized_reads_are_served_from_one_large_read() {
        let data: Vec<u8> = (0..STEP).map(|i| i as u8).collect();
        let (out, reads, _) = drain(vec![data.clone()], 16 * 1024 + 5);
        assert_eq!(out, data);
        assert_eq!(reads, 2, "one read for the data, one for EOF");
    }

    #[test]
    fn large_reads_go_straight_through() {
        let data = vec![7u8; 3 * STEP];
        let (out, reads, held) = drain(vec![data.clone()], STEP);
        assert_eq!((out, reads, held), (data, 4, 0));
    }

    #[test]
    fn a_connection_with_nothing_to_read_holds_no_buffer() {
        let (out, reads, held) = drain(vec![vec![1; 100]; 3], 4096);
        assert_eq!((out.len(), reads, held), (300, 4, 0));
    }

    #[test]
    fn readers_on_one_thread_reuse_the_buffer_the_last_one_gave_back() {
        drain(vec![vec![1; 100]; 3], 4096);
        let spare = take_spare();
        assert!(spare.capacity() >= STEP);
        let addr = spare.as_ptr();
        give_back(spare);
        let (out, _, held) = drain(vec![vec![2; 100]; 2], 4096);
        assert_eq!((out.len(), held), (200, 0));
        assert_eq!(take_spare().as_ptr(), addr, "a new buffer was allocated");
    }

    proptest! {
        #[test]
        fn bytes_arrive_whole_and_in_order_whatever_the_sizes(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..200_000), 0..6),
            step in 1usize..100_000,
        ) {
            let (out, _, _) = drain(chunks.clone(), step);
            prop_assert_eq!(out, chunks.concat());
        }
    }
}
