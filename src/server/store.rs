//! Outstanding challenges: issue, look up, consume exactly once, and sweep.
//!
//! Each challenge is an `Entry` whose `state` moves once, by compare-and-swap, from
//! `OUTSTANDING` to `USED` or `EXPIRED`; that CAS is what makes single use atomic.
//! Used and expired entries stay for `retain` after expiry so late validations get
//! `replayed_challenge` or `expired_challenge` rather than "unknown", then the
//! sweeper removes them, so memory is bounded by issue rate x (ttl + retain). The
//! sweeper visits each challenge twice (at expiry and at forgetting), never the whole map.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
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
use super::style::{Style, StyleSet};

const OUTSTANDING: u8 = 0;
const USED: u8 = 1;
const EXPIRED: u8 = 2;
/// Swept while outstanding (only reachable under `ignore-ttl`).
const REMOVED: u8 = 3;

/// How long the `replay-race` fault leaves between its check and its use: long enough
/// that concurrent validations reliably interleave, as with a database round trip.
const REPLAY_RACE_WINDOW: Duration = Duration::from_millis(150);
/// How long the `forget-used` fault remembers that a challenge was used.
const FORGET_USED_AFTER: Duration = Duration::from_secs(2);
/// Hex characters of a challenge under the `short-challenges` fault (32 bits).
const SHORT_CHALLENGE_HEX: usize = 8;

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
    /// The key came as a Bearer token (for the `bearer-cross-key` fault).
    pub via_bearer: bool,
}

/// What a store is told at start: its bounds, and how it is broken or styled.
pub struct StoreConfig {
    pub max_outstanding_per_key: u64,
    pub retain: Duration,
    pub faults: FaultSet,
    pub styles: StyleSet,
    /// Every configured key, for the `hmac-any-key` fault only (empty otherwise).
    pub all_keys: Vec<Arc<KeyState>>,
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
    faults: FaultSet,
    styles: StyleSet,
    /// What the faults that change how challenges are made or remembered need; idle
    /// (and empty) on a correct server.
    broken: Broken,
}

/// State only faults use.
#[derive(Default)]
struct Broken {
    /// `counter-challenges`: the last challenge number handed out.
    counter: AtomicU64,
    /// `reuse-pending`: per key id and TTL, the last challenge handed out.
    pending: DashMap<(String, u64), ChallengeId, FxBuildHasher>,
    /// `forget-used`: when each challenge was used.
    used_at: DashMap<ChallengeId, Instant, FxBuildHasher>,
    /// `replay-other-auth`: whether each challenge was used with a Bearer key.
    used_via_bearer: DashMap<ChallengeId, bool, FxBuildHasher>,
    /// `hmac-any-key`: every configured key.
    all_keys: Vec<Arc<KeyState>>,
}

impl ChallengeStore {
    pub fn new(config: StoreConfig) -> Self {
        Self {
            entries: DashMap::with_capacity_and_hasher_and_shard_amount(0, FxBuildHasher, SHARDS),
            due: Mutex::new(BTreeMap::new()),
            epoch: Instant::now(),
            max_outstanding_per_key: config.max_outstanding_per_key,
            retain: config.retain,
            faults: config.faults,
            styles: config.styles,
            broken: Broken {
                all_keys: config.all_keys,
                ..Broken::default()
            },
        }
    }

    /// Issues a fresh challenge from the CSPRNG that lives `lifetime`; `ttl` is what the
    /// client asked for (the `reuse-pending` fault keys on it).
    pub fn issue(
        &self,
        owner: &Arc<KeyState>,
        ttl: u64,
        lifetime: Duration,
    ) -> Result<Issued, AtCap> {
        let outstanding = owner.outstanding.fetch_add(1, Ordering::Relaxed);
        if outstanding >= self.max_outstanding_per_key {
            owner.outstanding.fetch_sub(1, Ordering::Relaxed);
            return Err(AtCap);
        }
        let id = if self.faults.is_empty() {
            rand::random()
        } else {
            self.broken_id(owner, ttl)
        };
        Ok(Issued {
            wire: self.wire(&id).to_string(),
            entry: Entry {
                owner: Arc::clone(owner),
                id,
                expires_at: Instant::now() + lifetime,
                encrypted: false,
                state: AtomicU8::new(OUTSTANDING),
            },
        })
    }

