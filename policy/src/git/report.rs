//! Replies gitgate sends to git itself: `ERR` packets and refused pushes in report-status
//! form, side-band framed when the client asked for it.

use crate::decision::PushVerdict;
use crate::git::pktline::{MAX_PAYLOAD_LEN, flush, write_len};
use crate::git::receive_pack::PushHeader;
pub use crate::git::sideband::sideband;
use crate::git::sideband::{BAND_DATA, BAND_ERROR, BAND_PROGRESS, SideBand};

/// The denial prefix git users see before every gitgate reason.
const PREFIX: &str = "gitgate: ";

/// `ERR <message>\n` as one pkt-line; git dies with `fatal: remote error: <message>`. The
/// message is made printable ASCII on one line and cut to fit.
pub fn err_pkt(message: &str) -> Vec<u8> {
    let mut out = Vec::new();
    push_pkt(&mut out, format!("ERR {}\n", one_line(message)).as_bytes());
    out
}

/// A receive-pack result that makes git stop with `fatal: remote error: <message>`: an
/// `ERR` packet, inside band 1 when the client asked for a side-band (git reads the whole
/// answer through its demultiplexer then, and calls a bare `ERR` a bad band).
pub fn push_err(side_band: SideBand, message: &str) -> Vec<u8> {
    let err = err_pkt(message);
    let Some(max) = side_band.max_data() else {
        return err;
    };
    let mut out = sideband(BAND_DATA, &err, max);
    flush(&mut out);
    out
}

/// A fatal message in band 3, then a flush, to end a side-band answer already under way:
/// git prints `remote: <message>` and fails the push. Nothing without a side-band.
pub fn band_error(side_band: SideBand, message: &str) -> Vec<u8> {
    let Some(max) = side_band.max_data() else {
        return Vec::new();
    };
    let mut out = sideband(
        BAND_ERROR,
        format!("{}\n", one_line(message)).as_bytes(),
        max,
    );
    flush(&mut out);
    out
}

/// The reply to a refused `git-receive-pack` POST: `unpack ok`, then `ng <ref> <reason>` for
/// every command of `header` (never `ok`, whatever the decision), then a flush. Denied refs
/// read `gitgate: <reason>`, refs refused only for atomicity the bare atomic reason.
///
/// With `side-band-64k`/`side-band` the report travels in band 1, after an optional band-2
/// `banner` (shown as `remote: …`), followed by an outer flush. A client that asked for
/// neither `report-status` nor `report-status-v2` gets an `ERR` naming the first denied ref
/// instead.
pub fn rejected_push(header: &PushHeader, verdict: &PushVerdict, banner: Option<&str>) -> Vec<u8> {
    let body = if header.wants_report() {
        report(header, verdict)
    } else {
        let reason = verdict
            .first_denied()
            .map_or("push rejected by policy", |(_, decision)| &decision.reason);
        err_pkt(&format!("{PREFIX}{reason}"))
    };
    let Some(max) = header.side_band().max_data() else {
        return body;
    };
    let mut out = Vec::new();
    if let Some(banner) = banner {
        let text: String = banner.lines().map(|line| one_line(line) + "\n").collect();
        out.extend_from_slice(&sideband(BAND_PROGRESS, text.as_bytes(), max));
    }
    out.extend_from_slice(&sideband(BAND_DATA, &body, max));
    flush(&mut out);
    out
}

/// report-status: `unpack ok`, one `ng` per command, flush.
fn report(header: &PushHeader, verdict: &PushVerdict) -> Vec<u8> {
    let mut out = Vec::new();
    push_pkt(&mut out, b"unpack ok\n");
    for command in &header.commands {
        let decision = verdict
            .refs
            .iter()
            .find(|(update, _)| update.name == command.name)
            .map(|(_, decision)| decision);
        let reason = match decision {
            Some(decision) if decision.is_atomic_rejection() => decision.reason.clone(),
            Some(decision) => format!("{PREFIX}{}", decision.reason),
            None => format!("{PREFIX}push rejected by policy"),
        };
        push_pkt(
            &mut out,
            format!("ng {} {}\n", command.name, one_line(&reason)).as_bytes(),
        );
    }
    flush(&mut out);
    out
}

