//! `requireSignedCommits`: the SSH keys whose signatures a push's new commits must carry,
//! listed inline or in a file in the format of git's `gpg.ssh.allowedSignersFile`.

use std::path::PathBuf;

use serde::Deserialize;

use crate::pattern::{PatternKind, compile_glob, glob_matches};

/// The one key type gitgate verifies.
const ED25519: &str = "ssh-ed25519";

/// `requireSignedCommits` as written. The allowed signers file is read by the caller
/// (this crate reads no files) into `allowed_signers` before compiling.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct RawSigners {
    /// Public keys as in `authorized_keys`: `ssh-ed25519 AAAA… comment`.
    pub keys: Vec<String>,
    /// A file in `gpg.ssh.allowedSignersFile` format: `principals [options] key`.
    pub allowed_signers_file: Option<PathBuf>,
    /// Whether the committer's email must be a principal of the key that signed.
    pub committer_email_matches_key: bool,
    /// The text of `allowed_signers_file`.
    #[serde(skip)]
    pub allowed_signers: Option<String>,
}

/// One allowed key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignerKey {
    /// The key type: `ssh-ed25519`, `ecdsa-sha2-nistp256`, …
    pub algorithm: String,
    /// The base64 key blob.
    pub blob: String,
    /// The principals (emails, `*` globs) from the allowed signers file; none for `keys`.
    pub principals: Vec<String>,
}

/// The compiled rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signers {
    keys: Vec<SignerKey>,
    committer_email_matches_key: bool,
}

/// How one pushed commit's signature checked out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureCheck {
    /// Signed by this allowed key.
    Verified(SignerKey),
    /// No signature.
    Unsigned,
    /// A signature that is not an SSH signature (OpenPGP, X.509).
    NotSsh,
    /// An SSH signature by a key that is not allowed.
    UnknownKey(String),
    /// An SSH signature that does not verify, and why.
    Invalid(String),
}

impl Signers {
    /// Compiles the rule; errors name the line of the allowed signers file.
    pub fn compile(raw: &RawSigners) -> Result<Signers, String> {
        let mut keys = Vec::new();
        for (i, line) in raw.keys.iter().enumerate() {
            let mut words = line.split_whitespace();
            let key = parse_key(&mut words)
                .map_err(|why| format!("requireSignedCommits.keys[{i}]: {why}"))?;
            keys.push(SignerKey {
                principals: Vec::new(),
                ..key
            });
        }
        match (&raw.allowed_signers_file, &raw.allowed_signers) {
            (Some(path), Some(text)) => {
                for (n, line) in text.lines().enumerate() {
                    let line = line.trim();
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    if let Some(key) = parse_signer_line(line)
                        .map_err(|why| format!("{}:{}: {why}", path.display(), n + 1))?
                    {
                        keys.push(key);
                    }
                }
            }
            (Some(path), None) => {
                return Err(format!(
                    "requireSignedCommits.allowedSignersFile {} was not read",
                    path.display()
                ));
            }
            (None, _) => {}
        }
        if keys.is_empty() {
            return Err(
                "requireSignedCommits lists no key: add keys or an allowedSignersFile with at least one key"
                    .into(),
            );
        }
        if raw.committer_email_matches_key && keys.iter().all(|k| k.principals.is_empty()) {
            return Err("requireSignedCommits.committerEmailMatchesKey needs the principals of an allowedSignersFile".into());
        }
        Ok(Signers {
            keys,
            committer_email_matches_key: raw.committer_email_matches_key,
        })
    }

    /// The allowed keys.
    pub fn keys(&self) -> &[SignerKey] {
        &self.keys
    }

    /// Whether `committerEmailMatchesKey` is set.
    pub fn matches_committer(&self) -> bool {
        self.committer_email_matches_key
    }

