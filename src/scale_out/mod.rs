//! Scale-out: one run's load split over several worker processes (`slice`), and their
//! reports merged back into the report one process would have written (`merge`).

pub mod merge;
mod slice;

pub use slice::{WorkerSlice, parse_start_at, plan_digest, wait_for_start};
