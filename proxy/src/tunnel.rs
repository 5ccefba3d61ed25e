//! Opaque TCP tunnels to allow-listed hosts: bytes pass untouched, nothing is injected. A
//! tunnel reaches only the host it was allowed for: when the client speaks TLS, the server
//! name in its ClientHello must be that host, so a shared front end (a CDN, a cloud load
//! balancer) cannot be asked for another site behind an allowed name.

use std::sync::Arc;

use gitgate_policy::{Decision, HostName, Policy};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::audit::{Record, Verdict};
use crate::body::{BUSY_RULE, Gathered, busy};
use crate::budget::Spent;
use crate::client_hello::{self, Hello};
use crate::connect::Target;
use crate::git::enforce;
use crate::idle::IdleIo;
use crate::settings::Limits;
use crate::state::{ConnCtx, State};
use crate::tap::{Tap, TapIo};

/// The `error` of a tunnel still open when shutdown closes what is left.
const CUT_OFF: &str =
    "cut off at shutdown (limits.shutdownGrace was over, or gitgate was asked again to stop)";

/// The most the client's first bytes are read at a time (the buffer is charged to the
/// memory budget with them).
pub(crate) const READ_CHUNK: usize = 4096;

/// Copies both ways until both sides close, then writes the tunnel's audit record. The
/// client's first bytes, gathered in `first`, are checked before any reaches the host; the
/// host may speak first meanwhile. Shutdown does not cut tunnels short; the grace period
/// bounds them.
pub(crate) async fn run(
    state: &State,
    ctx: ConnCtx,
    (policy, target): (Arc<Policy>, Target),
    mut record: Record,
    (client, upstream, first): (Upgraded, TcpStream, Gathered),
) {
    let mut lifecycle = ctx.lifecycle;
    let client = TapIo::new(TokioIo::new(client), Counter::default());
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let allowed = (&*policy, &target.host, &mut record);
    let client = (&mut client_read, &mut client_write);
    let limits = &state.settings.limits;
    tokio::select! {
        pumped = pump(client, (upstream, first, limits), allowed) => {
            if let Err(error) = pumped {
                tracing::debug!(%error, "tunnel ended with an error");
            }
        }
        () = lifecycle.closing() => {
            record.error = Some(CUT_OFF.into());
        }
    }
    let client = client_read.unsplit(client_write);
    record.bytes_in = client.tap.read;
    record.bytes_out = client.tap.written;
    state.observer.emit(record);
}

/// Copies both ways, the client's first bytes, gathered in `first` against the memory
/// budget, checked before any reach `host`: a tunnel they take elsewhere is refused and
/// recorded in `record` (in report mode, recorded and let through). First bytes that
/// take longer than `tlsHandshakeTimeout` from the first one to show what they are end
/// the tunnel, so a client cannot hold it by trickling an endless ClientHello; the
/// upstream side has its own `idleTimeout`, so a client that closed its side cannot
/// hold the tunnel open on a host that says nothing.
async fn pump<R, W>(
    (client_read, client_write): (&mut R, &mut W),
    (upstream, first, limits): (TcpStream, Gathered, &Limits),
    (policy, host, record): (&Policy, &HostName, &mut Record),
) -> std::io::Result<()>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let upstream = IdleIo::new(upstream, limits.idle_timeout);
    let (mut upstream_read, mut upstream_write) = tokio::io::split(upstream);
    let down = async {
        tokio::io::copy(&mut upstream_read, client_write).await?;
        client_write.shutdown().await
    };
    // `Ok(false)`: refused.
    let up = async {
        let within = limits.tls_handshake_timeout;
        let (hello, first) = match read_hello(client_read, first, within).await? {
            FirstBytes::Read(hello, first) => (hello, first),
            FirstBytes::TooSlow => {
                // A limit, not policy: refused in report mode too.
                let reason = format!(
                    "the tunnel's first bytes did not make a whole TLS ClientHello within limits.tlsHandshakeTimeout ({within:?}) of the first one"
                );
                tracing::info!(%host, %reason, "tunnel refused");
                record.decide(Verdict::Deny, "limits.tlsHandshakeTimeout", &reason);
                return Ok(false);
            }
            FirstBytes::OverBudget(spent, first) => {
                // Memory, not policy: refused in report mode too.
                let reason = busy("this tunnel's first bytes", first.budget(), spent);
                tracing::info!(%host, %reason, "tunnel refused");
                record.decide(Verdict::Deny, BUSY_RULE, &reason);
                return Ok(false);
            }
        };
        if let Some(reason) = refusal(&hello, host) {
            tracing::info!(%host, %reason, "tunnel refused");
            if !enforce(policy, record, &Decision::deny("allowHosts", reason)) {
                return Ok(false);
            }
        }
        upstream_write.write_all(first.bytes()).await?;
        drop(first);
        tokio::io::copy(client_read, &mut upstream_write).await?;
        upstream_write.shutdown().await?;
        Ok(true)
    };
    tokio::pin!(down, up);
    // A refusal ends both directions at once; otherwise both run to their end.
    tokio::select! {
        up = &mut up => {
            if up? {
                down.await?;
            }
            Ok(())
        }
        down = &mut down => {
            down?;
            up.await.map(drop)
        }
    }
}

