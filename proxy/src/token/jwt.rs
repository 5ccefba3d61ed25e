//! The GitHub App JWT (RS256): its signing input, a pure function of the App id and
//! `now`, and the token assembled around a signature from a [`super::Signer`].

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

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

/// The JWT's signing input (`header.claims`) for `app_id` at Unix time `now`, and
/// when it will expire.
pub(crate) fn signing_input(app_id: &str, now: u64) -> (String, u64) {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let expires_at = now + LIFETIME_SECS;
    let claims = serde_json::json!({
        "iat": now.saturating_sub(BACKDATE_SECS),
        "exp": expires_at,
        "iss": app_id,
    });
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    (format!("{header}.{claims}"), expires_at)
}

/// The JWT made of its signing input and the RS256 signature over it.
pub(crate) fn assemble(signing_input: &str, signature: &[u8], expires_at: u64) -> Jwt {
    let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature));
    Jwt {
        token: Secret::new(token),
        expires_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{KeyPair, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

    use crate::token::Signer;

    #[tokio::test]
    async fn signs_verifiable_claims_with_backdated_iat() {
        let pem = include_str!("../../tests/data/app-key-pkcs8.pem");
        let key = super::super::key::AppKey::from_pem(pem, std::path::Path::new("k")).unwrap();
        let public = key.pair().public_key().as_ref().to_vec();
        let (input, expires_at) = signing_input("123456", 1_800_000_000);
        let signature = Signer::Key(key).sign(input.as_bytes()).await.unwrap();
        let jwt = assemble(&input, &signature, expires_at);
        let parts: Vec<&str> = jwt.token.expose().split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["iss"], "123456");
        assert_eq!(claims["iat"], 1_800_000_000u64 - 60);
        assert_eq!(claims["exp"], 1_800_000_000u64 + 540);
        let public = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public);
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        public
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .unwrap();
    }
}
