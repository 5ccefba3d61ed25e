//! Checks the SSH signature (`gpgsig`, SSHSIG format, namespace `git`) of a pushed commit
//! against `requireSignedCommits`, as `git verify-commit` does with
//! `gpg.ssh.allowedSignersFile`. Ed25519 keys.

use gitgate_policy::{SignatureCheck, SignerKey, Signers};
use ssh_key::{HashAlg, PublicKey, SshSig};

use crate::pack::SignedCommit;

/// The namespace git signs commits in.
const NAMESPACE: &str = "git";

/// The allowed keys, parsed once per push.
pub(crate) struct Verifier<'a> {
    keys: Vec<(PublicKey, &'a SignerKey)>,
}

impl<'a> Verifier<'a> {
    /// The allowed keys that parse (the others can never verify anything).
    pub(crate) fn new(signers: &'a Signers) -> Self {
        let keys = signers
            .keys()
            .iter()
            .filter_map(|key| {
                let text = format!("{} {}", key.algorithm, key.blob);
                PublicKey::from_openssh(&text)
                    .ok()
                    .map(|parsed| (parsed, key))
            })
            .collect();
        Self { keys }
    }

    /// How `commit`'s signature checks out.
    pub(crate) fn check(&self, commit: &SignedCommit) -> SignatureCheck {
        let Some(armored) = &commit.signature else {
            return SignatureCheck::Unsigned;
        };
        if commit.extra_signature {
            return SignatureCheck::Invalid("more than one signature header".into());
        }
        if !armored.starts_with(b"-----BEGIN SSH SIGNATURE-----") {
            return SignatureCheck::NotSsh;
        }
        let signature = match SshSig::from_pem(armored) {
            Ok(signature) => signature,
            Err(error) => {
                return SignatureCheck::Invalid(format!("unreadable SSH signature: {error}"));
            }
        };
        let Some((key, allowed)) = self
            .keys
            .iter()
            .find(|(key, _)| key.key_data() == signature.public_key())
        else {
            let fingerprint = signature.public_key().fingerprint(HashAlg::Sha256);
            return SignatureCheck::UnknownKey(fingerprint.to_string());
        };
        if signature.namespace() != NAMESPACE {
            return SignatureCheck::Invalid(format!(
                "signed for namespace {:?}, not \"git\"",
                signature.namespace()
            ));
        }
        match key.verify(NAMESPACE, &commit.payload, &signature) {
            Ok(()) => SignatureCheck::Verified((*allowed).clone()),
            Err(error) => SignatureCheck::Invalid(error.to_string()),
        }
    }
}
