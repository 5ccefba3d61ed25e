//! Live policy: the config file is watched (and re-read on SIGHUP); a valid new policy
//! takes effect for new requests at once, an invalid one is refused and the old one stays.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use gitgate_proxy::Proxy;

use crate::config::Config;

/// How often the file is looked at.
const POLL: Duration = Duration::from_secs(1);

/// What identifies the file's content without reading it: following symlinks, so the
/// atomic `..data` swap a kubelet does for a ConfigMap counts as a change.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct Stamp {
    device: u64,
    inode: u64,
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        device: meta.dev(),
        inode: meta.ino(),
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

/// Watches the config file of a running proxy.
pub(crate) struct Watcher {
    proxy: Arc<Proxy>,
    path: PathBuf,
    last: Mutex<Option<Stamp>>,
}

impl Watcher {
    pub(crate) fn new(proxy: Arc<Proxy>, path: PathBuf) -> Self {
        let last = Mutex::new(stamp(&path));
        Self { proxy, path, last }
    }

    /// Polls the file forever; reloads when it changed.
    pub(crate) async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(POLL);
        loop {
            tick.tick().await;
            let now = stamp(&self.path);
            let changed = {
                let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
                let changed = now.is_some() && now != *last;
                if changed {
                    *last = now;
                }
                changed
            };
            if changed {
                self.reload();
            }
        }
    }

    /// Reads the file again and applies its policy, or records why not.
    pub(crate) fn reload(&self) {
        let file = self.path.display().to_string();
        match Config::load(&self.path) {
            Ok(config) => {
                let hash = self.proxy.set_policy(config.policy, &file);
                tracing::info!(%file, policy_hash = %hash, "policy reloaded");
            }
            Err(error) => {
                tracing::error!(%error, "policy reload refused; the previous policy stays in force");
                self.proxy.reload_failed(&file, &error.to_string());
            }
        }
    }
}
