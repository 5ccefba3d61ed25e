//! What signs the App's JWTs (RS256): a key in memory, an external program, or AWS KMS.
//!
//! Only the key file variant ever holds the private key; the others send the JWT's
//! signing input out and get an RSASSA-PKCS1-v1_5 SHA-256 signature back.

use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use ring::rand::SystemRandom;
use ring::signature::RSA_PKCS1_SHA256;
use tokio::io::AsyncWriteExt;

use super::AppKey;

/// RSA signatures are as long as the modulus: 1024 to 8192 bits.
const SIGNATURE_LEN: std::ops::RangeInclusive<usize> = 128..=1024;
/// At most this much of a failing signer's stderr is quoted.
const STDERR_QUOTE: usize = 400;

/// Signs App JWTs.
pub enum Signer {
    /// `github.app.privateKeyFile`: the key is in memory.
    Key(AppKey),
    /// `github.app.signer.command`: an external program.
    Command(CommandSigner),
    /// `github.app.signer.awsKms`: the KMS `Sign` API.
    #[cfg(feature = "aws-kms")]
    AwsKms(super::kms::KmsSigner),
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Signer {
    /// What tells this signer from another (a key's fingerprint, a command): to see
    /// that an edit changed it.
    pub fn identity(&self) -> String {
        match self {
            Signer::Key(key) => format!("private key {}", key.fingerprint()),
            other => other.describe(),
        }
    }

    /// Names the signer for logs and `gitgate doctor` (never key material).
    pub fn describe(&self) -> String {
        match self {
            Signer::Key(_) => "private key file".to_owned(),
            Signer::Command(c) => format!("command {:?}", c.argv[0]),
            #[cfg(feature = "aws-kms")]
            Signer::AwsKms(k) => k.describe(),
        }
    }

    /// Signs `input` with RSASSA-PKCS1-v1_5 SHA-256; the error says what failed.
    pub(crate) async fn sign(&self, input: &[u8]) -> Result<Vec<u8>, String> {
        match self {
            Signer::Key(key) => {
                let pair = key.pair();
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(
                    &RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    input,
                    &mut signature,
                )
                .map_err(|_| "the RSA key failed to sign".to_owned())?;
                Ok(signature)
            }
            Signer::Command(command) => command.sign(input).await,
            #[cfg(feature = "aws-kms")]
            Signer::AwsKms(kms) => kms.sign(input).await,
        }
    }
}

/// An external program: the signing input on stdin, the signature (raw, or base64 in
/// either alphabet) on stdout, exit status 0.
#[derive(Debug, Clone)]
pub struct CommandSigner {
    argv: Vec<String>,
    timeout: Duration,
}

impl CommandSigner {
    /// `argv[0]` is the program; it must not be empty.
    pub fn new(argv: Vec<String>, timeout: Duration) -> Option<Self> {
        (!argv.is_empty() && !argv[0].is_empty()).then_some(Self { argv, timeout })
    }

    async fn sign(&self, input: &[u8]) -> Result<Vec<u8>, String> {
        let program = &self.argv[0];
        let mut child = tokio::process::Command::new(program)
            .args(&self.argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run signer {program:?}: {e}"))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let run = async {
            // A signer may exit without reading its input; its exit status says why.
            let _ = stdin.write_all(input).await;
            drop(stdin);
            child.wait_with_output().await
        };
        let output = match tokio::time::timeout(self.timeout, run).await {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => return Err(format!("signer {program:?} failed: {e}")),
            Err(_) => {
                return Err(format!(
                    "signer {program:?} did not answer within {} s (github.app.signer.timeout)",
                    self.timeout.as_secs()
                ));
            }
        };
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let stderr: String = stderr.trim().chars().take(STDERR_QUOTE).collect();
            return Err(format!(
                "signer {program:?} exited with {}: {stderr}",
                output.status
            ));
        }
        decode_signature(&output.stdout).ok_or_else(|| {
            format!(
                "signer {program:?} printed {} bytes, not an RSA signature (raw, or base64)",
                output.stdout.len()
            )
        })
    }
}

/// A signature printed raw or as base64 (standard or URL-safe, padded or not, wrapped
/// or not).
fn decode_signature(stdout: &[u8]) -> Option<Vec<u8>> {
    let text: Vec<u8> = stdout
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let base64 = !text.is_empty()
        && text
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"+/-_=".contains(b));
    let bytes = if base64 {
        let unpadded: Vec<u8> = text.into_iter().filter(|&b| b != b'=').collect();
        let padded = |alphabet: &base64::engine::GeneralPurpose| {
            let mut s = unpadded.clone();
            s.resize(unpadded.len().div_ceil(4) * 4, b'=');
            alphabet.decode(s).ok()
        };
        padded(&STANDARD).or_else(|| padded(&URL_SAFE))?
    } else {
        stdout.to_vec()
    };
    SIGNATURE_LEN.contains(&bytes.len()).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_read_raw_or_in_either_base64_alphabet() {
        let raw: Vec<u8> = (0..=255u8).collect();
        assert_eq!(decode_signature(&raw).unwrap(), raw);
        let standard = STANDARD.encode(&raw);
        assert!(standard.contains('+') && standard.contains('/'));
        assert_eq!(
            decode_signature(format!("{standard}\n").as_bytes()).unwrap(),
            raw
        );
        let wrapped = format!("{}\n{}\n", &standard[..76], &standard[76..]);
        assert_eq!(decode_signature(wrapped.as_bytes()).unwrap(), raw);
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw);
        assert_eq!(decode_signature(url.as_bytes()).unwrap(), raw);
        assert_eq!(decode_signature(b""), None);
        assert_eq!(decode_signature(b"c2lnbmF0dXJl"), None, "too short");
        assert_eq!(decode_signature(b"not base64 !"), None);
    }

    fn shell(script: &str) -> CommandSigner {
        CommandSigner::new(
            vec!["sh".into(), "-c".into(), script.into()],
            Duration::from_secs(2),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_command_gets_the_input_and_its_failures_are_explained() {
        // Keeps its input and prints a 256-byte raw "signature".
        let dir = std::env::temp_dir().join(format!("gitgate-signer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let seen = dir.join("input");
        let ok = shell(&format!("cat > {}; head -c 256 /dev/zero", seen.display()));
        assert_eq!(ok.sign(b"header.claims").await.unwrap(), vec![0; 256]);
        assert_eq!(std::fs::read(&seen).unwrap(), b"header.claims");
        std::fs::remove_dir_all(&dir).unwrap();
        let failing = shell("echo 'HSM offline' >&2; exit 3");
        let error = failing.sign(b"x").await.unwrap_err();
        assert!(
            error.contains("exit status: 3") && error.contains("HSM offline"),
            "{error}"
        );
        let slow = CommandSigner::new(vec!["sleep".into(), "5".into()], Duration::from_millis(200))
            .unwrap();
        let error = slow.sign(b"x").await.unwrap_err();
        assert!(error.contains("did not answer within"), "{error}");
        let missing = shell("exit 0");
        assert!(
            missing
                .sign(b"x")
                .await
                .unwrap_err()
                .contains("printed 0 bytes")
        );
        let error = CommandSigner::new(vec!["/nonexistent/signer".into()], Duration::from_secs(1))
            .unwrap()
            .sign(b"x")
            .await
            .unwrap_err();
        assert!(error.contains("cannot run signer"), "{error}");
    }
}
