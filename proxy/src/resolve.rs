//! Name lookups for upstream connections, through the system resolver (`getaddrinfo`) on
//! tokio's blocking threads. Those threads are shared with held pushes' file work, so a
//! client asking for many slow names must not take them all: at most [`MAX_IN_FLIGHT`]
//! lookups run at once, lookups of one name at the same time share one, and a caller
//! waits at most its deadline (a lookup that outlives it keeps its thread, and its place,
//! until the resolver answers).

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, watch};

/// Lookups running at once, whatever the clients.
pub(crate) const MAX_IN_FLIGHT: usize = 64;

/// What a lookup found, shared by everyone who waited for it.
type Answer = Result<Arc<[SocketAddr]>, (io::ErrorKind, String)>;

/// Where the answer of one running lookup goes to everyone waiting for it.
type Shared = Arc<watch::Sender<Option<Answer>>>;

/// Looks `host` up for `port` (blocking).
type Lookup = dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync;

/// Bounded, shared name lookups.
pub(crate) struct Resolver {
    /// The lookups running or queued, by name and port.
    in_flight: Mutex<HashMap<(String, u16), Shared>>,
    slots: Arc<Semaphore>,
    lookup: Arc<Lookup>,
}

impl Resolver {
    /// The system resolver, at most [`MAX_IN_FLIGHT`] lookups at once.
    pub(crate) fn system() -> Arc<Self> {
        Self::new(
            MAX_IN_FLIGHT,
            Arc::new(|host, port| (host, port).to_socket_addrs().map(Iterator::collect)),
        )
    }

    fn new(slots: usize, lookup: Arc<Lookup>) -> Arc<Self> {
        Arc::new(Self {
            in_flight: Mutex::default(),
            slots: Arc::new(Semaphore::new(slots)),
            lookup,
        })
    }

