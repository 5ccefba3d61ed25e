//! Connection admission: at most N client connections overall and M per client address,
//! so one sandbox cannot take the proxy from the others.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Which limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `limits.maxConnections`.
    Total(usize),
    /// `limits.maxConnectionsPerClient`.
    PerClient(usize),
}

impl Refused {
    pub(crate) fn rule(self) -> &'static str {
        match self {
            Refused::Total(_) => "limits.maxConnections",
            Refused::PerClient(_) => "limits.maxConnectionsPerClient",
        }
    }

    pub(crate) fn reason(self, client: IpAddr) -> String {
        match self {
            Refused::Total(n) => {
                format!(
                    "gitgate is serving its maximum of {n} connections (limits.maxConnections); retry shortly"
                )
            }
            Refused::PerClient(n) => format!(
                "{client} already has {n} open connections (limits.maxConnectionsPerClient); close some and retry"
            ),
        }
    }
}

/// Counts open connections.
pub(crate) struct Admission {
    total: Arc<Semaphore>,
    max_total: usize,
    max_per_client: usize,
    per_client: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// Held while a connection is open.
pub(crate) struct Admitted {
    _total: OwnedSemaphorePermit,
    client: IpAddr,
    per_client: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut map = self.per_client.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.client);
            }
        }
    }
}

impl Admission {
    pub(crate) fn new(max_total: usize, max_per_client: usize) -> Self {
        Self {
            total: Arc::new(Semaphore::new(max_total)),
            max_total,
            max_per_client,
            per_client: Arc::default(),
        }
    }

    /// Admits a connection from `client`, or says which limit refuses it.
    pub(crate) fn admit(&self, client: IpAddr) -> Result<Admitted, Refused> {
        let mut map = self.per_client.lock().unwrap_or_else(|p| p.into_inner());
        if map
            .get(&client)
            .is_some_and(|open| *open >= self.max_per_client)
        {
            return Err(Refused::PerClient(self.max_per_client));
        }
        // The overall permit first: a refused client leaves no entry behind.
        let permit = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Total(self.max_total))?;
        *map.entry(client).or_insert(0) += 1;
        Ok(Admitted {
            _total: permit,
            client,
            per_client: self.per_client.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_client_and_overall_and_frees_on_drop() {
        let a = Admission::new(3, 2);
        let x: IpAddr = "127.0.0.2".parse().unwrap();
        let y: IpAddr = "127.0.0.3".parse().unwrap();
        let x1 = a.admit(x).unwrap();
        let _x2 = a.admit(x).unwrap();
        assert_eq!(a.admit(x).err(), Some(Refused::PerClient(2)));
        let _y1 = a.admit(y).unwrap();
        assert_eq!(a.admit(y).err(), Some(Refused::Total(3)));
        // Clients refused at the overall limit are not remembered.
        for i in 0..100u8 {
            let z = IpAddr::from([10, 0, 0, i]);
            assert_eq!(a.admit(z).err(), Some(Refused::Total(3)));
        }
        assert_eq!(a.per_client.lock().unwrap().len(), 2);
        drop(x1);
        assert!(a.admit(y).is_ok());
        assert!(
            a.per_client
                .lock()
                .unwrap()
                .get(&x)
                .is_some_and(|n| *n == 1)
        );
    }
}
