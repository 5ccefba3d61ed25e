//! Receive-pack POSTs: read the command list (bounded, gzip decoded), decide every ref
//! update, then either stream the untouched body upstream or answer git's own way.

use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use gitgate_policy::git::receive_pack::{
    CommandReader, Limits, PushHeader, ReceivePackError, SideBand,
};
use gitgate_policy::git::report;
use gitgate_policy::{Policy, RepoPath};
use http::{HeaderMap, Response, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use crate::audit::{Record, RefRecord, Verdict};
use crate::body::{BoxError, Gathered, ProxyBody, stream};
use crate::budget::{Reservation, Spent};
use crate::git::enforce;
use crate::github::ClientBody;
use crate::reply::{self, Failure, Shape};
use crate::state::State;
use crate::token::{Credential, Purpose};

/// Compressed input is fed to the decoder in pieces this small, so one piece can
/// inflate to at most about a megabyte (deflate's ratio is bounded near 1:1032).
const GZIP_STEP: usize = 1024;

/// What to do with a push.
pub(crate) enum Inspected<'a> {
    /// Every ref update is allowed: send this body (the bytes read so far, then the rest);
    /// a failure upstream is told in the side-band the client asked for.
    Forward(ProxyBody, SideBand),
    /// Answer the client without contacting upstream.
    Reply(Response<ProxyBody>),
    /// Send this body upstream while the push is still being decided; the decision ends
    /// it ([`crate::settings::PushHold::Trailer`]).
    Streaming(crate::push_content::Streaming<'a>),
}

/// Where a push goes: the repository, under the policy (and, with profiles, the profile)
/// its credential comes from.
pub(crate) struct PushTo<'a> {
    pub(crate) repo: &'a RepoPath,
    pub(crate) policy: &'a Policy,
    /// The client's profile (with profiles).
    pub(crate) profile: Option<&'a str>,
}

impl PushTo<'_> {
    /// The push's credential now, for a call made after the push was held (the API
    /// questions, the forward): a push held while a slow client sends it can outlive the
    /// token it arrived with, and the cache hands out the current one.
    pub(crate) async fn credential(&self, state: &State) -> Result<Option<Credential>, String> {
        state
            .tokens
            .credential(self.policy, self.repo, Purpose::Git, self.profile)
            .await
            .map_err(|error| error.to_string())
    }
}

/// Reads the command list and decides every ref update; where a content rule applies,
/// holds and reads the pack as well ([`crate::push_content`]).
pub(crate) async fn inspect<'a>(
    state: &'a State,
    policy: &'a Policy,
    to: &'a PushTo<'a>,
    headers: &HeaderMap,
    body: ClientBody,
    record: &mut Record,
) -> Inspected<'a> {
    let limits = &state.settings.limits;
    let mut reading = match Reading::new(state, headers, body, Some(record.client.ip())) {
        Ok(reading) => reading,
        Err(message) => {
            let shape = shown(headers, SideBand::None);
            return Inspected::Reply(reply::failure(shape, &Failure::Client(message)));
        }
    };
    let header = match reading.header(limits).await {
        Ok(header) => header,
        Err(Unread::Stalled(message)) => {
            record.decide(Verdict::Deny, "limits.bodyIdleTimeout", &message);
            return Inspected::Reply(reading.answer(headers, &Failure::Client(message)));
        }
        Err(Unread::Broken(message)) => {
            return Inspected::Reply(reading.answer(headers, &Failure::Client(message)));
        }
        Err(Unread::Busy(message)) => {
            record.decide(Verdict::Deny, crate::body::BUSY_RULE, &message);
            let response = reading.answer(headers, &Failure::Overloaded(message));
            return Inspected::Reply(drained(state, reading.forget(), record, response).await);
        }
        Err(Unread::Malformed(Malformed { rule, message })) => {
            tracing::info!(reason = %message, rule, "malformed push");
            record.decide(Verdict::Deny, rule, &message);
            let failure = Failure::Client(Malformed::told(rule, &message));
            let response = reading.answer(headers, &failure);
            // git can reach a limit and is still sending; other malformed input costs
            // nothing more.
            if !accepts_result(headers) {
                return Inspected::Reply(response);
            }
            return Inspected::Reply(drained(state, reading.forget(), record, response).await);
        }
    };
    let side_band = header.side_band();
    let verdict = policy.decide_push_commands(&header.commands);
    if !settle(policy, &verdict, record) {
        let body = reading.forget();
        return Inspected::Reply(reject(state, &header, &verdict, body, record).await);
    }
    let Reading {
        decoder,
        kept,
        body,
        ..
    } = reading;
    let (read, held) = match kept.map(Gathered::into_parts) {
        Some((bytes, held)) => (bytes, Some(held)),
        None => (Bytes::new(), None),
    };
    if policy.needs_pack(&header.commands) {
        let received = crate::push_content::Received {
            header,
            gzip: decoder.is_some(),
            read,
            held,
            body,
        };
        return crate::push_content::inspect(state, policy, to, received, record).await;
    }
    // Sent on at once from here.
    drop(held);
    Inspected::Forward(stream(Prefixed { read, rest: body }), side_band)
}

