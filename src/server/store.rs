//! Outstanding challenges: issue, look up, consume exactly once, and sweep.
//!
//! Each challenge is an `Entry` whose `state` moves once, by compare-and-swap, from
//! `OUTSTANDING` to `USED` or `EXPIRED`; that CAS is what makes single use atomic.
//! Used and expired entries stay for `retain` after expiry so late validations get
//! `replayed_challenge` or `expired_challenge` rather than "unknown", then the
//! sweeper removes them, so memory is bounded by issue rate x (ttl + retain). The
//! sweeper visits each challenge twice (at expiry and at forgetting), never the whole map.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
// The keys are server-drawn random bytes (or hashes of server-made ciphertexts), so a
// fast non-keyed hash is safe here: clients cannot choose what gets inserted.
use rustc_hash::FxBuildHasher;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use super::faults::{Fault, FaultSet};
use super::keys::KeyState;

const OUTSTANDING: u8 = 0;
const USED: u8 = 1;
const EXPIRED: u8 = 2;
/// Swept while outstanding (only reachable under `ignore-ttl`).
const REMOVED: u8 = 3;

/// How long the `replay-race` fault leaves between its check and its use: long enough
/// that concurrent validations reliably interleave, as with a database round trip.
const REPLAY_RACE_WINDOW: Duration = Duration::from_millis(150);

/// Lock shards of the challenge map. Many small shards keep each of the sweeper's
/// per-shard write locks short, so a request never waits behind a sweep of the whole map.
const SHARDS: usize = 256;

/// The 32 random bytes of a challenge; its wire form is their lowercase hex.
pub type ChallengeId = [u8; 32];

struct Entry {
    owner: Arc<KeyState>,
    /// The challenge's bytes; their lowercase hex is what the HMAC covers and what RSA
    /// encrypts. Kept raw, not as hex, because the store holds millions of entries.
    id: ChallengeId,
    expires_at: Instant,
    /// Whether the client received this challenge RSA-encrypted.
    encrypted: bool,
    state: AtomicU8,
}

impl Entry {
    fn hex(&self) -> [u8; 64] {
        let mut hex = [0u8; 64];
        hex::encode_to_slice(self.id, &mut hex).expect("64 bytes hold 32 in hex");
        hex
    }

    /// Moves the entry out of `OUTSTANDING`; true for the one caller that did it.
    fn leave_outstanding(&self, to: u8) -> Result<(), u8> {
        self.state
            .compare_exchange(OUTSTANDING, to, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| {
                self.owner.outstanding.fetch_sub(1, Ordering::Relaxed);
            })
    }
}

/// Why a validation was refused. The route maps each to an error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Never issued, swept, or issued to another key: indistinguishable on purpose.
    Unknown,
    Replayed,
    Expired,
    BadResponse,
}

/// The key is at its cap of outstanding challenges.
#[derive(Debug)]
pub struct AtCap;

/// What a validation presents.
pub struct Presented<'a> {
    pub challenge: &'a str,
    pub response: &'a str,
    pub decrypted_challenge: Option<&'a str>,
}

pub struct ChallengeStore {
    /// By challenge id, and for encrypted challenges also by SHA-256 of the ciphertext
    /// as sent, so both documented RSA readings find the same entry.
    entries: DashMap<ChallengeId, Arc<Entry>, FxBuildHasher>,
    /// Map keys by the whole second (since `epoch`) when the sweeper must look at them
    /// next: at expiry, then at expiry + `retain`. A sweep visits only what is due, not
    /// the whole map, so its cost follows the create rate, not the store's size.
    due: Mutex<BTreeMap<u64, Vec<ChallengeId>>>,
    epoch: Instant,
    max_outstanding_per_key: u64,
    retain: Duration,
}

impl ChallengeStore {
    pub fn new(max_outstanding_per_key: u64, retain: Duration) -> Self {
        Self {
            entries: DashMap::with_capacity_and_hasher_and_shard_amount(0, FxBuildHasher, SHARDS),
            due: Mutex::new(BTreeMap::new()),
            epoch: Instant::now(),
            max_outstanding_per_key,
            retain,
        }
    }

