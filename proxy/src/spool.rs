//! A pushed pack held back until the content rules have decided, in an unlinked-on-drop
//! temporary file, so memory per push stays bounded whatever the pack's size. While it is
//! written, [`crate::pack::list_stream`] reads it on a blocking thread through
//! [`Following`], so the first pass is done by the time the last byte arrives. Once
//! decided, the pack is either sent upstream as a body or dropped.

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

use crate::body::BoxError;
use crate::budget::{Budget, Reservation, Spent};
use crate::pack::{self, Bases, Listing, PackError, ReadAt, Wants};
use crate::spool_dir::SpoolPlace;

/// Read step when sending a spooled file.
const READ_STEP: usize = 64 * 1024;
/// Written bytes are handed to the following reader in steps this large (each step
/// waits for the file write to complete).
const FOLLOW_STEP: u64 = 1 << 20;

/// How far the writer has got, shared with the reader that follows it.
#[derive(Default)]
struct Progress {
    written: u64,
    done: bool,
    abandoned: bool,
}

#[derive(Default)]
struct Shared {
    progress: Mutex<Progress>,
    grew: Condvar,
}

impl Shared {
    fn progress(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, change: impl FnOnce(&mut Progress)) {
        change(&mut self.progress());
        self.grew.notify_all();
    }
}

/// A pack being received.
pub(crate) struct Spool {
    hash: gix_hash::Kind,
    file: tokio::fs::File,
    path: Option<tempfile::TempPath>,
    shared: Arc<Shared>,
    /// Bytes written, including those not yet handed to the reader.
    len: u64,
    reserved: Option<Reservation>,
}

/// Positioned reads of a pack that is still being written: a read past what has been
/// written waits for more, and ends (0 bytes) only once the pack is complete.
pub(crate) struct Following {
    hash: gix_hash::Kind,
    file: std::fs::File,
    shared: Arc<Shared>,
    /// How far the first pass has found the pack's objects to reach.
    objects: tokio::sync::watch::Sender<u64>,
}

/// A complete pack.
pub(crate) struct Spooled {
    hash: gix_hash::Kind,
    path: tempfile::TempPath,
    len: u64,
    _reserved: Option<Reservation>,
}

impl Spool {
    /// A new spool in `place` for a pack whose objects are hashed with `hash`, taking
    /// its bytes from `client`'s share of `budget`, and the reader that follows what is
    /// written to it.
    pub(crate) async fn new(
        hash: gix_hash::Kind,
        place: &SpoolPlace,
        budget: Arc<Budget>,
        client: IpAddr,
    ) -> io::Result<(Self, Following)> {
        let dir = place.dir().await?;
        let temp = tokio::task::spawn_blocking(move || tempfile::NamedTempFile::new_in(dir.path()))
            .await
            .map_err(io::Error::other)??;
        let reader = temp.reopen()?;
        let (file, path) = temp.into_parts();
        let shared = Arc::new(Shared::default());
        let following = Following {
            hash,
            file: reader,
            shared: Arc::clone(&shared),
            objects: tokio::sync::watch::Sender::new(0),
        };
        let spool = Spool {
            hash,
            file: tokio::fs::File::from_std(file),
            path: Some(path),
            shared,
            len: 0,
            reserved: Some(Reservation::new(budget, client)),
        };
        Ok((spool, following))
    }

    /// Bytes received so far.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Takes room for `more` bytes from the disk budget, or says which limit refuses them.
    pub(crate) fn reserve(&mut self, more: u64) -> Result<(), Spent> {
        match self.reserved.as_mut() {
            Some(reserved) => reserved.grow(more),
            None => Err(Spent::All),
        }
    }

