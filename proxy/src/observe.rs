//! Where every decision ends up: one audit line and the matching metrics, emitted when the
//! response has been sent in full (so byte counts and duration are final).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};

use crate::audit::{AuditLog, Record};
use crate::body::{BoxError, ProxyBody, stream};
use crate::metrics::Metrics;
use crate::reply::Failed;

/// The audit log and the metrics, together.
#[derive(Clone)]
pub(crate) struct Observer {
    audit: AuditLog,
    pub(crate) metrics: Arc<Metrics>,
}

impl Observer {
    pub(crate) fn new(audit: AuditLog, metrics: Arc<Metrics>) -> Self {
        Self { audit, metrics }
    }

    /// Counts the record and queues it for the audit log.
    pub(crate) fn emit(&self, record: Record) {
        self.metrics.record(&record);
        self.audit.record(record);
    }

    pub(crate) fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Sends `response` with `record` emitted once its body is done (or abandoned).
    pub(crate) fn finish(
        &self,
        mut record: Record,
        bytes_in: Arc<AtomicU64>,
        mut response: Response<ProxyBody>,
    ) -> Response<ProxyBody> {
        answered(&mut record, &mut response);
        let observer = self.clone();
        response.map(|inner| {
            stream(Finishing {
                inner,
                record: Some(record),
                bytes_in,
                sent: 0,
                observer,
            })
        })
    }
}

/// A request's record until its answer goes out. If the request ends before that (the
/// client went away, or shutdown cut it off, and hyper dropped its handler), the record
/// is still written, saying so: a push GitHub applied must not go unrecorded.
pub(crate) struct Pending {
    record: Record,
    bytes_in: Arc<AtomicU64>,
    observer: Observer,
    answered: bool,
}

impl Pending {
    pub(crate) fn new(record: Record, bytes_in: Arc<AtomicU64>, observer: &Observer) -> Self {
        Self {
            record,
            bytes_in,
            observer: observer.clone(),
            answered: false,
        }
    }

    pub(crate) fn record(&mut self) -> &mut Record {
        &mut self.record
    }

    /// Sends `response` ([`Observer::finish`]): from here its body writes the record.
    pub(crate) fn finish(mut self, response: Response<ProxyBody>) -> Response<ProxyBody> {
        self.answered = true;
        let record = self.take();
        self.observer
            .finish(record, Arc::clone(&self.bytes_in), response)
    }

    /// The record, leaving an empty one in its place.
    fn take(&mut self) -> Record {
        let empty = Record::new(
            self.record.connection,
            self.record.client,
            "",
            "",
            "",
            self.record.service,
        );
        std::mem::replace(&mut self.record, empty)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let mut record = self.take();
        record.error.get_or_insert_with(|| {
            "the request ended before gitgate answered: the client went away, or shutdown cut it off".into()
        });
        record.bytes_in = self.bytes_in.load(Ordering::Relaxed);
        self.observer.emit(record);
    }
}

/// Notes in `record` the status gitgate answers with and, if the answer reports a
/// failure (not a refusal), the failure.
pub(crate) fn answered(record: &mut Record, response: &mut Response<ProxyBody>) {
    record.status = response.status().as_u16();
    if let Some(Failed(error)) = response.extensions_mut().remove() {
        record.error.get_or_insert(error);
    }
}

/// A request body that counts the bytes the client sent.
pub(crate) struct Counted<B> {
    inner: B,
    count: Arc<AtomicU64>,
}

impl<B> Counted<B> {
    pub(crate) fn new(inner: B) -> (Self, Arc<AtomicU64>) {
        let count = Arc::new(AtomicU64::new(0));
        (
            Self {
                inner,
                count: count.clone(),
            },
            count,
        )
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Counted<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.count.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that counts what it sends and emits the record at its end.
struct Finishing {
    inner: ProxyBody,
    record: Option<Record>,
    bytes_in: Arc<AtomicU64>,
    sent: u64,
    observer: Observer,
}

impl Finishing {
    fn done(&mut self) {
        if let Some(mut record) = self.record.take() {
            record.bytes_in = self.bytes_in.load(Ordering::Relaxed);
            record.bytes_out = self.sent;
            self.observer.emit(record);
        }
    }
}

impl Body for Finishing {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.sent += data.len() as u64;
                }
            }
            Poll::Ready(Some(Err(error))) => {
                let sent = self.sent;
                if let Some(record) = &mut self.record {
                    record.error.get_or_insert_with(|| {
                        format!("the response body failed after {sent} bytes: {error}")
                    });
                }
                self.done();
            }
            Poll::Ready(None) => self.done(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Finishing {
    fn drop(&mut self) {
        self.done();
    }
}
