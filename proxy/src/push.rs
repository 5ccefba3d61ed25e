//! Receive-pack POSTs: read the command list (bounded, gzip decoded), decide every ref
//! update, then either stream the untouched body upstream or answer git's own way.

use std::collections::VecDeque;
use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use gitgate_policy::git::receive_pack::{CommandReader, Limits, PushHeader, ReceivePackError};
use gitgate_policy::git::report;
use gitgate_policy::git::request::Service;
use gitgate_policy::{Policy, RepoPath};
use http::{HeaderMap, Response, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use crate::audit::{Record, RefRecord, Verdict};
use crate::body::{BoxError, ProxyBody, stream};
use crate::git::enforce;
use crate::github::ClientBody;
use crate::reply::{self, Failure, Shape};
use crate::state::State;
use crate::token::Credential;

/// Compressed input is fed to the decoder in pieces this small, so one piece can
/// inflate to at most about a megabyte (deflate's ratio is bounded near 1:1032).
const GZIP_STEP: usize = 1024;

/// What to do with a push.
pub(crate) enum Inspected<'a> {
    /// Every ref update is allowed: send this body (the bytes read so far, then the rest).
    Forward(ProxyBody),
    /// Answer the client without contacting upstream.
    Reply(Response<ProxyBody>),
    /// Send this body upstream while the push is still being decided; the decision ends
    /// it ([`crate::settings::PushHold::Trailer`]).
    Streaming(crate::push_content::Streaming<'a>),
}

/// Where a push goes: the repository, and the credential gitgate sends with it (also
/// used to ask the API about ancestry).
pub(crate) struct PushTo<'a> {
    pub(crate) repo: &'a RepoPath,
    pub(crate) credential: Option<&'a Credential>,
}

/// Reads the command list and decides every ref update; where a content rule applies,
/// holds and reads the pack as well ([`crate::push_content`]).
pub(crate) async fn inspect<'a>(
    state: &'a State,
    policy: &'a Policy,
    to: &'a PushTo<'a>,
    headers: &HeaderMap,
    mut body: ClientBody,
    record: &mut Record,
) -> Inspected<'a> {
    let shape = Shape::RpcResult(Service::ReceivePack);
    let limits = &state.settings.limits;
    let mut decoder = match content_encoding(headers) {
        Ok(decoder) => decoder,
        Err(message) => return Inspected::Reply(reply::failure(shape, &Failure::Client(message))),
    };
    let mut reader = CommandReader::new(Limits {
        max_commands: limits.max_push_commands,
        max_header_bytes: limits.max_push_header_bytes,
    });
    let mut read: VecDeque<Bytes> = VecDeque::new();
    // Bytes as sent: gzip can make them many more than the command list they carry.
    let mut sent = 0;
    let header = loop {
        let frame = match tokio::time::timeout(limits.body_idle_timeout, body.frame()).await {
            Ok(frame) => frame,
            Err(_) => {
                let message = crate::body::stalled("push", limits.body_idle_timeout);
                record.decide(Verdict::Deny, "limits.bodyIdleTimeout", &message);
                return Inspected::Reply(reply::failure(shape, &Failure::Client(message)));
            }
        };
        let parsed = match frame {
            None => finish(&mut reader, decoder.as_mut()).map(Some),
            Some(Err(error)) => {
                return Inspected::Reply(reply::failure(
                    shape,
                    &Failure::Client(format!("reading the push body failed: {error}")),
                ));
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    sent += data.len();
                    read.push_back(data.clone());
                    match feed(&mut reader, decoder.as_mut(), &data) {
                        Ok(None) if sent > limits.max_push_header_bytes => Err(Malformed {
                            rule: "limits.maxPushHeaderBytes",
                            message: format!(
                                "push header exceeds {} bytes as sent (limits.maxPushHeaderBytes)",
                                limits.max_push_header_bytes
                            ),
                        }),
                        parsed => parsed,
                    }
                }
                Err(_) => continue,
            },
        };
        match parsed {
            Ok(Some(header)) => break header,
            Ok(None) => continue,
            Err(Malformed { rule, message }) => {
                tracing::info!(reason = %message, rule, "malformed push");
                record.decide(Verdict::Deny, rule, &message);
                return Inspected::Reply(reply::failure(
                    Shape::Text,
                    &Failure::Client(format!("malformed receive-pack request: {message}")),
                ));
            }
        }
    };
    let verdict = policy.decide_push_commands(&header.commands);
    if !settle(policy, &verdict, record) {
        return Inspected::Reply(reject(state, &header, &verdict, body, record).await);
    }
    if policy.needs_pack(&header.commands) {
        let received = crate::push_content::Received {
            header,
            gzip: decoder.is_some(),
            read,
            body,
        };
        return crate::push_content::inspect(state, policy, to, received, record).await;
    }
    Inspected::Forward(stream(Prefixed { read, rest: body }))
}

/// Records the verdict's refs and its first denial; returns whether the push may proceed
/// (allowed, or denied in report mode).
pub(crate) fn settle(
    policy: &Policy,
    verdict: &gitgate_policy::PushVerdict,
    record: &mut Record,
) -> bool {
    let denied = if policy.mode() == gitgate_policy::Mode::Report {
        Verdict::Report
    } else {
        Verdict::Deny
    };
    record.refs = verdict
        .refs
        .iter()
        .map(|(update, decision)| RefRecord {
            name: update.name.clone(),
            old: update.old.to_string(),
            new: update.new.to_string(),
            verdict: if decision.allowed {
                Verdict::Allow
            } else {
                denied
            },
            rule: decision.rule.clone(),
            reason: decision.reason.clone(),
        })
        .collect();
    match verdict.first_denied() {
        None => true,
        Some((_, decision)) => enforce(policy, record, decision),
    }
}

