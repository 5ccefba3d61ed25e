//! Reading and writing the CA's PEM files.

use std::io::Write;
use std::path::Path;

use crate::CaError;

/// Reads a PEM file, naming its config key in errors.
pub(crate) fn read(role: &'static str, path: &Path) -> Result<String, CaError> {
    std::fs::read_to_string(path).map_err(|source| CaError::Read {
        role,
        path: path.to_owned(),
        source,
    })
}

/// Refuses a private key that group or others can read.
#[cfg(unix)]
pub(crate) fn check_private(role: &'static str, path: &Path) -> Result<(), CaError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| CaError::Read {
        role,
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CaError::KeyPermissions {
            role,
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
pub(crate) fn check_private(_role: &'static str, _path: &Path) -> Result<(), CaError> {
    Ok(())
}

/// Writes a new file that must not exist yet, with the given mode.
pub(crate) fn create(path: &Path, contents: &str, mode: u32) -> Result<(), CaError> {
    let err = |source| CaError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(err)?;
    file.write_all(contents.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)
}
