//! The content rules of a push (`forcePush`, `maxBlobSize`, `maxPushSize`): hold the
//! pack back ([`Spool`]), read its facts ([`crate::pack`]), find out whether each guarded
//! ref update is a fast-forward (from the pack, else from the GitHub API), decide, and
//! then send the held body upstream or answer git with the reasons.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use gitgate_policy::git::receive_pack::{PushHeader, SideBand};
use gitgate_policy::git::report;
use gitgate_policy::{
    ByteSize, Decision, FastForward, Findings, Lookup, ObjectFormat, ObjectId, PackFacts, Policy,
    ProtectedChange, PushVerdict, RefAncestry, RefUpdate, ServerObjects, Unfinished, fast_forward,
    outside_commits,
};
use http::Response;
use http_body_util::BodyExt;

use crate::audit::{Record, Verdict};
use crate::body::{BoxError, ProxyBody, stream};
use crate::budget::{Budget, Reservation, Spent};
use crate::github::ClientBody;
use crate::pack::{Bases, Decoded, Listing, Wants};
use crate::push::{Inspected, PushTo, reject, settle};
use crate::push_check::Metered;
use crate::reply::{self, Failure, Shape};
use crate::repo_api::{RepoApi, ServerTree};
use crate::settings::PushHold;
use crate::signature::Verifier;
use crate::spool::{Spool, Spooled};
use crate::state::State;
use crate::token::Credential;

/// The most commits at which one update's history may leave the pack; each costs an API
/// call, so beyond this the update is undecided (and denied).
const MAX_ASKED: usize = 8;
/// The largest push GitHub accepts; held packs stop there when no `maxPushSize` is set.
const GITHUB_PUSH_LIMIT: ByteSize = ByteSize(2 << 30);
/// The most GitHub API calls gitgate makes to decide one push.
const MAX_API_CALLS: usize = 256;

/// The GitHub API as one push may use it: with the push's repository and credential,
/// and at most [`MAX_API_CALLS`] calls whatever the push holds.
struct Api<'a> {
    state: &'a State,
    to: &'a PushTo<'a>,
    left: AtomicUsize,
}

impl<'a> Api<'a> {
    fn new(state: &'a State, to: &'a PushTo<'a>) -> Self {
        Api {
            state,
            to,
            left: AtomicUsize::new(MAX_API_CALLS),
        }
    }

    /// Takes one call from the budget, and the push's current credential.
    async fn spend(&self) -> Result<(&RepoApi, Option<Credential>), String> {
        self.left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .map_err(|_| {
                format!("deciding this push needs more than the {MAX_API_CALLS} GitHub API calls gitgate makes for one push")
            })?;
        Ok((&self.state.repo_api, self.to.credential(self.state).await?))
    }

    async fn is_ancestor(&self, old: &ObjectId, head: &ObjectId) -> Result<bool, String> {
        let (api, credential) = self.spend().await?;
        api.is_ancestor(self.to.repo, old, head, credential.as_ref())
            .await
    }

    async fn on_default_branch(&self, commit: &ObjectId) -> Result<bool, String> {
        let (api, credential) = self.spend().await?;
        api.on_default_branch(self.to.repo, commit, credential.as_ref())
            .await
    }

    async fn tree(&self, id: &ObjectId) -> Result<Option<ServerTree>, String> {
        let (api, credential) = self.spend().await?;
        api.tree(self.to.repo, id, credential.as_ref()).await
    }

    async fn default_tip(&self) -> Result<ObjectId, String> {
        let (api, credential) = self.spend().await?;
        api.default_tip(self.to.repo, credential.as_ref()).await
    }

    async fn commit_tree(&self, id: &ObjectId) -> Result<ObjectId, String> {
        let (api, credential) = self.spend().await?;
        api.commit_tree(self.to.repo, id, credential.as_ref()).await
    }
}

