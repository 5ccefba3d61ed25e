use std::path::PathBuf;

/// What went wrong with the CA or a leaf certificate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// A CA file could not be read.
    #[error("cannot read {role} {path}: {source}")]
    Read {
        /// `ca.cert` or `ca.key`.
        role: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A CA file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Only one of the two CA files exists.
    #[error(
        "{missing_role} {missing} does not exist but {present_role} {present} does; \
         provide both files, or remove both to let gitgate generate a new CA"
    )]
    HalfPresent {
        /// The key of the missing file.
        missing_role: &'static str,
        /// The missing file.
        missing: PathBuf,
        /// The key of the file that exists.
        present_role: &'static str,
        /// The file that exists.
        present: PathBuf,
    },
    /// The private key file can be read by group or others.
    #[error(
        "{role} {path} is readable by group or others (mode {mode:04o}); \
         run `chmod 600 {path}` so only gitgate's user can read it"
    )]
    KeyPermissions {
        /// `ca.key`.
        role: &'static str,
        /// The file.
        path: PathBuf,
        /// The file's permission bits.
        mode: u32,
    },
    /// A file does not hold what it should.
    #[error("{role} {path}: {reason}")]
    Invalid {
        /// `ca.cert` or `ca.key`.
        role: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// The certificate and the key do not belong together, or the certificate cannot act as a CA.
    #[error("ca.cert and ca.key do not form a usable CA: {0}")]
    Mismatch(String),
    /// Minting or signing failed.
    #[error("certificate generation failed: {0}")]
    Generate(String),
}
