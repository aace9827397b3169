//! What the executors count as they go, shared by the closed users and the open
//! model's connections; each counter is touched once per iteration, not per sample.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// An open-model iteration that starts this much after its intended time is late.
pub const LATE_AFTER: Duration = Duration::from_millis(10);

#[derive(Default)]
pub struct Progress {
    pub iterations: AtomicU64,
    pub dropped: AtomicU64,
    pub late: AtomicU64,
    pub in_flight: AtomicU64,
}