/// A push whose command list has been read and allowed.
pub(crate) struct Received {
    pub(crate) header: PushHeader,
    pub(crate) gzip: bool,
    /// The body bytes read so far: the command list, maybe the start of the pack.
    pub(crate) read: Bytes,
    /// Their share of the memory budget (`limits.maxBufferedBodyBytes`).
    pub(crate) held: Option<crate::budget::Reservation>,
    /// The rest of the body.
    pub(crate) body: ClientBody,
}

pub(crate) async fn inspect<'a>(
    state: &'a State,
    policy: &'a Policy,
    to: &'a PushTo<'a>,
    received: Received,
    record: &mut Record,
) -> Inspected<'a> {
    let Received {
        header,
        gzip,
        read,
        held,
        body,
    } = received;
    if gzip {
        // Sent on at once, or dropped.
        drop(held);
        let decision = Decision {
            allowed: false,
            rule: "content".into(),
            reason: "gitgate must read this push's pack (forcePush, maxBlobSize, maxPushSize) and does not read gzip-encoded push bodies; push without Content-Encoding".into(),
        };
        let verdict = PushVerdict::reject_all(&header.commands, &decision);
        if settle(policy, &verdict, record) {
            return Inspected::Forward(
                stream(crate::push::Prefixed { read, rest: body }),
                header.side_band(),
            );
        }
        drop(read);
        return Inspected::Reply(reject(state, &header, &verdict, body, record).await);
    }
    let format = header
        .commands
        .first()
        .map_or(ObjectFormat::Sha1, |c| c.new.format());
    let hash = crate::pack::hash_kind(format);
    let side_band = header.side_band();
    // Each held push keeps a blocking thread reading its pack: their number is bounded,
    // and one client's share of it too.
    let mut slot = Reservation::new(state.held_push_count.clone(), record.client.ip());
    if let Err(spent) = slot.grow(1) {
        let (rule, reason) = too_many_held(&state.held_push_count, &spent);
        let decision = Decision::deny(rule, reason);
        let verdict = PushVerdict::reject_all(&header.commands, &decision);
        drop(held);
        let response = reject(state, &header, &verdict, body, record).await;
        stopped(policy, &verdict, record);
        return Inspected::Reply(response);
    }
    let spooled = Spool::new(
        hash,
        &state.spool,
        state.held_push_bytes.clone(),
        record.client.ip(),
    );
    let (spool, following) = match spooled.await {
        Ok(spool) => spool,
        Err(error) => return spool_failed(&error, side_band),
    };
    let (head, pack_start) = split_head(read, header.header_len);
    // The command list stays in memory while the pack is held (the pack goes to disk).
    let _held = held.map(|mut held| {
        held.shrink_to(head.len() as u64);
        held
    });
    let wants = Wants {
        max_blob: policy.max_blob_size().map(|s| s.0),
        trees: policy.protects_paths(),
        signatures: policy.signers().is_some(),
    };
    let objects = following.objects();
    let meter = Metered::new(&state.push_checks, record.client.ip());
    // The first pass reads the pack as it arrives, on a blocking thread.
    let first_pass = {
        let meter = Arc::clone(&meter);
        tokio::task::spawn_blocking(move || following.list(wants, &mut |n| meter.charge(n)))
    };
    let held = Held {
        state,
        policy,
        to,
        header,
        wants,
        spool,
        first_pass,
        meter,
        _slot: slot,
        pack_start,
        body,
        record: record.clone(),
    };
    match state.settings.limits.push_hold {
        PushHold::Pack => {
            let outcome = held.run(None).await;
            match conclude(policy, outcome, record) {
                Concluded::Reply(response) => Inspected::Reply(response),
                Concluded::Forward(spooled) => match spooled.into_body(head).await {
                    Ok(body) => Inspected::Forward(stream(body), side_band),
                    Err(error) => spool_failed(&error, side_band),
                },
            }
        }
        PushHold::Trailer => {
            let (tx, rx) = tokio::sync::mpsc::channel(8);
            let upstream = stream(Channel {
                head: Some(head),
                rx,
            });
            let outcome = Box::pin(async move {
                let mut forwarder = Forwarder {
                    tx,
                    tail: BytesMut::new(),
                    sent: 0,
                    objects,
                };
                let outcome = held.run(Some(&mut forwarder)).await;
                let proceed = match &outcome {
                    Outcome::Decided { verdict, .. } => {
                        verdict.allowed || policy.mode() == gitgate_policy::Mode::Report
                    }
                    _ => false,
                };
                forwarder.end(proceed).await;
                outcome
            });
            Inspected::Streaming(Streaming {
                body: upstream,
                outcome,
                side_band,
            })
        }
    }
}

