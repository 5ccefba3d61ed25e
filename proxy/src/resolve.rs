//! Name lookups for upstream connections, through the system resolver (`getaddrinfo`) on
//! tokio's blocking threads. Those threads are shared with held pushes' file work, so
//! clients asking for many slow names must not take them all: at most [`MAX_IN_FLIGHT`]
//! lookups run at once, and one client address starts at most [`MAX_PER_CLIENT`] of
//! them; lookups of one name at the same time share one; a caller waits at most its
//! deadline (a lookup that outlives it keeps its thread, and its place, until the
//! resolver answers), and a queued lookup whose callers all left is never run.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Semaphore, watch};

/// Lookups running at once, whatever the clients.
pub(crate) const MAX_IN_FLIGHT: usize = 64;
/// Lookups one client address may have started and not seen answered.
pub(crate) const MAX_PER_CLIENT: usize = 16;

/// What a lookup found, shared by everyone who waited for it.
type Answer = Result<Arc<[SocketAddr]>, (io::ErrorKind, String)>;

/// Where one lookup is, as everyone waiting for it sees it.
#[derive(Clone)]
enum Progress {
    /// Waiting for one of the places.
    Queued,
    /// Asked of the system resolver.
    Asked,
    Done(Answer),
}

/// Looks `host` up for `port` (blocking).
type Lookup = dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync;

/// The lookups not yet answered: by name and port, and how many each client started.
#[derive(Default)]
struct InFlight {
    by_name: HashMap<(String, u16), Arc<watch::Sender<Progress>>>,
    by_client: HashMap<IpAddr, usize>,
}

/// Bounded, shared name lookups.
pub(crate) struct Resolver {
    in_flight: Mutex<InFlight>,
    /// How many lookups may run at once.
    places: usize,
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
            places: slots,
            slots: Arc::new(Semaphore::new(slots)),
            lookup,
        })
    }

    fn in_flight(&self) -> MutexGuard<'_, InFlight> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The addresses of `host:port`, or why there are none; gives up after `deadline`.
    /// A lookup `client` starts counts against its share until the resolver answers.
    pub(crate) async fn lookup(
        self: &Arc<Self>,
        host: &str,
        port: u16,
        deadline: Duration,
        client: Option<IpAddr>,
    ) -> io::Result<Arc<[SocketAddr]>> {
        let mut progress = self.join(host, port, client)?;
        let done = |p: &Progress| matches!(p, Progress::Done(_));
        let waited = tokio::time::timeout(deadline, progress.wait_for(done)).await;
        match waited.map(|answer| answer.map(|answer| answer.clone())) {
            Ok(Ok(answer)) => match answer {
                Progress::Done(Ok(addrs)) => Ok(addrs),
                Progress::Done(Err((kind, message))) => Err(io::Error::new(kind, message)),
                Progress::Queued | Progress::Asked => unreachable!("waited for the answer"),
            },
            Ok(Err(_)) => Err(io::Error::other("gitgate is shutting down")),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                match *progress.borrow() {
                    Progress::Queued => format!(
                        "all {} name lookups gitgate runs at once were busy for {deadline:?} (upstream.connectTimeout); retry shortly",
                        self.places
                    ),
                    _ => format!(
                        "no answer from the system resolver in {deadline:?} (upstream.connectTimeout); check the DNS configuration of gitgate's host"
                    ),
                },
            )),
        }
    }

    /// Where the lookup of `host:port` is, started if none runs.
    fn join(
        self: &Arc<Self>,
        host: &str,
        port: u16,
        client: Option<IpAddr>,
    ) -> io::Result<watch::Receiver<Progress>> {
        let key = (host.to_owned(), port);
        let mut in_flight = self.in_flight();
        if let Some(running) = in_flight.by_name.get(&key) {
            return Ok(running.subscribe());
        }
        if let Some(client) = client {
            let started = in_flight.by_client.entry(client).or_default();
            if *started >= MAX_PER_CLIENT {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "this client already waits for {MAX_PER_CLIENT} name lookups, the most one client may; retry once they are answered"
                    ),
                ));
            }
            *started += 1;
        }
        let (sender, receiver) = watch::channel(Progress::Queued);
        let sender = Arc::new(sender);
        in_flight.by_name.insert(key.clone(), Arc::clone(&sender));
        drop(in_flight);
        let mut ended = Ended {
            resolver: Arc::clone(self),
            key,
            client,
            forgotten: false,
        };
        tokio::spawn(async move {
            loop {
                let answer = ended.resolver.run(&ended.key, &sender).await;
                let resolver = Arc::clone(&ended.resolver);
                let mut in_flight = resolver.in_flight();
                // Everyone left while it was queued: done, unless someone joined since
                // (under this lock, so no one joins after the check).
                if answer.is_some() || sender.receiver_count() == 0 {
                    ended.forget(&mut in_flight);
                    drop(in_flight);
                    if let Some(answer) = answer {
                        sender.send_replace(Progress::Done(answer));
                    }
                    return;
                }
            }
        });
        Ok(receiver)
    }

    /// Runs the lookup once a place is free; `None` if every caller left before that.
    async fn run(
        &self,
        (host, port): &(String, u16),
        progress: &watch::Sender<Progress>,
    ) -> Option<Answer> {
        let slot = tokio::select! {
            biased;
            () = progress.closed() => return None,
            slot = Arc::clone(&self.slots).acquire_owned() => slot.ok()?,
        };
        if progress.receiver_count() == 0 {
            return None;
        }
        progress.send_replace(Progress::Asked);
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
            Err(error) => Err((io::ErrorKind::Other, format!("the lookup failed: {error}"))),
        })
    }
}

