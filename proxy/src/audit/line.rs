//! A request record written straight to its JSON line: no intermediate `Value` tree, no
//! serializer for the flat fields (strings that need no escaping are copied whole),
//! keys in the sorted order the log has always had (tooling diffs these lines).

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::{RefRecord, field};

/// The fields of one line, borrowed from the record.
pub(super) struct Line<'a> {
    pub(super) record: &'a super::Record,
    pub(super) time: SystemTime,
    pub(super) duration_ms: f64,
}

impl Line<'_> {
    /// Appends the line's JSON object (without a newline) to `out`.
    pub(super) fn write(&self, out: &mut Vec<u8>) {
        let r = self.record;
        // Keys in byte order, as a sorted map would give them.
        let mut o = Object::start(out);
        o.number(field::BYTES_IN, r.bytes_in);
        o.number(field::BYTES_OUT, r.bytes_out);
        o.key(field::CLIENT);
        address(o.out, r.client);
        o.number(field::CONNECTION, r.connection);
        let verdict = r.verdict.unwrap_or(super::Verdict::Deny);
        o.string(field::DECISION, verdict.as_str());
        o.value(field::DURATION_MS, &self.duration_ms);
        if let Some(error) = &r.error {
            o.string(field::ERROR, error);
        }
        if let Some(user) = &r.github_user {
            o.string(field::GITHUB_USER, user);
        }
        o.string(field::HOST, &r.host);
        o.value(field::INSTALLATION, &r.installation);
        o.string(field::KIND, "decision");
        o.string(field::METHOD, &r.method);
        o.string(field::PATH, &r.path);
        if let Some(profile) = &r.profile {
            o.string(field::PROFILE, profile);
        }
        o.string(field::REASON, &r.reason);
        if !r.refs.is_empty() {
            o.value(field::REFS, &Refs(&r.refs));
        }
        match &r.repo {
            Some(repo) => o.string(field::REPO, repo),
            None => o.value(field::REPO, &()),
        }
        o.string(field::RULE, &r.rule);
        o.string(field::SERVICE, r.service.as_str());
        o.number(field::STATUS, u64::from(r.status));
        o.key(field::TIME);
        o.out.push(b'"');
        write_rfc3339(o.out, self.time);
        o.out.push(b'"');
        if let Some(scope) = &r.token_scope {
            o.value(field::TOKEN_SCOPE, &Scope(scope));
        }
        o.value(field::UPSTREAM_STATUS, &r.upstream_status);
        o.out.push(b'}');
    }
}

/// A JSON object being written, one `"key":value` at a time.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Object<'a> {
    fn start(out: &'a mut Vec<u8>) -> Self {
        // A request's line is about 400 bytes: grown once, not field by field.
        out.reserve(512);
        out.push(b'{');
        Self { out, first: true }
    }

    /// `key` is one of the log's field names: nothing in it to escape.
    fn key(&mut self, key: &str) {
        let comma = !std::mem::take(&mut self.first);
        self.out
            .extend_from_slice(if comma { b",\"" } else { b"\"" });
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn string(&mut self, key: &str, value: &str) {
        self.key(key);
        string(self.out, value);
    }

    fn number(&mut self, key: &str, value: u64) {
        self.key(key);
        decimal(self.out, value);
    }

    /// A value serde writes (nested objects, floats, options).
    fn value(&mut self, key: &str, value: &impl Serialize) {
        self.key(key);
        // Into a Vec, of types that serialise infallibly: cannot fail.
        let _ = serde_json::to_writer(&mut *self.out, value);
    }
}

