//! The one body type the proxy hands to hyper, and small constructors for it.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};

use crate::audit::{Record, Verdict};
use crate::budget::{Budget, Reservation, Spent};
use crate::reply::Failure;

/// Boxed error carried by proxied bodies.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streamed body: bytes flow through, nothing is buffered.
pub(crate) type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// A body holding `bytes`.
pub(crate) fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub(crate) fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Why a `what` body (`request`, `push`, ...) was given up on after `idle` without a byte.
pub(crate) fn stalled(what: &str, idle: std::time::Duration) -> String {
    format!(
        "the {what} body stalled: nothing arrived for {} s (limits.bodyIdleTimeout)",
        idle.as_secs()
    )
}

/// Why a body was not read whole.
pub(crate) enum Unread {
    /// Too large, stalled or broken: the message says which.
    Failed(String),
    /// Holding it would take the bodies held in memory past `limits.maxBufferedBodyBytes`.
    Busy(String),
}

impl Unread {
    /// The failure to answer with: `failed` for [`Unread::Failed`], 503 when busy (the
    /// limit recorded as the decision's rule).
    pub(crate) fn failure(
        self,
        record: &mut Record,
        failed: impl FnOnce(String) -> Failure,
    ) -> Failure {
        match self {
            Unread::Failed(message) => failed(message),
            Unread::Busy(message) => {
                record.decide(Verdict::Deny, BUSY_RULE, &message);
                Failure::Overloaded(message)
            }
        }
    }
}

/// The rule a request refused for the memory budget is recorded with.
pub(crate) const BUSY_RULE: &str = "limits.maxBufferedBodyBytes";

/// A body read whole, with its share of the memory budget.
pub(crate) struct Buffered {
    bytes: Bytes,
    reservation: Reservation,
}

impl Buffered {
    pub(crate) fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The bytes as a body, holding their share of the budget until it is dropped.
    pub(crate) fn into_body(self) -> ProxyBody {
        Held {
            body: Full::new(self.bytes),
            _reservation: self.reservation,
        }
        .boxed_unsync()
    }
}

/// A [`Full`] body that keeps a [`Reservation`] while it lives.
struct Held {
    body: Full<Bytes>,
    _reservation: Reservation,
}

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.body)
            .poll_frame(cx)
            .map_err(|never| match never {})
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Reads all of `body`, at most `limit` bytes, each frame within `idle`, taking the memory
/// it holds from `budget` as `client`'s; the error says what went wrong with the `what`
/// body (`request`, `response`).
pub(crate) async fn read_bounded<B>(
    mut body: B,
    limit: usize,
    idle: std::time::Duration,
    what: &str,
    (budget, client): (&Arc<Budget>, IpAddr),
) -> Result<Buffered, Unread>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    // Sized once when the length is known (Content-Length), else grown as bytes come.
    let announced = body
        .size_hint()
        .exact()
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| *n <= limit)
        .unwrap_or(0);
    let mut buf = Gathered::new(Reservation::new(Arc::clone(budget), client));
    let refused = |spent| Unread::Busy(busy(&format!("this {what} body"), budget, spent));
    buf.grow_to(announced).map_err(refused)?;
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(Unread::Failed(stalled(what, idle))),
            Ok(None) => break,
            Ok(Some(Err(error))) => {
                return Err(Unread::Failed(format!(
                    "the {what} body could not be read: {error}"
                )));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(Unread::Failed(format!(
                    "the {what} body is larger than the {limit} bytes gitgate reads to decide on it"
                )));
            }
            buf.push(&data, limit).map_err(refused)?;
        }
    }
    let (bytes, reservation) = buf.into_parts();
    Ok(Buffered { bytes, reservation })
}

/// Bytes gathered in one buffer whose capacity is charged to a budget before it is
/// allocated, with room for `extra` bytes held elsewhere on its behalf.
pub(crate) struct Gathered {
    buf: Vec<u8>,
    reservation: Reservation,
    extra: u64,
}

