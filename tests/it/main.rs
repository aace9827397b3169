//! The integration tests, as one test binary: each module is one area (the server, the
//! conformance suite, load, reports, scale-out ...). One binary links the library (and
//! aws-lc) once instead of once per file, which dominates `cargo test` on two cores.

mod bounded;
mod common;
mod compare;
mod conformance;
mod crypto_kat;
mod deploy;
mod first_hour;
mod hostile_targets;
mod html_browser;
mod independent;
mod interrupts;
mod live_metrics;
mod load_engine;
mod plan_loader;
mod readme;
mod rendezvous;
mod reports;
mod run_secrets;
mod scale_out;
mod scenario_timeout;
mod serve_cli;
mod server;
mod server_faults;
mod server_hardening;
mod spec;
mod tls;
