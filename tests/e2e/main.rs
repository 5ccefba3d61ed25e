//! End-to-end tests: the real `git` and `curl` through a real gitgate process against
//! the local GitHub stand-in. Everything on 127.0.0.1 with ephemeral ports.

#![allow(unreachable_pub)]

mod harness;

mod adversarial;
mod api;
mod cli;
mod core;
mod deployment;
mod git_policy;
mod lfs;
mod operations;
mod profiles;
mod push_content;
mod signers;
mod tokens;
mod user_login;