/// Refuses a receive-pack POST before anything is forwarded, once its body is drained
/// ([`drained`]), in the shape its client shows ([`Reading::answer`]).
pub(crate) async fn refuse(
    state: &State,
    headers: &HeaderMap,
    body: ClientBody,
    record: &Record,
    failure: &Failure,
) -> Response<ProxyBody> {
    let limits = &state.settings.limits;
    // Refused whatever it says: its bytes are parsed only as far as the capabilities
    // (the side-band of the answer), and never kept.
    let Ok(mut reading) = Reading::new(state, headers, body, None) else {
        return reply::failure(shown(headers, SideBand::None), failure);
    };
    match reading
        .read(limits, CommandReader::knows_capabilities)
        .await
    {
        Ok(_) | Err(Unread::Malformed(_) | Unread::Busy(_)) => {
            let response = reading.answer(headers, failure);
            drained(state, reading.body, record, response).await
        }
        Err(Unread::Stalled(_) | Unread::Broken(_)) => reading.answer(headers, failure),
    }
}

/// A push body whose command list is being read: the parser, the gzip decoder if any,
/// the bytes read so far (sent on unchanged if the push proceeds, and held against
/// `limits.maxBufferedBodyBytes` until then; none for a push refused whatever it says)
/// and the rest.
struct Reading {
    reader: CommandReader,
    decoder: Option<flate2::write::GzDecoder<Vec<u8>>>,
    /// The bytes as sent, with the parser's state charged to them; `None` to keep none.
    kept: Option<Gathered>,
    body: ClientBody,
}

/// Why a push's command list could not be read.
enum Unread {
    /// The client stopped sending (`limits.bodyIdleTimeout`).
    Stalled(String),
    /// The client's body broke off.
    Broken(String),
    /// The bytes are not a command list, or one past a limit.
    Malformed(Malformed),
    /// Holding more would take the bodies held in memory past their limit.
    Busy(String),
}

impl Reading {
    /// `Err` names a `Content-Encoding` gitgate cannot read.
    /// `client`: whose share of the memory budget the bytes read take, `None` to keep
    /// none of them.
    fn new(
        state: &State,
        headers: &HeaderMap,
        body: ClientBody,
        client: Option<std::net::IpAddr>,
    ) -> Result<Self, String> {
        let limits = &state.settings.limits;
        Ok(Reading {
            reader: CommandReader::new(Limits {
                max_commands: limits.max_push_commands,
                max_header_bytes: limits.max_push_header_bytes,
            }),
            decoder: content_encoding(headers)?,
            kept: client
                .map(|ip| Gathered::new(Reservation::new(Arc::clone(&state.buffered_bodies), ip))),
            body,
        })
    }

    /// Reads the body until its command list is complete.
    async fn header(&mut self, limits: &crate::settings::Limits) -> Result<PushHeader, Unread> {
        self.read(limits, |_| false)
            .await?
            .ok_or_else(|| Unread::Broken("the push's command list was not read to its end".into()))
    }

