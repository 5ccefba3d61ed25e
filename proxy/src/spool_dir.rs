//! Where held pushes are written: a directory of this process's own under the temporary
//! directory (`TMPDIR`), mode 0700, which the process keeps locked (`flock` on the
//! directory itself, which `systemd-tmpfiles` also respects). A gitgate killed before it
//! could remove its files (SIGKILL, the OOM killer) leaves its directory unlocked, and
//! the next gitgate to start on the same temporary directory removes it, so that
//! restarts in one pod (whose `emptyDir` outlives them) do not fill the disk.
//!
//! A directory is made under a name the sweep does not take, locked, and only then
//! renamed to [`PREFIX`]`…`: a swept name is never one whose maker is alive and has not
//! locked it yet.

use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::fs::{Mode, OFlags};

/// The names of spool directories start with this.
const PREFIX: &str = "gitgate-spool-";
/// A spool directory being made has this name until it is locked.
const MAKING: &str = ".gitgate-spool-new-";
/// A directory of [`MAKING`] is removed only once this old and unlocked: its maker may
/// be about to lock it.
const MAKING_GRACE: Duration = Duration::from_secs(60);

/// This process's spool directory, locked; removed when dropped.
pub(crate) struct SpoolDir {
    path: PathBuf,
    _lock: File,
}

impl SpoolDir {
    /// Makes, locks and names a new spool directory in `parent`.
    fn create(parent: &Path) -> io::Result<Self> {
        let making = tempfile::Builder::new()
            .prefix(MAKING)
            .rand_bytes(16)
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(parent)?;
        let lock = open_dir(making.path())?;
        lock.try_lock().map_err(io::Error::from)?;
        let name = making
            .path()
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(MAKING))
            .ok_or_else(|| io::Error::other("tempfile made an unexpected name"))?;
        let path = parent.join(format!("{PREFIX}{name}"));
        std::fs::rename(making.path(), &path)?;
        // Renamed: the guard's path is gone, and the directory is ours to remove.
        let _ = making.keep();
        Ok(Self { path, _lock: lock })
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SpoolDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
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
    /// Blocking: call it before serving.
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
    pub(crate) async fn dir(&self) -> io::Result<Arc<SpoolDir>> {
        if let Some(dir) = self.current() {
            return Ok(dir);
        }
        let parent = self.parent.clone();
        let made = tokio::task::spawn_blocking(move || SpoolDir::create(&parent))
            .await
            .map_err(io::Error::other)?
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot make a directory for held pushes in {} ({e}); set TMPDIR to a writable directory",
                        self.parent.display()
                    ),
                )
            })?;
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        match current.as_ref() {
            // Another push made one meanwhile: `made` is removed as it drops.
            Some(dir) if dir.path().is_dir() => Ok(dir.clone()),
            _ => Ok(current.insert(Arc::new(made)).clone()),
        }
    }

    fn current(&self) -> Option<Arc<SpoolDir>> {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        current.as_ref().filter(|dir| dir.path().is_dir()).cloned()
    }
}

/// Opens the directory `path` for locking: not through a symbolic link, and never
/// waiting (on a FIFO planted in its place, say).
fn open_dir(path: &Path) -> io::Result<File> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::NONBLOCK;
    Ok(File::from(rustix::fs::open(
        path,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
    )?))
}

