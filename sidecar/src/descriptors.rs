//! The open-file limit: the soft limit raised to the hard one at start (as Go and nginx
//! do), and a warning when even that cannot hold what the connection limits allow, since
//! past it new connections fail for every client alike.

use gitgate_proxy::Limits;
use rustix::process::{Resource, getrlimit, setrlimit};

/// Raises the soft open-file limit to the hard one; returns the limit now in force, or
/// `None` when it is unlimited.
pub(crate) fn raise() -> Option<u64> {
    /// Linux refuses an unlimited open-file limit: its most (`fs.nr_open`'s default).
    const UNLIMITED: u64 = 1 << 20;
    let mut limit = getrlimit(Resource::Nofile);
    let wanted = Some(limit.maximum.unwrap_or(UNLIMITED));
    if limit.current.is_some_and(|current| Some(current) < wanted) {
        limit.current = wanted;
        if let Err(error) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(%error, "cannot raise the open-file limit to its hard limit");
            limit = getrlimit(Resource::Nofile);
        }
    }
    limit.current
}

/// Why `available` descriptors are too few for `limits`, if they are.
pub(crate) fn shortfall(limits: &Limits, available: Option<u64>) -> Option<String> {
    let needed = limits.descriptors_needed();
    let available = available.filter(|a| *a < needed)?;
    Some(format!(
        "the open-file limit is {available}, below the {needed} descriptors limits.maxConnections ({}) can take (two per connection, the idle upstream pool, held pushes' files and admin connections): past it, new connections fail for every client, and one client can take them all; raise the hard limit (systemd LimitNOFILE=, docker run --ulimit nofile=, ulimit -Hn) or lower limits.maxConnections and limits.maxConnectionsPerClient",
        limits.max_connections
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_few_descriptors_for_the_connection_limit_are_named() {
        let limits = Limits::default();
        let needed = limits.descriptors_needed();
        assert!(needed > 2 * limits.max_connections as u64);
        assert_eq!(shortfall(&limits, None), None, "unlimited");
        assert_eq!(shortfall(&limits, Some(needed)), None);
        let short = shortfall(&limits, Some(1024)).unwrap();
        assert!(
            short.starts_with(&format!("the open-file limit is 1024, below the {needed}")),
            "{short}"
        );
    }
}