impl Gathered {
    pub(crate) fn new(reservation: Reservation) -> Self {
        Self {
            buf: Vec::new(),
            reservation,
            extra: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// The bytes gathered so far.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The budget its share is of.
    pub(crate) fn budget(&self) -> &Budget {
        self.reservation.budget()
    }

    /// Appends `data`, the buffer growing (doubling, at most to `limit` unless `data`
    /// needs more) only once the budget has room for it.
    pub(crate) fn push(&mut self, data: &[u8], limit: usize) -> Result<(), Spent> {
        let needed = self.buf.len() + data.len();
        if needed > self.buf.capacity() {
            let doubled = (self.buf.capacity() * 2).min(limit);
            self.grow_to(needed.max(doubled))?;
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// Makes the buffer's capacity at least `capacity` once the budget has room for it.
    fn grow_to(&mut self, capacity: usize) -> Result<(), Spent> {
        if capacity <= self.buf.capacity() {
            return Ok(());
        }
        let charged = capacity as u64 + self.extra;
        self.reservation
            .grow(charged.saturating_sub(self.reservation.bytes()))?;
        self.buf.reserve_exact(capacity - self.buf.len());
        Ok(())
    }

    /// Charges `bytes` more held elsewhere on the gathered bytes' behalf (a parser's state).
    pub(crate) fn charge(&mut self, bytes: u64) -> Result<(), Spent> {
        self.reservation.grow(bytes)?;
        self.extra += bytes;
        Ok(())
    }

    /// The bytes, and their share of the budget.
    pub(crate) fn into_parts(self) -> (Bytes, Reservation) {
        (Bytes::from(self.buf), self.reservation)
    }
}

/// Why `holding` ("this push body") is not held: what is held to decide on is at a limit.
pub(crate) fn busy(holding: &str, budget: &Budget, spent: Spent) -> String {
    match spent {
        Spent::All => format!(
            "holding {holding} to decide on it would take the request bodies held in memory past limits.maxBufferedBodyBytes {}; retry shortly",
            budget.describe()
        ),
        Spent::Client => format!(
            "holding {holding} to decide on it would take this client's request bodies held in memory past limits.maxBufferedBodyBytesPerClient {}; finish or close the others first",
            gitgate_policy::ByteSize(budget.per_client())
        ),
    }
}

/// Any streamed body (a hyper `Incoming`, a prefixed stream, …) as a [`ProxyBody`].
pub(crate) fn stream<B>(body: B) -> ProxyBody
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_read_whole_holds_its_share_of_the_budget_until_it_is_dropped() {
        let budget = Budget::new(10, 10, Default::default());
        let client: IpAddr = "10.0.0.1".parse().unwrap();
        let read = |bytes: &'static [u8]| {
            let body = Full::new(Bytes::from_static(bytes));
            let idle = std::time::Duration::from_secs(5);
            read_bounded(body, 100, idle, "test", (&budget, client))
        };
        let Ok(first) = read(b"123456").await else {
            panic!("six bytes fit")
        };
        assert_eq!((first.bytes().as_ref(), budget.used()), (&b"123456"[..], 6));
        assert!(matches!(read(b"12345").await, Err(Unread::Busy(_))));
        assert_eq!(budget.used(), 6, "a refused read gives back what it took");
        let body = first.into_body();
        assert_eq!(budget.used(), 6);
        drop(body);
        assert_eq!(budget.used(), 0);
        assert!(read(b"1234567890").await.is_ok());
    }

    #[tokio::test]
    async fn an_announced_length_is_charged_before_anything_is_allocated() {
        let budget = Budget::new(10, 10, Default::default());
        let client: IpAddr = "10.0.0.1".parse().unwrap();
        let body = Full::new(Bytes::from_static(&[0; 20]));
        let idle = std::time::Duration::from_secs(5);
        let read = read_bounded(body, 100, idle, "test", (&budget, client)).await;
        assert!(matches!(read, Err(Unread::Busy(_))));
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_gathered_buffer_is_charged_for_its_capacity_which_stops_at_the_limit() {
        let budget = Budget::new(1000, 1000, Default::default());
        let mut gathered = Gathered::new(Reservation::new(budget.clone(), [10, 0, 0, 1].into()));
        for _ in 0..10 {
            gathered.push(&[0; 9], 100).unwrap();
        }
        assert_eq!(gathered.len(), 90);
        assert_eq!(budget.used(), gathered.buf.capacity() as u64);
        assert!(
            gathered.buf.capacity() <= 100,
            "{}",
            gathered.buf.capacity()
        );
        gathered.charge(5).unwrap();
        assert_eq!(budget.used(), gathered.buf.capacity() as u64 + 5);
        gathered.push(&[0; 30], 100).unwrap();
        assert_eq!(budget.used(), gathered.buf.capacity() as u64 + 5);
        drop(gathered);
        assert_eq!(budget.used(), 0);
    }
}
