//! keyclaim-harness: a load-testing and conformance harness for KeyClaim-compatible
//! challenge-response APIs, and a reference KeyClaim server to run it against.

pub mod checks;
pub mod cli;
pub mod client;
pub mod crypto;
pub mod crypto_bench;
pub mod engine;
pub mod keygen;
pub mod merge;
pub mod metrics;
pub mod plan;
pub mod progress;
pub mod protocol;
pub mod redact;
pub mod report;
pub mod runner;
pub mod scale_out;
pub mod server;