/// Why a push body was refused before its commands were decided, and the rule (a limit
/// key when a limit was reached).
struct Malformed {
    rule: &'static str,
    message: String,
}

impl From<ReceivePackError> for Malformed {
    fn from(error: ReceivePackError) -> Self {
        let rule = match error {
            ReceivePackError::TooManyCommands(_) => "limits.maxPushCommands",
            ReceivePackError::HeaderTooLarge(_) => "limits.maxPushHeaderBytes",
            _ => "request",
        };
        let message = match rule {
            "request" => error.to_string(),
            limit => format!("{error} ({limit})"),
        };
        Self { rule, message }
    }
}

fn bad_gzip(error: std::io::Error) -> Malformed {
    Malformed {
        rule: "request",
        message: format!("bad gzip body: {error}"),
    }
}

/// Feeds newly read bytes to the command reader, through the gzip decoder if any.
fn feed(
    reader: &mut CommandReader,
    decoder: Option<&mut flate2::write::GzDecoder<Vec<u8>>>,
    data: &[u8],
) -> Result<Option<PushHeader>, Malformed> {
    let Some(decoder) = decoder else {
        return Ok(reader.feed(data)?);
    };
    for piece in data.chunks(GZIP_STEP) {
        decoder
            .write_all(piece)
            .and_then(|()| decoder.flush())
            .map_err(bad_gzip)?;
        let inflated = std::mem::take(decoder.get_mut());
        if let Some(header) = reader.feed(&inflated)? {
            return Ok(Some(header));
        }
    }
    Ok(None)
}

/// The body ended: drain the gzip decoder, then ask the reader for the header.
fn finish(
    reader: &mut CommandReader,
    decoder: Option<&mut flate2::write::GzDecoder<Vec<u8>>>,
) -> Result<PushHeader, Malformed> {
    if let Some(decoder) = decoder {
        decoder.try_finish().map_err(bad_gzip)?;
        let inflated = std::mem::take(decoder.get_mut());
        if let Some(header) = reader.feed(&inflated)? {
            return Ok(header);
        }
    }
    Ok(reader.finish()?)
}

fn content_encoding(
    headers: &HeaderMap,
) -> Result<Option<flate2::write::GzDecoder<Vec<u8>>>, String> {
    match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?"))
    {
        None => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("identity") => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("gzip") || v.eq_ignore_ascii_case("x-gzip") => {
            Ok(Some(flate2::write::GzDecoder::new(Vec::new())))
        }
        Some(other) => Err(format!(
            "Content-Encoding {other:?} is not supported for pushes (use none or gzip)"
        )),
    }
}

/// Answers a denied push after draining its body, so git reads the reasons.
pub(crate) async fn reject(
    state: &State,
    header: &PushHeader,
    verdict: &gitgate_policy::PushVerdict,
    mut body: ClientBody,
    record: &Record,
) -> Response<ProxyBody> {
    let limits = &state.settings.limits;
    let mut drained: u64 = 0;
    let mut complete = false;
    while drained <= limits.max_drain_bytes {
        match tokio::time::timeout(limits.body_idle_timeout, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                drained += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            Ok(None) => {
                complete = true;
                break;
            }
            Ok(Some(Err(_))) | Err(_) => break,
        }
    }
    let bytes = report::rejected_push(header, verdict, Some("gitgate: push rejected by policy"));
    let response = reply::git("application/x-git-receive-pack-result", bytes);
    if complete {
        return response;
    }
    tracing::info!(
        drained,
        "denied push not fully drained; closing the connection"
    );
    if drained > limits.max_drain_bytes {
        let mut over = Record::new(
            record.connection,
            record.client,
            &record.host,
            &record.method,
            &record.path,
            record.service,
        );
        over.decide(
            Verdict::Deny,
            "limits.maxDrainBytes",
            &format!("denied push body not read past {drained} bytes (limits.maxDrainBytes); connection closed after the rejection"),
        );
        over.status = 200;
        over.bytes_in = drained;
        state.observer.emit(over);
    }
    reply::closing(response)
}

/// The bytes already read, then the rest of the request body, unchanged.
pub(crate) struct Prefixed {
    pub(crate) read: VecDeque<Bytes>,
    pub(crate) rest: ClientBody,
}

impl Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(data) = self.read.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Pin::new(&mut self.rest)
            .poll_frame(cx)
            .map(|frame| frame.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_empty() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let buffered: u64 = self.read.iter().map(|b| b.len() as u64).sum();
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(buffered + rest.lower());
        if let Some(upper) = rest.upper() {
            hint.set_upper(buffered + upper);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_errors_name_their_limit_key() {
        let m = Malformed::from(ReceivePackError::HeaderTooLarge(65536));
        assert_eq!(m.rule, "limits.maxPushHeaderBytes");
        assert_eq!(
            m.message,
            "push header exceeds 65536 bytes (limits.maxPushHeaderBytes)"
        );
        let m = Malformed::from(ReceivePackError::TooManyCommands(1000));
        assert_eq!(m.rule, "limits.maxPushCommands");
        let m = Malformed::from(ReceivePackError::Empty);
        assert_eq!(
            (m.rule, m.message.as_str()),
            ("request", "empty request body")
        );
    }
}
