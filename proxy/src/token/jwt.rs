//! The GitHub App JWT (RS256), as a pure function of the key, the App id and `now`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SecureRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};

use super::Secret;

/// `iat` is set this far in the past, against clock drift.
const BACKDATE_SECS: u64 = 60;
/// `exp` is set this far ahead (GitHub allows at most 600 s).
const LIFETIME_SECS: u64 = 540;

/// A signed App JWT and when it expires (Unix seconds).
#[derive(Debug, Clone)]
pub(crate) struct Jwt {
    pub(crate) token: Secret,
    pub(crate) expires_at: u64,
}

/// Signs an App JWT for `app_id` at Unix time `now`.
pub(crate) fn sign(
    app_id: &str,
    key: &RsaKeyPair,
    now: u64,
    rng: &dyn SecureRandom,
) -> Result<Jwt, ring::error::Unspecified> {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let expires_at = now + LIFETIME_SECS;
    let claims = serde_json::json!({
        "iat": now.saturating_sub(BACKDATE_SECS),
        "exp": expires_at,
        "iss": app_id,
    });
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{claims}");
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        rng,
        signing_input.as_bytes(),
        &mut signature,
    )?;
    let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature));
    Ok(Jwt {
        token: Secret::new(token),
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{KeyPair, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

    #[test]
    fn signs_verifiable_claims_with_backdated_iat() {
        let pem = include_str!("../../tests/data/app-key-pkcs8.pem");
        let key = super::super::key::AppKey::from_pem(pem, std::path::Path::new("k")).unwrap();
        let jwt = sign("123456", key.pair(), 1_800_000_000, &SystemRandom::new()).unwrap();
        let parts: Vec<&str> = jwt.token.expose().split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["iss"], "123456");
        assert_eq!(claims["iat"], 1_800_000_000u64 - 60);
        assert_eq!(claims["exp"], 1_800_000_000u64 + 540);
        let public = UnparsedPublicKey::new(
            &RSA_PKCS1_2048_8192_SHA256,
            key.pair().public_key().as_ref(),
        );
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        public
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .unwrap();
    }
}