/// A push being held (all of it, or its trailer) while its pack is read and decided.
struct Held<'a> {
    state: &'a State,
    policy: &'a Policy,
    to: &'a PushTo<'a>,
    header: PushHeader,
    wants: Wants,
    spool: Spool,
    first_pass: tokio::task::JoinHandle<Result<Option<Listing>, crate::pack::PackError>>,
    /// The memory its check holds.
    meter: Arc<Metered>,
    /// Its place among the pushes held at once, while it is held.
    _slot: Reservation,
    /// The start of the pack, read with the command list.
    pack_start: Bytes,
    body: ClientBody,
    /// A copy of the request's record, for what a refusal records on its own.
    record: Record,
}

/// How a held push ended.
pub(crate) enum Outcome {
    /// Decided: send it on if `verdict` allows (or in report mode), else refuse.
    Decided {
        verdict: PushVerdict,
        spooled: Spooled,
        header: PushHeader,
    },
    /// Refused before it was complete (over the size limit): answer this, whatever the
    /// mode, and record the verdict as a denial.
    Stopped {
        verdict: PushVerdict,
        response: Response<ProxyBody>,
    },
    /// It failed (the client stalled or broke off, the spool failed): answer this.
    Failed(Response<ProxyBody>),
}

/// What to do once a held push is decided.
pub(crate) enum Concluded {
    Forward(Spooled),
    Reply(Response<ProxyBody>),
}

/// Records the outcome of a held push and says what to do with it.
pub(crate) fn conclude(policy: &Policy, outcome: Outcome, record: &mut Record) -> Concluded {
    match outcome {
        Outcome::Decided {
            verdict,
            spooled,
            header,
        } => {
            if settle(policy, &verdict, record) {
                return Concluded::Forward(spooled);
            }
            let bytes =
                report::rejected_push(&header, &verdict, Some("gitgate: push rejected by policy"));
            Concluded::Reply(reply::git("application/x-git-receive-pack-result", bytes))
        }
        Outcome::Stopped { verdict, response } => {
            stopped(policy, &verdict, record);
            Concluded::Reply(response)
        }
        Outcome::Failed(response) => Concluded::Reply(response),
    }
}