    pub(crate) async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data).await?;
        self.len += data.len() as u64;
        if self.len - self.shared.progress().written >= FOLLOW_STEP {
            self.hand_over().await?;
        }
        Ok(())
    }

    /// Lets the reader see everything written: reads of the file see what the completed
    /// write handed to the kernel.
    pub(crate) async fn hand_over(&mut self) -> io::Result<()> {
        self.file.flush().await?;
        let len = self.len;
        self.shared.update(|p| p.written = len);
        Ok(())
    }

    pub(crate) async fn finish(mut self) -> io::Result<Spooled> {
        self.hand_over().await?;
        self.shared.update(|p| p.done = true);
        let len = self.len;
        let path = self
            .path
            .take()
            .ok_or_else(|| io::Error::other("spool finished twice"))?;
        Ok(Spooled {
            hash: self.hash,
            path,
            len,
            _reserved: self.reserved.take(),
        })
    }
}

impl Drop for Spool {
    /// A spool dropped before it is finished (a refused or broken push) ends its reader.
    fn drop(&mut self) {
        self.shared.update(|p| p.abandoned = true);
    }
}

impl ReadAt for Following {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let mut progress = self.shared.progress();
        loop {
            if offset < progress.written {
                let n = buf.len().min((progress.written - offset) as usize);
                drop(progress);
                return std::os::unix::fs::FileExt::read_at(&self.file, &mut buf[..n], offset);
            }
            if progress.done {
                return Ok(0);
            }
            if progress.abandoned {
                return Err(io::Error::other(
                    "the push ended before its pack was complete",
                ));
            }
            progress = self
                .shared
                .grew
                .wait(progress)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    fn objects_reach(&self, end: u64) {
        self.objects.send_if_modified(|reach| {
            let further = end > *reach;
            *reach = (*reach).max(end);
            further
        });
    }
}

impl Following {
    /// Watches how far the first pass has found the pack's objects to reach (ending when
    /// the first pass does): bytes before that are not the trailing checksum.
    pub(crate) fn objects(&self) -> tokio::sync::watch::Receiver<u64> {
        self.objects.subscribe()
    }

    /// The first pass over the pack as it arrives ([`pack::list_stream`]); `None` for a
    /// push without a pack. Blocking: run it through `spawn_blocking`.
    pub(crate) fn list(
        &self,
        wants: Wants,
        charge: pack::Charge,
    ) -> Result<Option<Listing>, PackError> {
        pack::list_stream(self, wants.max_blob, self.hash, charge)
    }
}

impl Spooled {
    /// The pack's facts from `listing` ([`pack::decode`]). Blocking.
    pub(crate) fn decode(
        &self,
        listing: Option<&Listing>,
        wants: Wants,
        bases: &Bases,
        charge: pack::Charge,
    ) -> Result<pack::Decoded, PackError> {
        let Some(listing) = listing else {
            return Ok(pack::Decoded::default());
        };
        let mapped = gix_pack::data::File::at(&self.path, self.hash).map_err(pack::fail)?;
        pack::decode(mapped, listing, wants, bases, charge)
    }

    /// The body to send upstream: `head` (the command list, as received), then the pack.
    pub(crate) async fn into_body(self, head: Bytes) -> io::Result<SpooledBody> {
        let file = tokio::fs::File::open(&self.path).await?;
        Ok(SpooledBody {
            remaining: head.len() as u64 + self.len,
            head: Some(head),
            file: Some((file, self)),
        })
    }
}

/// A spooled push body being sent: the command list, then the file; the temporary file
/// is removed (and its disk budget given back) when the body is dropped.
pub(crate) struct SpooledBody {
    head: Option<Bytes>,
    file: Option<(tokio::fs::File, Spooled)>,
    remaining: u64,
}

impl Body for SpooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(head) = self.head.take() {
            self.remaining -= head.len() as u64;
            return Poll::Ready(Some(Ok(Frame::data(head))));
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
        self.remaining == 0 && self.head.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wants() -> Wants {
        Wants::default()
    }

    /// Where the tests' packs go: the system's temporary directory.
    fn place() -> &'static SpoolPlace {
        static PLACE: std::sync::LazyLock<SpoolPlace> =
            std::sync::LazyLock::new(|| SpoolPlace::new(std::env::temp_dir()));
        &PLACE
    }

