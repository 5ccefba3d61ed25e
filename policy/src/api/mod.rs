//! The GitHub API under policy: the catalogue `policy.api` allows from, REST call and
//! GraphQL document classification, and ref changes decided like pushes.

mod catalogue;
mod change;
mod graphql;
mod json;
mod rest;

pub use catalogue::Operation;
pub use change::{ChangeKind, Content, Effect, RefChange, RefTarget};
pub use graphql::{FieldCheck, RepoRef, analyse};
pub use json::parse_strict;
pub use rest::{RestCall, classify};
