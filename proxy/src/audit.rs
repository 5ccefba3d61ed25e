//! The audit log: one JSON line per request decision (and per tunnel, when it closes),
//! written by a background task so no request waits on the disk.
//!
//! Field names are the constants in [`field`]; tooling and tests rely on them.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};

use prometheus_client::metrics::counter::Counter;

mod line;

/// The field names of an audit record.
pub mod field {
    /// RFC 3339 UTC time the request started.
    pub const TIME: &str = "time";
    /// Always `decision` for request records, `policy_reload` for reloads.
    pub const KIND: &str = "kind";
    /// The client connection's id.
    pub const CONNECTION: &str = "conn";
    /// The client's address.
    pub const CLIENT: &str = "client";
    /// The host the request was for.
    pub const HOST: &str = "host";
    /// The HTTP method (`CONNECT` for tunnels).
    pub const METHOD: &str = "method";
    /// The canonical path (as forwarded), or the raw target when refused before that.
    pub const PATH: &str = "path";
    /// `owner/repo`, when the request names one.
    pub const REPO: &str = "repo";
    /// `upload-pack`, `receive-pack`, `lfs`, `api`, `tunnel`, `http` or `other`.
    pub const SERVICE: &str = "service";
    /// Every ref update of a push, with its verdict.
    pub const REFS: &str = "refs";
    /// `allow`, `deny` or `report` (denied by the policy, let through in report mode).
    pub const DECISION: &str = "decision";
    /// The pattern that matched or the list that did not.
    pub const RULE: &str = "rule";
    /// Why.
    pub const REASON: &str = "reason";
    /// The status gitgate answered with.
    pub const STATUS: &str = "status";
    /// The status upstream answered with, when it was asked.
    pub const UPSTREAM_STATUS: &str = "upstream_status";
    /// Body bytes received from the client.
    pub const BYTES_IN: &str = "bytes_in";
    /// Body bytes sent to the client.
    pub const BYTES_OUT: &str = "bytes_out";
    /// Milliseconds from the request head to the end of the response.
    pub const DURATION_MS: &str = "duration_ms";
    /// The installation whose token was used (never the token).
    pub const INSTALLATION: &str = "installation";
    /// The token's scope: `{repositories, permissions}`.
    pub const TOKEN_SCOPE: &str = "token_scope";
    /// What went wrong after the decision, when something did: the error gitgate answered
    /// with (upstream unreachable, no credential, a stalled body), or the response body
    /// failing partway.
    pub const ERROR: &str = "error";
    /// The GitHub user a user token acted for (device flow).
    pub const GITHUB_USER: &str = "github_user";
    /// The sandbox profile a request was decided under (or a user session belongs to).
    pub const PROFILE: &str = "profile";
    /// What happened to a user session.
    pub const EVENT: &str = "event";
    /// Within a ref entry: the ref name.
    pub const REF: &str = "ref";
    /// Within a ref entry: the old object id.
    pub const OLD: &str = "old";
    /// Within a ref entry: the new object id.
    pub const NEW: &str = "new";
    /// Policy reloads: the config file.
    pub const FILE: &str = "file";
    /// Policy reloads: the hash of the policy in force afterwards.
    pub const POLICY_HASH: &str = "policy_hash";
    /// How many records an `audit_gap` line stands for.
    pub const LOST_RECORDS: &str = "lost_records";
}

/// The verdict of a decision as the audit log spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Allowed by the policy.
    Allow,
    /// Denied by the policy, or refused as malformed.
    Deny,
    /// Denied by the policy but let through in report mode.
    Report,
}

impl Verdict {
    /// `allow`, `deny` or `report`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::Report => "report",
        }
    }
}

/// What kind of traffic a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// Fetch and clone.
    UploadPack,
    /// Push.
    ReceivePack,
    /// Git LFS.
    Lfs,
    /// The REST or GraphQL API.
    Api,
    /// An opaque tunnel to an allow-listed host.
    Tunnel,
    /// Absolute-form plain HTTP.
    Http,
    /// Anything else (web pages, malformed requests).
    Other,
}

impl Service {
    /// The audit spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::UploadPack => "upload-pack",
            Service::ReceivePack => "receive-pack",
            Service::Lfs => "lfs",
            Service::Api => "api",
            Service::Tunnel => "tunnel",
            Service::Http => "http",
            Service::Other => "other",
        }
    }
}

