//! Header hygiene between the two legs: hop-by-hop headers and credentials never cross.

use http::HeaderMap;
use http::header::{self, HeaderName};

/// Headers that describe one connection and are never forwarded (RFC 9110 §7.6.1),
/// plus `Proxy-*` credentials.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// What a client sends that is never forwarded besides the hop-by-hop headers: its own
/// credentials and cookies, `Host` (set by gitgate) and `Expect`.
const CLIENT_ONLY: [HeaderName; 4] = [
    header::AUTHORIZATION,
    header::COOKIE,
    header::HOST,
    header::EXPECT,
];

/// Removes hop-by-hop headers, including every header the `Connection` header names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    strip(headers, &[]);
}

/// Prepares a client's request headers for an upstream: hop-by-hop headers, the
/// client's own credentials and cookies, `Host` and `Expect` are removed.
pub(crate) fn sanitize_request(headers: &mut HeaderMap) {
    strip(headers, &CLIENT_ONLY);
}

/// Removes the hop-by-hop headers and `also`, looking each present header up once
/// instead of removing every listed name (most heads carry none of them).
fn strip(headers: &mut HeaderMap, also: &[HeaderName]) {
    let mut doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| HOP_BY_HOP.contains(name) || also.contains(name))
        .cloned()
        .collect();
    if doomed.contains(&header::CONNECTION) {
        let named = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok());
        doomed.extend(named.collect::<Vec<_>>());
    }
    for name in &doomed {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn strips_credentials_hop_by_hop_and_connection_listed_headers() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Basic c2VjcmV0"),
            ("proxy-authorization", "Basic cHJveHk="),
            ("cookie", "a=b"),
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("host", "github.com"),
            ("expect", "100-continue"),
            ("git-protocol", "version=2"),
            ("content-type", "application/x-git-upload-pack-request"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        sanitize_request(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "git-protocol"]);
    }

    /// The plain model: remove every listed name, and every name `Connection` lists.
    fn model(headers: &mut HeaderMap, also: &[HeaderName]) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named.iter().chain(HOP_BY_HOP.iter()).chain(also) {
            headers.remove(name);
        }
    }

    proptest::proptest! {
        #[test]
        fn removes_what_removing_every_listed_name_removes(
            heads in proptest::collection::vec((0usize..14, 0usize..6), 0..12),
            request: bool,
        ) {
            let names = [
                "connection", "keep-alive", "proxy-connection", "te", "trailer",
                "transfer-encoding", "upgrade", "authorization", "cookie", "host",
                "expect", "git-protocol", "content-type", "x-hop",
            ];
            let values = ["close", "x-hop", "keep-alive, X-Hop", " git-protocol ,te", "1", "\u{80}x-hop"];
            let mut h = HeaderMap::new();
            for (name, value) in heads {
                // The last value is not visible ASCII: kept, but names nothing.
                let value = match values[value].strip_prefix('\u{80}') {
                    Some(rest) => HeaderValue::from_bytes(&[b"\x80", rest.as_bytes()].concat()).unwrap(),
                    None => HeaderValue::from_str(values[value]).unwrap(),
                };
                h.append(HeaderName::from_static(names[name]), value);
            }
            let mut expected = h.clone();
            if request {
                sanitize_request(&mut h);
                model(&mut expected, &CLIENT_ONLY);
            } else {
                strip_hop_by_hop(&mut h);
                model(&mut expected, &[]);
            }
            proptest::prop_assert_eq!(h, expected);
        }
    }
}
