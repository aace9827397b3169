//! A rendezvous and collector for scaled-out runs over plain HTTP, as a cluster's own
//! networking carries it (a headless Service in front of one coordinator pod): workers
//! register, the start is announced a moment ahead once all N are in (or, at the
//! deadline, to those present or to nobody), heartbeats tell the living from the lost,
//! and each worker hands its report in at the end, so no shared volume is needed.
//! `keyclaim-harness coordinate` runs the coordinator; `run --rendezvous URL` a worker.

mod coordinator;
mod wire;
mod worker;

pub use coordinator::{Collected, Coordinator, OnMissing, Settings, router, serve};
pub use wire::{
    Answer, Beat, HEARTBEAT_PATH, Hello, MERGED_PATH, REGISTER_PATH, REPORT_PATH, STATUS_PATH,
    Status,
};
pub use worker::{JoinError, Joined, Rendezvous};