    /// Issues a fresh challenge from the CSPRNG; returns its lowercase hex.
    pub fn issue(&self, owner: &Arc<KeyState>, ttl: Duration) -> Result<Issued, AtCap> {
        let outstanding = owner.outstanding.fetch_add(1, Ordering::Relaxed);
        if outstanding >= self.max_outstanding_per_key {
            owner.outstanding.fetch_sub(1, Ordering::Relaxed);
            return Err(AtCap);
        }
        let id: ChallengeId = rand::random();
        let mut hex = [0u8; 64];
        hex::encode_to_slice(id, &mut hex).expect("64 bytes hold 32 in hex");
        Ok(Issued {
            hex,
            entry: Entry {
                owner: Arc::clone(owner),
                id,
                expires_at: Instant::now() + ttl,
                encrypted: false,
                state: AtomicU8::new(OUTSTANDING),
            },
        })
    }

    /// Makes an issued challenge valid, under its id and, when it was handed out
    /// encrypted, under its ciphertext too.
    pub fn insert(&self, issued: Issued, ciphertext_b64: Option<&str>) {
        let mut entry = issued.entry;
        let id = entry.id;
        entry.encrypted = ciphertext_b64.is_some();
        let second = self.second_at(entry.expires_at);
        let entry = Arc::new(entry);
        let alias = ciphertext_b64.map(ciphertext_alias);
        if let Some(alias) = alias {
            self.entries.insert(alias, Arc::clone(&entry));
        }
        self.entries.insert(id, entry);
        let mut due = self.due.lock().expect("not poisoned");
        let bucket = due.entry(second).or_default();
        bucket.push(id);
        bucket.extend(alias);
    }

    /// The first whole second (since the epoch) at or after `at`.
    fn second_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch)
            .as_secs_f64()
            .ceil() as u64
    }

    /// Gives back the cap slot of a challenge that was never handed out.
    pub fn abandon(&self, issued: Issued) {
        issued.entry.leave_outstanding(REMOVED).ok();
    }

    fn lookup(&self, challenge: &str) -> Option<(Arc<Entry>, bool)> {
        let mut id = [0u8; 32];
        if hex::decode_to_slice(challenge, &mut id).is_ok() {
            return self
                .entries
                .get(&id)
                .map(|e| (Arc::clone(e.value()), false));
        }
        self.entries
            .get(&ciphertext_alias(challenge))
            .map(|e| (Arc::clone(e.value()), true))
    }

    /// Judges one validation and, when it succeeds, consumes the challenge.
    pub async fn validate(
        &self,
        caller: &Arc<KeyState>,
        presented: &Presented<'_>,
        faults: &FaultSet,
    ) -> Result<(), Refusal> {
        let (entry, via_ciphertext) = self.lookup(presented.challenge).ok_or(Refusal::Unknown)?;
        if !faults.has(Fault::CrossKey) && !Arc::ptr_eq(&entry.owner, caller) {
            return Err(Refusal::Unknown);
        }
        let state = entry.state.load(Ordering::Acquire);
        if state == USED && !faults.has(Fault::AcceptReplay) {
            return Err(Refusal::Replayed);
        }
        let ignore_ttl = faults.has(Fault::IgnoreTtl);
        if !ignore_ttl && (state == EXPIRED || Instant::now() >= entry.expires_at) {
            return Err(Refusal::Expired);
        }
        if !faults.has(Fault::AcceptAnyResponse)
            && !response_matches(&entry, caller, presented, via_ciphertext)
        {
            return Err(Refusal::BadResponse);
        }
        if faults.has(Fault::AcceptReplay) {
            return Ok(());
        }
        if faults.has(Fault::ReplayRace) {
            // Deliberately broken: check, wait, then use, with no atomic step between.
            tokio::time::sleep(REPLAY_RACE_WINDOW).await;
            if entry.state.swap(USED, Ordering::AcqRel) == OUTSTANDING {
                entry.owner.outstanding.fetch_sub(1, Ordering::Relaxed);
            }
            return Ok(());
        }
        match entry.leave_outstanding(USED) {
            Ok(()) => Ok(()),
            Err(USED) => Err(Refusal::Replayed),
            Err(_) => Err(Refusal::Expired),
        }
    }

    /// One sweep: marks what has expired, removes what is past retention.
    pub fn sweep(&self, faults: &FaultSet) {
        let now = Instant::now();
        let mark_expired = !faults.has(Fault::IgnoreTtl);
        let now_second = now.saturating_duration_since(self.epoch).as_secs();
        let ready = {
            let mut due = self.due.lock().expect("not poisoned");
            let later = due.split_off(&(now_second + 1));
            std::mem::replace(&mut *due, later)
        };
        let mut again: Vec<(u64, ChallengeId)> = Vec::new();
        for id in ready.into_values().flatten() {
            let Some(entry) = self.entries.get(&id).map(|e| Arc::clone(e.value())) else {
                continue;
            };
            let forget_at = entry.expires_at + self.retain;
            if now >= forget_at {
                entry.leave_outstanding(REMOVED).ok();
                self.entries.remove(&id);
                continue;
            }
            if mark_expired && now >= entry.expires_at {
                entry.leave_outstanding(EXPIRED).ok();
            }
            // Look again when it is to be forgotten.
            again.push((self.second_at(forget_at), id));
        }
        if !again.is_empty() {
            let mut due = self.due.lock().expect("not poisoned");
            for (second, id) in again {
                due.entry(second).or_default().push(id);
            }
        }
    }

    /// Map entries (encrypted challenges count twice), for tests and metrics.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A challenge drawn and counted against the cap, not yet visible to validations.
