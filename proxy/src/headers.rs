//! Header hygiene between the two legs: hop-by-hop headers and credentials never cross.

use http::HeaderMap;
use http::header::{self, HeaderName};

/// Headers that describe one connection and are never forwarded (RFC 9110 §7.6.1),
/// plus `Proxy-*` credentials and `Expect` (answered by gitgate itself).
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

/// Removes hop-by-hop headers, including every header the `Connection` header names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// Prepares a client's request headers for an upstream: hop-by-hop headers, the
/// client's own credentials and cookies, `Host` and `Expect` are removed.
pub(crate) fn sanitize_request(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
    for name in [
        header::AUTHORIZATION,
        header::COOKIE,
        header::HOST,
        header::EXPECT,
    ] {
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
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["git-protocol", "content-type"]);
    }
}