/// Forgets a lookup once it is answered or abandoned, the task that ran it ending however
/// it ends: later callers start another, its client's share comes back.
struct Ended {
    resolver: Arc<Resolver>,
    key: (String, u16),
    client: Option<IpAddr>,
    forgotten: bool,
}

impl Ended {
    fn forget(&mut self, in_flight: &mut InFlight) {
        if std::mem::replace(&mut self.forgotten, true) {
            return;
        }
        in_flight.by_name.remove(&self.key);
        if let Some(client) = self.client
            && let Some(started) = in_flight.by_client.get_mut(&client)
        {
            *started -= 1;
            if *started == 0 {
                in_flight.by_client.remove(&client);
            }
        }
    }
}

impl Drop for Ended {
    fn drop(&mut self) {
        let resolver = Arc::clone(&self.resolver);
        self.forget(&mut resolver.in_flight());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    const LONG: Duration = Duration::from_secs(30);

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

    /// Waits until `condition` holds; fails the test after 10 s.
    async fn until(mut condition: impl FnMut() -> bool) {
        let started = std::time::Instant::now();
        while !condition() {
            assert!(started.elapsed() < Duration::from_secs(10), "not in 10 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn ask(
        resolver: &Arc<Resolver>,
        name: &'static str,
        deadline: Duration,
        client: Option<IpAddr>,
    ) -> tokio::task::JoinHandle<io::Result<Arc<[SocketAddr]>>> {
        let resolver = Arc::clone(resolver);
        tokio::spawn(async move { resolver.lookup(name, 443, deadline, client).await })
    }

    fn waiting(resolver: &Resolver) -> usize {
        let in_flight = resolver.in_flight();
        in_flight.by_name.values().map(|s| s.receiver_count()).sum()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lookups_of_one_name_at_once_share_one() {
        let (resolver, go, started) = gated(4);
        let callers: Vec<_> = (0..10)
            .map(|_| ask(&resolver, "a.test", LONG, None))
            .collect();
        until(|| waiting(&resolver) == 10).await;
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
        let again = ask(&resolver, "a.test", LONG, None);
        until(|| started.load(Ordering::SeqCst) == 2).await;
        go.send(()).unwrap();
        assert!(again.await.unwrap().is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_the_limit_runs_at_once_and_a_late_answer_keeps_its_place() {
        let (resolver, go, started) = gated(2);
        let short = Duration::from_millis(300);
        let slow = [
            ask(&resolver, "1.test", short, None),
            ask(&resolver, "2.test", short, None),
        ];
        until(|| started.load(Ordering::SeqCst) == 2).await;
        for caller in slow {
            let error = caller.await.unwrap().unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::TimedOut);
            assert!(
                error
                    .to_string()
                    .contains("no answer from the system resolver in 300ms"),
                "{error}"
            );
        }
        // Both resolver calls still run: a third name waits for a place, and says so.
        let queued = ask(&resolver, "3.test", short, None).await.unwrap();
        let error = queued.unwrap_err().to_string();
        assert!(
            error.contains("all 2 name lookups gitgate runs at once were busy for 300ms"),
            "{error}"
        );
        let third = ask(&resolver, "missing.test", LONG, None);
        until(|| waiting(&resolver) == 1).await;
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
        until(|| resolver.in_flight().by_name.is_empty()).await;
        assert_eq!(
            started.load(Ordering::SeqCst),
            3,
            "3.test, abandoned, never ran"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_queued_lookup_joined_as_its_callers_leave_still_answers() {
        let (resolver, go, started) = gated(1);
        let busy = ask(&resolver, "1.test", LONG, None);
        until(|| started.load(Ordering::SeqCst) == 1).await;
        // 2.test waits behind 1.test; its caller leaves while someone joins, as `join`
        // does, under the lock the lookup's task takes to see whether anyone is left.
        let gone = ask(&resolver, "2.test", Duration::from_millis(100), None);
        until(|| waiting(&resolver) == 2).await;
        let holder = Arc::clone(&resolver);
        let joining = tokio::task::spawn_blocking(move || {
            let in_flight = holder.in_flight();
            std::thread::sleep(Duration::from_millis(300));
            in_flight.by_name[&("2.test".to_owned(), 443)].subscribe()
        });
        assert!(gone.await.unwrap().is_err());
        let mut joined = joining.await.unwrap();
        go.send(()).unwrap();
        assert!(busy.await.unwrap().is_ok());
        until(|| started.load(Ordering::SeqCst) == 2).await;
        go.send(()).unwrap();
        let answer =
            tokio::time::timeout(LONG, joined.wait_for(|p| matches!(p, Progress::Done(_))))
                .await
                .unwrap()
                .map(|p| matches!(*p, Progress::Done(Ok(_))));
        assert!(matches!(answer, Ok(true)), "answered, not abandoned");
        until(|| resolver.in_flight().by_name.is_empty()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_client_starts_at_most_its_share_and_gets_it_back_when_answered() {
        let (resolver, go, started) = gated(MAX_IN_FLIGHT);
        let greedy: IpAddr = [10, 0, 0, 1].into();
        let names: Vec<&'static str> = (0..MAX_PER_CLIENT)
            .map(|i| &*format!("{i}.test").leak())
            .collect();
        let held: Vec<_> = names
            .iter()
            .map(|name| ask(&resolver, name, LONG, Some(greedy)))
            .collect();
        until(|| started.load(Ordering::SeqCst) == MAX_PER_CLIENT).await;
        let refused = resolver.lookup("more.test", 443, LONG, Some(greedy)).await;
        let error = refused.unwrap_err().to_string();
        assert!(
            error.contains("already waits for 16 name lookups"),
            "{error}"
        );
        // Joining a lookup already running costs nothing; another client still starts one.
        let joined = ask(&resolver, names[0], LONG, Some(greedy));
        let other = ask(&resolver, "other.test", LONG, Some([10, 0, 0, 2].into()));
        until(|| started.load(Ordering::SeqCst) == MAX_PER_CLIENT + 1).await;
        until(|| waiting(&resolver) == MAX_PER_CLIENT + 2).await;
        for _ in 0..=MAX_PER_CLIENT {
            go.send(()).unwrap();
        }
        for caller in held.into_iter().chain([joined, other]) {
            assert!(caller.await.unwrap().is_ok());
        }
        until(|| resolver.in_flight().by_client.is_empty()).await;
        let again = ask(&resolver, "more.test", LONG, Some(greedy));
        go.send(()).unwrap();
        assert!(again.await.unwrap().is_ok(), "the share came back");
    }
}