/// Removes the spool directories in `parent` that are this user's and that no living
/// gitgate holds; returns how many.
fn sweep(parent: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return 0;
    };
    let me = rustix::process::geteuid().as_raw();
    entries
        .filter_map(Result::ok)
        .filter(|entry| {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                return false;
            };
            // The entry itself, not what a symbolic link names.
            let Ok(meta) = entry.metadata() else {
                return false;
            };
            let young = || {
                meta.modified()
                    .is_ok_and(|at| at.elapsed().is_ok_and(|age| age < MAKING_GRACE))
            };
            meta.is_dir()
                && meta.uid() == me
                && (name.starts_with(PREFIX) || (name.starts_with(MAKING) && !young()))
        })
        .filter(|entry| {
            let path = entry.path();
            // Locked while it is removed; another sweep then leaves it.
            open_dir(&path)
                .is_ok_and(|lock| lock.try_lock().is_ok() && std::fs::remove_dir_all(&path).is_ok())
        })
        .count()
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

    #[tokio::test]
    async fn a_directory_whose_gitgate_is_gone_is_removed_and_a_held_one_stays() {
        let parent = tempfile::tempdir().unwrap();
        // A gitgate that was killed: its directory is there, unlocked.
        let gone = parent.path().join(format!("{PREFIX}gone"));
        std::fs::create_dir(&gone).unwrap();
        std::fs::write(gone.join("tmp.pack"), [0; 1024]).unwrap();
        // One being made right now, not locked yet.
        let making = parent.path().join(format!("{MAKING}x"));
        std::fs::create_dir(&making).unwrap();
        // Not gitgate's; a link to elsewhere, not to be followed; a FIFO, not to be
        // waited on.
        let other = parent.path().join("other");
        std::fs::create_dir(&other).unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join("keep"), "").unwrap();
        std::os::unix::fs::symlink(
            elsewhere.path(),
            parent.path().join(format!("{PREFIX}link")),
        )
        .unwrap();
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            parent.path().join(format!("{PREFIX}fifo")),
            Mode::from_raw_mode(0o600),
        )
        .unwrap();

        let place = SpoolPlace::new(parent.path().to_owned());
        assert!(!gone.exists());
        assert!(making.exists() && other.exists());
        assert!(elsewhere.path().join("keep").exists());

        // Made on first use, 0700, and reused.
        let held = place.dir().await.unwrap();
        let mode = std::fs::metadata(held.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(Arc::ptr_eq(&held, &place.dir().await.unwrap()));
        // A living gitgate's directory is kept by another's sweep.
        let second = SpoolPlace::new(parent.path().to_owned());
        let theirs = second.dir().await.unwrap();
        assert!(held.path().exists() && theirs.path().exists());
        assert_eq!(
            spool_dirs(parent.path()).len(),
            4,
            "link, FIFO and two held"
        );

        // Dropped, it is removed; left behind unlocked, the next sweep takes it.
        let path = held.path().to_owned();
        drop((held, place));
        assert!(!path.exists(), "removed when dropped");
        std::fs::create_dir(&path).unwrap();
        SpoolPlace::new(parent.path().to_owned());
        assert!(!path.exists());
        assert!(theirs.path().exists());
    }

    #[tokio::test]
    async fn a_spool_directory_removed_from_under_gitgate_is_made_again() {
        let parent = tempfile::tempdir().unwrap();
        let place = SpoolPlace::new(parent.path().to_owned());
        let first = place.dir().await.unwrap().path().to_owned();
        std::fs::remove_dir_all(&first).unwrap();
        let again = place.dir().await.unwrap();
        assert!(again.path().is_dir());
        assert_ne!(again.path(), first);
    }

    #[test]
    fn directories_being_made_are_never_swept() {
        // Makers and sweepers at once: every directory made stays until it is dropped.
        let parent = tempfile::tempdir().unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    sweep(parent.path());
                }
            });
            for _ in 0..2000 {
                let dir = SpoolDir::create(parent.path()).unwrap();
                assert!(dir.path().is_dir());
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
    }

    #[tokio::test]
    async fn an_unwritable_temporary_directory_is_named_with_what_to_do() {
        let place = SpoolPlace::new(PathBuf::from("/nonexistent/gitgate-test"));
        let error = place.dir().await.err().unwrap().to_string();
        assert!(
            error.starts_with(
                "cannot make a directory for held pushes in /nonexistent/gitgate-test ("
            ) && error.ends_with("); set TMPDIR to a writable directory"),
            "{error}"
        );
    }
}
