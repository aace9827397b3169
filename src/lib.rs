//! keyclaim-harness: a load-testing and conformance harness for KeyClaim-compatible
//! challenge-response APIs, and a reference KeyClaim server to run it against.

pub mod cli;
pub mod crypto;
pub mod keygen;
pub mod protocol;
pub mod server;