    /// A challenge id as the faults that break issuing make it.
    fn broken_id(&self, owner: &KeyState, ttl: u64) -> ChallengeId {
        let faults = &self.faults;
        if faults.has(Fault::ReusePending)
            && let Some(pending) = self.broken.pending.get(&(owner.id.clone(), ttl))
            && let Some(entry) = self.entries.get(pending.value())
            && entry.state.load(Ordering::Acquire) == OUTSTANDING
        {
            return entry.id;
        }
        let mut id: ChallengeId = rand::random();
        if faults.has(Fault::CounterChallenges)
            || (faults.has(Fault::RsaPredictable) && owner.public_key.is_some())
        {
            let n = self.broken.counter.fetch_add(1, Ordering::Relaxed) + 1;
            id = [0; 32];
            id[24..].copy_from_slice(&n.to_be_bytes());
        }
        if faults.has(Fault::ShortChallenges) {
            id[SHORT_CHALLENGE_HEX / 2..].fill(0);
        }
        if faults.has(Fault::ReusePending) {
            self.broken.pending.insert((owner.id.clone(), ttl), id);
        }
        id
    }

    /// The challenge as clients see it: lowercase hex of the id (or what a fault or
    /// style makes of it), on the stack: every validation needs it.
    fn wire(&self, id: &ChallengeId) -> Wire {
        let mut wire = Wire {
            hex: [0; 64],
            len: 64,
        };
        hex::encode_to_slice(id, &mut wire.hex).expect("64 bytes hold 32 in hex");
        if self.faults.has(Fault::ShortChallenges) {
            wire.len = SHORT_CHALLENGE_HEX;
        }
        if self.styles.has(Style::UppercaseChallenges) {
            wire.hex.make_ascii_uppercase();
        }
        wire
    }

