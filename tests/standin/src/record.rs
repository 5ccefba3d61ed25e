//! The request log: one entry per HTTP request, whatever the host.

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use http::request::Parts;

/// At most this many requests are kept; later ones are counted but not stored.
const MAX_RECORDS: usize = 100_000;

/// One request as the stand-in received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `Host` header (or URI authority), lowercased, port stripped.
    pub host: String,
    /// Request method, e.g. `GET`.
    pub method: String,
    /// Request target as sent (origin form: path and query).
    pub target: String,
    /// Every header as `(name, value)`, names lowercased, values lossily decoded.
    pub headers: Vec<(String, String)>,
    /// Request body bytes received so far (final once the exchange is over).
    pub body_bytes: u64,
    /// Response status, once the response head was produced.
    pub status: Option<u16>,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path part of the target (without the query).
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }
}

/// Counters of one request that change after it was logged.
#[derive(Debug, Default)]
pub(crate) struct Live {
    body_bytes: AtomicU64,
    status: AtomicU16,
}

impl Live {
    pub(crate) fn add_body(&self, n: usize) {
        self.body_bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct Entry {
    head: RecordedRequest,
    live: Arc<Live>,
}

/// Thread-safe request log, read from the test thread.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    entries: Mutex<Vec<Entry>>,
}

impl Recorder {
    /// Logs the head of a request; the returned handle counts its body and status.
    pub(crate) fn record(&self, host: &str, parts: &Parts) -> Arc<Live> {
        let live = Arc::new(Live::default());
        let head = RecordedRequest {
            host: host.to_owned(),
            method: parts.method.as_str().to_owned(),
            target: parts.uri.to_string(),
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| {
                    let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
                    (n.as_str().to_owned(), value)
                })
                .collect(),
            body_bytes: 0,
            status: None,
        };
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() < MAX_RECORDS {
            entries.push(Entry {
                head,
                live: Arc::clone(&live),
            });
        }
        live
    }

    pub(crate) fn snapshot(&self) -> Vec<RecordedRequest> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .iter()
            .map(|e| {
                let status = e.live.status.load(Ordering::Relaxed);
                RecordedRequest {
                    body_bytes: e.live.body_bytes.load(Ordering::Relaxed),
                    status: (status != 0).then_some(status),
                    ..e.head.clone()
                }
            })
            .collect()
    }

    pub(crate) fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}
