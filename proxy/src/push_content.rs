//! The content rules of a push (`forcePush`, `maxBlobSize`, `maxPushSize`): hold the
//! pack back ([`Spool`]), read its facts ([`crate::pack`]), find out whether each guarded
//! ref update is a fast-forward (from the pack, else from the GitHub API), decide, and
//! then send the held body upstream or answer git with the reasons.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use gitgate_policy::git::receive_pack::PushHeader;
use gitgate_policy::git::request::Service;
use gitgate_policy::{
    ByteSize, Decision, FastForward, PackFacts, Policy, PushVerdict, RefAncestry, RefUpdate,
    fast_forward,
};
use http_body_util::BodyExt;

use crate::audit::Record;
use crate::body::stream;
use crate::github::ClientBody;
use crate::push::{Inspected, PushTo, reject, settle};
use crate::reply::{self, Failure, Shape};
use crate::spool::Spool;
use crate::state::State;

/// The most commits at which one update's history may leave the pack; each costs an API
/// call, so beyond this the update is undecided (and denied).
const MAX_ASKED: usize = 8;

/// A push whose command list has been read and allowed.
pub(crate) struct Received {
    pub(crate) header: PushHeader,
    pub(crate) gzip: bool,
    /// The body bytes read so far: the command list, maybe the start of the pack.
    pub(crate) read: VecDeque<Bytes>,
    /// The rest of the body.
    pub(crate) body: ClientBody,
}

pub(crate) async fn inspect(
    state: &State,
    policy: &Policy,
    to: &PushTo<'_>,
    received: Received,
    record: &mut Record,
) -> Inspected {
    let Received {
        header,
        gzip,
        read,
        mut body,
    } = received;
    if gzip {
        let decision = Decision {
            allowed: false,
            rule: "content".into(),
            reason: "gitgate must read this push's pack (forcePush, maxBlobSize, maxPushSize) and does not read gzip-encoded push bodies; push without Content-Encoding".into(),
        };
        let verdict = PushVerdict::reject_all(&header.commands, &decision);
        if settle(policy, &verdict, record) {
            return Inspected::Forward(stream(crate::push::Prefixed { read, rest: body }));
        }
        return Inspected::Reply(reject(state, &header, &verdict, body, record).await);
    }
    let started = Instant::now();
    let (head, mut spool) = match split_head(read, header.header_len).await {
        Ok(split) => split,
        Err(error) => return spool_failed(&error),
    };
    let limits = &state.settings.limits;
    let max_push = policy.max_push_size();
    loop {
        if let Some(limit) = max_push.filter(|l| spool.len() > l.0) {
            let decision = Decision {
                allowed: false,
                rule: "maxPushSize".into(),
                reason: format!(
                    "the pushed pack is over maxPushSize {limit} (more than {} received)",
                    ByteSize(spool.len())
                ),
            };
            let verdict = PushVerdict::reject_all(&header.commands, &decision);
            settle(policy, &verdict, record);
            // Even in report mode: the pack was not kept, so it cannot be sent on.
            return Inspected::Reply(reject(state, &header, &verdict, body, record).await);
        }
        let frame = match tokio::time::timeout(limits.body_idle_timeout, body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(None) => break,
            Ok(Some(Err(error))) => {
                return Inspected::Reply(reply::failure(
                    Shape::Text,
                    &Failure::Client(format!("reading the push body failed: {error}")),
                ));
            }
            Err(_) => {
                return Inspected::Reply(reply::failure(
                    Shape::Text,
                    &Failure::Client("push body stalled".into()),
                ));
            }
        };
        if let Ok(data) = frame.into_data() {
            if let Err(error) = spool.write(&data).await {
                return spool_failed(&error);
            }
        }
    }
    let spooled = match spool.finish().await {
        Ok(spooled) => spooled,
        Err(error) => return spool_failed(&error),
    };
    let max_blob = policy.max_blob_size().map(|s| s.0);
    let read = tokio::task::spawn_blocking(move || {
        let facts = spooled.facts(max_blob);
        (spooled, facts)
    })
    .await;
    let (spooled, facts) = match read {
        Ok(read) => read,
        Err(error) => return spool_failed(&std::io::Error::other(error)),
    };
    let verdict = match facts {
        Ok(facts) => {
            let ancestry = ancestry(state, policy, to, &header.commands, &facts).await;
            policy.decide_content(&header.commands, &facts, &ancestry)
        }
        Err(error) => PushVerdict::reject_all(
            &header.commands,
            &Decision {
                allowed: false,
                rule: "pack".into(),
                reason: error.to_string(),
            },
        ),
    };
    tracing::debug!(
        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
        allowed = verdict.allowed,
        "push content decided"
    );
    if !settle(policy, &verdict, record) {
        return Inspected::Reply(reject(state, &header, &verdict, body, record).await);
    }
    match spooled.into_body(head).await {
        Ok(body) => Inspected::Forward(stream(body)),
        Err(error) => spool_failed(&error),
    }
}

/// Splits the bytes read so far into the command list (`header_len` bytes) and the start
/// of the pack, which goes into a new spool.
async fn split_head(read: VecDeque<Bytes>, header_len: usize) -> std::io::Result<(Bytes, Spool)> {
    let mut head = BytesMut::with_capacity(header_len);
    let mut spool = Spool::new();
    for piece in read {
        let room = header_len - head.len();
        let (into_head, rest) = piece.split_at(room.min(piece.len()));
        head.extend_from_slice(into_head);
        spool.write(rest).await?;
    }
    Ok((head.freeze(), spool))
}

/// Whether each update that must be a fast-forward is one: from the pack's commits, else
/// by asking the API about each commit where the history leaves the pack.
async fn ancestry(
    state: &State,
    policy: &Policy,
    to: &PushTo<'_>,
    updates: &[RefUpdate],
    facts: &PackFacts,
) -> HashMap<String, RefAncestry> {
    let mut found = HashMap::new();
    for update in updates.iter().filter(|u| policy.must_fast_forward(u)) {
        let answer = match fast_forward(&facts.commits, &update.old, &update.new) {
            FastForward::Proven => RefAncestry::FastForward,
            FastForward::Ask(heads) if heads.len() > MAX_ASKED => RefAncestry::Unknown(format!(
                "its history leaves the pushed pack at {} commits, more than gitgate asks GitHub about",
                heads.len()
            )),
            FastForward::Ask(heads) => ask(state, to, &update.old, &heads).await,
        };
        found.insert(update.name.clone(), answer);
    }
    found
}

/// Whether `old` is an ancestor of any of `heads`, per the API.
async fn ask(
    state: &State,
    to: &PushTo<'_>,
    old: &gitgate_policy::ObjectId,
    heads: &[gitgate_policy::ObjectId],
) -> RefAncestry {
    let mut failure = None;
    for head in heads {
        match state
            .ancestry
            .is_ancestor(to.repo, old, head, to.credential)
            .await
        {
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

fn spool_failed(error: &std::io::Error) -> Inspected {
    tracing::error!(%error, "cannot hold a pushed pack");
    Inspected::Reply(reply::failure(
        Shape::RpcResult(Service::ReceivePack),
        &Failure::Upstream(format!(
            "gitgate could not hold the pushed pack to check it ({error}); check gitgate's temporary directory"
        )),
    ))
}
