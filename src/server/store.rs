//! Challenges: issue, look up, consume exactly once, expire and forget, all within a
//! memory budget (SPEC.md §9).
//!
//! The store is split into shards by a hash of each challenge's bytes; a shard is one
//! mutex over a `Room`:
//!
//! - `slots`: 48-byte `Slot`s (challenge bytes, expiry, owner, state) in fixed-size
//!   chunks that never move, so growth comes in steps the budget can count and never
//!   copies; free slots are chained through `pos`.
//! - `index`: a hash table of slot numbers (4 bytes each), hashed by the slot's name.
//! - `waiting`: outstanding slots by the second they expire; `retained`: used and expired
//!   slots by the second they are forgotten (expiry + `--retain-expired`). Every live
//!   slot is in exactly one list, at `pos`, so moving it is O(1), and the sweeper visits
//!   each challenge twice (at expiry, at forgetting), never the whole map.
//!
//! A stored challenge costs about 60 bytes. Each shard may hold `budget / shards` bytes;
//! a create that would grow a shard past that first forgets the shard's oldest retained
//! challenge (the one due to be forgotten first), and when only outstanding ones are
//! left it is refused with the seconds until the earliest of them expires. A forgotten
//! challenge is unknown from then on, so a late replay of it is still refused.
//!
//! Single use is atomic because a validation judges and consumes its challenge under
//! the shard's lock.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use dashmap::DashMap;
use hashbrown::HashTable;
// The names are server-drawn random bytes (or hashes of server-made ciphertexts), so a
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

/// The client received this challenge RSA-encrypted.
const ENCRYPTED: u8 = 1;
/// A second name (the ciphertext's digest) for a challenge stored under its bytes: no
/// state of its own; the challenge it names is in `Room::targets`.
const ALIAS: u8 = 2;
/// The `rsa-two-entries` fault: the ciphertext names a second, independent challenge
/// with its own state (its bytes are in `Room::targets`).
const TWIN: u8 = 4;
/// In `retained` rather than `waiting`.
const RETAINED: u8 = 8;

/// How long the `replay-race` fault leaves between its check and its use: long enough
/// that concurrent validations reliably interleave, as with a database round trip.
const REPLAY_RACE_WINDOW: Duration = Duration::from_millis(150);
/// How long the `forget-used` fault remembers that a challenge was used.
const FORGET_USED_AFTER: Duration = Duration::from_secs(2);
/// Hex characters of a challenge under the `short-challenges` fault (32 bits).
const SHORT_CHALLENGE_HEX: usize = 8;

/// At most this many shards: enough that threads rarely meet on a lock.
const MAX_SHARDS: usize = 64;
/// Fewer shards for small budgets, so each still holds a useful number of challenges.
const MIN_SHARD_BYTES: usize = 1 << 20;
/// Slots per chunk: 12 KiB, so an empty shard costs little and growth is fine-grained.
const CHUNK: usize = 256;
const CHUNK_BYTES: usize = CHUNK * std::mem::size_of::<Slot>();
/// A slot number that names no slot (the end of the free chain).
const NO_SLOT: u32 = u32::MAX;
/// The smallest budget a store takes: one chunk, index and list per shard, with room.
pub const MIN_MEMORY: usize = 64 * 1024;

/// The 32 random bytes of a challenge; its wire form is their lowercase hex.
pub type ChallengeId = [u8; 32];

/// One stored name: a challenge, or an RSA challenge's second name.
#[derive(Clone, Copy)]
struct Slot {
    /// What the index finds it by: the challenge's bytes (whose lowercase hex is what
    /// the HMAC covers and RSA encrypts), or a ciphertext's digest (`ALIAS`, `TWIN`).
    name: ChallengeId,
    /// Expiry, in milliseconds since the store's epoch: whole seconds and the rest, so
    /// a slot stays 48 bytes and still lasts 136 years.
    expires_s: u32,
    expires_ms: u16,
    state: u8,
    flags: u8,
    /// The owning key's number in `ChallengeStore::owners`.
    owner: u32,
    /// Position in its second's list; for a free slot, the next free slot.
    pos: u32,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 48);

impl Slot {
    const FREE: Slot = Slot {
        name: [0; 32],
        expires_s: 0,
        expires_ms: 0,
        state: OUTSTANDING,
        flags: 0,
        owner: 0,
        pos: NO_SLOT,
    };

    fn expires_at_ms(&self) -> u64 {
        u64::from(self.expires_s) * 1000 + u64::from(self.expires_ms)
    }

    /// Whether this slot's state is its own (a challenge or a twin): only those count
    /// under the per-key cap and change state.
    fn has_state(&self) -> bool {
        self.flags & ALIAS == 0
    }
}

/// Why a validation was refused. The route maps each to an error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Never issued, forgotten, or issued to another key: indistinguishable on purpose.
    Unknown,
    Replayed,
    Expired,
    BadResponse,
}

/// Why a create was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The key holds its cap of outstanding challenges.
    KeyAtCap,
    /// The memory budget holds only outstanding challenges; one expires in this many
    /// seconds (at least 1) and its room can be reused.
    Memory { retry_after_s: u64 },
}

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
    /// Outstanding challenges one key may hold; `None` for no per-key cap.
    pub max_outstanding_per_key: Option<u64>,
    /// Bytes the store's structures may hold, across all keys and states.
    pub max_memory: usize,
    pub retain: Duration,
    pub faults: FaultSet,
    pub styles: StyleSet,
    /// Every configured key, for the `hmac-any-key` fault only (empty otherwise).
    pub all_keys: Vec<Arc<KeyState>>,
}

pub struct ChallengeStore {
    shards: Box<[Shard]>,
    /// Bytes each shard may hold.
    shard_budget: usize,
    /// Every key that has been issued a challenge, by the number its slots carry.
    owners: RwLock<Vec<Arc<KeyState>>>,
    epoch: Instant,
    max_outstanding_per_key: Option<u64>,
    faults: FaultSet,
    styles: StyleSet,
    /// What the faults that change how challenges are made or remembered need; idle
    /// (and empty) on a correct server.
    broken: Broken,
}