/// One ref update of a push and its verdict.
#[derive(Debug, Clone)]
pub struct RefRecord {
    /// The ref name.
    pub name: String,
    /// Old object id.
    pub old: String,
    /// New object id.
    pub new: String,
    /// The verdict.
    pub verdict: Verdict,
    /// The rule.
    pub rule: String,
    /// Why.
    pub reason: String,
}

/// One request's audit record, filled in as the request goes.
#[derive(Debug, Clone)]
pub struct Record {
    started: SystemTime,
    /// The client connection.
    pub connection: u64,
    /// The client's address.
    pub client: std::net::SocketAddr,
    /// The host the request was for.
    pub host: String,
    /// The method.
    pub method: String,
    /// The canonical path once known, else the raw target.
    pub path: String,
    /// `owner/repo`.
    pub repo: Option<String>,
    /// What kind of traffic.
    pub service: Service,
    /// Ref updates of a push.
    pub refs: Vec<RefRecord>,
    /// The decision; `None` until one is taken.
    pub verdict: Option<Verdict>,
    /// The rule.
    pub rule: String,
    /// Why.
    pub reason: String,
    /// The status gitgate answered with.
    pub status: u16,
    /// The status upstream answered with.
    pub upstream_status: Option<u16>,
    /// Body bytes from the client.
    pub bytes_in: u64,
    /// Body bytes to the client.
    pub bytes_out: u64,
    /// The installation whose token was used.
    pub installation: Option<u64>,
    /// The token's scope.
    pub token_scope: Option<gitgate_policy::TokenScope>,
    /// The GitHub user a user token acted for.
    pub github_user: Option<std::sync::Arc<str>>,
    /// The sandbox profile the request was decided under, when profiles are configured.
    pub profile: Option<std::sync::Arc<str>>,
    /// What went wrong after the decision, if anything.
    pub error: Option<String>,
}

impl Record {
    /// A record started now.
    pub fn new(
        connection: u64,
        client: std::net::SocketAddr,
        host: &str,
        method: &str,
        path: &str,
        service: Service,
    ) -> Self {
        Self {
            started: SystemTime::now(),
            connection,
            client,
            host: host.to_owned(),
            method: method.to_owned(),
            path: path.to_owned(),
            repo: None,
            service,
            refs: Vec::new(),
            verdict: None,
            rule: String::new(),
            reason: String::new(),
            status: 0,
            upstream_status: None,
            bytes_in: 0,
            bytes_out: 0,
            installation: None,
            token_scope: None,
            github_user: None,
            profile: None,
            error: None,
        }
    }

    /// Records the decision.
    pub fn decide(&mut self, verdict: Verdict, rule: &str, reason: &str) {
        self.verdict = Some(verdict);
        self.rule = rule.to_owned();
        self.reason = reason.to_owned();
    }

    /// Notes what the request's credential was scoped to (never the token).
    pub(crate) fn note_credential(&mut self, credential: Option<&crate::token::Credential>) {
        if let Some((installation, scope)) = credential.and_then(crate::token::Credential::scope) {
            self.installation = Some(installation);
            self.token_scope = Some(scope.clone());
        }
        self.github_user = credential.and_then(crate::token::Credential::user).cloned();
    }

    /// How long ago the request started: its duration, when asked at its end.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed().unwrap_or(Duration::ZERO)
    }

    /// Appends the record's JSON line (ending in `\n`) to `out`, with `duration` as the
    /// time the request took.
    pub fn write_line(&self, duration: Duration, out: &mut Vec<u8>) {
        let line = line::Line {
            record: self,
            time: self.started,
            duration_ms: (duration.as_secs_f64() * 1e6).round() / 1e3,
        };
        line.write(out);
        out.push(b'\n');
    }

    /// The memory the record holds, its struct and every string it owns or shares, for
    /// the audit buffer's bound (the sandbox chooses some of them: method, path, refs).
    fn weight(&self) -> usize {
        let shared = [&self.github_user, &self.profile]
            .into_iter()
            .flatten()
            .map(|s| s.len());
        let scope = self.token_scope.iter().flat_map(|scope| {
            let repos = scope.repositories.iter().flatten().map(String::len);
            let permissions = scope.permissions.iter().map(|(name, _)| name.len());
            repos
                .chain(permissions)
                .map(|len| len + size_of::<String>())
        });
        let refs = self.refs.iter().map(|r| {
            size_of::<RefRecord>()
                + [&r.name, &r.old, &r.new, &r.rule, &r.reason]
                    .map(String::len)
                    .iter()
                    .sum::<usize>()
        });
        let own = [
            &self.host,
            &self.method,
            &self.path,
            &self.rule,
            &self.reason,
        ]
        .into_iter()
        .chain(&self.repo)
        .chain(&self.error)
        .map(String::len);
        size_of::<Record>() + own.chain(shared).chain(scope).chain(refs).sum::<usize>()
    }
}