    /// Makes an issued challenge valid, under its id and, when it was handed out
    /// encrypted, under its ciphertext too.
    pub fn insert(&self, issued: Issued, ciphertext_b64: Option<&str>) {
        let mut entry = issued.entry;
        let id = entry.id;
        entry.encrypted = ciphertext_b64.is_some();
        let second = self.second_at(entry.expires_at);
        let alias = ciphertext_b64.map(ciphertext_alias);
        if let Some(alias) = alias
            && self.faults.has(Fault::RsaTwoEntries)
        {
            // Deliberately broken: the ciphertext names a second, independent entry, so
            // the challenge can be used once by each name.
            entry.owner.outstanding.fetch_add(1, Ordering::Relaxed);
            let twin = Entry {
                owner: Arc::clone(&entry.owner),
                state: AtomicU8::new(OUTSTANDING),
                ..entry
            };
            self.entries.insert(alias, Arc::new(twin));
        }
        let entry = Arc::new(entry);
        if let Some(alias) = alias
            && !self.faults.has(Fault::RsaTwoEntries)
        {
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
        let padded;
        let hex =
            if self.faults.has(Fault::ShortChallenges) && challenge.len() == SHORT_CHALLENGE_HEX {
                padded = format!("{challenge:0<64}");
                padded.as_str()
            } else {
                challenge
            };
        if hex::decode_to_slice(hex, &mut id).is_ok() {
            return self
                .entries
                .get(&id)
                .map(|e| (Arc::clone(e.value()), false));
        }
        self.entries
            .get(&ciphertext_alias(challenge))
            .map(|e| (Arc::clone(e.value()), true))
    }

    /// The key that owns `challenge`, if it is known (the `missing-key-validate` fault
    /// judges a keyless validation for it).
    pub fn owner_of(&self, challenge: &str) -> Option<Arc<KeyState>> {
        self.lookup(challenge)
            .map(|(entry, _)| Arc::clone(&entry.owner))
    }

    /// Uses `challenge` up, whoever asks (the `unknown-key-consumes` fault).
    pub fn consume(&self, challenge: &str) {
        if let Some((entry, _)) = self.lookup(challenge) {
            entry.leave_outstanding(USED).ok();
        }
    }

    /// Judges one validation and, when it succeeds, consumes the challenge.
    pub async fn validate(
        &self,
        caller: &Arc<KeyState>,
        presented: &Presented<'_>,
    ) -> Result<(), Refusal> {
        let faults = &self.faults;
        let Some((entry, via_ciphertext)) = self.lookup(presented.challenge) else {
            // Deliberately broken: a stateless server that trusts any HMAC.
            if faults.has(Fault::AcceptUnknownChallenge)
                && caller
                    .response_key
                    .verify_hex(presented.challenge.as_bytes(), presented.response)
            {
                return Ok(());
            }
            return Err(Refusal::Unknown);
        };
        // Whose secret the response must prove: the owner's, who must be the caller.
        let prover: &KeyState = if Arc::ptr_eq(&entry.owner, caller)
            || faults.has(Fault::CrossKey)
            || (faults.has(Fault::BearerCrossKey) && presented.via_bearer)
        {
            caller
        } else if faults.has(Fault::CrossKeyOwnerSecret) {
            &entry.owner
        } else {
            return Err(Refusal::Unknown);
        };
        let state = entry.state.load(Ordering::Acquire);
        if state == USED && !self.replay_slips_through(&entry, presented) {
            return Err(Refusal::Replayed);
        }
        let ignore_ttl = faults.has(Fault::IgnoreTtl);
        if !ignore_ttl && (state == EXPIRED || Instant::now() >= entry.expires_at) {
            return Err(Refusal::Expired);
        }
        if !self.response_matches(&entry, prover, presented, via_ciphertext) {
            if self.styles.has(Style::ConsumeOnFailure) {
                entry.leave_outstanding(USED).ok();
            }
            return Err(Refusal::BadResponse);
        }
        if state == USED {
            // Only a fault gets here: a replay it let through.
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
            Ok(()) => {
                if faults.has(Fault::ForgetUsed) {
                    self.broken.used_at.insert(entry.id, Instant::now());
                }
                if faults.has(Fault::ReplayOtherAuth) {
                    self.broken
                        .used_via_bearer
                        .insert(entry.id, presented.via_bearer);
                }
                Ok(())
            }
            Err(USED) => Err(Refusal::Replayed),
            Err(_) => Err(Refusal::Expired),
        }
    }

    /// Whether a fault lets a validation of a used challenge through.
    fn replay_slips_through(&self, entry: &Entry, presented: &Presented<'_>) -> bool {
        let faults = &self.faults;
        !faults.is_empty()
            && (faults.has(Fault::AcceptReplay)
                || (faults.has(Fault::ReplayOtherCase)
                    && presented.response.bytes().any(|b| b.is_ascii_uppercase()))
                || (faults.has(Fault::ForgetUsed)
                    && self
                        .broken
                        .used_at
                        .get(&entry.id)
                        .is_some_and(|at| at.elapsed() >= FORGET_USED_AFTER))
                || (faults.has(Fault::ReplayOtherAuth)
                    && self
                        .broken
                        .used_via_bearer
                        .get(&entry.id)
                        .is_some_and(|bearer| *bearer != presented.via_bearer))
                || (faults.has(Fault::ReplayChallengeCase)
                    && hex::decode(presented.challenge).is_ok()
                    && presented.challenge.bytes().any(|b| b.is_ascii_uppercase())))
    }

    /// The accepted responses (SPEC.md §4): HMAC of the challenge (as issued) under the
    /// prover's secret; for an RSA challenge named by its ciphertext, also the decrypted
    /// challenge itself. A `decryptedChallenge`, when sent for an RSA challenge, must be
    /// the right one.
    fn response_matches(
        &self,
        entry: &Entry,
        prover: &KeyState,
        presented: &Presented<'_>,
        via_ciphertext: bool,
    ) -> bool {
        let wire = self.wire(&entry.id);
        let response = presented.response;
        // The `lowercase-only` style reads HMAC hex strictly; a plaintext is compared
        // as it is anyway.
        let hmac_ok = !(self.styles.has(Style::LowercaseOnly)
            && response.bytes().any(|b| b.is_ascii_uppercase()))
            && prover.response_key.verify_hex(wire.as_bytes(), response);
        let correct = if !entry.encrypted {
            hmac_ok
        } else if !via_ciphertext && self.styles.has(Style::PythonRsaOnly) {
            false
        } else {
            let decrypted_ok = self.styles.has(Style::RsaResponseOnly)
                || presented.decrypted_challenge.is_none_or(|decrypted| {
                    bool::from(decrypted.as_bytes().ct_eq(wire.as_bytes()))
                });
            let plaintext_ok =
                via_ciphertext && bool::from(response.as_bytes().ct_eq(wire.as_bytes()));
            decrypted_ok && (hmac_ok || plaintext_ok)
        };
        correct
            || (!self.faults.is_empty()
                && self.fault_accepts(entry, prover, presented, via_ciphertext, &wire))
    }

    /// Whether a fault accepts a response that is not a proof.
    fn fault_accepts(
        &self,
        entry: &Entry,
        prover: &KeyState,
        presented: &Presented<'_>,
        via_ciphertext: bool,
        wire: &str,
    ) -> bool {
        let faults = &self.faults;
        let response = presented.response;
        let lower = response.to_ascii_lowercase();
        let expected = prover.response_key.response_hex(wire);
        let digest = |text: String| hex::encode(Sha256::digest(text));
        let plain = !entry.encrypted;
        faults.has(Fault::AcceptAnyResponse)
            || (plain
                && faults.has(Fault::HmacAnyKey)
                && self
                    .broken
                    .all_keys
                    .iter()
                    .any(|key| key.response_key.verify_hex(wire.as_bytes(), response)))
            || (faults.has(Fault::PrefixCompare)
                && lower.len() >= 8
                && lower.is_char_boundary(8)
                && lower[..8] == expected[..8])
            || (faults.has(Fault::IgnoreLastDigit)
                && lower.len() == expected.len()
                && lower[..63] == expected[..63])
            || (faults.has(Fault::AcceptTruncated)
                && !lower.is_empty()
                && lower.len() < expected.len()
                && expected.starts_with(&lower))
            || (faults.has(Fault::AcceptExtended)
                && lower.len() > expected.len()
                && lower.starts_with(&expected))
            || (faults.has(Fault::AcceptEmptyResponse) && response.is_empty())
            || (plain && faults.has(Fault::AcceptEcho) && response == presented.challenge)
            || (plain
                && faults.has(Fault::AcceptHash)
                && lower == digest(format!("{wire}{}", prover.secret())))
            || (plain
                && faults.has(Fault::AcceptCustom)
                && lower == digest(format!("{wire}:{}", prover.secret())))
            || (entry.encrypted
                && faults.has(Fault::RsaEqualFields)
                && !response.is_empty()
                && presented.decrypted_challenge == Some(response))
            || (entry.encrypted
                && via_ciphertext
                && faults.has(Fault::RsaHmacCiphertext)
                && prover
                    .response_key
                    .verify_hex(presented.challenge.as_bytes(), response))
            || (entry.encrypted
                && via_ciphertext
                && faults.has(Fault::RsaEchoCiphertext)
                && response == presented.challenge)
            || (entry.encrypted
                && !via_ciphertext
                && faults.has(Fault::RsaPlaintextEcho)
                && response == presented.challenge)
    }

    /// One sweep: marks what has expired, removes what is past retention.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mark_expired = !self.faults.has(Fault::IgnoreTtl);
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
    /// The challenge as the client receives it (before any RSA encryption).
    wire: String,
    entry: Entry,
}

impl Issued {
    pub fn wire(&self) -> &str {
        &self.wire
    }
}

/// A challenge's wire text, without an allocation.
struct Wire {
    hex: [u8; 64],
    len: usize,
}

impl std::ops::Deref for Wire {
    type Target = str;

