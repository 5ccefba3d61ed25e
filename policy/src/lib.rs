//! gitgate's pure core: the egress policy (repositories, refs, hosts), its decisions, GitHub
//! App token scopes, request-path canonicalisation and the git wire-format parsers and
//! builders the proxy needs.
//!
//! Nothing in this crate performs I/O or reads a clock: every parser is incremental and
//! bounded, every decision is a function of the compiled [`Policy`] and its input.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod api;
pub mod git;
pub mod http_framing;

mod byte_size;
mod content;
mod decide;
mod decision;
mod host;
mod host_pattern;
mod object_id;
mod path_pattern;
mod pattern;
mod policy;
mod profile;
mod profiles;
mod raw;
mod ref_pattern;
mod ref_update;
mod refname;
mod repo;
mod repo_pattern;
mod signers;
mod text;
mod token_scope;

pub use byte_size::{ByteSize, ByteSizeError};
pub use content::{
    FastForward, Findings, LargeObject, Lookup, PackFacts, ProtectedChange, RefAncestry,
    ServerObjects, TreeEntry, Unfinished, fast_forward, outside_commits,
};
pub use decision::{ConnectDecision, Decision, PushVerdict};
pub use host::{HostError, HostName, parse_authority};
pub use host_pattern::HostPattern;
pub use object_id::{ObjectFormat, ObjectId, ObjectIdError};
pub use path_pattern::PathPattern;
pub use pattern::{PatternError, PatternKind};
pub use policy::{ConfigError, Policy};
pub use profile::{
    CertSubject, Cidr, Profile, ProfileError, ProfileName, RawProfile, SecretSha256,
};
pub use profiles::{Claims, Identity, IdentityError, Policies, ProfileSet, ProxyAuth};
pub use raw::{ForcePush, Mode, RawPolicy};
pub use ref_pattern::RefPattern;
pub use ref_update::RefUpdate;
pub use refname::{RefName, RefNameError, RefNameProblem};
pub use repo::{RepoPath, RepoPathError};
pub use repo_pattern::RepoPattern;
pub use signers::{RawSigners, SignatureCheck, SignerKey, Signers};
pub use token_scope::{Access, TokenScope};