/// A line recording a policy reload.
pub fn reload_line(file: &str, ok: bool, detail: &str, policy_hash: &str) -> String {
    let mut line = serde_json::json!({
        field::TIME: rfc3339(SystemTime::now()),
        field::KIND: "policy_reload",
        field::FILE: file,
        field::DECISION: if ok { "allow" } else { "deny" },
        field::REASON: detail,
        field::POLICY_HASH: policy_hash,
    })
    .to_string();
    line.push('\n');
    line
}

/// A line recording what happened to a person's GitHub session (`github.user`):
/// `event` is `logged_in`, `login_failed`, `renewed`, `renewal_failed` or `logged_out`.
pub fn user_line(profile: &str, event: &str, login: Option<&str>, detail: &str) -> String {
    let mut line = serde_json::json!({
        field::TIME: rfc3339(SystemTime::now()),
        field::KIND: "user_session",
        field::PROFILE: profile,
        field::EVENT: event,
        field::GITHUB_USER: login,
        field::REASON: detail,
    })
    .to_string();
    line.push('\n');
    line
}

fn rfc3339(t: SystemTime) -> String {
    let mut text = Vec::with_capacity(30);
    line::write_rfc3339(&mut text, t);
    String::from_utf8(text).unwrap_or_default()
}

/// Where audit lines go.
#[derive(Debug, Clone)]
pub enum AuditTarget {
    /// Standard output (the default).
    Stdout,
    /// A file, appended to, reopened on SIGHUP and when it is rotated away.
    File(PathBuf),
}

/// One entry waiting for the writer thread.
enum Entry {
    /// A line already formatted, ending in `\n`.
    Line(String),
    /// A request record and how long the request took: the writer thread formats it, so
    /// no request waits for its line to be written out.
    Request(Box<Record>, Duration),
}

impl Entry {
    /// Bytes the entry counts for against [`MAX_PENDING`].
    fn weight(&self) -> usize {
        match self {
            Entry::Line(line) => line.len(),
            Entry::Request(record, _) => record.weight(),
        }
    }

    fn append_to(&self, out: &mut Vec<u8>) {
        match self {
            Entry::Line(line) => out.extend_from_slice(line.as_bytes()),
            Entry::Request(record, duration) => record.write_line(*duration, out),
        }
    }
}

/// Entries waiting for the writer thread.
#[derive(Default)]
struct Pending {
    entries: Vec<Entry>,
    /// The entries' weight.
    bytes: usize,
    dropped: u64,
    /// A reopen was asked for when `entries` was this long: what came before goes to the
    /// old file, what came after to the new one.
    reopen_at: Option<usize>,
    closed: bool,
}

impl Pending {
    /// Queues `entry`, or counts it dropped if it would take the queue past
    /// [`MAX_PENDING`]; true once the queue holds more than half of that (time to write).
    fn push(&mut self, entry: Entry) -> bool {
        let weight = entry.weight();
        if self.bytes + weight > MAX_PENDING {
            self.dropped += 1;
        } else {
            self.bytes += weight;
            self.entries.push(entry);
        }
        self.bytes > MAX_PENDING / 2
    }
}

