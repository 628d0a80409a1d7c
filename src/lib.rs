//! hookd: receiver hooks that turn an HTTP POST into an action on a container orchestrator.
//!
//! A *receiver* is a named, stored action with a *trigger URL*. A POST to the URL (from
//! Alertmanager, a registry, CI, a person with curl) runs the action on the backend bound
//! to the receiver's project, and the decision is recorded in the execution history.
//!
//! # Layout
//!
//! - [`domain`]: receivers, driver configs, executions, typed ids; pure, no I/O.
//! - [`engine`]: the trigger path: per-service serialization, decide, act, record.
//! - [`backend`]: the orchestrator seam; [`backend::local`] supervises processes itself.
//! - [`store`]: the persistence seam; SQLite with group-committed history writes.
//! - [`token`]: trigger URL tokens (JWTs with a `kid`), verified without store access.
//! - [`auth`]: management API tokens and what a caller may do.
//! - [`http`]: routes, wire types, the one error type, extractors.
//! - [`config`], [`datadir`] (one hookd per data directory), [`metrics`], [`server`]
//!   (wiring), [`cli`] (the `hookd` command).

pub mod auth;
pub mod backend;
pub mod cli;
pub mod config;
pub mod connections;
pub mod datadir;
pub mod domain;
pub mod engine;
pub mod hosts;
pub mod http;
pub mod metrics;
pub mod payload;
pub mod sealer;
pub mod server;
pub mod session;
pub mod store;
pub mod token;