    fn deref(&self) -> &str {
        std::str::from_utf8(&self.hex[..self.len]).expect("hex is ASCII")
    }
}

fn ciphertext_alias(ciphertext: &str) -> ChallengeId {
    Sha256::digest(ciphertext.as_bytes()).into()
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
                None,
                crate::crypto::RsaBackend::default(),
            )
            .unwrap(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn sweeping_expires_then_forgets_so_memory_stays_bounded() {
        let store = ChallengeStore::new(StoreConfig {
            max_outstanding_per_key: 10,
            retain: Duration::from_secs(5),
            faults: FaultSet::default(),
            styles: StyleSet::default(),
            all_keys: Vec::new(),
        });
        let owner = key();
        for _ in 0..10 {
            let issued = store.issue(&owner, 1, Duration::from_secs(1)).unwrap();
            store.insert(issued, None);
        }
        assert!(
            store.issue(&owner, 1, Duration::from_secs(1)).is_err(),
            "at the cap"
        );
        assert_eq!(owner.outstanding.load(Ordering::Relaxed), 10);

        tokio::time::advance(Duration::from_millis(1_500)).await;
        store.sweep();
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
        store.sweep();
        assert!(store.is_empty(), "past retention they are gone");
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_entry_answers_expired_until_swept_then_unknown() {
        let store = ChallengeStore::new(StoreConfig {
            max_outstanding_per_key: 10,
            retain: Duration::from_secs(5),
            faults: FaultSet::default(),
            styles: StyleSet::default(),
            all_keys: Vec::new(),
        });
        let owner = key();
        let issued = store.issue(&owner, 1, Duration::from_secs(1)).unwrap();
        let challenge = issued.wire().to_owned();
        store.insert(issued, None);
        let response = owner.response_key.response_hex(&challenge);
        let presented = Presented {
            challenge: &challenge,
            response: &response,
            decrypted_challenge: None,
            via_bearer: false,
        };
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            store.validate(&owner, &presented).await,
            Err(Refusal::Expired)
        );
        store.sweep();
        assert_eq!(
            store.validate(&owner, &presented).await,
            Err(Refusal::Expired)
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        store.sweep();
        assert_eq!(
            store.validate(&owner, &presented).await,
            Err(Refusal::Unknown)
        );
    }
}
