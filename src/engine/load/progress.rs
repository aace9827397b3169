//! What the executors count as they go, shared by the closed users and the open
//! model's connections; each counter is touched once per iteration, not per sample.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::live::load::LoadGauges;

/// An open-model iteration that starts this much after its intended time is late.
pub const LATE_AFTER: Duration = Duration::from_millis(10);

#[derive(Default)]
pub struct Progress {
    pub iterations: AtomicU64,
    pub dropped: AtomicU64,
    pub late: AtomicU64,
    pub in_flight: AtomicU64,
}

impl Progress {
    /// The counters as live metrics show them.
    pub fn gauges(&self) -> LoadGauges {
        LoadGauges {
            iterations: self.iterations.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            late: self.late.load(Ordering::Relaxed),
        }
    }
}
