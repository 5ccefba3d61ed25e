//! A request record serialised straight to its JSON line: no intermediate `Value` tree,
//! keys written in the sorted order the log has always had (tooling diffs these lines).

use std::fmt::Display;

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::{RefRecord, field};

/// The fields of one line, borrowed from the record.
pub(super) struct Line<'a> {
    pub(super) record: &'a super::Record,
    pub(super) time: &'a str,
    pub(super) duration_ms: f64,
}

impl Serialize for Line<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.record;
        // Keys in byte order, as a sorted map would give them.
        let mut m = s.serialize_map(None)?;
        m.serialize_entry(field::BYTES_IN, &r.bytes_in)?;
        m.serialize_entry(field::BYTES_OUT, &r.bytes_out)?;
        m.serialize_entry(field::CLIENT, &Shown(&r.client))?;
        m.serialize_entry(field::CONNECTION, &r.connection)?;
        let verdict = r.verdict.unwrap_or(super::Verdict::Deny);
        m.serialize_entry(field::DECISION, verdict.as_str())?;
        m.serialize_entry(field::DURATION_MS, &self.duration_ms)?;
        if let Some(error) = &r.error {
            m.serialize_entry(field::ERROR, error)?;
        }
        if let Some(user) = &r.github_user {
            m.serialize_entry(field::GITHUB_USER, user.as_ref())?;
        }
        m.serialize_entry(field::HOST, &r.host)?;
        m.serialize_entry(field::INSTALLATION, &r.installation)?;
        m.serialize_entry(field::KIND, "decision")?;
        m.serialize_entry(field::METHOD, &r.method)?;
        m.serialize_entry(field::PATH, &r.path)?;
        if let Some(profile) = &r.profile {
            m.serialize_entry(field::PROFILE, profile.as_ref())?;
        }
        m.serialize_entry(field::REASON, &r.reason)?;
        if !r.refs.is_empty() {
            m.serialize_entry(field::REFS, &Refs(&r.refs))?;
        }
        m.serialize_entry(field::REPO, &r.repo)?;
        m.serialize_entry(field::RULE, &r.rule)?;
        m.serialize_entry(field::SERVICE, r.service.as_str())?;
        m.serialize_entry(field::STATUS, &r.status)?;
        m.serialize_entry(field::TIME, self.time)?;
        if let Some(scope) = &r.token_scope {
            m.serialize_entry(field::TOKEN_SCOPE, &Scope(scope))?;
        }
        m.serialize_entry(field::UPSTREAM_STATUS, &r.upstream_status)?;
        m.end()
    }
}

/// A value written as the string its `Display` gives.
struct Shown<'a, T>(&'a T);

impl<T: Display> Serialize for Shown<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self.0)
    }
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
    fn reference(r: &Record, time: &str, duration_ms: f64) -> String {
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

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            ".{0,12}",
            "[a-z/._-]{0,12}",
            Just("\"\\\n\u{7f}é".to_owned())
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
        ) {
            let time = "2026-12-06T19:38:54.123456789Z";
            let line = serde_json::to_string(&Line { record: &r, time, duration_ms }).unwrap();
            prop_assert_eq!(line, reference(&r, time, duration_ms));
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
