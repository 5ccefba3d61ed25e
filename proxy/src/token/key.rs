//! The GitHub App private key.

use std::path::{Path, PathBuf};

use ring::signature::RsaKeyPair;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

/// Why the App key was refused.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct KeyError {
    path: PathBuf,
    reason: String,
}

/// The App's RSA private key (PKCS#1 or PKCS#8 PEM).
pub struct AppKey(RsaKeyPair);

impl std::fmt::Debug for AppKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppKey([redacted])")
    }
}

impl AppKey {
    /// Reads the key; refuses a file that group or others can read.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let err = |reason: String| KeyError {
            path: path.to_owned(),
            reason,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
            if meta.is_dir() {
                return Err(err(
                    "is a directory; give the App's private key file (the .pem GitHub let you download)".into(),
                ));
            }
            let mode = meta.permissions().mode() & 0o777;
            let looks_like_a_key =
                std::fs::read_to_string(path).is_ok_and(|pem| pem.contains("PRIVATE KEY-----"));
            if mode & 0o077 != 0 && looks_like_a_key {
                return Err(err(format!(
                    "readable by group or others (mode {mode:04o}); run `chmod 600 {}`",
                    path.display()
                )));
            }
        }
        let pem = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Self::from_pem(&pem, path)
    }

    /// Parses PEM text; `path` only names the source in errors.
    pub fn from_pem(pem: &str, path: &Path) -> Result<Self, KeyError> {
        let err = |reason: String| KeyError {
            path: path.to_owned(),
            reason,
        };
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| err(format!("no PEM private key found ({e})")))?;
        let pair = match &der {
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            _ => return Err(err("not an RSA key (GitHub App keys are RSA)".into())),
        }
        .map_err(|e| err(format!("not a usable RSA private key: {e}")))?;
        Ok(Self(pair))
    }

    /// A fingerprint of its public key: tells keys apart without showing either.
    pub fn fingerprint(&self) -> String {
        use ring::signature::KeyPair;
        crate::fingerprint(self.0.public_key().as_ref())
    }

    pub(crate) fn pair(&self) -> &RsaKeyPair {
        &self.0
    }
}
