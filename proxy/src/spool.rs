//! A pushed pack held back until the content rules have decided: in memory up to a
//! threshold, then in an unlinked-on-drop temporary file, so memory per push stays
//! bounded whatever the pack's size. Once decided, it is either read by
//! [`crate::pack::facts`] and then sent upstream as a body, or dropped.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

use crate::body::BoxError;
use crate::pack::{self, Bases, Listing, PackError, Wants};

/// Packs up to this size stay in memory.
pub(crate) const MEMORY: usize = 1 << 20;
/// Read step when sending a spooled file.
const READ_STEP: usize = 64 * 1024;

/// A pack being received.
pub(crate) struct Spool {
    memory: Vec<u8>,
    file: Option<(tokio::fs::File, tempfile::TempPath)>,
    len: u64,
}

/// A complete pack.
pub(crate) enum Spooled {
    Memory(Bytes),
    File(tempfile::TempPath, u64),
}

impl Spool {
    pub(crate) fn new() -> Self {
        Self {
            memory: Vec::new(),
            file: None,
            len: 0,
        }
    }

    /// Bytes received so far.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.len += data.len() as u64;
        if self.file.is_none() && self.memory.len() + data.len() <= MEMORY {
            self.memory.extend_from_slice(data);
            return Ok(());
        }
        if self.file.is_none() {
            let temp = tokio::task::spawn_blocking(tempfile::NamedTempFile::new)
                .await
                .map_err(io::Error::other)??;
            let (std_file, path) = temp.into_parts();
            let mut file = tokio::fs::File::from_std(std_file);
            file.write_all(&self.memory).await?;
            self.memory = Vec::new();
            self.file = Some((file, path));
        }
        if let Some((file, _)) = &mut self.file {
            file.write_all(data).await?;
        }
        Ok(())
    }

    pub(crate) async fn finish(self) -> io::Result<Spooled> {
        match self.file {
            None => Ok(Spooled::Memory(Bytes::from(self.memory))),
            Some((mut file, path)) => {
                file.flush().await?;
                Ok(Spooled::File(path, self.len))
            }
        }
    }
}

impl Spooled {
    /// The first pass over the pack ([`pack::list`]); `None` for a push without a pack.
    /// Blocking, like [`Spooled::decode`]: call them through `spawn_blocking`.
    pub(crate) fn list(&self, wants: Wants) -> Result<Option<Listing>, PackError> {
        self.with_views(|views| views.list(wants))
    }

    /// The pack's facts from `listing` ([`pack::decode`]).
    pub(crate) fn decode(
        &self,
        listing: Option<&Listing>,
        wants: Wants,
        bases: &Bases,
    ) -> Result<pack::Decoded, PackError> {
        let decoded = match listing {
            Some(listing) => self.with_views(|views| views.decode(listing, wants, bases))?,
            None => None,
        };
        Ok(decoded.unwrap_or_default())
    }

    /// Runs `read` on views of the pack (memory-mapping a spooled file); `None` when
    /// there is no pack.
    fn with_views<R>(
        &self,
        read: impl FnOnce(&dyn pack::AnyViews) -> Result<R, PackError>,
    ) -> Result<Option<R>, PackError> {
        match self {
            Spooled::Memory(bytes) if bytes.is_empty() => Ok(None),
            Spooled::Memory(bytes) => read(&pack::Views::of_bytes(bytes)?).map(Some),
            Spooled::File(path, _) => {
                let file = std::fs::File::open(path).map_err(pack::fail)?;
                let mapped =
                    gix_pack::data::File::at(path, gix_hash::Kind::Sha1).map_err(pack::fail)?;
                read(&pack::Views::new(mapped, &file)).map(Some)
            }
        }
    }

    /// The body to send upstream: `head` (the command list, as received), then the pack.
    pub(crate) async fn into_body(self, head: Bytes) -> io::Result<SpooledBody> {
        let (file, len) = match self {
            Spooled::Memory(bytes) => {
                let len = (head.len() + bytes.len()) as u64;
                return Ok(SpooledBody {
                    queued: vec![bytes, head],
                    file: None,
                    remaining: len,
                });
            }
            Spooled::File(path, len) => {
                let file = tokio::fs::File::open(&path).await?;
                ((file, path), len)
            }
        };
        Ok(SpooledBody {
            remaining: head.len() as u64 + len,
            queued: vec![head],
            file: Some(file),
        })
    }
}

/// A spooled push body being sent: the queued pieces (last first), then the file; the
/// temporary file is removed when the body is dropped.
pub(crate) struct SpooledBody {
    queued: Vec<Bytes>,
    file: Option<(tokio::fs::File, tempfile::TempPath)>,
    remaining: u64,
}

impl Body for SpooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(piece) = self.queued.pop() {
            self.remaining -= piece.len() as u64;
            return Poll::Ready(Some(Ok(Frame::data(piece))));
        }
        let Some((file, _)) = &mut self.file else {
            return Poll::Ready(None);
        };
        let mut buf = BytesMut::zeroed(READ_STEP);
        let mut read = ReadBuf::new(&mut buf);
        match Pin::new(file).poll_read(cx, &mut read) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(error)) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(Ok(())) => {
                let n = read.filled().len();
                if n == 0 {
                    self.file = None;
                    return if self.remaining == 0 {
                        Poll::Ready(None)
                    } else {
                        Poll::Ready(Some(Err("the spooled pack is shorter than written".into())))
                    };
                }
                buf.truncate(n);
                self.remaining = self.remaining.saturating_sub(n as u64);
                Poll::Ready(Some(Ok(Frame::data(buf.freeze()))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0 && self.queued.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
