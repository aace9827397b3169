//! A worker's start, synchronised one of three ways: by a coordinator's rendezvous
//! (`--rendezvous`), by a clock instant (`--start-at`), or not at all; and, with a
//! rendezvous, its line to the coordinator for the rest of the run (heartbeats, the
//! report handed in).

use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::rendezvous::{JoinError, Rendezvous};
use super::slice::{WorkerSlice, start_times, wait_for_start};
use crate::results::StartTimes;

/// A start that has come, and what the run still owes the coordinator.
pub struct Started {
    /// For the report; `None` for a run in one process without `--start-at`.
    pub times: Option<StartTimes>,
    rendezvous: Option<(Rendezvous, CancellationToken)>,
}

/// Waits for the start: the coordinator's announcement (heartbeats then run until
/// [`Started::finish`]), or `start_at`, or nothing. `on_wait(registered, workers)`
/// hears how many workers are in while a rendezvous gathers. An interrupt ends any
/// wait at once.
pub async fn synchronise(
    rendezvous: Option<Rendezvous>,
    start_at: Option<SystemTime>,
    worker: Option<WorkerSlice>,
    patience: Duration,
    cancel: &CancellationToken,
    on_wait: impl FnMut(u32, u32),
) -> Result<Started, JoinError> {
    if let Some(rendezvous) = rendezvous {
        let joined = rendezvous.join(patience, cancel, on_wait).await?;
        let heartbeats = CancellationToken::new();
        rendezvous.heartbeats(joined.heartbeat_every, heartbeats.clone());
        tokio::select! {
            () = tokio::time::sleep_until(joined.start) => {}
            () = cancel.cancelled() => {}
        }
        return Ok(Started {
            times: Some(start_times("rendezvous", Some(joined.start_wall))),
            rendezvous: Some((rendezvous, heartbeats)),
        });
    }
    let times = match start_at {
        Some(start_at) => {
            wait_for_start(start_at, cancel).await;
            Some(start_times("start-at", Some(start_at)))
        }
        None => worker.map(|_| start_times("immediate", None)),
    };
    Ok(Started {
        times,
        rendezvous: None,
    })
}

impl Started {
    /// The scenarios are done: heartbeats stop.
    pub fn ran(&self) {
        if let Some((_, heartbeats)) = &self.rendezvous {
            heartbeats.cancel();
        }
    }

    /// Whether the report must be handed to a coordinator.
    pub fn has_coordinator(&self) -> bool {
        self.rendezvous.is_some()
    }

    /// Hands report.json's text to the coordinator, if there is one.
    pub async fn finish(self, report_json: String, patience: Duration) -> Result<(), JoinError> {
        match self.rendezvous {
            Some((rendezvous, _)) => rendezvous.hand_in(report_json, patience).await,
            None => Ok(()),
        }
    }
}