/// The sending side of the audit log. Cheap to clone; a send is a push onto a buffer.
#[derive(Clone)]
pub struct AuditLog {
    pending: Arc<(Mutex<Pending>, Condvar)>,
    thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

/// Memory the entries waiting for the writer may hold (lines' bytes, records' weight);
/// past this, entries are dropped (and the count logged) rather than slowing requests down
/// or growing memory.
const MAX_PENDING: usize = 8 << 20;

/// The writer formats and writes this much at a time.
const WRITE_CHUNK: usize = 256 << 10;

/// The writer wakes this often, and earlier when the buffer fills up.
const FLUSH_EVERY: Duration = Duration::from_millis(20);

impl AuditLog {
    /// Starts the writer on its own thread, so no request ever waits on the disk and the
    /// async runtime never blocks on it.
    pub fn start(target: AuditTarget, losses: Losses) -> std::io::Result<Self> {
        let writer = Writer::open(target, losses)?;
        let pending: Arc<(Mutex<Pending>, Condvar)> = Arc::default();
        let shared = pending.clone();
        let thread = std::thread::Builder::new()
            .name("gitgate-audit".into())
            .spawn(move || writer.run(&shared))?;
        Ok(Self {
            pending,
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    /// Writes what is buffered and stops the writer (at shutdown).
    pub fn close(&self) {
        self.close_within(std::time::Duration::MAX);
    }

    /// [`Self::close`], waiting at most `deadline` for the writer: one whose output is
    /// blocked (a pipe nobody reads) is left, and what it had not written is lost, said
    /// in the log.
    pub fn close_within(&self, deadline: std::time::Duration) {
        self.lock().closed = true;
        self.pending.1.notify_one();
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(thread) = thread else { return };
        let started = std::time::Instant::now();
        while !thread.is_finished() {
            if started.elapsed() >= deadline {
                tracing::error!(
                    waited_s = deadline.as_secs(),
                    queued_records = self.lock().entries.len(),
                    "the audit writer is blocked (its output does not take more); stopping without the records it has not written"
                );
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = thread.join();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a line.
    pub fn write(&self, line: String) {
        self.push(Entry::Line(line));
    }

    /// Queues a request's record, its duration fixed now; the writer thread formats it.
    pub fn record(&self, record: Record) {
        let duration = record.elapsed();
        self.push(Entry::Request(Box::new(record), duration));
    }

    fn push(&self, entry: Entry) {
        let past_half = self.lock().push(entry);
        if past_half {
            self.pending.1.notify_one();
        }
    }

    /// Reopens the audit file (after SIGHUP).
    pub fn reopen(&self) {
        let mut pending = self.lock();
        pending.reopen_at = Some(pending.entries.len());
        self.pending.1.notify_one();
    }
}

/// Records the log lost, by why, as metrics (`gitgate_audit_records_lost_total`).
#[derive(Clone, Default)]
pub struct Losses {
    /// Dropped because the writer fell [`MAX_PENDING`] behind.
    pub queue_full: Counter,
    /// Not written because the output refused them (disk full, an I/O error).
    pub write_error: Counter,
}

struct Writer {
    target: AuditTarget,
    out: Box<dyn Write + Send>,
    identity: Option<(u64, u64)>,
    /// Lines formatted, waiting to be written (kept between rounds).
    buffer: Vec<u8>,
    losses: Losses,
    /// Records lost since the last line written: said in a gap line before the next.
    lost: u64,
    /// A failed write left a line unfinished: the next write starts a new one.
    broken_line: bool,
}

impl Writer {
    fn open(target: AuditTarget, losses: Losses) -> std::io::Result<Self> {
        let (out, identity): (Box<dyn Write + Send>, _) = match &target {
            AuditTarget::Stdout => (Box::new(std::io::stdout()), None),
            AuditTarget::File(path) => (Box::new(open_file(path)?), file_identity(path)),
        };
        Ok(Self::to(target, out, identity, losses))
    }

    fn to(
        target: AuditTarget,
        out: Box<dyn Write + Send>,
        identity: Option<(u64, u64)>,
        losses: Losses,
    ) -> Self {
        Self {
            target,
            out,
            identity,
            buffer: Vec::new(),
            losses,
            lost: 0,
            broken_line: false,
        }
    }

    /// Drains the buffer every [`FLUSH_EVERY`] (or when asked) until the log is dropped.
    fn run(mut self, pending: &(Mutex<Pending>, Condvar)) {
        let mut last_check = std::time::Instant::now();
        loop {
            let taken = {
                let guard = pending.0.lock().unwrap_or_else(|p| p.into_inner());
                let (mut guard, _) = pending
                    .1
                    .wait_timeout_while(guard, FLUSH_EVERY, |p| {
                        p.reopen_at.is_none() && !p.closed && p.bytes <= MAX_PENDING / 2
                    })
                    .unwrap_or_else(|p| p.into_inner());
                std::mem::take(&mut *guard)
            };
            if taken.dropped > 0 {
                tracing::warn!(
                    dropped = taken.dropped,
                    "audit buffer full; records were dropped"
                );
                self.losses.queue_full.inc_by(taken.dropped);
                self.lost += taken.dropped;
            }
            let (before, after) = taken.entries.split_at(taken.reopen_at.unwrap_or(0));
            self.write(before);
            if taken.reopen_at.is_some()
                || (last_check.elapsed() > Duration::from_secs(1) && self.rotated_away())
            {
                last_check = std::time::Instant::now();
                self.reopen();
            }
            self.write(after);
            if taken.closed {
                return;
            }
        }
    }

    fn write(&mut self, entries: &[Entry]) {
        if entries.is_empty() {
            return;
        }
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.clear();
        let mut records = 0;
        for entry in entries {
            entry.append_to(&mut buffer);
            records += 1;
            // Written in pieces: a backlog is not held twice, queued and formatted.
            if buffer.len() >= WRITE_CHUNK {
                self.write_bytes(&buffer, records);
                buffer.clear();
                records = 0;
            }
        }
        self.write_bytes(&buffer, records);
        // Keep a buffer of ordinary size for the next round, not one a long line grew.
        if buffer.capacity() <= 2 * WRITE_CHUNK {
            self.buffer = buffer;
        }
    }

    /// Writes `bytes`, the lines of `records` records; what a failed write loses is
    /// counted, and said in the log when writing works again.
    fn write_bytes(&mut self, bytes: &[u8], records: u64) {
        if bytes.is_empty() {
            return;
        }
        let written = match self.mend() {
            Ok(()) => write_counting(&mut *self.out, bytes),
            Err(error) => Err((0, error)),
        };
        if let Err((done, error)) = written {
            // Each record is one line: those whose line ended were written.
            let whole = bytes[..done].iter().filter(|b| **b == b'\n').count() as u64;
            let lost = records.saturating_sub(whole);
            tracing::error!(%error, lost, "cannot write the audit log");
            self.losses.write_error.inc_by(lost);
            self.lost += lost;
            self.broken_line |= done > 0 && bytes[done - 1] != b'\n';
        }
    }

    /// Ends a line a failed write left unfinished, and writes a gap line saying how many
    /// records were lost since the last line written.
    fn mend(&mut self) -> std::io::Result<()> {
        if !self.broken_line && self.lost == 0 {
            return Ok(());
        }
        let mut gap = Vec::new();
        if self.broken_line {
            gap.push(b'\n');
        }
        if self.lost > 0 {
            gap.extend_from_slice(gap_line(self.lost).as_bytes());
        }
        match write_counting(&mut *self.out, &gap) {
            Ok(()) => {
                (self.broken_line, self.lost) = (false, 0);
                Ok(())
            }
            Err((done, error)) => {
                if done > 0 {
                    self.broken_line = gap[done - 1] != b'\n';
                }
                Err(error)
            }
        }
    }

    /// The file at the path is no longer the one open (moved away by log rotation).
    fn rotated_away(&self) -> bool {
        match &self.target {
            AuditTarget::File(path) => file_identity(path) != self.identity,
            AuditTarget::Stdout => false,
        }
    }

    fn reopen(&mut self) {
        if let AuditTarget::File(path) = &self.target {
            match open_file(path) {
                Ok(file) => {
                    self.out = Box::new(file);
                    self.identity = file_identity(path);
                    tracing::info!(path = %path.display(), "reopened the audit log");
                }
                Err(error) => {
                    tracing::error!(%error, path = %path.display(), "cannot reopen the audit log")
                }
            }
        }
    }
}

/// Writes all of `bytes` and flushes; or how many were written, and the error.
fn write_counting(out: &mut dyn Write, bytes: &[u8]) -> Result<(), (usize, std::io::Error)> {
    let mut done = 0;
    while done < bytes.len() {
        match out.write(&bytes[done..]) {
            Ok(0) => return Err((done, std::io::ErrorKind::WriteZero.into())),
            Ok(n) => done += n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err((done, error)),
        }
    }
    out.flush().map_err(|error| (done, error))
}

/// The line that stands where `lost` records could not be written.
fn gap_line(lost: u64) -> String {
    let mut line = serde_json::json!({
        field::TIME: rfc3339(SystemTime::now()),
        field::KIND: "audit_gap",
        field::LOST_RECORDS: lost,
        field::REASON: "records before this line were lost: the audit output refused them or fell too far behind (gitgate_audit_records_lost_total)",
    })
    .to_string();
    line.push('\n');
    line
}

/// Opens the audit file for appending; a new one is readable by its owner and group only
/// (it names clients, repositories and refs).
fn open_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o640);
    options.open(path)
}

#[cfg(unix)]
fn file_identity(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_identity(_: &std::path::Path) -> Option<(u64, u64)> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn records_serialise_with_the_constant_field_names() {
        let mut r = Record::new(
            7,
            "127.0.0.1:5000".parse().unwrap(),
            "github.com",
            "GET",
            "/a/b.git/info/refs",
            Service::UploadPack,
        );
        r.repo = Some("a/b".into());
        r.decide(
            Verdict::Deny,
            "allowedRepos",
            "a/b is not in allowedRepos []",
        );
        r.status = 200;
        let mut line = Vec::new();
        r.write_line(Duration::from_millis(3), &mut line);
        let v: Value = serde_json::from_slice(&line).unwrap();
        for name in [
            field::TIME,
            field::CONNECTION,
            field::CLIENT,
            field::HOST,
            field::METHOD,
            field::PATH,
            field::REPO,
            field::SERVICE,
            field::DECISION,
            field::RULE,
            field::REASON,
            field::STATUS,
            field::UPSTREAM_STATUS,
            field::BYTES_IN,
            field::BYTES_OUT,
            field::DURATION_MS,
            field::INSTALLATION,
        ] {
            assert!(v.get(name).is_some(), "missing {name}");
        }
        assert_eq!(v[field::DECISION], "deny");
        assert_eq!(v[field::SERVICE], "upload-pack");
        assert_eq!(v[field::CONNECTION], 7);
    }

    #[test]
    fn file_is_reopened_after_rotation() {
        let (dir, path, log) = log_in_temp_dir("rotation");
        log.write("one\n".into());
        wait_for(|| {
            std::fs::read_to_string(&path)
                .unwrap_or_default()
                .contains("one")
        });
        std::fs::rename(&path, dir.join("audit.log.1")).unwrap();
        log.reopen();
        log.write("two\n".into());
        wait_for(|| {
            std::fs::read_to_string(&path)
                .unwrap_or_default()
                .contains("two")
        });
        assert!(
            !std::fs::read_to_string(dir.join("audit.log.1"))
                .unwrap()
                .contains("two")
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// An output that takes `room` more bytes, then refuses them (a full disk).
    #[derive(Clone, Default)]
    struct Filling {
        written: Arc<Mutex<Vec<u8>>>,
        room: Arc<Mutex<usize>>,
    }

    impl Write for Filling {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let mut room = self.room.lock().unwrap();
            if *room == 0 {
                return Err(std::io::Error::other("no space left on device"));
            }
            let n = bytes.len().min(*room);
            self.written.lock().unwrap().extend_from_slice(&bytes[..n]);
            *room -= n;
            Ok(n)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn records_a_full_output_refuses_are_counted_and_a_gap_line_stands_for_them() {
        let out = Filling::default();
        let losses = Losses::default();
        let mut writer = Writer::to(
            AuditTarget::Stdout,
            Box::new(out.clone()),
            None,
            losses.clone(),
        );
        let line = |n: u32| Entry::Line(format!("{{\"kind\":\"test\",\"n\":{n}}}\n"));
        let one = 22;
        assert_eq!(line(1).weight(), one);
        // Room for one line and half of the next.
        *out.room.lock().unwrap() = one + one / 2;
        writer.write(&[line(1), line(2), line(3)]);
        writer.write(&[line(4)]);
        assert_eq!(losses.write_error.get(), 3, "lines 2 to 4");
        *out.room.lock().unwrap() = usize::MAX;
        writer.write(&[line(5)]);
        let text = String::from_utf8(out.written.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        let json = |l: &str| serde_json::from_str::<Value>(l);
        assert_eq!(json(lines[0]).unwrap()["n"], 1);
        assert!(json(lines[1]).is_err(), "half of line 2, ended: {text}");
        let gap = json(lines[2]).unwrap();
        assert_eq!(
            (&gap["kind"], &gap["lost_records"]),
            (&"audit_gap".into(), &3.into())
        );
        assert_eq!(json(lines[3]).unwrap()["n"], 5, "{text}");
    }

    #[test]
    fn records_are_formatted_by_the_writer_in_queue_order() {
        let (dir, path, log) = log_in_temp_dir("order");
        let record = |path: &str| {
            let client = "127.0.0.1:1".parse().unwrap();
            Record::new(1, client, "github.com", "GET", path, Service::Other)
        };
        log.record(record("/first"));
        log.write("{\"kind\":\"between\"}\n".into());
        log.record(record("/last"));
        log.close();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0][field::PATH], "/first");
        assert_eq!(lines[1][field::KIND], "between");
        assert_eq!(lines[2][field::PATH], "/last");
        assert!(lines[2][field::DURATION_MS].as_f64().unwrap() >= 0.0);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_records_weight_counts_every_string_it_holds() {
        let long = "x".repeat(10_000);
        let base = Record::new(
            1,
            "127.0.0.1:1".parse().unwrap(),
            "",
            "",
            "",
            Service::Other,
        );
        type Setter = fn(&mut Record, &str);
        let setters: [(&str, Setter); 11] = [
            ("host", |r, s| r.host = s.into()),
            ("error", |r, s| r.error = Some(s.into())),
            ("method", |r, s| r.method = s.into()),
            ("path", |r, s| r.path = s.into()),
            ("rule", |r, s| r.rule = s.into()),
            ("reason", |r, s| r.reason = s.into()),
            ("repo", |r, s| r.repo = Some(s.into())),
            ("github_user", |r, s| r.github_user = Some(s.into())),
            ("profile", |r, s| r.profile = Some(s.into())),
            ("token_scope", |r, s| {
                r.token_scope = Some(gitgate_policy::TokenScope {
                    repositories: Some(vec![s.into()]),
                    permissions: vec![(s.into(), gitgate_policy::Access::Read)],
                })
            }),
            ("refs", |r, s| {
                r.refs.push(RefRecord {
                    name: s.into(),
                    old: s.into(),
                    new: s.into(),
                    verdict: Verdict::Allow,
                    rule: s.into(),
                    reason: s.into(),
                })
            }),
        ];
        for (field, set) in setters {
            let mut r = base.clone();
            set(&mut r, &long);
            assert!(r.weight() >= base.weight() + long.len(), "{field}");
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_growing() {
        let mut pending = Pending::default();
        let mut big = Record::new(
            1,
            "127.0.0.1:1".parse().unwrap(),
            "",
            "",
            "",
            Service::Other,
        );
        // A sandbox can choose a long method; the record's weight must count it.
        big.method = "M".repeat(MAX_PENDING / 8);
        let mut wake = Vec::new();
        for _ in 0..10 {
            wake.push(pending.push(Entry::Request(Box::new(big.clone()), Duration::ZERO)));
        }
        assert_eq!(pending.entries.len(), 7);
        assert_eq!(pending.dropped, 3);
        assert!(pending.bytes <= MAX_PENDING);
        assert_eq!(&wake[..4], [false, false, false, true]);
        // Small lines still fit in what is left.
        assert!(pending.push(Entry::Line("{}\n".into())));
        assert_eq!(pending.entries.len(), 8);
    }

    /// A fresh directory for the test `name`, and an audit log writing `audit.log` in it.
    fn log_in_temp_dir(name: &str) -> (PathBuf, PathBuf, AuditLog) {
        let dir = std::env::temp_dir().join(format!("gitgate-audit-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.log");
        let log = AuditLog::start(AuditTarget::File(path.clone()), Losses::default()).unwrap();
        (dir, path, log)
    }

    fn wait_for(condition: impl Fn() -> bool) {
        for _ in 0..500 {
            if condition() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("condition not met");
    }
}
