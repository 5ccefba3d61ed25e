//! GitHub App JWT verification, as a pure function of the token, the key and `now`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use serde_json::Value;

/// Longest JWT accepted (GitHub's are a few hundred bytes).
const MAX_JWT_LEN: usize = 16 * 1024;
/// Clock drift GitHub tolerates on `iat`.
const DRIFT_SECS: i64 = 60;
/// Longest lifetime GitHub accepts (`exp - iat`), drift included.
const MAX_LIFETIME_SECS: i64 = 600 + DRIFT_SECS;

pub(crate) const NOT_DECODED: &str = "A JSON web token could not be decoded";
pub(crate) const NO_INTEGRATION: &str = "Integration not found";
pub(crate) const BAD_ISS: &str = "'Issuer' claim ('iss') must be a String or an Integer";
pub(crate) const BAD_EXP: &str = "'Expiration time' claim ('exp') must be a numeric value \
     representing the future time at which the assertion expires";
pub(crate) const BAD_IAT: &str = "'Issued at' claim ('iat') must be an Integer representing \
     the time that the assertion was issued";
pub(crate) const EXP_TOO_FAR: &str = "'Expiration time' claim ('exp') is too far in the future";

/// Verifies an App JWT the way api.github.com does; the error is GitHub's 401 message.
///
/// `public_key` is a DER `RSAPublicKey`; `now` is Unix seconds.
pub(crate) fn verify(
    jwt: &str,
    app_id: &str,
    public_key: &[u8],
    now: i64,
) -> Result<(), &'static str> {
    if jwt.len() > MAX_JWT_LEN {
        return Err(NOT_DECODED);
    }
    let mut parts = jwt.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(NOT_DECODED);
    };
    let header = decode_json(header)?;
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(NOT_DECODED);
    }
    let claims = decode_json(claims)?;

    let iss = match claims.get("iss") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) if n.is_u64() => n.to_string(),
        _ => return Err(BAD_ISS),
    };
    if iss != app_id {
        return Err(NO_INTEGRATION);
    }

    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| NOT_DECODED)?;
    let signed_len = jwt.rfind('.').ok_or(NOT_DECODED)?;
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_key)
        .verify(&jwt.as_bytes()[..signed_len], &signature)
        .map_err(|_| NOT_DECODED)?;

    let iat = claims.get("iat").and_then(Value::as_i64).ok_or(BAD_IAT)?;
    let exp = match claims.get("exp") {
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f.floor() as i64))
            .ok_or(BAD_EXP)?,
        _ => return Err(BAD_EXP),
    };
    if iat > now + DRIFT_SECS {
        return Err(BAD_IAT);
    }
    if exp <= now {
        return Err(BAD_EXP);
    }
    if exp - iat > MAX_LIFETIME_SECS || exp > now + MAX_LIFETIME_SECS {
        return Err(EXP_TOO_FAR);
    }
    Ok(())
}

fn decode_json(part: &str) -> Result<Value, &'static str> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| NOT_DECODED)?;
    match serde_json::from_slice(&bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(NOT_DECODED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair};

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    fn sign(key: &RsaKeyPair, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64(header), b64(claims));
        let mut sig = vec![0; key.public().modulus_len()];
        key.sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            input.as_bytes(),
            &mut sig,
        )
        .expect("sign");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// A fixed 2048-bit test key is too long to inline; generate one with openssl.
    fn key() -> RsaKeyPair {
        let out = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .args(["-outform", "DER"])
            .output()
            .expect("openssl");
        assert!(out.status.success());
        // `genpkey -outform DER` writes the traditional (PKCS#1) form.
        RsaKeyPair::from_der(&out.stdout).expect("pkcs1 der")
    }

    #[test]
    fn claims_table() {
        let key = key();
        let public = key.public_key().as_ref().to_vec();
        let now = 1_700_000_000;
        let rs256 = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        let cases: &[(Value, Result<(), &str>)] = &[
            (
                serde_json::json!({"iss": "7", "iat": now - 60, "exp": now + 540}),
                Ok(()),
            ),
            (
                serde_json::json!({"iss": 7, "iat": now - 60, "exp": now + 600}),
                Ok(()),
            ),
            (
                serde_json::json!({"iss": "8", "iat": now - 60, "exp": now + 540}),
                Err(NO_INTEGRATION),
            ),
            (
                serde_json::json!({"iat": now - 60, "exp": now + 540}),
                Err(BAD_ISS),
            ),
            (
                serde_json::json!({"iss": "7", "iat": now - 60, "exp": now + 700}),
                Err(EXP_TOO_FAR),
            ),
            (
                serde_json::json!({"iss": "7", "iat": now - 700, "exp": now - 1}),
                Err(BAD_EXP),
            ),
            (
                serde_json::json!({"iss": "7", "iat": now + 120, "exp": now + 500}),
                Err(BAD_IAT),
            ),
            (
                serde_json::json!({"iss": "7", "iat": "x", "exp": now + 500}),
                Err(BAD_IAT),
            ),
            (
                serde_json::json!({"iss": "7", "iat": now, "exp": "soon"}),
                Err(BAD_EXP),
            ),
        ];
        for (claims, want) in cases {
            let jwt = sign(&key, &rs256, claims);
            assert_eq!(verify(&jwt, "7", &public, now), *want, "{claims}");
        }
        let good = serde_json::json!({"iss": "7", "iat": now, "exp": now + 500});
        let none = serde_json::json!({"alg": "none"});
        assert_eq!(
            verify(&sign(&key, &none, &good), "7", &public, now),
            Err(NOT_DECODED)
        );
        let mut jwt = sign(&key, &rs256, &good);
        jwt.push('A');
        assert_eq!(verify(&jwt, "7", &public, now), Err(NOT_DECODED));
        assert_eq!(verify("a.b", "7", &public, now), Err(NOT_DECODED));
        assert_eq!(verify("", "7", &public, now), Err(NOT_DECODED));
    }
}