pub struct Issued {
    hex: [u8; 64],
    entry: Entry,
}

impl Issued {
    pub fn hex(&self) -> &str {
        std::str::from_utf8(&self.hex).expect("hex is ASCII")
    }
}

fn ciphertext_alias(ciphertext: &str) -> ChallengeId {
    Sha256::digest(ciphertext.as_bytes()).into()
}

/// The accepted responses (SPEC.md §4): HMAC of the challenge under the caller's secret;
/// for an RSA challenge named by its ciphertext, also the decrypted challenge itself.
/// A `decryptedChallenge`, when sent for an RSA challenge, must be the right one.
fn response_matches(
    entry: &Entry,
    caller: &KeyState,
    presented: &Presented<'_>,
    via_ciphertext: bool,
) -> bool {
    let hex = entry.hex();
    let hmac_ok = caller.response_key.verify_hex(&hex, presented.response);
    if !entry.encrypted {
        return hmac_ok;
    }
    if let Some(decrypted) = presented.decrypted_challenge
        && !bool::from(decrypted.as_bytes().ct_eq(&hex))
    {
        return false;
    }
    let plaintext_ok = via_ciphertext && bool::from(presented.response.as_bytes().ct_eq(&hex));
    hmac_ok || plaintext_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::keys::{KeySpec, Tier};

    fn key() -> Arc<KeyState> {
        Arc::new(
            KeyState::new(
                &KeySpec::new("kc_store_test", Tier::Pro),
                0,
                crate::crypto::RsaBackend::default(),
            )
            .unwrap(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn sweeping_expires_then_forgets_so_memory_stays_bounded() {
        let store = ChallengeStore::new(10, Duration::from_secs(5));
        let owner = key();
        let faults = FaultSet::default();
        for _ in 0..10 {
            let issued = store.issue(&owner, Duration::from_secs(1)).unwrap();
            store.insert(issued, None);
        }
        assert!(
            store.issue(&owner, Duration::from_secs(1)).is_err(),
            "at the cap"
        );
        assert_eq!(owner.outstanding.load(Ordering::Relaxed), 10);

        tokio::time::advance(Duration::from_millis(1_500)).await;
        store.sweep(&faults);
        assert_eq!(
            store.len(),
            10,
            "expired entries are kept to answer expired_challenge"
        );
        assert_eq!(
            owner.outstanding.load(Ordering::Relaxed),
            0,
            "expired ones free the cap"
        );

        tokio::time::advance(Duration::from_secs(5)).await;
        store.sweep(&faults);
        assert!(store.is_empty(), "past retention they are gone");
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_entry_answers_expired_until_swept_then_unknown() {
        let store = ChallengeStore::new(10, Duration::from_secs(5));
        let owner = key();
        let faults = FaultSet::default();
        let issued = store.issue(&owner, Duration::from_secs(1)).unwrap();
        let challenge = issued.hex().to_owned();
        store.insert(issued, None);
        let response = owner.response_key.response_hex(&challenge);
        let presented = Presented {
            challenge: &challenge,
            response: &response,
            decrypted_challenge: None,
        };
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            store.validate(&owner, &presented, &faults).await,
            Err(Refusal::Expired)
        );
        store.sweep(&faults);
        assert_eq!(
            store.validate(&owner, &presented, &faults).await,
            Err(Refusal::Expired)
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        store.sweep(&faults);
        assert_eq!(
            store.validate(&owner, &presented, &faults).await,
            Err(Refusal::Unknown)
        );
    }
}