impl Held<'_> {
    /// Refuses the push before its pack is complete: drops what was held, drains the
    /// rest of the body, and answers with `reason` for every ref.
    async fn stop(self, rule: &str, reason: String) -> Outcome {
        let decision = Decision {
            allowed: false,
            rule: rule.into(),
            reason,
        };
        let verdict = PushVerdict::reject_all(&self.header.commands, &decision);
        // Ends the first pass while the rest of the body is drained.
        drop(self.spool);
        let response = reject(self.state, &self.header, &verdict, self.body, &self.record).await;
        Outcome::Stopped { verdict, response }
    }

    /// Receives the rest of the pack (also handing it to `forwarder`, if any), then
    /// decides.
    async fn run(mut self, mut forwarder: Option<&mut Forwarder>) -> Outcome {
        let started = Instant::now();
        let limits = &self.state.settings.limits;
        // Without maxPushSize, GitHub's own limit bounds what is held.
        let (limit, rule, named) = match self.policy.max_push_size() {
            Some(limit) => (limit, "maxPushSize", "maxPushSize"),
            None => (GITHUB_PUSH_LIMIT, "githubPushLimit", "GitHub's push limit"),
        };
        let mut pending = Some(std::mem::take(&mut self.pack_start)).filter(|b| !b.is_empty());
        loop {
            if self.spool.len() > limit.0 {
                let reason = format!(
                    "the pushed pack is over {named} {limit} (more than {} received)",
                    ByteSize(self.spool.len())
                );
                return self.stop(rule, reason).await;
            }
            if self.first_pass.is_finished() {
                // Before the pack is complete, the first pass ends only on a pack it cannot
                // read: refuse now rather than hold the rest.
                let reason = match (&mut self.first_pass).await {
                    Ok(Err(error)) => error.to_string(),
                    Ok(Ok(_)) => "the pushed pack ended early".to_owned(),
                    Err(error) => format!("reading the pushed pack failed: {error}"),
                };
                let rule = self.meter.rule();
                return self.stop(rule, reason).await;
            }
            let next = match pending.take() {
                Some(piece) => Ok(Some(Ok(http_body::Frame::data(piece)))),
                None => {
                    let frame = tokio::time::timeout(limits.body_idle_timeout, self.body.frame());
                    match forwarder.as_deref_mut() {
                        None => frame.await,
                        Some(forwarder) => {
                            match forwarder.meanwhile(&mut self.spool, frame).await {
                                Ok(next) => next,
                                Err(error) => return failed(&error, self.header.side_band()),
                            }
                        }
                    }
                }
            };
            let frame = match next {
                Ok(Some(Ok(frame))) => frame,
                Ok(None) => break,
                Ok(Some(Err(error))) => {
                    return Outcome::Failed(reply::failure(
                        Shape::PushResult(self.header.side_band()),
                        &Failure::Client(format!("reading the push body failed: {error}")),
                    ));
                }
                Err(_) => {
                    let message = crate::body::stalled("push", limits.body_idle_timeout);
                    return Outcome::Failed(reply::failure(
                        Shape::PushResult(self.header.side_band()),
                        &Failure::Client(message),
                    ));
                }
            };
            if let Ok(data) = frame.into_data() {
                if let Err(spent) = self.spool.reserve(data.len() as u64) {
                    let (rule, reason) = held_past(&self.state.held_push_bytes, &spent);
                    return self.stop(rule, reason).await;
                }
                if let Err(error) = self.spool.write(&data).await {
                    return failed(&error, self.header.side_band());
                }
                if let Some(forwarder) = forwarder.as_deref_mut() {
                    forwarder.send(&data).await;
                }
            }
        }
        let spooled = match self.spool.finish().await {
            Ok(spooled) => spooled,
            Err(error) => return failed(&error, self.header.side_band()),
        };
        let listing = match self.first_pass.await {
            Ok(listing) => listing.map_err(|e| e.to_string()),
            Err(error) => Err(format!("reading the pushed pack failed: {error}")),
        };
        let spooled = Arc::new(spooled);
        let deciding = async {
            let pack = Pack {
                spooled: &spooled,
                listing: listing?.map(Arc::new),
                wants: self.wants,
                meter: &self.meter,
                last_decode: AtomicU64::new(0),
            };
            examine(
                self.state,
                self.policy,
                self.to,
                &self.header.commands,
                pack,
            )
            .await
        };
        let decided = tokio::time::timeout(limits.response_header_timeout, deciding)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "deciding on the pushed pack took longer than {} s (limits.responseHeaderTimeout)",
                    limits.response_header_timeout.as_secs()
                ))
            });
        let verdict = match decided {
            Ok(verdict) => verdict,
            Err(reason) => PushVerdict::reject_all(
                &self.header.commands,
                &Decision {
                    allowed: false,
                    rule: self.meter.rule().into(),
                    reason,
                },
            ),
        };
        tracing::debug!(
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            allowed = verdict.allowed,
            "push content decided"
        );
        let Ok(spooled) = Arc::try_unwrap(spooled) else {
            return failed(
                &std::io::Error::other("the pack is still being read"),
                self.header.side_band(),
            );
        };
        Outcome::Decided {
            verdict,
            spooled,
            header: self.header,
        }
    }
}

