//! The server name a TLS client asks for, read from the first bytes it sends (RFC 8446
//! §4.1.2 and RFC 6066 §3): only the record and handshake framing and the `server_name`
//! extension are read, so any well-framed ClientHello is understood, whatever else it
//! holds. Pure and bounded: at most [`MAX_HELLO`] bytes are looked at.

/// The most bytes read to find the ClientHello (a handshake message of up to 64 KiB, as
/// rustls allows, and its record headers).
pub(crate) const MAX_HELLO: usize = (64 << 10) + 1024;

/// The record type of a handshake, and the range of TLS record types.
const HANDSHAKE: u8 = 0x16;
const RECORD_TYPES: std::ops::RangeInclusive<u8> = 0x14..=0x18;
/// The largest plaintext record (RFC 8446 §5.1).
const MAX_RECORD: usize = 1 << 14;
const CLIENT_HELLO: u8 = 1;
const SERVER_NAME: u16 = 0;
const HOST_NAME: u8 = 0;
/// The longest DNS name (RFC 1035 §2.3.4, in text form).
const MAX_NAME: usize = 253;

/// What a client's first bytes are.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Hello {
    /// Not TLS: nothing to check.
    NotTls,
    /// A TLS ClientHello, and the server name it asks for, if any.
    Tls(Option<String>),
    /// TLS records that do not begin with a readable ClientHello.
    Unreadable(String),
}

/// The most records a ClientHello may come in (clients send one, rarely a few): bounds
/// the work of reading one sent a byte per record.
const MAX_RECORDS: usize = 64;

/// Reads `bytes` (all of a client's first bytes so far): what they are, or `Err(n)` when
/// that is known only once there are `n` bytes (read again then, not before).
pub(crate) fn read(bytes: &[u8]) -> Result<Hello, usize> {
    match bytes {
        [] => Err(1),
        // Bytes that begin with a TLS record type are read as TLS records, whatever version
        // follows: some servers take a first record of any version below 16.0 (Go's), or
        // skip an alert before the ClientHello, so either must not pass unchecked.
        [first, ..] if !RECORD_TYPES.contains(first) => Ok(Hello::NotTls),
        _ => match handshake(bytes) {
            Ok(Ok(message)) => Ok(match server_name(message) {
                Ok(name) => Hello::Tls(name),
                Err(why) => Hello::Unreadable(why),
            }),
            Ok(Err(_)) if bytes.len() >= MAX_HELLO => Ok(Hello::Unreadable(format!(
                "no ClientHello in its first {} KiB",
                MAX_HELLO >> 10
            ))),
            Ok(Err(needed)) => Err(needed.min(MAX_HELLO)),
            Err(why) => Ok(Hello::Unreadable(why)),
        },
    }
}