/// Printable ASCII on one line: anything else becomes `?`.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// Appends one data packet, cutting an oversized payload (its end) to fit.
fn push_pkt(out: &mut Vec<u8>, payload: &[u8]) {
    let payload = &payload[..payload.len().min(MAX_PAYLOAD_LEN)];
    write_len(payload.len() + 4, out);
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Decision;
    use crate::git::receive_pack::{CommandReader, Limits, tests::capture};
    use crate::object_id::ObjectId;
    use crate::ref_update::RefUpdate;

    fn header(names: &[&str], caps: &[&str]) -> PushHeader {
        PushHeader {
            commands: names
                .iter()
                .map(|name| RefUpdate {
                    old: ObjectId::parse(&"1".repeat(40)).unwrap(),
                    new: ObjectId::parse(&"2".repeat(40)).unwrap(),
                    name: name.to_string(),
                })
                .collect(),
            capabilities: caps.iter().map(|c| c.to_string()).collect(),
            ..PushHeader::default()
        }
    }

    fn all_denied(header: &PushHeader, reason: &str) -> PushVerdict {
        PushVerdict::reject_all(&header.commands, &Decision::deny("allowedRefs", reason))
    }

    #[test]
    fn err_packets() {
        assert_eq!(
            err_pkt("gitgate: push denied by policy"),
            b"0027ERR gitgate: push denied by policy\n"
        );
        assert_eq!(err_pkt("a\nb\u{e9}\x1b[31m"), b"0012ERR a?b??[31m\n");
        let long = err_pkt(&"x".repeat(100_000));
        assert_eq!(long.len(), 65520);
        assert_eq!(&long[..4], b"fff0");
    }

    #[test]
    fn push_errors_travel_in_band_one_when_the_client_asked_for_a_side_band() {
        assert_eq!(
            push_err(SideBand::None, "gitgate: no"),
            err_pkt("gitgate: no")
        );
        assert_eq!(
            push_err(SideBand::Band64k, "gitgate: no"),
            b"0019\x010014ERR gitgate: no\n0000"
        );
        // side-band packets hold at most 995 data bytes: a long ERR spans three.
        let long = push_err(SideBand::Band, &"x".repeat(2000));
        assert_eq!(&long[..9], b"03e8\x0107d9");
        assert_eq!(&long[1000..1005], b"03e8\x01");
        assert_eq!(&long[2000..2005], b"0018\x01");
        assert_eq!(long.len(), 2000 + 24 + 4);
    }

    #[test]
    fn band_errors_end_a_side_band_answer() {
        assert_eq!(
            band_error(SideBand::Band64k, "gitgate: cut\noff"),
            b"0016\x03gitgate: cut?off\n0000"
        );
        assert!(band_error(SideBand::None, "x").is_empty());
    }

    /// Protocol reference §4.3: three refs, side-band-64k, banner.
    #[test]
    fn reference_side_band_report() {
        let h = header(
            &[
                "refs/heads/main",
                "refs/heads/feature/deny-me",
                "refs/heads/ok-branch",
            ],
            &["report-status-v2", "side-band-64k", "quiet"],
        );
        let got = rejected_push(
            &h,
            &all_denied(&h, "ref not allowed by policy"),
            Some("gitgate: push rejected by egress policy"),
        );
        let want = b"002d\x02gitgate: push rejected by egress policy\n\
00d5\x01000eunpack ok\n003ang refs/heads/main gitgate: ref not allowed by policy\n0045ng refs/heads/feature/deny-me gitgate: ref not allowed by policy\n003fng refs/heads/ok-branch gitgate: ref not allowed by policy\n0000\
0000";
        assert_eq!(got, want, "{}", String::from_utf8_lossy(&got));
    }

    /// Protocol reference §4.3 minimal form and §4.2 without side-band.
    #[test]
    fn reference_minimal_and_plain() {
        let h = header(&["refs/heads/main"], &["report-status-v2", "side-band-64k"]);
        let got = rejected_push(&h, &all_denied(&h, "ref not allowed by policy"), None);
        assert_eq!(got, b"0051\x01000eunpack ok\n003ang refs/heads/main gitgate: ref not allowed by policy\n00000000");
        assert_eq!(got.len(), 85);
        let h = header(&["refs/heads/x2"], &["report-status"]);
        let got = rejected_push(
            &h,
            &all_denied(&h, "ref not allowed by policy"),
            Some("dropped without side-band"),
        );
        assert_eq!(
            got,
            b"000eunpack ok\n0038ng refs/heads/x2 gitgate: ref not allowed by policy\n0000"
        );
    }

    #[test]
    fn atomic_refs_get_the_bare_reason() {
        let policy =
            crate::Policy::from_yaml("allowedRepos: [a/b]\nallowedRefs: [main]", &[]).unwrap();
        let h = header(&["refs/heads/main", "refs/heads/dev"], &["report-status"]);
        let verdict = policy.decide_push_commands(&h.commands);
        let got = rejected_push(&h, &verdict, None);
        assert_eq!(
            String::from_utf8(got).unwrap(),
            "000eunpack ok\n\
             0044ng refs/heads/main atomic push rejected: another ref was denied\n\
             004bng refs/heads/dev gitgate: refs/heads/dev is not in allowedRefs [main]\n\
             0000"
        );
    }

    #[test]
    fn every_command_gets_ng() {
        let h = header(&["refs/heads/a", "refs/heads/b"], &["report-status"]);
        // A verdict that misses a ref, and one that allowed everything: still only `ng`.
        let partial = PushVerdict::reject_all(&h.commands[..1], &Decision::deny("x", "no"));
        let text = String::from_utf8(rejected_push(&h, &partial, None)).unwrap();
        assert!(text.contains("ng refs/heads/a gitgate: no\n"), "{text}");
        assert!(
            text.contains("ng refs/heads/b gitgate: push rejected by policy\n"),
            "{text}"
        );
        let allowed =
            PushVerdict::reject_all(&h.commands, &Decision::allow("allowedRefs[*]", "fine"));
        let text = String::from_utf8(rejected_push(&h, &allowed, None)).unwrap();
        assert!(
            !text.contains("\nok ") && text.matches("ng ").count() == 2,
            "{text}"
        );
    }

    #[test]
    fn err_instead_of_report() {
        let h = header(&["refs/heads/main"], &["side-band-64k"]);
        let got = rejected_push(
            &h,
            &all_denied(&h, "refs/heads/main is not in allowedRefs []"),
            Some("banner"),
        );
        let err = b"003aERR gitgate: refs/heads/main is not in allowedRefs []\n";
        let want = [&b"000c\x02banner\n"[..], b"003f\x01", err, b"0000"].concat();
        assert_eq!(got, want, "{}", String::from_utf8_lossy(&got));
        let h = header(&["refs/heads/main"], &[]);
        assert_eq!(
            rejected_push(
                &h,
                &all_denied(&h, "refs/heads/main is not in allowedRefs []"),
                None
            ),
            err
        );
    }

    #[test]
    fn small_side_band_chunks() {
        let names: Vec<String> = (0..40).map(|i| format!("refs/heads/branch-{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let h = header(&refs, &["report-status", "side-band"]);
        let got = rejected_push(&h, &all_denied(&h, "denied"), Some("line one\nline two"));
        let inner = report(&h, &all_denied(&h, "denied"));
        assert!(inner.len() > 995);
        let mut rest = &got[..];
        let (mut band1, mut band2) = (Vec::new(), Vec::new());
        loop {
            match crate::git::pktline::decode(rest).unwrap() {
                crate::git::pktline::Decoded::Complete {
                    pkt: crate::git::pktline::Pkt::Data(p),
                    consumed,
                } => {
                    assert!(p.len() <= 996);
                    match p[0] {
                        1 => band1.extend_from_slice(&p[1..]),
                        2 => band2.extend_from_slice(&p[1..]),
                        b => panic!("band {b}"),
                    }
                    rest = &rest[consumed..];
                }
                crate::git::pktline::Decoded::Complete {
                    pkt: crate::git::pktline::Pkt::Flush,
                    consumed,
                } => {
                    assert_eq!(consumed, rest.len());
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(band1, inner);
        assert_eq!(band2, b"line one\nline two\n");
    }

    #[test]
    fn refuses_a_captured_push() {
        let policy =
            crate::Policy::from_yaml("allowedRepos: [owner/sha1]\nallowedRefs: [main]", &[])
                .unwrap();
        let mut reader = CommandReader::new(Limits::default());
        let h = reader.feed(capture("atomic")).unwrap().unwrap();
        let verdict = policy.decide_push_commands(&h.commands);
        assert!(!verdict.allowed);
        let got = rejected_push(&h, &verdict, Some("gitgate: push rejected by policy"));
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("0026\x02gitgate: push rejected by policy\n"),
            "{text}"
        );
        assert!(
            text.contains("ng refs/heads/main atomic push rejected: another ref was denied\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "ng refs/heads/atomic-a gitgate: refs/heads/atomic-a is not in allowedRefs [main]\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("ng refs/tags/t2 gitgate: refs/tags/t2 is not in allowedRefs [main]\n"),
            "{text}"
        );
        assert!(text.ends_with("00000000"), "{text}");
    }
}
