//! What workers and the coordinator say to each other: HTTP paths and JSON bodies. One
//! place, so the two sides cannot drift apart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST` a [`Hello`]; answered with an [`Answer`] (held open while the others come).
pub const REGISTER_PATH: &str = "/v1/register";
/// `POST` a [`Beat`] while the run goes on; answered with an [`Answer`].
pub const HEARTBEAT_PATH: &str = "/v1/heartbeat";
/// `POST /v1/report/{index}/{session}` with the worker's report.json as the body.
pub const REPORT_PATH: &str = "/v1/report";
/// `GET`: the coordinator's [`Status`].
pub const STATUS_PATH: &str = "/v1/status";
/// `GET`: 200 once the merged report is written, 503 before (a readiness probe).
pub const MERGED_PATH: &str = "/v1/merged";

/// A worker introducing itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub index: u32,
    pub workers: u32,
    /// Ties the workers to one run (see [`crate::scale_out::plan_digest`]).
    pub plan_digest: String,
    /// Random per process: a second pod with the same index (a retry after a crash)
    /// is told apart from the first.
    pub session: String,
}

/// A worker saying it is still alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beat {
    pub index: u32,
    pub session: String,
}

/// What the coordinator answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "kebab-case")]
pub enum Answer {
    /// Not every worker is in yet: register again.
    Waiting { registered: u32, workers: u32 },
    /// Start this many milliseconds from now (negative: that long ago), and say you are
    /// alive every `heartbeat_ms`. Relative, so the workers' clocks need not agree for
    /// them to start together.
    Start {
        start_in_ms: i64,
        heartbeat_ms: u64,
        /// The workers that take part.
        starting: Vec<u32>,
    },
    /// Taken note of.
    Ok,
    /// This worker is not part of the run (it came after the start, the rendezvous was
    /// called off, it was declared lost, or the run is over).
    Excluded { why: String },
    /// This worker belongs to another run: other plans or overrides, another
    /// `--workers`, an index out of range, a report that is not its own.
    Mismatch { why: String },
}

/// What `GET /v1/status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// "gathering", "started", "collected" or "aborted".
    pub phase: String,
    pub workers: u32,
    /// Workers registered and waiting for the start.
    pub registered: Vec<u32>,
    /// Workers running (started, not yet reported).
    pub running: Vec<u32>,
    pub reported: Vec<u32>,
    /// Workers that will have no report in the merge, and why.
    pub missing: BTreeMap<u32, String>,
    /// Milliseconds since the announced start (negative before it); absent before a
    /// start was announced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_start_ms: Option<i64>,
}