/// The ClientHello's body once the handshake records carrying it are all there, else
/// how many bytes must be there first.
fn handshake(bytes: &[u8]) -> Result<Result<Vec<u8>, usize>, String> {
    let mut message = Vec::new();
    let mut at = 0;
    for _ in 0..=MAX_RECORDS {
        // What the records so far carry may already hold the whole message.
        if let Some(body) = whole_client_hello(&message)? {
            return Ok(Ok(body.to_vec()));
        }
        let Some(header) = bytes.get(at..at + 5) else {
            return Ok(Err(at + 5));
        };
        if header[0] != HANDSHAKE {
            return Err(format!(
                "a TLS record of type {} comes before the ClientHello",
                header[0]
            ));
        }
        if header[1] != 3 {
            return Err(format!(
                "a TLS record of version {}.{}",
                header[1], header[2]
            ));
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 || len > MAX_RECORD {
            return Err(format!("a TLS handshake record of {len} bytes"));
        }
        let Some(payload) = bytes.get(at + 5..at + 5 + len) else {
            return Ok(Err(at + 5 + len));
        };
        message.extend_from_slice(payload);
        at += 5 + len;
    }
    Err(format!(
        "the ClientHello comes in more than {MAX_RECORDS} records"
    ))
}

/// The body of the ClientHello at the start of `message`, if all of it is there.
fn whole_client_hello(message: &[u8]) -> Result<Option<&[u8]>, String> {
    let Some(header) = message.get(..4) else {
        return Ok(None);
    };
    if header[0] != CLIENT_HELLO {
        return Err(format!(
            "the first handshake message is of type {}, not a ClientHello",
            header[0]
        ));
    }
    let len = usize::from(header[1]) << 16 | usize::from(header[2]) << 8 | usize::from(header[3]);
    if len > MAX_HELLO {
        return Err(format!("a ClientHello of {len} bytes"));
    }
    Ok(message.get(4..4 + len))
}

/// The `host_name` of the ClientHello's `server_name` extension, if it has one.
fn server_name(body: Vec<u8>) -> Result<Option<String>, String> {
    let mut hello = Reader(&body);
    hello.take(2 + 32)?; // legacy_version, random
    hello.vector(1)?; // legacy_session_id
    hello.vector(2)?; // cipher_suites
    hello.vector(1)?; // legacy_compression_methods
    if hello.0.is_empty() {
        return Ok(None); // no extensions (TLS 1.2 and before)
    }
    let mut extensions = Reader(hello.vector(2)?);
    hello.end("the ClientHello")?;
    let mut name = None;
    while !extensions.0.is_empty() {
        let kind = u16::from_be_bytes(extensions.take(2)?.try_into().unwrap_or_default());
        let data = extensions.vector(2)?;
        if kind != SERVER_NAME {
            continue;
        }
        if name.is_some() {
            return Err("the ClientHello names its server twice".into());
        }
        let mut list = Reader(data);
        let mut names = Reader(list.vector(2)?);
        list.end("server_name")?;
        let mut host = None;
        while !names.0.is_empty() {
            let kind = names.take(1)?[0];
            let value = names.vector(2)?;
            if kind == HOST_NAME {
                if host.is_some() {
                    return Err("the ClientHello names its server twice".into());
                }
                if value.len() > MAX_NAME {
                    return Err(format!("a server name of {} bytes", value.len()));
                }
                // Shown in logs and refusals: never a raw control character.
                host = Some(value.escape_ascii().to_string());
            }
        }
        name = Some(host);
    }
    Ok(name.flatten())
}

/// Reads TLS's length-prefixed fields.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("the ClientHello is cut short".into());
        }
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(taken)
    }

    /// A field with a `width`-byte big-endian length before it.
    fn vector(&mut self, width: usize) -> Result<&'a [u8], String> {
        let len = self
            .take(width)?
            .iter()
            .fold(0usize, |len, byte| len << 8 | usize::from(*byte));
        self.take(len)
    }

    fn end(&self, what: &str) -> Result<(), String> {
        match self.0.is_empty() {
            true => Ok(()),
            false => Err(format!("{what} has bytes after its end")),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Arc;

    /// The bytes a rustls client sends first, asking for `name`.
    pub(crate) fn client_hello(name: &str) -> Vec<u8> {
        let config = rustls::ClientConfig::builder_with_provider(gitgate_certs::crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    /// `hello`'s handshake message, in records of at most `size` bytes.
    fn in_records(hello: &[u8], size: usize) -> Vec<u8> {
        let message = &hello[5..];
        message
            .chunks(size)
            .flat_map(|chunk| {
                let len = (chunk.len() as u16).to_be_bytes();
                [&[HANDSHAKE, 3, 1, len[0], len[1]][..], chunk].concat()
            })
            .collect()
    }

    #[test]
    fn reads_the_server_name_of_a_real_client_hello() {
        let hello = client_hello("tunnel.example");
        let asked = Ok(Hello::Tls(Some("tunnel.example".into())));
        assert_eq!(read(&hello), asked);
        // Cut short anywhere: not yet known, and more bytes are asked for.
        for cut in 0..hello.len() {
            let needed = read(&hello[..cut]).unwrap_err();
            assert!(needed > cut && needed <= hello.len(), "{cut}: {needed}");
        }
        // Spread over several records, as TLS allows.
        assert_eq!(read(&in_records(&hello, 64)), asked);
        // In more records than any client uses: refused, not read at length.
        assert!(matches!(
            read(&in_records(&hello, 1)),
            Ok(Hello::Unreadable(_))
        ));
    }

    #[test]
    fn what_comes_before_the_client_hello_is_refused_and_other_protocols_pass() {
        let hello = client_hello("evil.example");
        // A warning alert first, which some servers skip before reading the hello.
        let alert_first = [&[0x15, 3, 1, 0, 2, 1, 0x5a][..], &hello].concat();
        assert!(matches!(read(&alert_first), Ok(Hello::Unreadable(_))));
        assert!(matches!(
            read(&[0x17, 3, 3, 0, 1, 0]),
            Ok(Hello::Unreadable(_))
        ));
        assert_eq!(read(b"SSH-2.0-OpenSSH_9.2\r\n"), Ok(Hello::NotTls));
        assert_eq!(read(b"GET / HTTP/1.1\r\n"), Ok(Hello::NotTls));
        assert_eq!(read(b""), Err(1));
        // A record type is TLS whatever version follows: Go's TLS server takes a first
        // record of any version below 16.0.
        assert_eq!(read(&[0x16]), Err(5));
        let mut odd_version = hello.clone();
        odd_version[1..3].copy_from_slice(&[0, 1]);
        assert!(matches!(read(&odd_version), Ok(Hello::Unreadable(_))));
        let alert_then_hello = [&[0x15, 0, 1, 0, 2, 1, 0x5a][..], &hello].concat();
        assert!(matches!(read(&alert_then_hello), Ok(Hello::Unreadable(_))));
        assert!(matches!(
            read(&[0x16, 0x20, 0, 0, 1, 0]),
            Ok(Hello::Unreadable(_))
        ));
        // A handshake that is not a ClientHello.
        assert!(matches!(
            read(&[0x16, 3, 1, 0, 4, 2, 0, 0, 0]),
            Ok(Hello::Unreadable(_))
        ));
        // A hello that never ends is given up.
        let mut endless = vec![0x16, 3, 1, 0x40, 0, 1, 0xff, 0xff, 0xff];
        let mut reads = 0;
        while let Err(needed) = read(&endless) {
            assert!(needed > endless.len());
            endless.resize(needed, 0);
            endless.extend([0x16, 3, 1, 0x40, 0]);
            reads += 1;
        }
        assert!(matches!(read(&endless), Ok(Hello::Unreadable(_))));
        assert!(reads <= 5, "{reads}");
    }

    /// A ClientHello with these extensions (type, data).
    fn hello_with(extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend([0; 32]);
        body.extend([0, 0, 2, 0x13, 0x01, 1, 0]);
        let mut ext = Vec::new();
        for (kind, data) in extensions {
            ext.extend(kind.to_be_bytes());
            ext.extend((data.len() as u16).to_be_bytes());
            ext.extend(data);
        }
        body.extend((ext.len() as u16).to_be_bytes());
        body.extend(ext);
        let mut message = vec![CLIENT_HELLO, 0];
        message.extend((body.len() as u16).to_be_bytes());
        message.extend(body);
        let mut record = vec![HANDSHAKE, 3, 1];
        record.extend((message.len() as u16).to_be_bytes());
        record.extend(message);
        record
    }

    fn sni(names: &[&str]) -> Vec<u8> {
        let mut list = Vec::new();
        for name in names {
            list.push(HOST_NAME);
            list.extend((name.len() as u16).to_be_bytes());
            list.extend(name.as_bytes());
        }
        [(list.len() as u16).to_be_bytes().to_vec(), list].concat()
    }

    #[test]
    fn a_server_name_given_twice_is_refused() {
        assert_eq!(
            read(&hello_with(&[(SERVER_NAME, sni(&["a.example"]))])),
            Ok(Hello::Tls(Some("a.example".into())))
        );
        assert_eq!(read(&hello_with(&[(10, vec![0, 0])])), Ok(Hello::Tls(None)));
        for twice in [
            hello_with(&[
                (SERVER_NAME, sni(&["a.example"])),
                (SERVER_NAME, sni(&["b.example"])),
            ]),
            hello_with(&[(SERVER_NAME, sni(&["a.example", "b.example"]))]),
        ] {
            assert!(
                matches!(read(&twice), Ok(Hello::Unreadable(_))),
                "{twice:?}"
            );
        }
    }

    #[test]
    fn a_server_name_is_never_read_with_control_characters_or_past_a_dns_name() {
        let forged = "x\n2026-12-08T00:00:00Z  INFO gitgate: policy reloaded\r\x1b[2J";
        let Ok(Hello::Tls(Some(name))) = read(&hello_with(&[(SERVER_NAME, sni(&[forged]))])) else {
            panic!("not read");
        };
        assert!(!name.bytes().any(|b| b.is_ascii_control()), "{name}");
        assert!(name.starts_with("x\\n2026"), "{name}");
        let long = "a".repeat(MAX_NAME + 1);
        assert!(matches!(
            read(&hello_with(&[(SERVER_NAME, sni(&[&long]))])),
            Ok(Hello::Unreadable(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn a_client_hello_reads_the_same_in_any_records(size in 20usize..600) {
            let hello = client_hello("tunnel.example");
            proptest::prop_assert_eq!(
                read(&in_records(&hello, size)),
                Ok(Hello::Tls(Some("tunnel.example".into())))
            );
        }

        #[test]
        fn any_bytes_are_read_without_panicking(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2000),
        ) {
            let _ = read(&bytes);
            let mut framed = vec![HANDSHAKE, 3, 1];
            framed.extend((bytes.len() as u16).to_be_bytes());
            framed.extend(&bytes);
            let _ = read(&framed);
        }
    }
}