    /// Why this commit's signature is not acceptable, or `None` if it is.
    pub fn refusal(&self, check: &SignatureCheck, committer_email: &str) -> Option<String> {
        match check {
            SignatureCheck::Verified(key) if self.committer_email_matches_key => {
                let matches = key
                    .principals
                    .iter()
                    .any(|p| principal_matches(p, committer_email));
                (!matches).then(|| {
                    format!("is signed by a key whose principals do not include its committer {committer_email}")
                })
            }
            SignatureCheck::Verified(_) => None,
            SignatureCheck::Unsigned => Some("is not signed".into()),
            SignatureCheck::NotSsh => Some("is not signed with an SSH key".into()),
            SignatureCheck::UnknownKey(key) => Some(format!(
                "is signed by a key that requireSignedCommits does not allow ({key})"
            )),
            SignatureCheck::Invalid(why) => {
                Some(format!("has a signature that does not verify ({why})"))
            }
        }
    }
}

/// An allowed-signers line: `principals [options] keytype key [comment]`; `None` for a key
/// that is not for git's namespace.
fn parse_signer_line(line: &str) -> Result<Option<SignerKey>, String> {
    let mut words = line.split_whitespace();
    let principals: Vec<String> = words
        .next()
        .unwrap_or_default()
        .split(',')
        .map(|p| p.trim_matches('"').to_owned())
        .collect();
    if principals.iter().any(|p| p.starts_with('!')) {
        return Err("negated principals (\"!…\") are not supported by gitgate".into());
    }
    let rest: Vec<&str> = words.collect();
    let (options, key_words) = match rest.first() {
        Some(first) if !is_key_type(first) => (Some(*first), &rest[1..]),
        _ => (None, &rest[..]),
    };
    for option in options.into_iter().flat_map(split_options) {
        let (name, value) = option.split_once('=').unwrap_or((option, ""));
        match name.to_ascii_lowercase().as_str() {
            "namespaces" => {
                let value = value.trim_matches('"');
                if value.contains('!') {
                    return Err("negated namespaces (\"!…\") are not supported by gitgate".into());
                }
                if !value.split(',').any(|n| n == "git" || n == "*") {
                    return Ok(None);
                }
            }
            other => {
                return Err(format!(
                    "option {other:?} is not supported by gitgate (only namespaces=\"git\")"
                ));
            }
        }
    }
    let key = parse_key(&mut key_words.iter().copied())?;
    Ok(Some(SignerKey { principals, ..key }))
}

/// Splits `a,b="x,y",c` at the commas outside double quotes.
fn split_options(options: &str) -> Vec<&str> {
    let (mut parts, mut start, mut quoted) = (Vec::new(), 0, false);
    for (i, c) in options.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&options[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&options[start..]);
    parts
}

fn is_key_type(word: &str) -> bool {
    word.starts_with("ssh-") || word.starts_with("ecdsa-") || word.starts_with("sk-")
}

/// `keytype base64 [comment]`.
fn parse_key<'a>(words: &mut impl Iterator<Item = &'a str>) -> Result<SignerKey, String> {
    let (Some(algorithm), Some(blob)) = (words.next(), words.next()) else {
        return Err("expected a public key such as \"ssh-ed25519 AAAA… comment\"".into());
    };
    if !is_key_type(algorithm) {
        return Err(format!("{algorithm:?} is not an SSH key type"));
    }
    if algorithm != ED25519 {
        return Err(format!(
            "only {ED25519} keys are supported, not {algorithm}"
        ));
    }
    let base64 = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=');
    if !blob.bytes().all(base64) {
        return Err("the key is not base64".into());
    }
    // base64 of: length 11, "ssh-ed25519", length 32, the 32-byte key.
    if blob.len() != 68 || !blob.starts_with("AAAAC3NzaC1lZDI1NTE5AAAAI") {
        return Err(format!("the key is not a well-formed {ED25519} public key"));
    }
    Ok(SignerKey {
        algorithm: algorithm.to_owned(),
        blob: blob.to_owned(),
        principals: Vec::new(),
    })
}