/// A JSON string: copied whole when nothing in it needs escaping (the usual case),
/// escaped by serde_json otherwise.
fn string(out: &mut Vec<u8>, s: &str) {
    if needs_escape(s.as_bytes()) {
        let _ = serde_json::to_writer(&mut *out, s);
    } else {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// Whether JSON needs any of `bytes` escaped: a control character, `"` or `\\`. Eight
/// bytes at a time (serde_json's escaper goes byte by byte).
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // Whether any byte of `word` is below `n` (exact for n <= 0x80).
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGH != 0;
    let zero = |word: u64| below(word, 1);
    let mut words = bytes.chunks_exact(8);
    let hit = words.by_ref().any(|chunk| {
        let word = u64::from_ne_bytes(chunk.try_into().unwrap_or_default());
        below(word, 0x20)
            || zero(word ^ (ONES * u64::from(b'"')))
            || zero(word ^ (ONES * u64::from(b'\\')))
    });
    hit || words
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// `n` in decimal.
fn decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// A socket address as a JSON string, as its `Display` writes it.
fn address(out: &mut Vec<u8>, addr: SocketAddr) {
    let SocketAddr::V4(v4) = addr else {
        return string(out, &addr.to_string());
    };
    out.push(b'"');
    for (i, octet) in v4.ip().octets().into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        decimal(out, u64::from(octet));
    }
    out.push(b':');
    decimal(out, u64::from(v4.port()));
    out.push(b'"');
}

/// `t` in RFC 3339, UTC, with the fraction of a second as short as it can be (as the
/// `time` crate writes it; years outside 1970–9999 are left to it).
pub(super) fn write_rfc3339(out: &mut Vec<u8>, t: SystemTime) {
    let Some((secs, nanos)) = t
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| (d.as_secs(), d.subsec_nanos()))
        .filter(|(secs, _)| *secs < 253_402_300_800)
    else {
        let t = time::OffsetDateTime::from(t);
        let text = t
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| t.unix_timestamp().to_string());
        return out.extend_from_slice(text.as_bytes());
    };
    let (year, month, day) = civil(secs / 86_400);
    let second_of_day = secs % 86_400;
    let two = |out: &mut Vec<u8>, n: u64| {
        out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8])
    };
    two(out, year / 100);
    two(out, year % 100);
    out.push(b'-');
    two(out, month);
    out.push(b'-');
    two(out, day);
    out.push(b'T');
    two(out, second_of_day / 3600);
    out.push(b':');
    two(out, second_of_day / 60 % 60);
    out.push(b':');
    two(out, second_of_day % 60);
    if nanos != 0 {
        out.push(b'.');
        let mut digits = [0u8; 9];
        let mut n = nanos;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
        let len = 9 - trailing_decimal_zeros(nanos);
        out.extend_from_slice(&digits[..len]);
    }
    out.push(b'Z');
}

/// How many decimal zeros end `n` (not 0).
fn trailing_decimal_zeros(mut n: u32) -> usize {
    let mut zeros = 0;
    while n.is_multiple_of(10) {
        n /= 10;
        zeros += 1;
    }
    zeros
}

/// The calendar date of a day counted from 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

struct Refs<'a>(&'a [RefRecord]);

impl Serialize for Refs<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(RefLine))
    }
}

struct RefLine<'a>(&'a RefRecord);

impl Serialize for RefLine<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(Some(6))?;
        m.serialize_entry(field::DECISION, r.verdict.as_str())?;
        m.serialize_entry(field::NEW, &r.new)?;
        m.serialize_entry(field::OLD, &r.old)?;
        m.serialize_entry(field::REASON, &r.reason)?;
        m.serialize_entry(field::REF, &r.name)?;
        m.serialize_entry(field::RULE, &r.rule)?;
        m.end()
    }
}

struct Scope<'a>(&'a gitgate_policy::TokenScope);

impl Serialize for Scope<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("permissions", &Permissions(&self.0.permissions))?;
        m.serialize_entry("repositories", &self.0.repositories)?;
        m.end()
    }
}

struct Permissions<'a>(&'a [(String, gitgate_policy::Access)]);

