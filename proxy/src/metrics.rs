//! Prometheus metrics. Label values come from enums, or from profile names up to a
//! configured count, so cardinality stays bounded.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::audit::{Record, Service, Verdict};

/// Which host a request was for.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub(crate) enum HostClass {
    /// The git host, intercepted.
    Git,
    /// The API host, intercepted.
    Api,
    /// A tunnel to an allow-listed host.
    Tunnel,
    /// Absolute-form plain HTTP.
    Http,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
enum DecisionLabel {
    Allow,
    Deny,
    Report,
}

impl From<Verdict> for DecisionLabel {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Allow => Self::Allow,
            Verdict::Deny => Self::Deny,
            Verdict::Report => Self::Report,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    host_class: HostClass,
    decision: DecisionLabel,
    profile: String,
}

/// The `profile` label of requests from profiles beyond `metrics.maxProfileLabels`.
pub(crate) const OTHER_PROFILES: &str = "_other";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: DecisionLabel,
}

/// Success or failure.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub(crate) enum Outcome {
    /// It worked.
    Ok,
    /// It failed.
    Error,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    result: Outcome,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
enum Direction {
    In,
    Out,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: Direction,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    hash: String,
}

/// Why audit records were lost.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
enum LostBecause {
    QueueFull,
    WriteError,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LostLabels {
    reason: LostBecause,
}

/// gitgate's metrics and their registry.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    ref_updates: Family<DecisionLabels, Counter>,
    token_mints: Family<OutcomeLabels, Counter>,
    token_expiry: Gauge<f64, AtomicU64>,
    upstream_latency: Histogram,
    open_connections: Gauge,
    /// Tunnels open now, each from its admission.
    pub(crate) open_tunnels: Gauge,
    /// Bytes of pushes held on disk for the content rules now.
    pub(crate) held_push_bytes: Gauge,
    /// Bytes of request bodies held in memory to decide on now.
    pub(crate) buffered_body_bytes: Gauge,
    /// Pushes held for the content rules now.
    pub(crate) held_pushes: Gauge,
    /// Bytes held pushes' checks hold in memory now.
    pub(crate) push_check_bytes: Gauge,
    /// The two `body_bytes` series, made at start (no label lookup per request).
    bytes_in: Counter,
    bytes_out: Counter,
    policy_reloads: Family<OutcomeLabels, Counter>,
    policy_info: Family<PolicyLabels, Gauge>,
    policy_loaded: Gauge<f64, AtomicU64>,
    rate_limit_remaining: Gauge,
    /// The audit records lost, by why (given to the audit writer).
    pub(crate) audit_losses: crate::audit::Losses,
    /// Profile names that have a label of their own (at most `max_profile_labels`).
    profile_labels: Mutex<HashSet<std::sync::Arc<str>>>,
    max_profile_labels: usize,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(DEFAULT_PROFILE_LABELS)
    }
}

/// Profiles that get a `profile` label of their own unless configured otherwise.
pub const DEFAULT_PROFILE_LABELS: usize = 100;

impl Metrics {
    /// Metrics with at most `max_profile_labels` distinct `profile` label values (the
    /// first profiles seen); requests of later ones are labelled `_other`.
    pub(crate) fn new(max_profile_labels: usize) -> Self {
        let mut registry = Registry::with_prefix("gitgate");
        let requests = Family::default();
        registry.register(
            "requests",
            "Requests by host class and decision",
            requests.clone(),
        );
        let ref_updates = Family::default();
        registry.register(
            "ref_updates",
            "Ref updates in pushes by decision",
            ref_updates.clone(),
        );
        let token_mints = Family::default();
        registry.register(
            "token_mints",
            "Installation token mints by result",
            token_mints.clone(),
        );
        let token_expiry = Gauge::default();
        registry.register(
            "token_expiry_seconds",
            "Seconds until the soonest cached installation token expires (0 once one that could not be renewed has expired; NaN while none is cached)",
            token_expiry.clone(),
        );
        let upstream_latency = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "upstream_response_seconds",
            "Time from sending a request upstream to its response head",
            upstream_latency.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "open_connections",
            "Client connections open now",
            open_connections.clone(),
        );
        let open_tunnels = Gauge::default();
        registry.register("open_tunnels", "Tunnels open now", open_tunnels.clone());
        let held_push_bytes = Gauge::default();
        registry.register(
            "held_push_bytes",
            "Bytes of pushes held on disk for the content rules now (limits.maxHeldPushBytes)",
            held_push_bytes.clone(),
        );
        let held_pushes = Gauge::default();
        registry.register(
            "held_pushes",
            "Pushes held for the content rules now (limits.maxHeldPushes)",
            held_pushes.clone(),
        );
        let push_check_bytes = Gauge::default();
        registry.register(
            "push_check_bytes",
            "Bytes the checks of held pushes hold in memory now (limits.maxPushCheckBytes)",
            push_check_bytes.clone(),
        );
        let buffered_body_bytes = Gauge::default();
        registry.register(
            "buffered_body_bytes",
            "Bytes of request bodies held in memory to decide on now (limits.maxBufferedBodyBytes)",
            buffered_body_bytes.clone(),
        );
        let bytes: Family<DirectionLabels, Counter> = Family::default();
        registry.register(
            "body_bytes",
            "Body bytes from (in) and to (out) clients",
            bytes.clone(),
        );
        let direction = |direction| bytes.get_or_create(&DirectionLabels { direction }).clone();
        let (bytes_in, bytes_out) = (direction(Direction::In), direction(Direction::Out));
        let policy_reloads = Family::default();
        registry.register(
            "policy_reloads",
            "Policy reloads by result",
            policy_reloads.clone(),
        );
        let policy_info = Family::default();
        registry.register(
            "policy_info",
            "The policy in force (label: its hash)",
            policy_info.clone(),
        );
        let policy_loaded = Gauge::default();
        registry.register(
            "policy_loaded_timestamp_seconds",
            "When the policy in force was loaded (Unix time)",
            policy_loaded.clone(),
        );
        let rate_limit_remaining = Gauge::default();
        // Unknown until the App's first API call.
        rate_limit_remaining.set(-1);
        registry.register(
            "github_rate_limit_remaining",
            "The GitHub App's remaining API requests in the current window (X-RateLimit-Remaining of its last API response)",
            rate_limit_remaining.clone(),
        );
        let lost: Family<LostLabels, Counter> = Family::default();
        registry.register(
            "audit_records_lost",
            "Audit records not written, by why (an audit_gap line in the log stands for them)",
            lost.clone(),
        );
        let losing = |reason| lost.get_or_create(&LostLabels { reason }).clone();
        let audit_losses = crate::audit::Losses {
            queue_full: losing(LostBecause::QueueFull),
            write_error: losing(LostBecause::WriteError),
        };
        Self {
            rate_limit_remaining,
            audit_losses,
            profile_labels: Mutex::default(),
            max_profile_labels,
            registry,
            requests,
            ref_updates,
            token_mints,
            token_expiry,
            upstream_latency,
            open_connections,
            open_tunnels,
            held_push_bytes,
            buffered_body_bytes,
            held_pushes,
            push_check_bytes,
            bytes_in,
            bytes_out,
            policy_reloads,
            policy_info,
            policy_loaded,
        }
    }
}