/// How far received pack bytes may run ahead of the first pass before the client is made
/// to wait for it.
const MAX_AHEAD: usize = 4 << 20;

/// A push sent on as it arrives, but only as far as the first pass has found the pack's
/// objects to reach: the trailing checksum (and anything a client put after it) goes only
/// once the push is allowed, so upstream cannot complete a refused pack.
struct Forwarder {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, BoxError>>,
    /// Received bytes not sent on yet; the first is at pack offset `sent`.
    tail: BytesMut,
    sent: u64,
    /// How far the pack's objects reach, from the first pass.
    objects: tokio::sync::watch::Receiver<u64>,
}

impl Forwarder {
    async fn send(&mut self, data: &[u8]) {
        if self.objects.has_changed().is_err() {
            // The first pass is over, so the pack is complete or refused: what follows
            // is never sent on before the decision, nor kept.
            return;
        }
        self.tail.extend_from_slice(data);
        self.flush().await;
        while self.tail.len() > MAX_AHEAD {
            if self.objects.changed().await.is_err() {
                return;
            }
            self.flush().await;
        }
    }

    /// Waits for `next` (the client's next frame). If the client pauses, the first pass
    /// is shown everything written so far, and what it finds to be objects meanwhile is
    /// sent on.
    async fn meanwhile<T>(
        &mut self,
        spool: &mut Spool,
        next: impl std::future::Future<Output = T>,
    ) -> std::io::Result<T> {
        let mut next = std::pin::pin!(next);
        let polled = std::future::poll_fn(|cx| Poll::Ready(next.as_mut().poll(cx))).await;
        if let Poll::Ready(ready) = polled {
            return Ok(ready);
        }
        spool.hand_over().await?;
        loop {
            tokio::select! {
                ready = &mut next => return Ok(ready),
                changed = self.objects.changed() => {
                    self.flush().await;
                    if changed.is_err() {
                        // The first pass is over; it will find no more.
                        return Ok(next.await);
                    }
                }
            }
        }
    }

    /// Sends on the received bytes that the first pass has found to be objects.
    async fn flush(&mut self) {
        let reach = *self.objects.borrow_and_update();
        let n = reach.saturating_sub(self.sent).min(self.tail.len() as u64) as usize;
        if n > 0 {
            let ready = self.tail.split_to(n).freeze();
            self.sent += n as u64;
            // Upstream gone: its own error is what the client will see.
            let _ = self.tx.send(Ok(ready)).await;
        }
    }

    /// Sends the rest (the last objects and the trailing checksum) if the push may go on;
    /// otherwise breaks the upstream request, so that what upstream received is part of a
    /// pack without its checksum.
    async fn end(self, proceed: bool) {
        let last = match proceed {
            true => Ok(self.tail.freeze()),
            false => Err("push refused by gitgate".into()),
        };
        let _ = self.tx.send(last).await;
    }
}

/// The upstream body of a push sent on as it arrives.
struct Channel {
    head: Option<Bytes>,
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, BoxError>>,
}

impl http_body::Body for Channel {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        if let Some(head) = self.head.take() {
            return std::task::Poll::Ready(Some(Ok(http_body::Frame::data(head))));
        }
        self.rx
            .poll_recv(cx)
            .map(|next| next.map(|piece| piece.map(http_body::Frame::data)))
    }
}

/// A held push sent on as it arrives ([`PushHold::Trailer`]): the upstream body, and the
/// decision that ends it.
pub(crate) struct Streaming<'a> {
    pub(crate) body: ProxyBody,
    /// The side-band the push asked for, to tell it about a failure upstream.
    pub(crate) side_band: SideBand,
    pub(crate) outcome: std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send + 'a>>,
}

fn failed(error: &std::io::Error, side_band: SideBand) -> Outcome {
    Outcome::Failed(spool_failure(error, side_band))
}

