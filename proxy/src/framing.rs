//! Spotting request heads with both `Content-Length` and `Transfer-Encoding`.
//!
//! hyper follows RFC 9112 §6.1: it drops the `Content-Length`, reads the body as
//! chunked and closes the connection after the answer. That is safe, but the request
//! would still be served; gitgate refuses it instead, as a smuggling attempt. hyper
//! removes the evidence before the service sees the request, so a [`FramingIo`] watches
//! the raw bytes the client sends and raises a flag that the service checks.
//!
//! The scan itself is [`HeadScan`], in the pure core. It can only err towards refusing: a
//! body that itself contains an HTTP head with both headers flags the connection too.
//! hyper's own re-framing stays the backstop either way.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gitgate_policy::http_framing::HeadScan;

use crate::tap::{Tap, TapIo};

/// What a client that sent such a head is told.
pub(crate) const CONFLICTING_FRAMING: &str = "request has both Content-Length and Transfer-Encoding, an ambiguous framing used to smuggle requests; send exactly one of them";

/// The flag a connection's service checks; set once a conflicting head was read.
#[derive(Debug, Default)]
pub(crate) struct Framing {
    conflict: AtomicBool,
    done: AtomicBool,
    /// gitgate has written to the client.
    answered: AtomicBool,
    /// The client has sent bytes since gitgate last wrote to it.
    spoke_since: AtomicBool,
}

impl Framing {
    /// Whether the client, answered, has sent nothing since: a connection kept alive for
    /// a next request that has not begun.
    pub(crate) fn between_requests(&self) -> bool {
        self.answered.load(Ordering::Acquire) && !self.spoke_since.load(Ordering::Acquire)
    }

    /// Whether the client sent a head with both `Content-Length` and `Transfer-Encoding`.
    pub(crate) fn conflict(&self) -> bool {
        self.conflict.load(Ordering::Acquire)
    }

    /// Stops scanning: the connection no longer carries HTTP (a CONNECT tunnel).
    pub(crate) fn stop(&self) {
        self.done.store(true, Ordering::Release);
    }
}

/// `T`, with the bytes read from it scanned by [`HeadScan`].
pub(crate) type FramingIo<T> = TapIo<T, Scanner>;

/// Creates a [`FramingIo`] and the flag its service checks.
pub(crate) fn watch<T>(inner: T) -> (FramingIo<T>, Arc<Framing>) {
    let framing = Arc::new(Framing::default());
    let scanner = Scanner {
        scan: HeadScan::default(),
        framing: framing.clone(),
    };
    (TapIo::new(inner, scanner), framing)
}

/// Feeds what the client sends to a [`HeadScan`] and raises the [`Framing`] flag.
pub(crate) struct Scanner {
    scan: HeadScan,
    framing: Arc<Framing>,
}

impl Tap for Scanner {
    fn read(&mut self, bytes: &[u8]) {
        self.framing.spoke_since.store(true, Ordering::Release);
        if self.framing.done.load(Ordering::Relaxed) {
            return;
        }
        self.scan.feed(bytes);
        if self.scan.conflict() {
            self.framing.conflict.store(true, Ordering::Release);
        }
    }

    fn written(&mut self, n: usize) {
        if n > 0 {
            self.framing.answered.store(true, Ordering::Release);
            self.framing.spoke_since.store(false, Ordering::Release);
        }
    }
}