impl Metrics {
    /// Counts a finished request from its audit record.
    pub(crate) fn record(&self, record: &Record) {
        let host_class = match record.service {
            Service::Tunnel => HostClass::Tunnel,
            Service::Http => HostClass::Http,
            Service::Api => HostClass::Api,
            _ => HostClass::Git,
        };
        let decision = record.verdict.unwrap_or(Verdict::Deny).into();
        self.requests
            .get_or_create(&RequestLabels {
                host_class,
                decision,
                profile: self.profile_label(record.profile.as_ref()),
            })
            .inc();
        for r in &record.refs {
            self.ref_updates
                .get_or_create(&DecisionLabels {
                    decision: r.verdict.into(),
                })
                .inc();
        }
        self.bytes_in.inc_by(record.bytes_in);
        self.bytes_out.inc_by(record.bytes_out);
    }

    /// The `profile` label for `profile`: its name while the label budget lasts.
    fn profile_label(&self, profile: Option<&std::sync::Arc<str>>) -> String {
        let Some(profile) = profile else {
            return String::new();
        };
        let mut labels = self
            .profile_labels
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if labels.contains(profile) || labels.len() < self.max_profile_labels {
            labels.insert(profile.clone());
            profile.to_string()
        } else {
            OTHER_PROFILES.to_owned()
        }
    }

    /// Records the App's remaining GitHub API budget.
    pub(crate) fn rate_limit_remaining(&self, remaining: i64) {
        self.rate_limit_remaining.set(remaining);
    }

    pub(crate) fn token_mint(&self, result: Outcome) {
        self.token_mints
            .get_or_create(&OutcomeLabels { result })
            .inc();
    }

    pub(crate) fn upstream_latency(&self, elapsed: Duration) {
        self.upstream_latency.observe(elapsed.as_secs_f64());
    }

    /// Counts an open client connection until the guard is dropped.
    pub(crate) fn connection_opened(&self) -> Open {
        Open::new(&self.open_connections)
    }

    /// Records a policy (re)load.
    pub(crate) fn policy_loaded(&self, result: Outcome, hash: Option<&str>) {
        self.policy_reloads
            .get_or_create(&OutcomeLabels { result })
            .inc();
        if let Some(hash) = hash {
            self.policy_info.clear();
            self.policy_info
                .get_or_create(&PolicyLabels {
                    hash: hash.to_owned(),
                })
                .set(1);
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            self.policy_loaded.set(now.as_secs_f64());
        }
    }

    /// The metrics in Prometheus/OpenMetrics text format.
    pub(crate) fn encode(&self, soonest_token_expiry: Option<SystemTime>) -> String {
        // NaN, not 0, while no token is cached: an idle gitgate has nothing expiring.
        let left = soonest_token_expiry.map_or(f64::NAN, |t| {
            t.duration_since(SystemTime::now())
                .map_or(0.0, |d| d.as_secs_f64())
        });
        self.token_expiry.set(left);
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Keeps a gauge one higher while it lives.
pub(crate) struct Open(Gauge);

impl Open {
    fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}
