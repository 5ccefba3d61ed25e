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

#[cfg(test)]
mod tests {
    use super::*;
    use gitgate_policy::{ObjectFormat, ObjectId, RawSigners};
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// An ed25519 key made by `ssh-keygen`: (private key file, public key line).
    fn key(dir: &Path, name: &str) -> (PathBuf, String) {
        let file = dir.join(name);
        let made = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&file)
            .status()
            .expect("ssh-keygen");
        assert!(made.success());
        let public = std::fs::read_to_string(file.with_extension("pub")).unwrap();
        (file, public.trim().to_owned())
    }

    /// `payload` signed by `key` in `namespace`, as `ssh-keygen -Y sign` (and git) write it.
    fn sign(key: &Path, namespace: &str, payload: &[u8]) -> Vec<u8> {
        let file = key.with_extension("payload");
        std::fs::write(&file, payload).unwrap();
        // ssh-keygen does not overwrite a signature file.
        let _ = std::fs::remove_file(file.with_extension("payload.sig"));
        let signed = Command::new("ssh-keygen")
            .args(["-q", "-Y", "sign", "-n", namespace, "-f"])
            .arg(key)
            .arg(&file)
            .status()
            .expect("ssh-keygen");
        assert!(signed.success());
        std::fs::read(file.with_extension("payload.sig")).unwrap()
    }

    fn commit(signature: Option<Vec<u8>>, payload: &[u8]) -> SignedCommit {
        SignedCommit {
            id: ObjectId::zero(ObjectFormat::Sha1),
            committer_email: "agent@example.com".into(),
            signature,
            extra_signature: false,
            payload: payload.to_vec(),
        }
    }

    #[test]
    fn each_way_a_signature_can_fail_is_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let (agent, agent_public) = key(dir.path(), "agent");
        let (stranger, _) = key(dir.path(), "stranger");
        let signers = Signers::compile(&RawSigners {
            keys: vec![agent_public],
            ..Default::default()
        })
        .unwrap();
        let verifier = Verifier::new(&signers);
        let payload = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\nwork\n";

        let good = commit(Some(sign(&agent, "git", payload)), payload);
        assert!(matches!(verifier.check(&good), SignatureCheck::Verified(_)));

        let tampered = commit(Some(sign(&agent, "git", payload)), b"tree 0\n\nother\n");
        assert!(matches!(
            verifier.check(&tampered),
            SignatureCheck::Invalid(_)
        ));

        let other_namespace = commit(Some(sign(&agent, "file", payload)), payload);
        match verifier.check(&other_namespace) {
            SignatureCheck::Invalid(why) => assert!(why.contains("namespace \"file\""), "{why}"),
            other => panic!("{other:?}"),
        }

        let strangers = commit(Some(sign(&stranger, "git", payload)), payload);
        assert!(matches!(
            verifier.check(&strangers),
            SignatureCheck::UnknownKey(_)
        ));

        let mut twice = good;
        twice.extra_signature = true;
        match verifier.check(&twice) {
            SignatureCheck::Invalid(why) => assert_eq!(why, "more than one signature header"),
            other => panic!("{other:?}"),
        }

        let pgp =
            b"-----BEGIN PGP SIGNATURE-----\n\niQEzBAABCAAdFiEE\n-----END PGP SIGNATURE-----\n";
        let openpgp = commit(Some(pgp.to_vec()), payload);
        assert!(matches!(verifier.check(&openpgp), SignatureCheck::NotSsh));

        assert!(matches!(
            verifier.check(&commit(None, payload)),
            SignatureCheck::Unsigned
        ));
    }
}
