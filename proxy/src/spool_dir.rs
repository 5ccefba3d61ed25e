//! Where held pushes are written: a directory of this process's own under the temporary
//! directory (`TMPDIR`), locked while the process lives. A gitgate killed before it could
//! remove its files (SIGKILL, the OOM killer) leaves its directory unlocked, and the next
//! gitgate to start on the same temporary directory removes it, so that restarts in one
//! pod (whose `emptyDir` outlives them) do not fill the disk.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The names of spool directories start with this.
const PREFIX: &str = "gitgate-spool-";
/// The file in a spool directory that its gitgate keeps locked.
const LOCK: &str = "lock";
/// A spool directory without its lock file is removed only once this old: another
/// gitgate may be creating it right now.
const UNLOCKED_GRACE: Duration = Duration::from_secs(60);

/// This process's spool directory; removed when dropped.
pub(crate) struct SpoolDir {
    dir: tempfile::TempDir,
    _lock: File,
}

impl SpoolDir {
    /// Removes what gitgates that are gone left in `parent`, then makes and locks a new
    /// directory there (mode 0700).
    fn create(parent: &Path) -> io::Result<Self> {
        sweep(parent);
        let dir = tempfile::Builder::new().prefix(PREFIX).tempdir_in(parent)?;
        let lock = File::create(dir.path().join(LOCK))?;
        lock.try_lock().map_err(io::Error::from)?;
        Ok(Self { dir, _lock: lock })
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Where held pushes go: this process's spool directory in `parent`, made on first use
/// (a gitgate that never holds a push needs no writable temporary directory) and made
/// again if something removed it.
pub(crate) struct SpoolPlace {
    parent: PathBuf,
    current: Mutex<Option<Arc<SpoolDir>>>,
}

impl SpoolPlace {
    /// Spool directories in `parent`; removes those that gitgates now gone left there.
    pub(crate) fn new(parent: PathBuf) -> Self {
        let removed = sweep(&parent);
        if removed > 0 {
            tracing::info!(
                directory = %parent.display(),
                removed,
                "removed the held-push directories that killed gitgates left"
            );
        }
        Self {
            parent,
            current: Mutex::new(None),
        }
    }

    /// This process's spool directory.
    pub(crate) fn dir(&self) -> io::Result<Arc<SpoolDir>> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        match current.as_ref() {
            Some(dir) if dir.path().is_dir() => Ok(dir.clone()),
            _ => {
                let dir = SpoolDir::create(&self.parent).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!(
                            "cannot make a directory for held pushes in {} ({e}); set TMPDIR to a writable directory",
                            self.parent.display()
                        ),
                    )
                })?;
                Ok(current.insert(Arc::new(dir)).clone())
            }
        }
    }
}

/// Removes the spool directories in `parent` that no living gitgate holds; returns how
/// many.
fn sweep(parent: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| {
            entry.file_name().to_str().is_some_and(|n| n.starts_with(PREFIX))
                // The entry itself: a symbolic link is not followed.
                && entry.file_type().is_ok_and(|t| t.is_dir())
                && abandoned(&entry.path())
        })
        .filter(|entry| std::fs::remove_dir_all(entry.path()).is_ok())
        .count()
}

/// Whether no gitgate holds `dir`: its lock file can be locked, or it has none and is
/// older than [`UNLOCKED_GRACE`].
fn abandoned(dir: &Path) -> bool {
    match File::open(dir.join(LOCK)) {
        Ok(lock) => lock.try_lock().is_ok(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::symlink_metadata(dir)
            .and_then(|m| m.modified())
            .is_ok_and(|at| at.elapsed().is_ok_and(|age| age > UNLOCKED_GRACE)),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool_dirs(parent: &Path) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(parent)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(PREFIX))
            .collect();
        dirs.sort();
        dirs
    }

    #[test]
    fn a_directory_whose_gitgate_is_gone_is_removed_and_a_held_one_stays() {
        let parent = tempfile::tempdir().unwrap();
        // A gitgate that was killed: its directory and lock file are there, unlocked.
        let gone = parent.path().join(format!("{PREFIX}gone"));
        std::fs::create_dir(&gone).unwrap();
        std::fs::write(gone.join(LOCK), "").unwrap();
        std::fs::write(gone.join("tmp.pack"), [0; 1024]).unwrap();
        // One being made right now, its lock file not there yet.
        let young = parent.path().join(format!("{PREFIX}young"));
        std::fs::create_dir(&young).unwrap();
        // Not gitgate's, and a link to elsewhere that must not be followed.
        let other = parent.path().join("other");
        std::fs::create_dir(&other).unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join(LOCK), "").unwrap();
        std::os::unix::fs::symlink(
            elsewhere.path(),
            parent.path().join(format!("{PREFIX}link")),
        )
        .unwrap();

        let place = SpoolPlace::new(parent.path().to_owned());
        assert!(!gone.exists());
        assert!(young.exists() && other.exists());
        assert!(elsewhere.path().join(LOCK).exists());

        // A living gitgate's directory is kept by another's sweep, and its own is reused.
        let held = place.dir().unwrap();
        assert!(held.path().join(LOCK).exists());
        let second = SpoolPlace::new(parent.path().to_owned());
        let theirs = second.dir().unwrap();
        assert!(held.path().exists() && theirs.path().exists());
        assert!(Arc::ptr_eq(&held, &place.dir().unwrap()));
        assert_eq!(
            spool_dirs(parent.path()).len(),
            4,
            "link, young and two held"
        );

        // Once the first one is gone, the next sweep takes its directory.
        let path = held.path().to_owned();
        drop((held, place));
        assert!(!path.exists(), "removed when dropped");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join(LOCK), "").unwrap();
        SpoolPlace::new(parent.path().to_owned());
        assert!(!path.exists());
        assert!(theirs.path().exists());
    }

    #[test]
    fn a_spool_directory_removed_from_under_gitgate_is_made_again() {
        let parent = tempfile::tempdir().unwrap();
        let place = SpoolPlace::new(parent.path().to_owned());
        let first = place.dir().unwrap().path().to_owned();
        std::fs::remove_dir_all(&first).unwrap();
        let again = place.dir().unwrap();
        assert!(again.path().is_dir());
        assert_ne!(again.path(), first);
    }

    #[test]
    fn an_unwritable_temporary_directory_is_named_with_what_to_do() {
        let place = SpoolPlace::new(PathBuf::from("/nonexistent/gitgate-test"));
        let error = place.dir().err().unwrap().to_string();
        assert!(
            error.starts_with(
                "cannot make a directory for held pushes in /nonexistent/gitgate-test ("
            ) && error.ends_with("); set TMPDIR to a writable directory"),
            "{error}"
        );
    }
}
