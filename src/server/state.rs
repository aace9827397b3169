//! What every request handler shares: the keys, the challenge store and the settings
//! the routes read.

use std::time::Duration;

use super::faults::FaultSet;
use super::keys::KeyRegistry;
use super::store::ChallengeStore;
use super::style::StyleSet;

pub(crate) struct AppState {
    pub keys: KeyRegistry,
    pub store: ChallengeStore,
    pub faults: FaultSet,
    pub styles: StyleSet,
    pub body_limit: usize,
    pub body_timeout: Duration,
    pub max_outstanding: Option<u64>,
    /// What `serve --metrics-listen` shows.
    pub counters: super::metrics::Counters,
}