/// A principal pattern (`*` and `?` globs, as git's `match_pattern_list`) against an email.
fn principal_matches(pattern: &str, email: &str) -> bool {
    match compile_glob(PatternKind::Path, pattern, pattern) {
        Ok(glob) => glob_matches(&glob, email),
        Err(_) => pattern == email,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFVpK3wFtUrWpJcUuGbcl4XlBPbmA1ZqQ2Vn7nTlW5xc agent";

    fn raw(keys: &[&str], file: Option<&str>) -> RawSigners {
        RawSigners {
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            allowed_signers_file: file.map(|_| PathBuf::from("signers")),
            allowed_signers: file.map(str::to_owned),
            committer_email_matches_key: false,
        }
    }

    #[test]
    fn compiles_inline_keys_and_allowed_signers_files() {
        let signers = Signers::compile(&raw(&[KEY], None)).unwrap();
        assert_eq!(signers.keys()[0].algorithm, "ssh-ed25519");
        let file = format!(
            "# comment\n\nagent@example.com,*@acme.dev {}\nci@example.com namespaces=\"git,file\" {}\nother@example.com namespaces=\"file\" {}\n",
            &KEY[..KEY.len() - 6],
            &KEY[..KEY.len() - 6],
            &KEY[..KEY.len() - 6]
        );
        let signers = Signers::compile(&raw(&[], Some(&file))).unwrap();
        assert_eq!(signers.keys().len(), 2, "the file-only key is skipped");
        assert_eq!(
            signers.keys()[0].principals,
            ["agent@example.com", "*@acme.dev"]
        );
    }

    #[test]
    fn errors_name_the_place() {
        for (keys, file, want) in [
            (vec!["ssh-ed25519"], None, "keys[0]: expected a public key"),
            (
                vec!["rsa AAAAAAAAAAAAAAAAAAAA"],
                None,
                "\"rsa\" is not an SSH key type",
            ),
            (
                vec![],
                Some("a@b cert-authority ssh-ed25519 AAAAAAAAAAAAAAAAAAAA\n"),
                "signers:1: option \"cert-authority\"",
            ),
            (
                vec![],
                Some("\n\na@b ssh-ed25519 !!!!!!!!!!!!!!!!!!!!\n"),
                "signers:3: the key is not base64",
            ),
            (vec![], None, "lists no key"),
        ] {
            let error = Signers::compile(&raw(&keys, file)).unwrap_err();
            assert!(error.contains(want), "{error}");
        }
        let mut unread = raw(&[KEY], Some(""));
        unread.allowed_signers = None;
        assert!(
            Signers::compile(&unread)
                .unwrap_err()
                .contains("was not read")
        );
        let mut needs_principals = raw(&[KEY], None);
        needs_principals.committer_email_matches_key = true;
        assert!(Signers::compile(&needs_principals).is_err());
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        let file = format!("agent@example.com,*@acme.dev {}\n", &KEY[..KEY.len() - 6]);
        let mut strict = raw(&[], Some(&file));
        strict.committer_email_matches_key = true;
        let signers = Signers::compile(&strict).unwrap();
        let verified = SignatureCheck::Verified(signers.keys()[0].clone());
        assert_eq!(signers.refusal(&verified, "agent@example.com"), None);
        assert_eq!(signers.refusal(&verified, "bot@acme.dev"), None);
        assert!(
            signers
                .refusal(&verified, "mallory@example.com")
                .unwrap()
                .contains("do not include its committer mallory@example.com")
        );
        assert_eq!(
            signers.refusal(&SignatureCheck::Unsigned, "x").as_deref(),
            Some("is not signed")
        );
        assert!(
            signers
                .refusal(&SignatureCheck::UnknownKey("SHA256:abc".into()), "x")
                .unwrap()
                .contains("(SHA256:abc)")
        );
    }
}