    /// Reads the body until its command list is complete (`Some`), or until `enough`
    /// says the parser has read what the caller needs (`None`).
    async fn read(
        &mut self,
        limits: &crate::settings::Limits,
        enough: impl Fn(&CommandReader) -> bool,
    ) -> Result<Option<PushHeader>, Unread> {
        // Bytes as sent: gzip can make them many more than the command list they carry.
        let mut sent = 0;
        loop {
            let frame = tokio::time::timeout(limits.body_idle_timeout, self.body.frame())
                .await
                .map_err(|_| {
                    Unread::Stalled(crate::body::stalled("push", limits.body_idle_timeout))
                })?;
            let parsed = match frame {
                None => finish(&mut self.reader, self.decoder.as_mut()).map(Some),
                Some(Err(error)) => {
                    return Err(Unread::Broken(format!(
                        "reading the push body failed: {error}"
                    )));
                }
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    sent += data.len();
                    if let Some(kept) = &mut self.kept {
                        kept.push(&data, limits.max_push_header_bytes)
                            .map_err(|spent| busy(kept, spent))?;
                    }
                    let (parsed, fed) = feed(&mut self.reader, self.decoder.as_mut(), &data);
                    // The parser holds what it was fed (at most the header's limit).
                    if let Some(kept) = &mut self.kept {
                        kept.charge(fed as u64).map_err(|spent| busy(kept, spent))?;
                    }
                    match parsed {
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
            };
            match parsed {
                Ok(Some(header)) => return Ok(Some(header)),
                Ok(None) if enough(&self.reader) => return Ok(None),
                Ok(None) => {}
                Err(malformed) => return Err(Unread::Malformed(malformed)),
            }
        }
    }

    /// The rest of the body, what was read and its share of the budget let go.
    fn forget(self) -> ClientBody {
        self.body
    }

    /// `failure` in the shape the client shows: git (which asks for a receive-pack
    /// result) an `ERR` line in the side-band its command list asked for, other clients
    /// plain text.
    fn answer(&self, headers: &HeaderMap, failure: &Failure) -> Response<ProxyBody> {
        reply::failure(shown(headers, self.reader.side_band()), failure)
    }
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

impl Malformed {
    /// What the client is told: a limit (which git can reach with many refs) names what
    /// to do; anything else is input git does not send.
    fn told(rule: &str, message: &str) -> String {
        if rule == "request" {
            format!("malformed receive-pack request: {message}")
        } else {
            format!(
                "push refused: {message}; push fewer refs at a time, or ask the operator to raise {rule}"
            )
        }
    }
}

fn bad_gzip(error: std::io::Error) -> Malformed {
    Malformed {
        rule: "request",
        message: format!("bad gzip body: {error}"),
    }
}

/// Feeds `data` (inflated if the body is gzip) to `reader`; also says how many bytes
/// the reader was fed.
fn feed(
    reader: &mut CommandReader,
    decoder: Option<&mut flate2::write::GzDecoder<Vec<u8>>>,
    data: &[u8],
) -> (Result<Option<PushHeader>, Malformed>, usize) {
    let Some(decoder) = decoder else {
        return (reader.feed(data).map_err(Into::into), data.len());
    };
    let mut fed = 0;
    for piece in data.chunks(GZIP_STEP) {
        if let Err(error) = decoder.write_all(piece).and_then(|()| decoder.flush()) {
            return (Err(bad_gzip(error)), fed);
        }
        let inflated = std::mem::take(decoder.get_mut());
        fed += inflated.len();
        match reader.feed(&inflated) {
            Ok(None) => {}
            done => return (done.map_err(Into::into), fed),
        }
    }
    (Ok(None), fed)
}

/// Why a push's bytes are not kept: `kept`'s budget is at a limit.
fn busy(kept: &Gathered, spent: Spent) -> Unread {
    Unread::Busy(crate::body::busy("this push body", kept.budget(), spent))
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

/// How a refusal is shown: to a client that asked for a receive-pack result (git, which
/// shows nothing else) as an `ERR` line in `side_band`, to others as plain text.
fn shown(headers: &HeaderMap, side_band: SideBand) -> Shape {
    if accepts_result(headers) {
        Shape::PushResult(side_band)
    } else {
        Shape::Text
    }
}

/// Whether the client asked for a receive-pack result (git does: it shows a refusal only
/// from an `ERR` line inside one).
fn accepts_result(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| {
            v.split(';').next().is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-git-receive-pack-result")
            })
        })
}

