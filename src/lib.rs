//! keyclaim-harness: a load-testing and conformance harness for KeyClaim-compatible
//! challenge-response APIs, and a reference KeyClaim server to run it against.
//!
//! Data flows one way: a plan file is loaded and validated (`plan`), the engine runs its
//! scenarios against a target through `client` (`engine`), judging answers with `checks`
//! and measuring with `metrics`, and produces `results`, which every report format
//! (`report`) and `scale_out::merge` read. The reference server (`server`) shares the
//! wire types (`protocol`) and the cryptography (`crypto`) with the client side.
//! `commands` holds one file per subcommand; `exit` their exit codes; `tls` the one TLS
//! setup every connection uses.

pub mod checks;
pub mod client;
pub mod commands;
pub mod compare;
pub mod crypto;
pub mod engine;
pub mod exit;
pub mod live;
pub mod metrics;
pub mod plan;
pub mod protocol;
pub mod redact;
pub mod report;
pub mod results;
pub mod scale_out;
pub mod server;
pub mod tls;
