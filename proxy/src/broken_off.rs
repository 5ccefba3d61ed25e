//! An upstream answer to a push that breaks off after its head: git would print only
//! curl's error and then "Everything up-to-date". Between two packets of a side-band
//! answer, gitgate ends it with a band-3 message instead, which git prints as
//! `remote: …` before failing the push.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use gitgate_policy::git::pktline::Boundaries;
use gitgate_policy::git::report;
use gitgate_policy::git::sideband::SideBand;
use http_body::{Body, Frame};
use hyper::body::Incoming;

use crate::body::BoxError;

/// `body`, upstream's side-band answer to a push, told to git when it breaks off.
pub(crate) struct Noticed {
    body: Incoming,
    side_band: SideBand,
    host: String,
    seen: Boundaries,
    ended: bool,
}

impl Noticed {
    pub(crate) fn new(body: Incoming, side_band: SideBand, host: &str) -> Self {
        Self {
            body,
            side_band,
            host: host.to_owned(),
            seen: Boundaries::default(),
            ended: false,
        }
    }
}

impl Body for Noticed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.seen.feed(data);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) if self.seen.at_boundary() => {
                tracing::warn!(%error, host = %self.host, "upstream broke off its answer to a push");
                self.ended = true;
                let message = format!(
                    "gitgate: {} broke off its answer to this push ({error}); the push may or may not have been applied: run git fetch to see",
                    self.host
                );
                let bytes = report::band_error(self.side_band, &message);
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(bytes)))))
            }
            other => other.map(|frame| frame.map(|f| f.map_err(Into::into))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.body.is_end_stream()
    }
}