    /// A spool for one client's pack, unbounded.
    async fn unbounded() -> (Spool, Following) {
        Spool::new(
            gix_hash::Kind::Sha1,
            place(),
            Budget::new(u64::MAX, u64::MAX, Default::default()),
            [127, 0, 0, 1].into(),
        )
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_first_pass_follows_a_pack_as_it_is_written() {
        let pack = crate::pack::tests::small_pack();
        let (mut spool, following) = unbounded().await;
        let first_pass =
            tokio::task::spawn_blocking(move || following.list(wants(), &mut |_| Ok(())));
        for piece in pack.chunks(7) {
            spool.write(piece).await.unwrap();
            tokio::task::yield_now().await;
        }
        assert!(
            !first_pass.is_finished(),
            "it waits for the end of the pack"
        );
        let spooled = spool.finish().await.unwrap();
        let listing = first_pass.await.unwrap().unwrap().expect("a pack");
        let decoded = spooled
            .decode(Some(&listing), wants(), &Bases::new(), &mut |_| Ok(()))
            .unwrap();
        assert_eq!(decoded.facts.commits.len(), 4);
        assert_eq!(decoded.facts.pack_bytes, pack.len() as u64);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_push_that_ends_early_ends_the_first_pass() {
        let pack = crate::pack::tests::small_pack();
        let (mut spool, following) = unbounded().await;
        let first_pass =
            tokio::task::spawn_blocking(move || following.list(wants(), &mut |_| Ok(())));
        spool.write(&pack[..pack.len() / 2]).await.unwrap();
        drop(spool);
        let error = first_pass.await.unwrap().unwrap_err();
        assert!(
            error
                .to_string()
                .contains("the push ended before its pack was complete"),
            "{error}"
        );
        // An empty pack (a push of commits upstream has) is read.
        let empty: Vec<u8> = {
            let mut p = b"PACK\0\0\0\x02\0\0\0\0".to_vec();
            let mut hasher = gix_hash::hasher(gix_hash::Kind::Sha1);
            hasher.update(&p);
            p.extend_from_slice(hasher.try_finalize().unwrap().as_bytes());
            p
        };
        let (mut spool, following) = unbounded().await;
        let first_pass =
            tokio::task::spawn_blocking(move || following.list(wants(), &mut |_| Ok(())));
        spool.write(&empty).await.unwrap();
        spool.finish().await.unwrap();
        let listing = first_pass.await.unwrap().unwrap().expect("a pack");
        assert!(format!("{listing:?}").contains("listed: []"));
        // A push without a pack has no listing.
        let (spool, following) = unbounded().await;
        let first_pass =
            tokio::task::spawn_blocking(move || following.list(wants(), &mut |_| Ok(())));
        spool.finish().await.unwrap();
        assert!(first_pass.await.unwrap().unwrap().is_none());
    }

    #[tokio::test]
    async fn held_packs_share_one_disk_budget_until_their_files_are_gone() {
        let budget = Budget::new(100, 70, Default::default());
        let spool = |client: u8| {
            Spool::new(
                gix_hash::Kind::Sha1,
                place(),
                budget.clone(),
                [10, 0, 0, client].into(),
            )
        };
        let (mut first, _) = spool(1).await.unwrap();
        let (mut second, _) = spool(2).await.unwrap();
        let (mut third, _) = spool(1).await.unwrap();
        assert_eq!(first.reserve(60), Ok(()));
        first.write(&[1; 60]).await.unwrap();
        assert_eq!(
            third.reserve(11),
            Err(Spent::Client),
            "past the first client's share"
        );
        assert_eq!(second.reserve(41), Err(Spent::All), "past the budget");
        assert_eq!(second.reserve(40), Ok(()));
        assert_eq!(budget.used(), 100);
        drop(second);
        drop(third);
        assert_eq!(budget.used(), 60, "a dropped spool gives its share back");
        // A finished pack keeps its share while its body is sent, and until it is dropped.
        let body = first
            .finish()
            .await
            .unwrap()
            .into_body(Bytes::new())
            .await
            .unwrap();
        assert_eq!(budget.used(), 60);
        let sent = http_body_util::BodyExt::collect(body)
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(sent.len(), 60);
        assert_eq!(budget.used(), 0);
    }
}
