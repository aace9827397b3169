//! Scale-out: one run's load split over several worker processes (`slice`), their
//! start and their reports gathered by a coordinator (`rendezvous`), and their reports
//! merged back into the report one process would have written (`merge`).

pub mod merge;
pub mod rendezvous;
mod slice;
mod start;

pub use slice::{WorkerSlice, parse_start_at, plan_digest, start_times, unix_ms, wait_for_start};
pub use start::{Started, synchronise};