/// Reads the held pack and finds out what the content rules need; `Err` says why the
/// pack could not be read.
async fn examine(
    state: &State,
    policy: &Policy,
    to: &PushTo<'_>,
    updates: &[RefUpdate],
    pack: Pack<'_>,
) -> Result<PushVerdict, String> {
    let api = Api::new(state, to);
    let mut decoded = pack.decode(Bases::new()).await?;
    let protected = match policy.protects_paths() {
        true => Some(protected(&api, policy, (&pack, updates), &mut decoded).await),
        false => None,
    };
    let signatures = match policy.signers() {
        Some(signers) => {
            let verifier = Verifier::new(signers);
            decoded
                .signed
                .iter()
                .map(|c| (c.id.clone(), verifier.check(c), c.committer_email.clone()))
                .collect()
        }
        None => Vec::new(),
    };
    let facts = decoded.facts;
    let unchecked = match policy.checks_each_commit() {
        true => unchecked(&api, updates, &facts).await,
        false => Vec::new(),
    };
    let findings = Findings {
        ancestry: ancestry(&api, policy, updates, &facts).await,
        protected,
        signatures,
        unchecked,
    };
    Ok(policy.decide_content(updates, &facts, &findings))
}

/// A held pack after its first pass, ready to be decoded (again, with more bases).
struct Pack<'a> {
    spooled: &'a Arc<Spooled>,
    listing: Option<Arc<Listing>>,
    wants: Wants,
    meter: &'a Arc<Metered>,
    /// What the last decode charged, given back when the next one replaces it.
    last_decode: AtomicU64,
}

impl Pack<'_> {
    /// The pack's facts, decoded (again, with more bases: the result replaces the
    /// earlier one, and so does its charge).
    async fn decode(&self, bases: Bases) -> Result<Decoded, String> {
        let (listing, wants) = (self.listing.clone(), self.wants);
        let meter = Arc::clone(self.meter);
        let before = self.meter.used();
        let decoded = blocking(self.spooled, move |s| {
            s.decode(listing.as_deref(), wants, &bases, &mut |n| meter.charge(n))
        })
        .await?;
        let cost = self.meter.used().saturating_sub(before);
        self.meter
            .give_back(self.last_decode.swap(cost, Ordering::Relaxed));
        Ok(decoded)
    }
}

/// Runs a pack read off the async runtime.
async fn blocking<R: Send + 'static>(
    spooled: &Arc<Spooled>,
    read: impl FnOnce(&Spooled) -> Result<R, crate::pack::PackError> + Send + 'static,
) -> Result<R, String> {
    let spooled = Arc::clone(spooled);
    tokio::task::spawn_blocking(move || read(&spooled))
        .await
        .map_err(|e| format!("reading the pushed pack failed: {e}"))?
        .map_err(|e| e.to_string())
}