impl Serialize for Permissions<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(name, access)| (name, access.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{Record, Service, Verdict};
    use super::*;
    use gitgate_policy::{Access, TokenScope};
    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    /// The line as a `serde_json::Map` (a sorted map) spells it: the format's definition.
    fn reference(r: &Record, time: SystemTime, duration_ms: f64) -> String {
        let time = time::OffsetDateTime::from(time)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let mut m = Map::new();
        let mut put = |k: &str, v: Value| {
            m.insert(k.to_owned(), v);
        };
        put(field::TIME, time.into());
        put(field::KIND, "decision".into());
        put(field::CONNECTION, r.connection.into());
        put(field::CLIENT, r.client.to_string().into());
        if let Some(profile) = &r.profile {
            put(field::PROFILE, profile.as_ref().into());
        }
        put(field::HOST, r.host.clone().into());
        put(field::METHOD, r.method.clone().into());
        put(field::PATH, r.path.clone().into());
        put(field::REPO, r.repo.clone().into());
        put(field::SERVICE, r.service.as_str().into());
        if !r.refs.is_empty() {
            let refs = r.refs.iter().map(|x| {
                json!({
                    field::REF: x.name, field::OLD: x.old, field::NEW: x.new,
                    field::DECISION: x.verdict.as_str(), field::RULE: x.rule, field::REASON: x.reason,
                })
            });
            put(field::REFS, Value::Array(refs.collect()));
        }
        let verdict = r.verdict.unwrap_or(Verdict::Deny);
        put(field::DECISION, verdict.as_str().into());
        put(field::RULE, r.rule.clone().into());
        put(field::REASON, r.reason.clone().into());
        put(field::STATUS, r.status.into());
        put(field::UPSTREAM_STATUS, r.upstream_status.into());
        put(field::BYTES_IN, r.bytes_in.into());
        put(field::BYTES_OUT, r.bytes_out.into());
        put(field::DURATION_MS, duration_ms.into());
        put(field::INSTALLATION, r.installation.into());
        if let Some(scope) = &r.token_scope {
            let permissions: Map<String, Value> = scope
                .permissions
                .iter()
                .map(|(p, a)| (p.clone(), a.as_str().into()))
                .collect();
            put(
                field::TOKEN_SCOPE,
                json!({"repositories": scope.repositories, "permissions": permissions}),
            );
        }
        if let Some(user) = &r.github_user {
            put(field::GITHUB_USER, user.as_ref().into());
        }
        if let Some(error) = &r.error {
            put(field::ERROR, error.clone().into());
        }
        Value::Object(m).to_string()
    }

    /// Instants from 1970 to 9999, with whole seconds and round fractions as likely as
    /// any other.
    fn time() -> impl Strategy<Value = SystemTime> {
        let nanos = prop_oneof![
            Just(0u32),
            Just(100_000_000),
            Just(120_000_000),
            Just(123_456_000),
            0u32..1_000_000_000
        ];
        (0u64..253_402_300_800, nanos)
            .prop_map(|(secs, nanos)| UNIX_EPOCH + Duration::new(secs, nanos))
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            ".{0,12}",
            "[a-z/._-]{0,12}",
            Just("\"\\\n\u{7f}é".to_owned()),
            Just("\u{1f}\u{0}\t/\"x".to_owned())
        ]
    }

    fn verdict() -> impl Strategy<Value = Verdict> {
        prop_oneof![
            Just(Verdict::Allow),
            Just(Verdict::Deny),
            Just(Verdict::Report)
        ]
    }

    fn ref_record() -> impl Strategy<Value = RefRecord> {
        (text(), text(), text(), verdict(), text(), text()).prop_map(
            |(name, old, new, verdict, rule, reason)| RefRecord {
                name,
                old,
                new,
                verdict,
                rule,
                reason,
            },
        )
    }

    fn scope() -> impl Strategy<Value = TokenScope> {
        let access = prop_oneof![Just(Access::Read), Just(Access::Write)];
        (
            proptest::option::of(proptest::collection::vec("[a-z]{1,6}", 1..3)),
            proptest::collection::btree_map("[a-z_]{1,8}", access, 0..4),
        )
            .prop_map(|(repositories, permissions)| TokenScope {
                repositories,
                permissions: permissions.into_iter().collect(),
            })
    }

    prop_compose! {
        fn record()(
            connection in any::<u64>(),
            client in any::<std::net::SocketAddr>(),
            (host, method, path, rule, reason) in (text(), text(), text(), text(), text()),
            repo in proptest::option::of(text()),
            verdict in proptest::option::of(verdict()),
            refs in proptest::collection::vec(ref_record(), 0..3),
            (status, upstream_status) in (any::<u16>(), any::<Option<u16>>()),
            (bytes_in, bytes_out, installation) in (any::<u64>(), any::<u64>(), any::<Option<u64>>()),
            token_scope in proptest::option::of(scope()),
            github_user in proptest::option::of(text()),
            profile in proptest::option::of(text()),
            error in proptest::option::of(text()),
        ) -> Record {
            let mut r = Record::new(connection, client, &host, &method, &path, Service::Api);
            r.repo = repo;
            r.verdict = verdict;
            r.rule = rule;
            r.reason = reason;
            r.refs = refs;
            r.status = status;
            r.upstream_status = upstream_status;
            r.bytes_in = bytes_in;
            r.bytes_out = bytes_out;
            r.installation = installation;
            r.token_scope = token_scope;
            r.github_user = github_user.map(Into::into);
            r.profile = profile.map(Into::into);
            r.error = error;
            r
        }
    }

    proptest! {
        #[test]
        fn lines_are_byte_for_byte_what_a_sorted_map_writes(
            r in record(),
            duration_ms in prop_oneof![Just(0.0), Just(1.5), 0.0..1e7f64],
            time in time(),
        ) {
            let mut line = Vec::new();
            Line { record: &r, time, duration_ms }.write(&mut line);
            prop_assert_eq!(String::from_utf8(line).unwrap(), reference(&r, time, duration_ms));
        }

        /// The word-at-a-time check agrees with the plain definition, wherever the
        /// character that needs escaping falls (or when there is none).
        #[test]
        fn escaping_is_found_wherever_it_is(
            clean in "[a-zA-Z0-9/._ \u{7f}é~-]{0,40}",
            special in proptest::option::of(prop_oneof![
                Just(0x1f),
                Just(0),
                0u8..0x20,
                Just(b'"'),
                Just(b'\\')
            ]),
            at in any::<prop::sample::Index>(),
        ) {
            let mut s = clean.into_bytes();
            if let Some(b) = special {
                let at = at.index(s.len() + 1);
                // At a character boundary: `é` is two bytes.
                let at = (at..=s.len()).find(|&i| i == s.len() || s[i] < 0x80 || s[i] >= 0xC0).unwrap();
                s.insert(at, b);
            }
            prop_assert_eq!(needs_escape(&s), special.is_some());
        }

        /// The time as the `time` crate writes RFC 3339, for any instant (and any
        /// fraction: trailing zeros trimmed, none for a whole second).
        #[test]
        fn times_are_written_as_the_time_crate_writes_them(time in time()) {
            let mut ours = Vec::new();
            write_rfc3339(&mut ours, time);
            let theirs = time::OffsetDateTime::from(time)
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap();
            prop_assert_eq!(String::from_utf8(ours).unwrap(), theirs);
        }
    }

    #[test]
    fn a_written_line_is_one_line_with_the_duration_and_time() {
        let r = Record::new(
            1,
            "127.0.0.1:9".parse().unwrap(),
            "h",
            "GET",
            "/",
            Service::Other,
        );
        let mut line = b"before\n".to_vec();
        r.write_line(Duration::from_micros(1_234_567), &mut line);
        let line = String::from_utf8(line).unwrap();
        let line = line.strip_prefix("before\n").unwrap();
        assert!(line.ends_with("}\n") && line.matches('\n').count() == 1);
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v[field::DURATION_MS].as_f64(), Some(1234.567));
        assert!(v[field::TIME].as_str().unwrap().ends_with('Z'));
    }
}
