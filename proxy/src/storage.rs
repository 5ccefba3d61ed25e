//! Git LFS storage hosts a client may tunnel to, each granted by a batch response
//! gitgate forwarded to that client, until the actions expire.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use gitgate_policy::HostName;
use gitgate_policy::git::lfs::StorageGrant;

/// Clients tracked at once; past it, expired grants are dropped, then the client whose
/// grants end soonest.
const MAX_CLIENTS: usize = 4096;
/// Grants kept per client; past it, the soonest to expire go first.
const MAX_PER_CLIENT: usize = 64;

/// Who a grant is for: the profile and the address of the client.
pub(crate) type Client = (Option<Arc<str>>, IpAddr);

/// The grants in force.
#[derive(Default)]
pub(crate) struct StorageGrants {
    clients: Mutex<HashMap<Client, Vec<StorageGrant>>>,
}

impl StorageGrants {
    /// Adds `grants` for `client`, extending any it already has.
    pub(crate) fn grant(&self, client: Client, grants: Vec<StorageGrant>, now: SystemTime) {
        if grants.is_empty() {
            return;
        }
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&client) {
            clients.retain(|_, held| {
                held.retain(|g| g.until > now);
                !held.is_empty()
            });
            let soonest = clients
                .iter()
                .min_by_key(|(_, held)| held.iter().map(|g| g.until).max())
                .map(|(client, _)| client.clone());
            if let Some(soonest) = soonest.filter(|_| clients.len() >= MAX_CLIENTS) {
                clients.remove(&soonest);
            }
        }
        let held = clients.entry(client).or_default();
        held.retain(|g| g.until > now);
        for grant in grants {
            match held
                .iter_mut()
                .find(|g| g.host == grant.host && g.port == grant.port)
            {
                Some(g) => g.until = g.until.max(grant.until),
                None => held.push(grant),
            }
        }
        if held.len() > MAX_PER_CLIENT {
            held.sort_by_key(|g| std::cmp::Reverse(g.until));
            held.truncate(MAX_PER_CLIENT);
        }
    }

    /// Keeps the grants of the clients `keep` names (those whose policy is unchanged);
    /// the next batch response makes the others again under their new policy.
    pub(crate) fn retain(&self, keep: impl Fn(&Client) -> bool) {
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|client, _| keep(client));
    }

    /// Until when `client` may tunnel to `host:port`, if it may now.
    pub(crate) fn until(
        &self,
        client: &Client,
        host: &HostName,
        port: u16,
        now: SystemTime,
    ) -> Option<SystemTime> {
        let clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .get(client)?
            .iter()
            .find(|g| &g.host == host && g.port == port && g.until > now)
            .map(|g| g.until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn grants_are_per_client_and_expire() {
        let grants = StorageGrants::default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let host = HostName::parse("storage.example").unwrap();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a: Client = (Some("a".into()), ip);
        let b: Client = (Some("b".into()), ip);
        let grant = |secs| StorageGrant {
            host: host.clone(),
            port: 443,
            until: now + Duration::from_secs(secs),
        };
        grants.grant(a.clone(), vec![grant(60)], now);
        grants.grant(a.clone(), vec![grant(30)], now);
        assert_eq!(
            grants.until(&a, &host, 443, now),
            Some(now + Duration::from_secs(60))
        );
        assert_eq!(grants.until(&a, &host, 8443, now), None);
        assert_eq!(grants.until(&b, &host, 443, now), None);
        assert_eq!(
            grants.until(&a, &host, 443, now + Duration::from_secs(60)),
            None
        );
        grants.retain(|client| client != &a);
        assert_eq!(
            grants.until(&a, &host, 443, now),
            None,
            "a reload that changed a's policy drops a's grants"
        );
    }

    #[test]
    fn a_full_table_drops_the_client_whose_grants_end_soonest_not_everyone() {
        let grants = StorageGrants::default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let host = HostName::parse("storage.example").unwrap();
        let grant = |secs| StorageGrant {
            host: host.clone(),
            port: 443,
            until: now + Duration::from_secs(secs),
        };
        let client = |n: u32| -> Client { (None, IpAddr::from(n.to_be_bytes())) };
        for n in 0..MAX_CLIENTS as u32 {
            grants.grant(client(n), vec![grant(100 + u64::from(n))], now);
        }
        grants.grant(client(u32::MAX), vec![grant(50)], now);
        assert_eq!(
            grants.until(&client(0), &host, 443, now),
            None,
            "the soonest"
        );
        for n in [1, 2000, MAX_CLIENTS as u32 - 1, u32::MAX] {
            assert!(grants.until(&client(n), &host, 443, now).is_some(), "{n}");
        }
    }
}
