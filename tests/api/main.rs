//! hookd's one integration test binary: the real server on port 0, driven over HTTP.

mod alerts;
mod bad_input;
mod cli;
mod closed_loop;
mod components;
mod concurrency;
mod containment;
mod docker;
mod docker_outage;
mod docker_rollout;
mod durability;
mod edge;
mod edge_review;
mod faults;
mod helpers;
mod image;
mod local_backend;
mod ops;
mod rancher_compat;
mod receivers;
mod store_contract;
mod trigger;
mod ui;
mod upgrade;
