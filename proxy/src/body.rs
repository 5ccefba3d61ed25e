//! The one body type the proxy hands to hyper, and small constructors for it.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};

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

/// Reads all of `body`, at most `limit` bytes, each frame within `idle`; the error
/// says what went wrong with the `what` body (`request`, `response`).
pub(crate) async fn read_bounded<B>(
    mut body: B,
    limit: usize,
    idle: std::time::Duration,
    what: &str,
) -> Result<Bytes, String>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut buf = Vec::new();
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(stalled(what, idle)),
            Ok(None) => break,
            Ok(Some(Err(error))) => {
                return Err(format!("the {what} body could not be read: {error}"));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(format!(
                    "the {what} body is larger than the {limit} bytes gitgate reads to decide on it"
                ));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buf))
}

/// Any streamed body (a hyper `Incoming`, a prefixed stream, …) as a [`ProxyBody`].
pub(crate) fn stream<B>(body: B) -> ProxyBody
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}