/// The client's first bytes, as far as it takes to know what they are.
enum FirstBytes {
    /// What they are, and the bytes.
    Read(Hello, Gathered),
    /// They did not show what they are in time.
    TooSlow,
    /// The memory budget let no more be held: why, and what was gathered.
    OverBudget(Spent, Gathered),
}

/// Reads the client's first bytes into `first`, as far as it takes to know what they
/// are, within `within` of the first one. The time starts only then: a client may wait
/// for the host to speak first (SMTP, FTP), for as long as `idleTimeout` allows.
async fn read_hello(
    client: &mut (impl tokio::io::AsyncRead + Unpin),
    mut first: Gathered,
    within: std::time::Duration,
) -> std::io::Result<FirstBytes> {
    let mut chunk = vec![0; READ_CHUNK];
    let mut needed = 1;
    let mut deadline = None;
    loop {
        let read = client.read(&mut chunk);
        let n = match deadline {
            None => read.await?,
            Some(deadline) => match tokio::time::timeout_at(deadline, read).await {
                Ok(n) => n?,
                Err(_) => return Ok(FirstBytes::TooSlow),
            },
        };
        deadline.get_or_insert_with(|| tokio::time::Instant::now() + within);
        if let Err(spent) = first.push(&chunk[..n], client_hello::MAX_HELLO) {
            return Ok(FirstBytes::OverBudget(spent, first));
        }
        if n == 0 {
            // The client closed its side: with nothing said, there is nothing to check;
            // a ClientHello cut short is not passed on unread.
            let hello = match first.len() {
                0 => Hello::NotTls,
                _ => Hello::Unreadable("the client stopped sending mid-ClientHello".into()),
            };
            return Ok(FirstBytes::Read(hello, first));
        }
        // Read again only once the bytes it waits for are there.
        if first.len() < needed {
            continue;
        }
        match client_hello::read(first.bytes()) {
            Ok(hello) => return Ok(FirstBytes::Read(hello, first)),
            Err(more) => needed = more,
        }
    }
}

/// Why a tunnel to `host` is refused, given what the client first sent.
pub(crate) fn refusal(hello: &Hello, host: &HostName) -> Option<String> {
    match hello {
        Hello::NotTls | Hello::Tls(None) => None,
        Hello::Tls(Some(name))
            if name
                .trim_end_matches('.')
                .eq_ignore_ascii_case(host.as_str()) =>
        {
            None
        }
        Hello::Tls(Some(name)) => Some(format!(
            "the TLS server name {name} in the tunnel to {host} is not that host: a tunnel reaches only the host allowHosts allowed; CONNECT to {name} instead"
        )),
        Hello::Unreadable(why) => Some(format!(
            "the TLS handshake in the tunnel to {host} has no readable ClientHello ({why}), so its server name cannot be checked"
        )),
    }
}

/// Counts what passes, so the totals survive a tunnel that ends in an error.
#[derive(Default)]
struct Counter {
    read: u64,
    written: u64,
}

impl Tap for Counter {
    fn read(&mut self, bytes: &[u8]) {
        self.read += bytes.len() as u64;
    }

    fn written(&mut self, n: usize) {
        self.written += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_hello::tests::client_hello;

    fn host(name: &str) -> HostName {
        HostName::parse(name).unwrap()
    }

    #[test]
    fn a_client_hello_for_another_host_is_refused() {
        let hello = client_hello::read(&client_hello("evil.example")).unwrap();
        let reason = refusal(&hello, &host("ok.example")).unwrap();
        assert!(reason.contains("evil.example in the tunnel to ok.example is not that host"));
        for same in ["ok.example", "OK.Example", "ok.example."] {
            assert_eq!(
                refusal(&Hello::Tls(Some(same.into())), &host("ok.example")),
                None
            );
        }
        assert_eq!(refusal(&Hello::Tls(None), &host("ok.example")), None);
        assert_eq!(refusal(&Hello::NotTls, &host("ok.example")), None);
        assert!(refusal(&Hello::Unreadable("x".into()), &host("ok.example")).is_some());
    }
}