fn content_encoding(
    headers: &HeaderMap,
) -> Result<Option<flate2::write::GzDecoder<Vec<u8>>>, String> {
    let mut encodings = headers.get_all(header::CONTENT_ENCODING).iter();
    let first = encodings.next();
    if encodings.next().is_some() {
        return Err("a push may carry one Content-Encoding header (none or gzip)".into());
    }
    match first.map(|v| v.to_str().unwrap_or("?")) {
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
    body: ClientBody,
    record: &Record,
) -> Response<ProxyBody> {
    let bytes = report::rejected_push(header, verdict, Some("gitgate: push rejected by policy"));
    let response = reply::git("application/x-git-receive-pack-result", bytes);
    drained(state, body, record, response).await
}

/// `response`, once the rest of the push body is read (within `limits.maxDrainBytes` and
/// `limits.bodyIdleTimeout`): a client still sending when the connection closes gets a
/// reset instead of the answer. Past the limits the connection closes after the answer.
async fn drained(
    state: &State,
    mut body: ClientBody,
    record: &Record,
    response: Response<ProxyBody>,
) -> Response<ProxyBody> {
    let limits = &state.settings.limits;
    let mut drained: u64 = 0;
    while drained <= limits.max_drain_bytes {
        match tokio::time::timeout(limits.body_idle_timeout, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                drained += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            Ok(None) => return response,
            Ok(Some(Err(_))) | Err(_) => break,
        }
    }
    tracing::info!(
        drained,
        "refused push not fully drained; closing the connection"
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
            &format!("refused push body not read past {drained} bytes (limits.maxDrainBytes); connection closed after the refusal"),
        );
        over.status = response.status().as_u16();
        over.bytes_in = drained;
        state.observer.emit(over);
    }
    reply::closing(response)
}

/// The bytes already read, then the rest of the request body, unchanged.
pub(crate) struct Prefixed {
    pub(crate) read: Bytes,
    pub(crate) rest: ClientBody,
}

impl Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if !self.read.is_empty() {
            return Poll::Ready(Some(Ok(Frame::data(std::mem::take(&mut self.read)))));
        }
        Pin::new(&mut self.rest)
            .poll_frame(cx)
            .map(|frame| frame.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_empty() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let buffered = self.read.len() as u64;
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
        assert_eq!(
            Malformed::told(m.rule, &m.message),
            "push refused: more than 1000 commands (limits.maxPushCommands); push fewer refs at a time, or ask the operator to raise limits.maxPushCommands"
        );
        let m = Malformed::from(ReceivePackError::Empty);
        assert_eq!(
            (m.rule, m.message.as_str()),
            ("request", "empty request body")
        );
        assert_eq!(
            Malformed::told(m.rule, &m.message),
            "malformed receive-pack request: empty request body"
        );
    }

    #[test]
    fn only_a_client_asking_for_a_receive_pack_result_is_answered_in_one() {
        let with = |accept: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in accept {
                headers.append(header::ACCEPT, value.parse().unwrap());
            }
            shown(&headers, SideBand::Band64k)
        };
        let git = "application/x-git-receive-pack-result";
        assert!(matches!(with(&[git]), Shape::PushResult(SideBand::Band64k)));
        assert!(matches!(
            with(&["text/html", "Application/X-Git-Receive-Pack-Result; q=0.5"]),
            Shape::PushResult(_)
        ));
        assert!(matches!(with(&["*/*, text/plain"]), Shape::Text));
        assert!(matches!(with(&[]), Shape::Text));
        assert!(matches!(
            with(&["application/x-git-upload-pack-result"]),
            Shape::Text
        ));
    }
}
