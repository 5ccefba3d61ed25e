//! Joins small response frames that are already waiting into larger ones, so a stream
//! of 4–7 KB pieces (as `git http-backend` writes a pack) leaves as fewer, fuller TLS
//! records and writes instead of one of each per piece.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

/// Frames are joined up to this size; larger frames pass through untouched.
const TARGET: usize = 64 << 10;

/// A body whose ready data frames are merged (never waiting for more to arrive).
pub(crate) struct Coalesce<B: Body> {
    inner: B,
    held: Option<Result<Frame<Bytes>, B::Error>>,
    done: bool,
}

impl<B: Body> Coalesce<B> {
    pub(crate) fn new(inner: B) -> Self {
        Self {
            inner,
            held: None,
            done: false,
        }
    }
}

impl<B> Body for Coalesce<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        if let Some(held) = self.held.take() {
            return Poll::Ready(Some(held));
        }
        if self.done {
            return Poll::Ready(None);
        }
        let first = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(None) => {
                self.done = true;
                return Poll::Ready(None);
            }
            other => return other,
        };
        let data = match first.into_data() {
            Ok(data) if data.len() < TARGET => data,
            Ok(data) => return Poll::Ready(Some(Ok(Frame::data(data)))),
            Err(frame) => return Poll::Ready(Some(Ok(frame))),
        };
        let mut joined: Option<BytesMut> = None;
        loop {
            let size = joined.as_ref().map_or(data.len(), BytesMut::len);
            if size >= TARGET {
                break;
            }
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(more) => {
                        let buf = joined.get_or_insert_with(|| {
                            let mut buf = BytesMut::with_capacity(TARGET + more.len());
                            buf.extend_from_slice(&data);
                            buf
                        });
                        buf.extend_from_slice(&more);
                    }
                    Err(trailers) => {
                        self.held = Some(Ok(trailers));
                        break;
                    }
                },
                Poll::Ready(Some(Err(error))) => {
                    self.held = Some(Err(error));
                    break;
                }
                Poll::Ready(None) => {
                    self.done = true;
                    break;
                }
                Poll::Pending => break,
            }
        }
        let data = joined.map_or(data, BytesMut::freeze);
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none() && (self.done || self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A body whose frames are all ready at once.
    struct Frames(std::vec::IntoIter<Bytes>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.next().map(|b| Ok(Frame::data(b))))
        }
    }

    #[tokio::test]
    async fn ready_small_frames_are_joined_up_to_the_target_and_nothing_is_lost() {
        let sizes = [5000, 7000, 4000, 70_000, 100, 60_000, 9000];
        let frames: Vec<Bytes> = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| Bytes::from(vec![i as u8; *n]))
            .collect();
        let mut body = Coalesce::new(Frames(frames.into_iter()));
        let (mut out, mut lens) = (Vec::new(), Vec::new());
        while let Some(frame) = body.frame().await {
            let data = frame.unwrap().into_data().unwrap();
            lens.push(data.len());
            out.extend_from_slice(&data);
        }
        let expected: Vec<u8> = sizes
            .iter()
            .enumerate()
            .flat_map(|(i, n)| vec![i as u8; *n])
            .collect();
        assert_eq!(out, expected);
        assert_eq!(lens, [86_000, 69_100]);
    }
}