/// The protected paths the pushed commits touch. Trees and commits outside the pack come
/// from the API; trees the pack holds as deltas against the server's trees are decoded
/// again once those trees are read: first the trees the diff itself reads (a pushed tree
/// is usually a delta against the old tree at its path), else the deltas' own bases.
async fn protected(
    api: &Api<'_>,
    policy: &Policy,
    (pack, updates): (&Pack<'_>, &[RefUpdate]),
    decoded: &mut Decoded,
) -> Result<Vec<ProtectedChange>, String> {
    let mut server = ServerObjects::default();
    let mut bases = Bases::new();
    let mut new_bases = false;
    let mut tried: HashSet<ObjectId> = HashSet::new();
    loop {
        // Bounded, but it can take a moment on a large push: off the async workers.
        let diff = tokio::task::block_in_place(|| {
            policy.protected_changes(&decoded.facts, &server, updates)
        });
        let lookups = match diff {
            Ok(changes) => return Ok(changes),
            Err(Unfinished::Needs(lookups)) => lookups,
            Err(Unfinished::TooLarge(why)) => return Err(why),
        };
        let mut absent = Vec::new();
        for lookup in lookups {
            match lookup {
                Lookup::CommitTree(id) => {
                    let tree = api.commit_tree(&id).await?;
                    server.commit_trees.insert(id, tree);
                }
                Lookup::DefaultTip => server.default_tip = Some(api.default_tip().await?),
                Lookup::Tree(id) => {
                    tried.insert(id.clone());
                    match api.tree(&id).await? {
                        Some(tree) => {
                            hold(pack, &tree)?;
                            add_base(&mut bases, &id, tree.raw)?;
                            server.trees.insert(id, tree.entries);
                            new_bases = true;
                        }
                        None => absent.push(id),
                    }
                }
            }
        }
        let Some(id) = absent.first() else { continue };
        if !new_bases {
            // The missing trees' deltas are made against other trees: read those.
            let untried: Vec<ObjectId> = decoded
                .unresolved
                .iter()
                .filter(|base| !tried.contains(*base))
                .cloned()
                .collect();
            for base in untried {
                tried.insert(base.clone());
                if let Some(tree) = api.tree(&base).await? {
                    hold(pack, &tree)?;
                    add_base(&mut bases, &base, tree.raw)?;
                    server.trees.insert(base, tree.entries);
                    new_bases = true;
                }
            }
        }
        if !new_bases {
            return Err(format!(
                "tree {id} is neither readable in the pushed pack nor on GitHub"
            ));
        }
        *decoded = pack.decode(bases.clone()).await?;
        new_bases = false;
    }
}

/// Charges a tree read from GitHub, kept for the rest of the check (its entries, and its
/// bytes as a delta base), to the push's share of `maxPushCheckBytes`.
fn hold(pack: &Pack<'_>, tree: &crate::repo_api::ServerTree) -> Result<(), String> {
    pack.meter.charge(tree.bytes()).map_err(|e| e.to_string())
}

fn add_base(bases: &mut Bases, id: &ObjectId, raw: Vec<u8>) -> Result<(), String> {
    let id = crate::pack::raw_id(id).map_err(|e| e.to_string())?;
    bases.insert(id, raw);
    Ok(())
}

/// Splits the bytes read so far into the command list (`header_len` bytes, copied so
/// that the bytes read can go once the pack's start is on disk) and the start of the pack.
fn split_head(read: Bytes, header_len: usize) -> (Bytes, Bytes) {
    let at = header_len.min(read.len());
    (Bytes::copy_from_slice(&read[..at]), read.slice(at..))
}

/// Whether each update that must be a fast-forward is one: from the pack's commits, else
/// by asking the API about each commit where the history leaves the pack.
async fn ancestry(
    api: &Api<'_>,
    policy: &Policy,
    updates: &[RefUpdate],
    facts: &PackFacts,
) -> HashMap<String, RefAncestry> {
    let mut found = HashMap::new();
    // A moved tag is refused as it is; nothing to ask.
    for update in updates
        .iter()
        .filter(|u| policy.must_fast_forward(u) && !u.is_tag())
    {
        let answer = match fast_forward(&facts.commits, &update.old, facts.peeled(&update.new)) {
            FastForward::Proven => RefAncestry::FastForward,
            FastForward::Ask(heads) if heads.len() > MAX_ASKED => RefAncestry::Unknown(format!(
                "its history leaves the pushed pack at {} commits, more than gitgate asks GitHub about",
                heads.len()
            )),
            FastForward::Ask(heads) => ask(api, &update.old, &heads).await,
        };
        found.insert(update.name.clone(), answer);
    }
    found
}

/// Whether `old` is an ancestor of any of `heads`, per the API.
async fn ask(api: &Api<'_>, old: &ObjectId, heads: &[ObjectId]) -> RefAncestry {
    let mut failure = None;
    for head in heads {
        match api.is_ancestor(old, head).await {
            Ok(true) => return RefAncestry::FastForward,
            Ok(false) => {}
            Err(why) => failure = Some(why),
        }
    }
    match failure {
        Some(why) => RefAncestry::Unknown(why),
        None => RefAncestry::Rewrite,
    }
}

/// Why updates would bring in commits the push does not carry: every commit where an
/// update's history leaves the pack must already be on the ref (or, for a new ref or a
/// tag, on the default branch), since the per-commit rules can only check what they receive. A
/// commit GitHub does not have at all (one the pack holds in a form gitgate cannot
/// decode) fails the question and so is refused too.
async fn unchecked(api: &Api<'_>, updates: &[RefUpdate], facts: &PackFacts) -> Vec<String> {
    let mut problems = Vec::new();
    for update in updates.iter().filter(|u| !u.is_delete()) {
        for commit in outside_commits(&facts.commits, facts.peeled(&update.new)) {
            if commit == update.old {
                continue;
            }
            // A commit the push does not carry is history it may build on: the ref's own
            // (behind its old commit; GitHub peels an old tag), or the default branch's (a
            // merge of it into a branch, a branch or tag made from it).
            let held = match update.is_create() {
                true => api.on_default_branch(&commit).await,
                false => match api.is_ancestor(&commit, &update.old).await {
                    Ok(true) => Ok(true),
                    _ => api.on_default_branch(&commit).await,
                },
            };
            match held {
                Ok(true) => {}
                Ok(false) => problems.push(format!(
                    "{} would bring in commit {commit}, which this push does not carry and which is {}; push those commits through gitgate so that they can be checked",
                    update.name,
                    if update.is_create() {
                        "not on the default branch"
                    } else {
                        "neither behind its old commit nor on the default branch"
                    }
                )),
                Err(why) => problems.push(format!(
                    "cannot check commit {commit}, which {} would bring in ({why}); denied by policy",
                    update.name
                )),
            }
        }
    }
    problems
}

/// Records a push stopped before its decision: denied, even in report mode, since its
/// pack was not kept and cannot be sent on.
fn stopped(policy: &Policy, verdict: &PushVerdict, record: &mut Record) {
    settle(policy, verdict, record);
    if let Some((_, decision)) = verdict.first_denied() {
        record.decide(Verdict::Deny, &decision.rule, &decision.reason);
    }
    for refs in &mut record.refs {
        refs.verdict = Verdict::Deny;
    }
}

/// The rule and reason of a push refused because gitgate holds as many pushes as it may.
fn too_many_held(count: &Budget, spent: &Spent) -> (&'static str, String) {
    match spent {
        Spent::All => (
            "limits.maxHeldPushes",
            format!(
                "gitgate is holding its maximum of {} pushes to check them (limits.maxHeldPushes); retry shortly",
                count.limit()
            ),
        ),
        Spent::Client => (
            "limits.maxHeldPushesPerClient",
            format!(
                "this client already has {} pushes held to check them (limits.maxHeldPushesPerClient); retry when they have finished",
                count.per_client()
            ),
        ),
    }
}

/// The rule and reason of a push refused because holding it would take the disk of held
/// pushes past a limit.
fn held_past(budget: &Budget, spent: &Spent) -> (&'static str, String) {
    match spent {
        Spent::All => (
            "limits.maxHeldPushBytes",
            format!(
                "this push would take the pushes gitgate holds on disk to check them past limits.maxHeldPushBytes {}; retry when others have finished",
                budget.describe()
            ),
        ),
        Spent::Client => (
            "limits.maxHeldPushBytesPerClient",
            format!(
                "this push would take this client's pushes gitgate holds on disk to check them past limits.maxHeldPushBytesPerClient {}; push less at once, or retry when this client's other pushes have finished",
                ByteSize(budget.per_client())
            ),
        ),
    }
}

fn spool_failed<'a>(error: &std::io::Error, side_band: SideBand) -> Inspected<'a> {
    Inspected::Reply(spool_failure(error, side_band))
}

fn spool_failure(error: &std::io::Error, side_band: SideBand) -> Response<ProxyBody> {
    tracing::error!(%error, "cannot hold a pushed pack");
    reply::failure(
        Shape::PushResult(side_band),
        &Failure::Upstream(format!(
            "gitgate could not hold the pushed pack to check it ({error}); check gitgate's temporary directory"
        )),
    )
}