    /// The addresses of `host:port`, or why there are none; gives up after `deadline`.
    pub(crate) async fn lookup(
        self: &Arc<Self>,
        host: &str,
        port: u16,
        deadline: Duration,
    ) -> io::Result<Arc<[SocketAddr]>> {
        let mut answer = self.join(host, port);
        let waited = tokio::time::timeout(deadline, answer.wait_for(Option::is_some)).await;
        match waited {
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no answer from the system resolver in {} s (upstream.connectTimeout)",
                    deadline.as_secs()
                ),
            )),
            Ok(Err(_)) => Err(io::Error::other("the lookup was abandoned")),
            Ok(Ok(found)) => match found.clone().expect("waited for an answer") {
                Ok(addrs) => Ok(addrs),
                Err((kind, message)) => Err(io::Error::new(kind, message)),
            },
        }
    }

    /// A receiver for the answer of the lookup of `host:port`, started if none runs.
    fn join(self: &Arc<Self>, host: &str, port: u16) -> watch::Receiver<Option<Answer>> {
        let key = (host.to_owned(), port);
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(running) = in_flight.get(&key) {
            return running.subscribe();
        }
        let (sender, receiver) = watch::channel(None);
        let sender = Arc::new(sender);
        in_flight.insert(key.clone(), Arc::clone(&sender));
        drop(in_flight);
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let answer = this.run(&key, &sender).await;
            this.in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
            if let Some(answer) = answer {
                sender.send_replace(Some(answer));
            }
        });
        receiver
    }

    /// Runs the lookup once a place is free; `None` if every caller left before that.
    async fn run(
        &self,
        (host, port): &(String, u16),
        waiting: &watch::Sender<Option<Answer>>,
    ) -> Option<Answer> {
        let slot = tokio::select! {
            slot = Arc::clone(&self.slots).acquire_owned() => slot.ok()?,
            () = waiting.closed() => return None,
        };
        let lookup = Arc::clone(&self.lookup);
        let (host, port) = (host.clone(), *port);
        let found = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            lookup(&host, port)
        })
        .await;
        Some(match found {
            Ok(Ok(addrs)) => Ok(addrs.into()),
            Ok(Err(error)) => Err((error.kind(), error.to_string())),
            Err(_) => Err((io::ErrorKind::Other, "the lookup failed".to_owned())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    /// A resolver whose lookups each wait for a go on `gate`, counting those started.
    fn gated(slots: usize) -> (Arc<Resolver>, mpsc::SyncSender<()>, Arc<AtomicUsize>) {
        let (go, gate) = mpsc::sync_channel::<()>(64);
        let gate = Mutex::new(gate);
        let started = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&started);
        let resolver = Resolver::new(
            slots,
            Arc::new(move |host, port| {
                counted.fetch_add(1, Ordering::SeqCst);
                gate.lock().unwrap().recv().unwrap();
                match host {
                    "missing.test" => Err(io::Error::new(io::ErrorKind::NotFound, "no such host")),
                    _ => Ok(vec![SocketAddr::from(([192, 0, 2, 1], port))]),
                }
            }),
        );
        (resolver, go, started)
    }

    async fn until(mut condition: impl FnMut() -> bool) {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lookups_of_one_name_at_once_share_one() {
        let (resolver, go, started) = gated(4);
        let callers: Vec<_> = (0..10)
            .map(|_| {
                let resolver = Arc::clone(&resolver);
                tokio::spawn(async move {
                    resolver
                        .lookup("a.test", 443, Duration::from_secs(30))
                        .await
                })
            })
            .collect();
        until(|| {
            let in_flight = resolver.in_flight.lock().unwrap();
            in_flight
                .values()
                .map(|s| s.receiver_count())
                .sum::<usize>()
                == 10
        })
        .await;
        go.send(()).unwrap();
        for caller in callers {
            let addrs = caller.await.unwrap().unwrap();
            assert_eq!(&*addrs, &[SocketAddr::from(([192, 0, 2, 1], 443))]);
        }
        assert_eq!(
            started.load(Ordering::SeqCst),
            1,
            "one lookup for ten callers"
        );
        // A later lookup asks again.
        let again = tokio::spawn({
            let resolver = Arc::clone(&resolver);
            async move {
                resolver
                    .lookup("a.test", 443, Duration::from_secs(30))
                    .await
            }
        });
        until(|| started.load(Ordering::SeqCst) == 2).await;
        go.send(()).unwrap();
        assert!(again.await.unwrap().is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_the_limit_runs_at_once_and_a_late_answer_keeps_its_place() {
        let (resolver, go, started) = gated(2);
        let ask = |name: &'static str, deadline| {
            let resolver = Arc::clone(&resolver);
            tokio::spawn(async move { resolver.lookup(name, 443, deadline).await })
        };
        let short = Duration::from_millis(100);
        let slow = [ask("1.test", short), ask("2.test", short)];
        until(|| started.load(Ordering::SeqCst) == 2).await;
        for caller in slow {
            let error = caller.await.unwrap().unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::TimedOut);
            assert!(
                error.to_string().contains("upstream.connectTimeout"),
                "{error}"
            );
        }
        // Both resolver calls still run: a third name waits for a place.
        let third = ask("missing.test", Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            started.load(Ordering::SeqCst),
            2,
            "no third lookup while two run"
        );
        go.send(()).unwrap();
        until(|| started.load(Ordering::SeqCst) == 3).await;
        go.send(()).unwrap();
        go.send(()).unwrap();
        let error = third.await.unwrap().unwrap_err();
        assert_eq!(
            error.kind(),
            io::ErrorKind::NotFound,
            "the resolver's error: {error}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_queued_lookup_everyone_left_is_never_run() {
        let (resolver, go, started) = gated(1);
        let busy = tokio::spawn({
            let resolver = Arc::clone(&resolver);
            async move {
                resolver
                    .lookup("1.test", 443, Duration::from_secs(30))
                    .await
            }
        });
        until(|| started.load(Ordering::SeqCst) == 1).await;
        let gone = resolver
            .lookup("2.test", 443, Duration::from_millis(50))
            .await;
        assert_eq!(gone.unwrap_err().kind(), io::ErrorKind::TimedOut);
        go.send(()).unwrap();
        assert!(busy.await.unwrap().is_ok());
        until(|| resolver.in_flight.lock().unwrap().is_empty()).await;
        assert_eq!(
            started.load(Ordering::SeqCst),
            1,
            "2.test was never looked up"
        );
    }
}
