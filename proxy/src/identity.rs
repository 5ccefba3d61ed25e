//! Which sandbox a client is: its proxy credentials, client certificate and address,
//! checked against the profiles. The secret is hashed at once and never kept.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gitgate_policy::{Claims, Identity, IdentityError, Policies, ProxyAuth};
use http::{HeaderMap, header};

use crate::audit::{Record, Verdict};
use crate::reply::Failure;
use crate::state::{ConnCtx, State};

/// What a client presented to be identified by: its `Proxy-Authorization` (the secret
/// hashed at once and never kept), beside its connection's certificate and address. An
/// intercepted connection keeps it, so that each request inside is identified again.
#[derive(Clone, Default)]
pub(crate) struct Presented {
    /// `None` without the header; `Some(None)` when it is not `Basic`.
    basic: Option<Option<(String, [u8; 32])>>,
}

impl Presented {
    /// What `headers` present.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Self {
        Self {
            basic: headers
                .get(header::PROXY_AUTHORIZATION)
                .map(|value| decode_basic(value.as_bytes())),
        }
    }
}

/// Identifies the client of `ctx` by what it `presented`, and notes the profile in
/// `record`; on failure, records the denial.
pub(crate) fn identify(
    state: &State,
    ctx: &ConnCtx,
    presented: &Presented,
    record: &mut Record,
) -> Result<Identity, Failure> {
    settle(identify_in(&state.policies(), ctx, presented), record)
}

/// Who `presented` makes the client of `ctx` under `policies`.
fn identify_in(
    policies: &Policies,
    ctx: &ConnCtx,
    presented: &Presented,
) -> Result<Identity, IdentityError> {
    let proxy_auth = presented.basic.as_ref().map(|decoded| match decoded {
        Some((user, secret_sha256)) => ProxyAuth::Basic {
            user,
            secret_sha256: *secret_sha256,
        },
        None => ProxyAuth::Malformed,
    });
    policies.identify(&Claims {
        proxy_auth,
        cert_subjects: &ctx.cert_subjects,
        source: ctx.client.ip(),
    })
}

/// Identifies a connection identified earlier as `profile` again, for a request inside
/// it, by what it presented then: a profile whose credentials changed since (a rotated
/// secret, narrowed `sourceCidrs`, a removed profile) no longer admits the connection,
/// and a profile's edited policy applies at once.
pub(crate) fn again(
    state: &State,
    ctx: &ConnCtx,
    (presented, profile): (&Presented, Option<&std::sync::Arc<str>>),
    record: &mut Record,
) -> Result<Identity, Failure> {
    // The connection's profile, even when it no longer admits it.
    record.profile = profile.cloned();
    // One reading of the policies for both questions.
    let policies = state.policies();
    if let Err(gone) = policies.current(profile.map(|p| &**p)) {
        return settle(Err(gone), record);
    }
    let identity = settle(identify_in(&policies, ctx, presented), record)?;
    if identity.profile.as_deref() == profile.map(|p| &**p) {
        return Ok(identity);
    }
    let reason = format!(
        "this connection was identified as profile {}, which its credentials no longer name (changed since it was opened); open a new connection",
        profile.map_or("(none)", |p| &**p)
    );
    record.profile = profile.cloned();
    record.decide(Verdict::Deny, "identity", &reason);
    Err(Failure::ProxyAuth(reason))
}

fn settle(
    result: Result<Identity, IdentityError>,
    record: &mut Record,
) -> Result<Identity, Failure> {
    match result {
        Ok(identity) => {
            record.profile = identity.profile.clone();
            Ok(identity)
        }
        Err(error) => {
            let reason = error.to_string();
            record.decide(Verdict::Deny, "identity", &reason);
            Err(if error.wants_credentials() {
                Failure::ProxyAuth(reason)
            } else {
                Failure::Policy(reason)
            })
        }
    }
}

/// `Basic base64(user:secret)` → the user and the SHA-256 of the secret.
fn decode_basic(value: &[u8]) -> Option<(String, [u8; 32])> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    let user = std::str::from_utf8(&decoded[..colon]).ok()?.to_owned();
    let digest = ring::digest::digest(&ring::digest::SHA256, &decoded[colon + 1..]);
    let mut secret_sha256 = [0u8; 32];
    secret_sha256.copy_from_slice(digest.as_ref());
    Some((user, secret_sha256))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_basic_and_hashes_the_secret() {
        let (user, digest) = decode_basic(b"Basic YWdlbnQtYTpzM2NyZXQ=").unwrap();
        assert_eq!(user, "agent-a");
        // printf %s s3cret | sha256sum
        let want = ring::digest::digest(&ring::digest::SHA256, b"s3cret");
        assert_eq!(&digest[..], want.as_ref());
        assert!(decode_basic(b"basic  YWdlbnQtYTpzM2NyZXQ= ").is_some());
        for bad in [&b"Bearer abc"[..], b"Basic !!!", b"Basic YWJj", b"Basic"] {
            assert!(decode_basic(bad).is_none(), "{bad:?}");
        }
    }
}