/// A shard on its own cache line, so two threads on two shards do not share one.
#[repr(align(64))]
struct Shard(Mutex<Room>);

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
        let max_memory = config.max_memory.max(MIN_MEMORY);
        let shards = (max_memory / MIN_SHARD_BYTES).clamp(1, MAX_SHARDS);
        // A power of two, so a shard is picked with a mask.
        let shards = 1 << shards.ilog2();
        let retain_ms = duration_ms(config.retain);
        Self {
            shards: (0..shards)
                .map(|_| Shard(Mutex::new(Room::new(retain_ms))))
                .collect(),
            shard_budget: max_memory / shards,
            owners: RwLock::new(Vec::new()),
            epoch: Instant::now(),
            max_outstanding_per_key: config.max_outstanding_per_key,
            faults: config.faults,
            styles: config.styles,
            broken: Broken {
                all_keys: config.all_keys,
                ..Broken::default()
            },
        }
    }

    /// Draws a fresh challenge from the CSPRNG that lives `lifetime`, counted against
    /// the key's cap; `ttl` is what the client asked for (the `reuse-pending` fault keys
    /// on it). It is not valid until [`Self::insert`].
    pub fn issue(
        &self,
        owner: &Arc<KeyState>,
        ttl: u64,
        lifetime: Duration,
    ) -> Result<Issued, Full> {
        if let Some(cap) = self.max_outstanding_per_key {
            let outstanding = owner.outstanding.fetch_add(1, Ordering::Relaxed);
            if outstanding >= cap {
                owner.outstanding.fetch_sub(1, Ordering::Relaxed);
                return Err(Full::KeyAtCap);
            }
        }
        let id = if self.faults.is_empty() {
            rand::random()
        } else {
            self.broken_id(owner, ttl)
        };
        let expires = (Instant::now() + lifetime).saturating_duration_since(self.epoch);
        Ok(Issued {
            wire: self.wire(&id),
            id,
            owner: Arc::clone(owner),
            expires_at_ms: duration_ms(expires),
        })
    }

    /// A challenge id as the faults that break issuing make it.
    fn broken_id(&self, owner: &KeyState, ttl: u64) -> ChallengeId {
        let faults = &self.faults;
        if faults.has(Fault::ReusePending)
            && let Some(pending) = self.broken.pending.get(&(owner.id.clone(), ttl))
        {
            let pending = *pending.value();
            let (room, hash) = self.room(&pending);
            if room
                .find(hash, &pending)
                .is_some_and(|n| room.slot(n).state == OUTSTANDING)
            {
                return pending;
            }
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

    /// Makes an issued challenge valid, under its bytes and, when it was handed out
    /// encrypted, under its ciphertext too. When the budget has no room (only
    /// outstanding challenges left), the challenge is given back and not stored.
    pub fn insert(&self, issued: Issued, ciphertext_b64: Option<&str>) -> Result<(), Full> {
        let owner = self.owner_number(&issued.owner);
        let mut slot = Slot {
            name: issued.id,
            expires_s: u32::try_from(issued.expires_at_ms / 1000).unwrap_or(u32::MAX),
            expires_ms: (issued.expires_at_ms % 1000) as u16,
            state: OUTSTANDING,
            flags: 0,
            owner,
            pos: 0,
        };
        let Some(ciphertext) = ciphertext_b64 else {
            return self.put(slot, None).inspect_err(|_| self.abandon(issued));
        };
        slot.flags = ENCRYPTED;
        self.put(slot, None)
            .inspect_err(|_| self.give_back(&issued.owner))?;
        let twin = self.faults.has(Fault::RsaTwoEntries);
        if twin {
            // Deliberately broken: the ciphertext names a second, independent challenge,
            // so it can be used once by each name.
            self.count(&issued.owner);
        }
        let second_name = Slot {
            name: ciphertext_alias(ciphertext),
            flags: ENCRYPTED | if twin { TWIN } else { ALIAS },
            ..slot
        };
        self.put(second_name, Some(issued.id)).inspect_err(|_| {
            self.forget_name(&issued.id);
            self.give_back(&issued.owner);
            if twin {
                self.give_back(&issued.owner);
            }
        })
    }

    /// Stores `slot` (replacing one of the same name), making room in its shard first.
    fn put(&self, slot: Slot, target: Option<ChallengeId>) -> Result<(), Full> {
        let (mut room, hash) = self.room(&slot.name);
        if let Some(n) = room.find(hash, &slot.name) {
            // Only faults issue a name twice (`reuse-pending`, `short-challenges`): the
            // newer challenge takes the name over.
            let (old, _) = room.remove(n, hash);
            self.after_removal(&old, None);
        }
        let second = expiry_second(slot.expires_at_ms());
        let now_s = self.now_ms() / 1000;
        while room.bytes() + room.growth_for_insert(second, target.is_some()) > self.shard_budget {
            let Some((old, old_target)) = room.evict_oldest() else {
                let earliest = room.earliest_waiting().unwrap_or(second);
                return Err(Full::Memory {
                    retry_after_s: u64::from(earliest).saturating_sub(now_s).max(1),
                });
            };
            self.after_removal(&old, old_target.as_ref());
        }
        room.add(slot, hash, target);
        Ok(())
    }

    /// Gives back the cap slot of a challenge that was never stored.
    pub fn abandon(&self, issued: Issued) {
        self.give_back(&issued.owner);
    }

    fn count(&self, owner: &KeyState) {
        if self.max_outstanding_per_key.is_some() {
            owner.outstanding.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn give_back(&self, owner: &KeyState) {
        if self.max_outstanding_per_key.is_some() {
            owner.outstanding.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The number a key's slots carry, given on its first challenge.
    fn owner_number(&self, key: &Arc<KeyState>) -> u32 {
        *key.store_number.get_or_init(|| {
            let mut owners = self.owners.write().unwrap_or_else(PoisonError::into_inner);
            owners.push(Arc::clone(key));
            u32::try_from(owners.len() - 1).expect("fewer than 4 billion keys")
        })
    }

    fn owner(&self, number: u32) -> Arc<KeyState> {
        let owners = self.owners.read().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(&owners[number as usize])
    }

    /// Whether `key` is the owner numbered `number`.
    fn is_owner(key: &KeyState, number: u32) -> bool {
        key.store_number.get() == Some(&number)
    }

    /// What a removed slot leaves behind: its cap slot, if it was still outstanding
    /// (only under `ignore-ttl`, or when a fault reissues its name), and the faults'
    /// memory of it.
    fn after_removal(&self, slot: &Slot, target: Option<&ChallengeId>) {
        if slot.has_state() && slot.state == OUTSTANDING {
            self.give_back(&self.owner(slot.owner));
        }
        if !self.faults.is_empty() {
            let id = target.unwrap_or(&slot.name);
            self.broken.used_at.remove(id);
            self.broken.used_via_bearer.remove(id);
        }
    }

    /// Removes the challenge named `id`, if stored.
    fn forget_name(&self, id: &ChallengeId) {
        let (mut room, hash) = self.room(id);
        if let Some(n) = room.find(hash, id) {
            room.remove(n, hash);
        }
    }

    fn room(&self, name: &ChallengeId) -> (MutexGuard<'_, Room>, u64) {
        let hash = hash_name(name);
        // The middle bits: the index uses the low ones for places and the top ones as
        // tags, and a shard's names should not all share either.
        let shard = &self.shards[(hash >> 32) as usize & (self.shards.len() - 1)];
        (shard.0.lock().unwrap_or_else(PoisonError::into_inner), hash)
    }

    fn now_ms(&self) -> u64 {
        // Rounded down, and expiry up: a challenge is never expired early.
        Instant::now()
            .saturating_duration_since(self.epoch)
            .as_millis() as u64
    }

    /// What a presented challenge names: its bytes when it is hex (a challenge stored
    /// under them, or nothing), else the digest of a ciphertext. For a ciphertext the
    /// second name is followed to the challenge it stands for (unless it is a twin).
    fn resolve(&self, challenge: &str) -> Option<Named> {
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
            return Some(Named {
                name: id,
                challenge: id,
                via_ciphertext: false,
            });
        }
        let alias = ciphertext_alias(challenge);
        let (room, hash) = self.room(&alias);
        let n = room.find(hash, &alias)?;
        let target = room.target(n);
        Some(if room.slot(n).flags & TWIN != 0 {
            Named {
                name: alias,
                challenge: target,
                via_ciphertext: true,
            }
        } else {
            Named {
                name: target,
                challenge: target,
                via_ciphertext: true,
            }
        })
    }

    /// The key that owns `challenge`, if it is known (the `missing-key-validate` fault
    /// judges a keyless validation for it).
    pub fn owner_of(&self, challenge: &str) -> Option<Arc<KeyState>> {
        let named = self.resolve(challenge)?;
        let owner = {
            let (room, hash) = self.room(&named.name);
            room.slot(room.find(hash, &named.name)?).owner
        };
        Some(self.owner(owner))
    }

    /// Uses `challenge` up, whoever asks (the `unknown-key-consumes` fault).
    pub fn consume(&self, challenge: &str) {
        let Some(named) = self.resolve(challenge) else {
            return;
        };
        let (mut room, hash) = self.room(&named.name);
        if let Some(n) = room.find(hash, &named.name) {
            self.leave_outstanding(&mut room, n, USED, None).ok();
        }
    }

    /// Moves slot `n` out of `OUTSTANDING` (and into the retained list) and gives back
    /// its cap slot; `Err(state)` when it had already left. `owner` is the owner's
    /// state when the caller has it at hand.
    fn leave_outstanding(
        &self,
        room: &mut Room,
        n: u32,
        to: u8,
        owner: Option<&KeyState>,
    ) -> Result<(), u8> {
        let slot = room.slot(n);
        if slot.state != OUTSTANDING {
            return Err(slot.state);
        }
        let number = slot.owner;
        room.slot_mut(n).state = to;
        room.retain_slot(n);
        if self.max_outstanding_per_key.is_some() {
            match owner {
                Some(owner) => owner.outstanding.fetch_sub(1, Ordering::Relaxed),
                None => self
                    .owner(number)
                    .outstanding
                    .fetch_sub(1, Ordering::Relaxed),
            };
        }
        Ok(())
    }

    /// Judges one validation and, when it succeeds, consumes the challenge.
    pub async fn validate(
        &self,
        caller: &Arc<KeyState>,
        presented: &Presented<'_>,
    ) -> Result<(), Refusal> {
        let judged = match self.resolve(presented.challenge) {
            Some(named) => {
                let (mut room, hash) = self.room(&named.name);
                room.find(hash, &named.name)
                    .map(|n| self.judge(&mut room, n, &named, caller, presented))
            }
            None => None,
        };
        match judged {
            Some(Judged::Done(verdict)) => verdict,
            Some(Judged::RaceWindow(named)) => {
                // Deliberately broken: check, wait, then use, with no atomic step between.
                tokio::time::sleep(REPLAY_RACE_WINDOW).await;
                let (mut room, hash) = self.room(&named.name);
                if let Some(n) = room.find(hash, &named.name) {
                    self.leave_outstanding(&mut room, n, USED, None).ok();
                    room.slot_mut(n).state = USED;
                }
                Ok(())
            }
            None => {
                // Deliberately broken: a stateless server that trusts any HMAC.
                if self.faults.has(Fault::AcceptUnknownChallenge)
                    && caller
                        .response_key
                        .verify_hex(presented.challenge.as_bytes(), presented.response)
                {
                    return Ok(());
                }
                Err(Refusal::Unknown)
            }
        }
    }

    /// The rules of SPEC.md §4 for the stored slot `n`, under its shard's lock.
    fn judge(
        &self,
        room: &mut Room,
        n: u32,
        named: &Named,
        caller: &Arc<KeyState>,
        presented: &Presented<'_>,
    ) -> Judged {
        let faults = &self.faults;
        let slot = *room.slot(n);
        // Whose secret the response must prove: the owner's, who must be the caller.
        let owner;
        let prover: &KeyState = if Self::is_owner(caller, slot.owner)
            || faults.has(Fault::CrossKey)
            || (faults.has(Fault::BearerCrossKey) && presented.via_bearer)
        {
            caller
        } else if faults.has(Fault::CrossKeyOwnerSecret) {
            owner = self.owner(slot.owner);
            &owner
        } else {
            return Judged::Done(Err(Refusal::Unknown));
        };
        let state = slot.state;
        if state == USED && !self.replay_slips_through(&named.challenge, presented) {
            return Judged::Done(Err(Refusal::Replayed));
        }
        let ignore_ttl = faults.has(Fault::IgnoreTtl);
        if !ignore_ttl && (state == EXPIRED || self.now_ms() >= slot.expires_at_ms()) {
            return Judged::Done(Err(Refusal::Expired));
        }
        let encrypted = slot.flags & ENCRYPTED != 0;
        if !self.response_matches(
            &named.challenge,
            encrypted,
            prover,
            presented,
            named.via_ciphertext,
        ) {
            if self.styles.has(Style::ConsumeOnFailure) {
                self.leave_outstanding(room, n, USED, None).ok();
            }
            return Judged::Done(Err(Refusal::BadResponse));
        }
        if state == USED {
            // Only a fault gets here: a replay it let through.
            return Judged::Done(Ok(()));
        }
        if faults.has(Fault::ReplayRace) {
            return Judged::RaceWindow(*named);
        }
        let owner = Self::is_owner(caller, slot.owner).then_some(&**caller);
        Judged::Done(match self.leave_outstanding(room, n, USED, owner) {
            Ok(()) => {
                if faults.has(Fault::ForgetUsed) {
                    self.broken.used_at.insert(named.challenge, Instant::now());
                }
                if faults.has(Fault::ReplayOtherAuth) {
                    self.broken
                        .used_via_bearer
                        .insert(named.challenge, presented.via_bearer);
                }
                Ok(())
            }
            Err(USED) => Err(Refusal::Replayed),
            Err(_) => Err(Refusal::Expired),
        })
    }

    /// Whether a fault lets a validation of a used challenge through.
    fn replay_slips_through(&self, id: &ChallengeId, presented: &Presented<'_>) -> bool {
        let faults = &self.faults;
        !faults.is_empty()
            && (faults.has(Fault::AcceptReplay)
                || (faults.has(Fault::ReplayOtherCase)
                    && presented.response.bytes().any(|b| b.is_ascii_uppercase()))
                || (faults.has(Fault::ForgetUsed)
                    && self
                        .broken
                        .used_at
                        .get(id)
                        .is_some_and(|at| at.elapsed() >= FORGET_USED_AFTER))
                || (faults.has(Fault::ReplayOtherAuth)
                    && self
                        .broken
                        .used_via_bearer
                        .get(id)
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
        id: &ChallengeId,
        encrypted: bool,
        prover: &KeyState,
        presented: &Presented<'_>,
        via_ciphertext: bool,
    ) -> bool {
        let wire = self.wire(id);
        let response = presented.response;
        // The `lowercase-only` style reads HMAC hex strictly; a plaintext is compared
        // as it is anyway.
        let hmac_ok = !(self.styles.has(Style::LowercaseOnly)
            && response.bytes().any(|b| b.is_ascii_uppercase()))
            && prover.response_key.verify_hex(wire.as_bytes(), response);
        let correct = if !encrypted {
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
                && self.fault_accepts(encrypted, prover, presented, via_ciphertext, &wire))
    }

    /// Whether a fault accepts a response that is not a proof.
    fn fault_accepts(
        &self,
        encrypted: bool,
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
        let plain = !encrypted;
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
            || (encrypted
                && faults.has(Fault::RsaEqualFields)
                && !response.is_empty()
                && presented.decrypted_challenge == Some(response))
            || (encrypted
                && via_ciphertext
                && faults.has(Fault::RsaHmacCiphertext)
                && prover
                    .response_key
                    .verify_hex(presented.challenge.as_bytes(), response))
            || (encrypted
                && via_ciphertext
                && faults.has(Fault::RsaEchoCiphertext)
                && response == presented.challenge)
            || (encrypted
                && !via_ciphertext
                && faults.has(Fault::RsaPlaintextEcho)
                && response == presented.challenge)
    }

    /// One sweep: marks what has expired (freeing its cap slot) and forgets what is
    /// past retention. Visits only what is due, and allocates next to nothing: a sweep
    /// may handle millions of challenges, and its own memory is outside the budget.
    pub fn sweep(&self) {
        let now_s = u32::try_from(self.now_ms() / 1000).unwrap_or(u32::MAX);
        let mark_expired = !self.faults.has(Fault::IgnoreTtl);
        let counting = self.max_outstanding_per_key.is_some();
        // Caps freed, per key number: keys are few.
        let mut freed: Vec<u64> = Vec::new();
        for shard in &self.shards {
            let mut room = shard.0.lock().unwrap_or_else(PoisonError::into_inner);
            let expire = |slot: &mut Slot| {
                if mark_expired && slot.has_state() && slot.state == OUTSTANDING {
                    slot.state = EXPIRED;
                    if counting {
                        let owner = slot.owner as usize;
                        if freed.len() <= owner {
                            freed.resize(owner + 1, 0);
                        }
                        freed[owner] += 1;
                    }
                }
            };
            room.sweep(now_s, expire, |slot, target| {
                self.after_removal(slot, target);
            });
        }
        if freed.iter().any(|&count| count > 0) {
            let owners = self.owners.read().unwrap_or_else(PoisonError::into_inner);
            for (owner, count) in owners.iter().zip(freed) {
                owner.outstanding.fetch_sub(count, Ordering::Relaxed);
            }
        }
    }

    /// Names stored (an encrypted challenge has two), for tests and metrics.
    pub fn len(&self) -> usize {
        self.rooms().map(|room| room.index.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the store's structures hold now, as the budget counts them.
    pub fn memory(&self) -> usize {
        self.rooms().map(|room| room.bytes()).sum()
    }

    fn rooms(&self) -> impl Iterator<Item = MutexGuard<'_, Room>> {
        self.shards
            .iter()
            .map(|shard| shard.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// A presented challenge, resolved: the slot to judge, and the challenge whose bytes
/// the response must prove.
#[derive(Clone, Copy)]
struct Named {
    name: ChallengeId,
    challenge: ChallengeId,
    via_ciphertext: bool,
}

enum Judged {
    Done(Result<(), Refusal>),
    /// The `replay-race` fault: valid, to be used after its window.
    RaceWindow(Named),
}

/// One shard's challenges.
struct Room {
    /// `--retain-expired` in whole seconds (rounded up): a second's challenges are
    /// forgotten this long after it.
    retain_s: u32,
    chunks: Vec<Box<[Slot]>>,
    /// Slot numbers handed out so far, free or not.
    fresh: u32,
    /// The first free slot; the rest are chained through `pos`.
    free: Option<u32>,
    index: HashTable<u32>,
    /// Slots by the second they expire in (rounded up).
    seconds: BTreeMap<u32, Second>,
    /// The seconds whose retained list has slots: where eviction looks.
    evictable: BTreeSet<u32>,
    /// Seconds up to this one have had their outstanding slots expired.
    expired_through: u32,
    /// What `seconds` and `evictable` hold, in bytes.
    list_bytes: usize,
    /// For `ALIAS` and `TWIN` slots: the challenge they name, by slot number.
    targets: HashTable<(u32, ChallengeId)>,
}

/// The slots that expire in one second: those still outstanding, and those used or
/// expired (retained until the second is forgotten). `retained` always has room for
/// every waiting slot, so using or expiring one never allocates: the budget is met
/// when a challenge is stored, not when it changes state.
#[derive(Default)]
struct Second {
    waiting: List,
    retained: List,
}

impl Second {
    fn bytes(&self) -> usize {
        SECOND_BYTES + (self.waiting.slots.capacity() + self.retained.slots.capacity()) * 4
    }

    fn is_empty(&self) -> bool {
        self.waiting.is_empty() && self.retained.is_empty()
    }
}

/// Slot numbers in the order they were filed. Eviction takes them from the front
/// (`head`) without moving the rest, so every slot's `pos` stays right; taking one out
/// of the middle moves the last into its place.
#[derive(Default)]
struct List {
    slots: Vec<u32>,
    head: u32,
}

impl List {
    fn is_empty(&self) -> bool {
        self.live() == 0
    }

    fn live(&self) -> usize {
        self.slots.len() - self.head as usize
    }

    /// The slots still in the list.
    fn into_live(self) -> impl Iterator<Item = u32> {
        self.slots.into_iter().skip(self.head as usize)
    }
}

impl Room {
    fn new(retain_ms: u64) -> Self {
        Self {
            retain_s: u32::try_from(retain_ms.div_ceil(1000)).unwrap_or(u32::MAX),
            chunks: Vec::new(),
            fresh: 0,
            free: None,
            index: HashTable::new(),
            seconds: BTreeMap::new(),
            evictable: BTreeSet::new(),
            expired_through: 0,
            list_bytes: 0,
            targets: HashTable::new(),
        }
    }

    fn slot(&self, n: u32) -> &Slot {
        &self.chunks[n as usize / CHUNK][n as usize % CHUNK]
    }

    fn slot_mut(&mut self, n: u32) -> &mut Slot {
        &mut self.chunks[n as usize / CHUNK][n as usize % CHUNK]
    }

    fn find(&self, hash: u64, name: &ChallengeId) -> Option<u32> {
        self.index
            .find(hash, |&n| self.slot(n).name == *name)
            .copied()
    }

    fn target(&self, n: u32) -> ChallengeId {
        self.targets
            .find(u64::from(n), |&(m, _)| m == n)
            .map(|&(_, target)| target)
            .expect("every second name has a target")
    }

    /// Bytes held: slots, index, lists, targets.
    fn bytes(&self) -> usize {
        self.chunks.len() * CHUNK_BYTES
            + self.chunks.capacity() * std::mem::size_of::<Box<[Slot]>>()
            + self.index.allocation_size()
            + self.list_bytes
            + self.targets.allocation_size()
    }

    /// Bytes the next insert of a slot expiring in `second` allocates (an upper
    /// bound): a chunk when no slot is free, a bigger index or target table when
    /// theirs is full, the second's lists or longer ones.
    fn growth_for_insert(&self, second: u32, with_target: bool) -> usize {
        let mut bytes = 0;
        if self.free.is_none() && self.fresh as usize == self.chunks.len() * CHUNK {
            bytes += CHUNK_BYTES;
            if self.chunks.len() == self.chunks.capacity() {
                bytes += self.chunks.capacity().max(4) * std::mem::size_of::<Box<[Slot]>>();
            }
        }
        bytes += table_growth(&self.index, 4);
        if with_target {
            bytes += table_growth(&self.targets, 36);
        }
        let empty = Second::default();
        let (second_bytes, lists) = match self.seconds.get(&second) {
            Some(lists) => (0, lists),
            None => (SECOND_BYTES, &empty),
        };
        let waiting = &lists.waiting.slots;
        let retained = &lists.retained.slots;
        bytes
            + second_bytes
            + vec_growth(waiting.capacity(), waiting.len() + 1)
            + vec_growth(
                retained.capacity(),
                retained.len() + lists.waiting.live() + 1,
            )
    }

    fn add(&mut self, mut slot: Slot, hash: u64, target: Option<ChallengeId>) {
        let n = match self.free {
            Some(n) => {
                let next = self.slot(n).pos;
                self.free = (next != NO_SLOT).then_some(next);
                n
            }
            None => {
                let n = self.fresh;
                if n as usize == self.chunks.len() * CHUNK {
                    self.chunks.push(vec![Slot::FREE; CHUNK].into_boxed_slice());
                }
                self.fresh += 1;
                n
            }
        };
        let second = expiry_second(slot.expires_at_ms());
        slot.flags &= !RETAINED;
        *self.slot_mut(n) = slot;
        let Room { index, chunks, .. } = self;
        index.insert_unique(hash, n, |&m| {
            hash_name(&chunks[m as usize / CHUNK][m as usize % CHUNK].name)
        });
        if let Some(target) = target {
            self.targets
                .insert_unique(u64::from(n), (n, target), |&(m, _)| u64::from(m));
        }
        let new_second = !self.seconds.contains_key(&second);
        let lists = self.seconds.entry(second).or_default();
        let before = if new_second { 0 } else { lists.bytes() };
        lists.waiting.slots.push(n);
        let pos = (lists.waiting.slots.len() - 1) as u32;
        // Room for it in the retained list too, for when it is used or expires.
        let needed = lists.retained.slots.len() + lists.waiting.live();
        let retained = &mut lists.retained.slots;
        retained.reserve(needed.saturating_sub(retained.len()));
        self.list_bytes += lists.bytes() - before;
        self.slot_mut(n).pos = pos;
        // Every lifetime ends after the last sweep's second, so this never moves; if
        // one did not, the next sweep expires it rather than passing it by.
        self.expired_through = self.expired_through.min(second.saturating_sub(1));
    }

    /// The first second that still has outstanding slots.
    fn earliest_waiting(&self) -> Option<u32> {
        self.seconds
            .iter()
            .find(|(_, lists)| !lists.waiting.is_empty())
            .map(|(second, _)| *second)
    }

    /// Moves slot `n` from its second's waiting list to its retained list (it was
    /// used, or a style or fault consumed it). Never allocates.
    fn retain_slot(&mut self, n: u32) {
        if self.slot(n).flags & RETAINED != 0 {
            return;
        }
        let second = expiry_second(self.slot(n).expires_at_ms());
        self.unfile(n);
        let lists = self
            .seconds
            .get_mut(&second)
            .expect("unfile keeps the second of a slot that moves");
        debug_assert!(lists.retained.slots.len() < lists.retained.slots.capacity());
        lists.retained.slots.push(n);
        let pos = (lists.retained.slots.len() - 1) as u32;
        self.evictable.insert(second);
        let slot = self.slot_mut(n);
        slot.pos = pos;
        slot.flags |= RETAINED;
    }

    /// Takes slot `n` out of its list (swap-remove: the last one takes its place). A
    /// second left with nothing is dropped, unless `n` is about to be retained in it.
    fn unfile(&mut self, n: u32) {
        let slot = *self.slot(n);
        let second = expiry_second(slot.expires_at_ms());
        let retained = slot.flags & RETAINED != 0;
        let std::collections::btree_map::Entry::Occupied(mut entry) = self.seconds.entry(second)
        else {
            unreachable!("a listed slot's second is kept");
        };
        let lists = entry.get_mut();
        let list = if retained {
            &mut lists.retained
        } else {
            &mut lists.waiting
        };
        list.slots.swap_remove(slot.pos as usize);
        let moved = list.slots.get(slot.pos as usize).copied();
        if list.slots.len() == list.head as usize {
            // Emptied: start again from the front, keeping the capacity.
            list.slots.clear();
            list.head = 0;
            if retained {
                self.evictable.remove(&second);
            }
        }
        if let Some(moved) = moved {
            self.slot_mut(moved).pos = slot.pos;
        }
    }

    /// Drops `second`'s lists when they hold nothing.
    fn drop_if_empty(&mut self, second: u32) {
        if let std::collections::btree_map::Entry::Occupied(entry) = self.seconds.entry(second)
            && entry.get().is_empty()
        {
            self.list_bytes -= entry.remove().bytes();
            self.evictable.remove(&second);
        }
    }

    /// Removes slot `n` (listed) from everything: list, index, target.
    fn remove(&mut self, n: u32, hash: u64) -> (Slot, Option<ChallengeId>) {
        let second = expiry_second(self.slot(n).expires_at_ms());
        self.unfile(n);
        self.drop_if_empty(second);
        self.remove_unlisted(n, hash)
    }

    /// Removes slot `n`, already out of any list, from the index and frees it.
    fn remove_unlisted(&mut self, n: u32, hash: u64) -> (Slot, Option<ChallengeId>) {
        if let Ok(entry) = self.index.find_entry(hash, |&m| m == n) {
            entry.remove();
        }
        let target = if self.slot(n).flags & (ALIAS | TWIN) != 0 {
            self.targets
                .find_entry(u64::from(n), |&(m, _)| m == n)
                .ok()
                .map(|entry| entry.remove().0.1)
        } else {
            None
        };
        let slot = std::mem::replace(self.slot_mut(n), Slot::FREE);
        self.slot_mut(n).pos = self.free.unwrap_or(NO_SLOT);
        self.free = Some(n);
        (slot, target)
    }

    /// Forgets the retained slot due to be forgotten first (of one second's, the one
    /// retained first); `None` when none is retained.
    fn evict_oldest(&mut self) -> Option<(Slot, Option<ChallengeId>)> {
        let second = *self.evictable.first()?;
        let list = &mut self
            .seconds
            .get_mut(&second)
            .expect("an evictable second is kept")
            .retained;
        let n = list.slots[list.head as usize];
        list.head += 1;
        if list.is_empty() {
            list.slots.clear();
            list.head = 0;
            self.evictable.remove(&second);
        }
        self.drop_if_empty(second);
        let hash = hash_name(&self.slot(n).name);
        Some(self.remove_unlisted(n, hash))
    }

    /// Moves the outstanding slots of every second up to `now_s` to their retained
    /// lists, handing each to `expire`, and forgets every second `retain_s` older than
    /// that, handing each slot it forgets (and its target) to `forgotten`.
    fn sweep(
        &mut self,
        now_s: u32,
        mut expire: impl FnMut(&mut Slot),
        mut forgotten: impl FnMut(&Slot, Option<&ChallengeId>),
    ) {
        let from = self.expired_through.saturating_add(1);
        let Room {
            seconds,
            chunks,
            evictable,
            list_bytes,
            ..
        } = self;
        // A second sweep in the same second (a late tick caught up, or a busy machine)
        // has nothing new to expire; `from..=now_s` would then be backwards, a panic.
        let newly_due = seconds.range_mut(from.min(now_s)..=now_s);
        for (&second, lists) in newly_due.filter(|(second, _)| **second >= from) {
            let waiting = std::mem::take(&mut lists.waiting);
            *list_bytes -= waiting.slots.capacity() * 4;
            if !waiting.is_empty() {
                evictable.insert(second);
            }
            for n in waiting.into_live() {
                debug_assert!(lists.retained.slots.len() < lists.retained.slots.capacity());
                lists.retained.slots.push(n);
                let slot = &mut chunks[n as usize / CHUNK][n as usize % CHUNK];
                slot.pos = (lists.retained.slots.len() - 1) as u32;
                slot.flags |= RETAINED;
                expire(slot);
            }
        }
        self.expired_through = self.expired_through.max(now_s);
        let forget_through = now_s.saturating_sub(self.retain_s);
        while let Some(entry) = self.seconds.first_entry()
            && *entry.key() <= forget_through
        {
            let second = *entry.key();
            let lists = entry.remove();
            self.list_bytes -= lists.bytes();
            self.evictable.remove(&second);
            for n in lists.waiting.into_live().chain(lists.retained.into_live()) {
                let hash = hash_name(&self.slot(n).name);
                let (slot, target) = self.remove_unlisted(n, hash);
                forgotten(&slot, target.as_ref());
            }
        }
    }
}

/// What one second's lists cost besides their slot numbers: its share of the B-tree
/// nodes holding it (at least half full) and in `evictable`, and the allocator's
/// overhead for its two vectors.
const SECOND_BYTES: usize = 192;

/// Bytes a vector of `u32` with `capacity` allocates to hold `needed`: none when it
/// fits, else what doubling (or the need, or four) takes.
fn vec_growth(capacity: usize, needed: usize) -> usize {
    if needed <= capacity {
        0
    } else {
        (needed.max(capacity * 2).max(4) - capacity) * 4
    }
}

/// Bytes a hash table of `width`-byte entries allocates on its next insert: none while
/// it has room or can rehash in place, else a table of twice the buckets.
fn table_growth<T>(table: &HashTable<T>, width: usize) -> usize {
    if table.len() < table.capacity() {
        return 0;
    }
    let buckets = table.num_buckets();
    let full = if buckets < 8 {
        buckets.saturating_sub(1)
    } else {
        buckets / 8 * 7
    };
    if table.len() < full / 2 {
        return 0;
    }
    let next = (buckets * 2).max(4);
    // Entries, one control byte each, and a group of control bytes past the end.
    next * (width + 1) + 32
}

/// The second (since the epoch) a slot expiring at `ms` is filed under, and at whose
/// sweep it expires: the first whole second at or after it.
fn expiry_second(ms: u64) -> u32 {
    u32::try_from(ms.div_ceil(1000)).unwrap_or(u32::MAX)
}

/// Milliseconds, rounded up.
fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

fn hash_name(name: &ChallengeId) -> u64 {
    FxBuildHasher.hash_one(name)
}

/// A challenge drawn and counted against the cap, not yet visible to validations.
pub struct Issued {
    wire: Wire,
    id: ChallengeId,
    owner: Arc<KeyState>,
    expires_at_ms: u64,
}

impl Issued {
    /// The challenge as the client receives it (before any RSA encryption).
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

    fn store(cap: Option<u64>, max_memory: usize, retain: Duration) -> ChallengeStore {
        ChallengeStore::new(StoreConfig {
            max_outstanding_per_key: cap,
            max_memory,
            retain,
            faults: FaultSet::default(),
            styles: StyleSet::default(),
            all_keys: Vec::new(),
        })
    }

    /// Issues and stores one challenge; its wire text.
    fn create(store: &ChallengeStore, owner: &Arc<KeyState>, ttl: u64) -> Result<String, Full> {
        let issued = store.issue(owner, ttl, Duration::from_secs(ttl))?;
        let wire = issued.wire().to_owned();
        store.insert(issued, None)?;
        Ok(wire)
    }

    async fn validate(
        store: &ChallengeStore,
        owner: &Arc<KeyState>,
        challenge: &str,
    ) -> Result<(), Refusal> {
        let response = owner.response_key.response_hex(challenge);
        let presented = Presented {
            challenge,
            response: &response,
            decrypted_challenge: None,
            via_bearer: false,
        };
        store.validate(owner, &presented).await
    }

    #[tokio::test(start_paused = true)]
    async fn sweeping_expires_then_forgets_so_memory_stays_bounded() {
        let store = store(Some(10), DEFAULT_TEST_MEMORY, Duration::from_secs(5));
        let owner = key();
        for _ in 0..10 {
            create(&store, &owner, 1).unwrap();
        }
        assert_eq!(create(&store, &owner, 1), Err(Full::KeyAtCap));
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
    async fn sweeping_again_within_the_same_second_changes_nothing() {
        // The sweeper's ticks can bunch up on a busy machine (a late tick is caught up
        // at once); a second sweep in a second once panicked on a backwards range.
        let store = store(Some(10), DEFAULT_TEST_MEMORY, Duration::from_secs(5));
        let owner = key();
        let challenge = create(&store, &owner, 1).unwrap();
        store.sweep();
        store.sweep();
        tokio::time::advance(Duration::from_millis(1_500)).await;
        store.sweep();
        store.sweep();
        assert_eq!(owner.outstanding.load(Ordering::Relaxed), 0);
        assert_eq!(
            validate(&store, &owner, &challenge).await,
            Err(Refusal::Expired)
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        store.sweep();
        store.sweep();
        assert!(store.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_entry_answers_expired_until_swept_then_unknown() {
        let store = store(Some(10), DEFAULT_TEST_MEMORY, Duration::from_secs(5));
        let owner = key();
        let challenge = create(&store, &owner, 1).unwrap();
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            validate(&store, &owner, &challenge).await,
            Err(Refusal::Expired)
        );
        store.sweep();
        assert_eq!(
            validate(&store, &owner, &challenge).await,
            Err(Refusal::Expired)
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        store.sweep();
        assert_eq!(
            validate(&store, &owner, &challenge).await,
            Err(Refusal::Unknown)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn expiry_is_exact_to_the_millisecond_and_never_early() {
        let store = store(None, DEFAULT_TEST_MEMORY, Duration::from_secs(60));
        let owner = key();
        let early = create(&store, &owner, 2).unwrap();
        let late = create(&store, &owner, 2).unwrap();
        tokio::time::advance(Duration::from_millis(1_999)).await;
        assert_eq!(validate(&store, &owner, &early).await, Ok(()));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(validate(&store, &owner, &late).await, Err(Refusal::Expired));
    }

    const DEFAULT_TEST_MEMORY: usize = 1 << 20;
    const SMALL_BUDGET: usize = 256 * 1024;

    /// A store of `SMALL_BUDGET` under create+validate with a one-hour TTL (every used
    /// challenge is retained): it stays within the budget, forgets the oldest used
    /// challenges first, and a replay of one it forgot is refused as unknown, never
    /// valid.
    #[tokio::test(start_paused = true)]
    async fn a_full_budget_forgets_the_oldest_used_challenges_and_their_replays_stay_refused() {
        let store = store(None, SMALL_BUDGET, Duration::from_secs(60));
        let owner = key();
        let mut used = Vec::new();
        for _ in 0..20_000 {
            let challenge = create(&store, &owner, 3600).expect("used ones make room");
            assert_eq!(validate(&store, &owner, &challenge).await, Ok(()));
            used.push(challenge);
            assert!(store.memory() <= SMALL_BUDGET, "{}", store.memory());
        }
        let kept = store.len();
        assert!(
            kept >= SMALL_BUDGET / 100 && kept < used.len(),
            "a stored challenge costs under 100 bytes, and the oldest went: {kept} kept"
        );
        for (i, challenge) in used.iter().enumerate() {
            let replay = validate(&store, &owner, challenge).await;
            let forgotten = i < used.len() - kept;
            let expected = if forgotten {
                Refusal::Unknown
            } else {
                Refusal::Replayed
            };
            // Oldest first within each shard; shards fill at slightly different speeds,
            // so near the boundary either answer may come, but never valid.
            assert_ne!(replay, Ok(()), "replay {i} validated");
            if i < used.len() / 2 {
                assert_eq!(replay, Err(expected), "replay {i}");
            }
        }
        assert_eq!(
            validate(&store, &owner, &used[used.len() - 1]).await,
            Err(Refusal::Replayed),
            "the newest used challenge is still remembered"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn when_only_outstanding_challenges_are_left_creates_wait_for_the_earliest_expiry() {
        let store = store(None, SMALL_BUDGET, Duration::from_secs(60));
        let owner = key();
        let mut created = 0;
        let retry_after_s = loop {
            match create(&store, &owner, 30) {
                Ok(_) => created += 1,
                Err(Full::Memory { retry_after_s }) => break retry_after_s,
                Err(Full::KeyAtCap) => unreachable!("no per-key cap"),
            }
            assert!(created < 100_000, "the budget never filled");
        };
        assert!(store.memory() <= SMALL_BUDGET);
        assert_eq!(retry_after_s, 30, "the earliest expires in 30 s");
        tokio::time::advance(Duration::from_secs(10)).await;
        let Err(Full::Memory { retry_after_s }) = create(&store, &owner, 30) else {
            panic!("still full");
        };
        assert_eq!(retry_after_s, 20);
        // Once the earliest have expired, their room is reused (oldest first).
        tokio::time::advance(Duration::from_secs(21)).await;
        store.sweep();
        let fresh = create(&store, &owner, 30).expect("expired ones make room");
        assert_eq!(validate(&store, &owner, &fresh).await, Ok(()));
    }

    /// The budget counts what the allocator really gives the store: its heap never
    /// exceeds it (measured by a counting allocator on this thread).
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn the_heap_the_store_holds_stays_within_its_budget() {
        let before = counting::net_bytes();
        let store = store(None, SMALL_BUDGET, Duration::from_secs(60));
        let owner = key();
        let base = counting::net_bytes();
        let mut peak = 0;
        for round in 0..30_000u32 {
            // Mostly long-lived, so the budget fills; some short-lived, so seconds
            // expire and are forgotten under way.
            let ttl = if round % 5 == 0 { 1 } else { 3600 };
            if let Ok(challenge) = create(&store, &owner, ttl)
                && round % 2 == 0
            {
                validate(&store, &owner, &challenge).await.unwrap();
            }
            if round % 1000 == 0 {
                tokio::time::advance(Duration::from_secs(1)).await;
                store.sweep();
            }
            peak = peak.max(counting::net_bytes() - base);
        }
        // Outside the budget: the shards themselves, a sweep's count per key, and the
        // list of owners.
        let fixed = std::mem::size_of::<Shard>() * store.shards.len() + 256;
        assert!(
            peak <= (SMALL_BUDGET + fixed) as isize,
            "peak {peak} bytes for a budget of {SMALL_BUDGET}"
        );
        drop(store);
        drop(owner);
        assert!(counting::net_bytes() - before < 1024, "all given back");
    }

    /// A global allocator that counts, per thread, bytes allocated minus bytes freed.
    mod counting {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        thread_local! {
            static NET: Cell<isize> = const { Cell::new(0) };
        }

        fn add(bytes: isize) {
            NET.try_with(|net| net.set(net.get() + bytes)).ok();
        }

        pub fn net_bytes() -> isize {
            NET.with(Cell::get)
        }

        struct Counting;

        // SAFETY: every call goes to `System` unchanged; only the counter is added.
        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                // SAFETY: as the caller promised for `alloc`.
                let p = unsafe { System.alloc(layout) };
                if !p.is_null() {
                    add(layout.size() as isize);
                }
                p
            }

            unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
                // SAFETY: as the caller promised for `alloc_zeroed`.
                let p = unsafe { System.alloc_zeroed(layout) };
                if !p.is_null() {
                    add(layout.size() as isize);
                }
                p
            }

            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                // SAFETY: as the caller promised for `dealloc`.
                unsafe { System.dealloc(ptr, layout) };
                add(-(layout.size() as isize));
            }

            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
                // SAFETY: as the caller promised for `realloc`.
                let p = unsafe { System.realloc(ptr, layout, new_size) };
                if !p.is_null() {
                    add(new_size as isize - layout.size() as isize);
                }
                p
            }
        }

        #[global_allocator]
        static COUNTING: Counting = Counting;
    }
}
