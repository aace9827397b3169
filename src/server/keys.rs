//! API keys the server knows: their HMAC secret, optional RSA public key, plan tier,
//! rate limiter and quota counters; and the `--keys FILE` TOML format.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Deserialize;

use crate::crypto::{ResponseKey, RsaBackend, RsaPublicKey};
use crate::protocol::{KEY_PREFIX, QuotaInfo, QuotaLimit, Unlimited};

/// Plan tiers: paid tiers get a verdict `signature` (SPEC.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Free,
    Pro,
    Business,
}

impl Tier {
    pub fn signs_verdicts(self) -> bool {
        matches!(self, Tier::Pro | Tier::Business)
    }

    /// Validations allowed when a key names no quota of its own.
    pub fn default_quota(self) -> Option<u64> {
        match self {
            Tier::Free => Some(1_000),
            Tier::Pro => Some(100_000),
            Tier::Business => None,
        }
    }
}

/// One key as configured, before the server builds its state.
#[derive(Clone, PartialEq, Eq)]
pub struct KeySpec {
    pub id: String,
    /// HMAC secret when it differs from the key (the SDKs allow that).
    pub secret: Option<String>,
    /// PEM public key; challenges for this key are RSA-encrypted.
    pub public_key_pem: Option<String>,
    pub tier: Tier,
    /// Requests per second; `None` means the server's `--rate-limit`, 0 means off.
    pub rate_limit: Option<u32>,
    /// Validations allowed; `None` means the tier's default.
    pub quota: Option<u64>,
}

impl std::fmt::Debug for KeySpec {
    // Keys and secrets never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySpec")
            .field("id", &redact_key(&self.id))
            .field("rsa", &self.public_key_pem.is_some())
            .field("tier", &self.tier)
            .field("rate_limit", &self.rate_limit)
            .field("quota", &self.quota)
            .finish()
    }
}

impl KeySpec {
    pub fn new(id: impl Into<String>, tier: Tier) -> Self {
        Self {
            id: id.into(),
            secret: None,
            public_key_pem: None,
            tier,
            rate_limit: None,
            quota: None,
        }
    }
}

/// `kc_` plus the first four characters, for messages that must say which key
/// without revealing it.
pub fn redact_key(key: &str) -> String {
    let shown: String = key.chars().take(KEY_PREFIX.len() + 4).collect();
    format!("{shown}…")
}

/// A generated key: `kc_` and 32 random bytes in hex.
pub fn generate_key_id() -> String {
    format!("{KEY_PREFIX}{}", hex::encode(rand::random::<[u8; 32]>()))
}

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A keys file that is not valid TOML, or not the keys format. The file's text is
    /// never repeated: its lines hold secrets, and one line can be megabytes long.
    #[error(
        "{path}: line {line}, column {column}: {message} (the line is not shown: keys files hold secrets)"
    )]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: key #{index}: {message}")]
    Invalid {
        path: PathBuf,
        index: usize,
        message: String,
    },
    #[error("{path}: public key: {source}")]
    PublicKey {
        path: PathBuf,
        source: crate::crypto::CryptoError,
    },
    #[error("API key {key}: public key: {source}")]
    KeyPublicKey {
        key: String,
        source: crate::crypto::CryptoError,
    },
    #[error("API key {key} does not start with \"kc_\" (every KeyClaim key does)")]
    BadPrefix { key: String },
    #[error("API key {key} is given twice")]
    Duplicate { key: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    key: Vec<KeyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    id: String,
    secret: Option<String>,
    public_key: Option<PathBuf>,
    tier: Option<Tier>,
    rate_limit: Option<u32>,
    quota: Option<u64>,
}

/// Reads a `--keys FILE`; `public_key` paths are relative to the file's folder.
pub fn load_keys_file(path: &Path, default_tier: Tier) -> Result<Vec<KeySpec>, KeysError> {
    let bytes = std::fs::read(path).map_err(|source| KeysError::Read {
        path: path.to_owned(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|err| {
        let valid = err.utf8_error().valid_up_to();
        let text = std::str::from_utf8(&err.as_bytes()[..valid]).expect("valid up to here");
        parse_error(path, text, valid, "the file is not UTF-8 text")
    })?;
    let file: KeysFile = toml::from_str(&text).map_err(|err| {
        let at = err.span().map_or(0, |span| span.start);
        parse_error(path, &text, at, &without_file_text(err.message()))
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut specs = Vec::with_capacity(file.key.len());
    for (index, entry) in file.key.into_iter().enumerate() {
        let public_key_pem = match entry.public_key {
            Some(relative) => {
                let pem_path = base.join(relative);
                let pem = std::fs::read_to_string(&pem_path).map_err(|source| KeysError::Read {
                    path: pem_path.clone(),
                    source,
                })?;
                RsaPublicKey::from_pem(&pem).map_err(|source| KeysError::PublicKey {
                    path: pem_path,
                    source,
                })?;
                Some(pem)
            }
            None => None,
        };
        if entry.secret.as_deref() == Some("") {
            return Err(KeysError::Invalid {
                path: path.to_owned(),
                index: index + 1,
                message: "secret is empty; leave it out to use the key itself".into(),
            });
        }
        specs.push(KeySpec {
            id: entry.id,
            secret: entry.secret,
            public_key_pem,
            tier: entry.tier.unwrap_or(default_tier),
            rate_limit: entry.rate_limit,
            quota: entry.quota,
        });
    }
    Ok(specs)
}

/// Field names of the keys format: the only words of the file an error may repeat.
const KEYS_FILE_WORDS: [&str; 10] = [
    "key",
    "id",
    "secret",
    "public_key",
    "tier",
    "rate_limit",
    "quota",
    "free",
    "pro",
    "business",
];

fn parse_error(path: &Path, text: &str, at: usize, message: &str) -> KeysError {
    let (line, column) = crate::plan::Source::new(path, text).line_column(at..at);
    KeysError::Parse {
        path: path.to_owned(),
        line,
        column,
        message: message.to_owned(),
    }
}

/// A TOML or serde error message with every quoted or backquoted piece of the file
/// taken out: `invalid type: string "…", expected u32` becomes `invalid type: string,
/// expected u32`. What follows "expected" lists what the format or grammar wants, never
/// the file's text, so it stays; before it, only the format's own field names do. A
/// misspelt field or tier gets "did you mean" with the format's word, not the file's.
fn without_file_text(message: &str) -> String {
    let (found, expected) = match message.split_once(", expected") {
        Some((found, expected)) => (found, Some(expected)),
        None => (message, None),
    };
    let mut kept = String::with_capacity(found.len());
    let mut dropped = None;
    let mut rest = found;
    while let Some(open) = rest.find(['"', '`']) {
        kept.push_str(&rest[..open]);
        let quote = rest[open..].chars().next().expect("found above");
        let inside = &rest[open + 1..];
        let Some(close) = inside.find(quote) else {
            rest = "";
            break;
        };
        let quoted = &inside[..close];
        if KEYS_FILE_WORDS.contains(&quoted) {
            kept.push_str(&rest[open..open + 1 + close + 1]);
        } else {
            dropped.get_or_insert(quoted);
        }
        rest = &inside[close + 1..];
    }
    kept.push_str(rest);
    let mut described = kept.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some(expected) = expected {
        described.push_str(", expected");
        described.push_str(expected);
    }
    let mut described = described.lines().next().unwrap_or_default().to_owned();
    let misspelt = found.starts_with("unknown field") || found.starts_with("unknown variant");
    if let Some(word) = dropped.filter(|_| misspelt)
        && let Some(meant) = crate::plan::suggest(word, &KEYS_FILE_WORDS)
    {
        described.push_str(&format!("; did you mean `{meant}`?"));
    }
    described
}

/// A key's live state.
pub struct KeyState {
    pub id: String,
    pub response_key: ResponseKey,
    /// The secret itself; only the faults that accept the SDKs' other response forms
    /// (hashes of challenge and secret) need it.
    secret: zeroize::Zeroizing<String>,
    pub public_key: Option<RsaPublicKey>,
    pub tier: Tier,
    limiter: Option<DefaultDirectRateLimiter>,
    quota: Option<u64>,
    /// Validations answered with a verdict, for the `quota` object.
    used: AtomicU64,
    /// Challenges issued and neither used nor expired, held under the per-key cap
    /// (counted only when there is one).
    pub outstanding: AtomicU64,
    /// This key's number in the challenge store, given on its first challenge; kept
    /// here so matching a challenge's owner to the caller needs no lookup.
    pub(crate) store_number: std::sync::OnceLock<u32>,
}

impl std::fmt::Debug for KeyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyState")
            .field("id", &redact_key(&self.id))
            .field("tier", &self.tier)
            .finish_non_exhaustive()
    }
}

/// Quota exhausted: no validations left.
#[derive(Debug)]
pub struct QuotaExhausted;

impl KeyState {
    /// `default_rate_limit` is the server's; `burst`, requests a key may send at once
    /// before the rate counts (at least its per-second rate).
    pub fn new(
        spec: &KeySpec,
        default_rate_limit: u32,
        burst: Option<u32>,
        backend: RsaBackend,
    ) -> Result<Self, crate::crypto::CryptoError> {
        let secret = spec.secret.as_deref().unwrap_or(&spec.id);
        let public_key = spec
            .public_key_pem
            .as_deref()
            .map(|pem| RsaPublicKey::from_pem_with(pem, backend))
            .transpose()?;
        let per_second = spec.rate_limit.unwrap_or(default_rate_limit);
        let limiter = NonZeroU32::new(per_second).map(|n| {
            let burst = burst
                .and_then(NonZeroU32::new)
                .map_or(n, |burst| burst.max(n));
            RateLimiter::direct(Quota::per_second(n).allow_burst(burst))
        });
        Ok(Self {
            id: spec.id.clone(),
            response_key: ResponseKey::new(secret.as_bytes()),
            secret: zeroize::Zeroizing::new(secret.to_owned()),
            public_key,
            tier: spec.tier,
            limiter,
            quota: spec.quota.or(spec.tier.default_quota()),
            used: AtomicU64::new(0),
            outstanding: AtomicU64::new(0),
            store_number: std::sync::OnceLock::new(),
        })
    }

    /// The HMAC secret (the key itself unless the keys file gives another).
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// `Err(seconds)` to wait when the key is over its rate.
    pub fn check_rate(&self) -> Result<(), u64> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            // Retry-After has whole seconds; never tell a client to retry at once.
            wait.as_secs_f64().ceil().max(1.0) as u64
        })
    }

    /// Counts one validation against the quota.
    pub fn charge_validation(&self) -> Result<(), QuotaExhausted> {
        let used = self.used.fetch_add(1, Ordering::Relaxed) + 1;
        if self.quota.is_some_and(|quota| used > quota) {
            self.used.fetch_sub(1, Ordering::Relaxed);
            return Err(QuotaExhausted);
        }
        Ok(())
    }

    pub fn quota_info(&self) -> QuotaInfo {
        let used = self.used.load(Ordering::Relaxed);
        match self.quota {
            Some(quota) => QuotaInfo {
                used,
                remaining: quota.saturating_sub(used) as i64,
                quota: QuotaLimit::Limited(quota),
            },
            None => QuotaInfo {
                used,
                remaining: -1,
                quota: QuotaLimit::Unlimited(Unlimited::Unlimited),
            },
        }
    }
}

/// Every key the server answers for.
pub struct KeyRegistry {
    keys: DashMap<String, Arc<KeyState>>,
    rate_burst: Option<u32>,
    /// The first key configured (the `missing-key-create` fault issues for it).
    first: Option<Arc<KeyState>>,
    default_rate_limit: u32,
    backend: RsaBackend,
}

impl KeyRegistry {
    pub fn new(
        specs: &[KeySpec],
        default_rate_limit: u32,
        rate_burst: Option<u32>,
        backend: RsaBackend,
    ) -> Result<Self, KeysError> {
        let keys = DashMap::with_capacity(specs.len());
        let mut first = None;
        let mut seen = HashMap::new();
        for spec in specs {
            if !spec.id.starts_with(KEY_PREFIX) {
                return Err(KeysError::BadPrefix {
                    key: redact_key(&spec.id),
                });
            }
            if seen.insert(spec.id.clone(), ()).is_some() {
                return Err(KeysError::Duplicate {
                    key: redact_key(&spec.id),
                });
            }
            let state =
                KeyState::new(spec, default_rate_limit, rate_burst, backend).map_err(|source| {
                    KeysError::KeyPublicKey {
                        key: redact_key(&spec.id),
                        source,
                    }
                })?;
            let state = Arc::new(state);
            first.get_or_insert_with(|| Arc::clone(&state));
            keys.insert(spec.id.clone(), state);
        }
        Ok(Self {
            keys,
            rate_burst,
            first,
            default_rate_limit,
            backend,
        })
    }

    /// The first key configured.
    pub fn first(&self) -> Option<Arc<KeyState>> {
        self.first.clone()
    }

    pub fn get(&self, id: &str) -> Option<Arc<KeyState>> {
        self.keys.get(id).map(|entry| Arc::clone(entry.value()))
    }

    /// The first key for which `matches(known id)` holds (the faults that compare keys
    /// loosely).
    pub fn find(&self, matches: impl Fn(&str) -> bool) -> Option<Arc<KeyState>> {
        self.keys
            .iter()
            .find(|entry| matches(entry.key()))
            .map(|entry| Arc::clone(entry.value()))
    }

    /// Every configured key.
    pub fn all(&self) -> Vec<Arc<KeyState>> {
        self.keys
            .iter()
            .map(|entry| Arc::clone(entry.value()))
            .collect()
    }

    /// For the `accept-unknown-key` fault: any `kc_` key becomes a key on first use.
    pub fn get_or_adopt(&self, id: &str) -> Option<Arc<KeyState>> {
        if !id.starts_with(KEY_PREFIX) {
            return None;
        }
        let spec = KeySpec::new(id, Tier::Business);
        let entry = self.keys.entry(id.to_owned()).or_insert_with(|| {
            Arc::new(
                KeyState::new(
                    &spec,
                    self.default_rate_limit,
                    self.rate_burst,
                    self.backend,
                )
                .expect("a key without a public key always builds"),
            )
        });
        Some(Arc::clone(entry.value()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_file_reads_tiers_limits_and_relative_public_keys() {
        let dir = tempfile::tempdir().unwrap();
        let pair = crate::crypto::generate_key_pair(2048).unwrap();
        std::fs::write(dir.path().join("pub.pem"), &pair.public_spki_pem).unwrap();
        let path = dir.path().join("keys.toml");
        std::fs::write(
            &path,
            r#"
[[key]]
id = "kc_one"
tier = "free"
rate_limit = 5
quota = 10

[[key]]
id = "kc_two"
public_key = "pub.pem"
secret = "other"
"#,
        )
        .unwrap();
        let specs = load_keys_file(&path, Tier::Pro).unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].tier, Tier::Free);
        assert_eq!(specs[0].rate_limit, Some(5));
        assert_eq!(specs[0].quota, Some(10));
        assert_eq!(specs[1].tier, Tier::Pro);
        assert!(specs[1].public_key_pem.is_some());
        assert_eq!(specs[1].secret.as_deref(), Some("other"));
    }

    #[test]
    fn keys_file_errors_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        std::fs::write(&path, "[[key]]\nid = \"kc_a\"\nteir = \"pro\"\n").unwrap();
        let err = load_keys_file(&path, Tier::Pro).unwrap_err().to_string();
        assert!(err.contains("keys.toml"), "{err}");
        assert!(err.contains("line 3, column 1"), "{err}");
        assert!(err.contains("unknown field"), "{err}");
        assert!(err.contains("did you mean `tier`?"), "{err}");
        assert!(
            !err.contains("teir"),
            "the file's own words are not repeated: {err}"
        );
    }

    #[test]
    fn error_messages_keep_the_formats_words_and_drop_the_files() {
        for (message, expected) in [
            (
                "invalid type: string \"s3cr3t\", expected u32",
                "invalid type: string, expected u32",
            ),
            (
                "unknown field `zq9x7k`, expected one of `id`, `secret`",
                "unknown field, expected one of `id`, `secret`",
            ),
            ("missing field `id`", "missing field `id`"),
            (
                "invalid type: integer `123456` as i128, expected u64",
                "invalid type: integer as i128, expected u64",
            ),
            ("unterminated \"s3cr3t", "unterminated"),
            ("duplicate key", "duplicate key"),
        ] {
            assert_eq!(without_file_text(message), expected, "{message}");
        }
    }

    #[test]
    fn registry_refuses_bad_prefixes_and_duplicates_without_showing_the_key() {
        let bad = KeyRegistry::new(
            &[KeySpec::new("secret_value_123", Tier::Pro)],
            0,
            None,
            RsaBackend::default(),
        );
        let err = bad.err().unwrap().to_string();
        assert!(!err.contains("secret_value_123"), "{err}");
        let twice = [
            KeySpec::new("kc_dup_secret", Tier::Pro),
            KeySpec::new("kc_dup_secret", Tier::Pro),
        ];
        let err = KeyRegistry::new(&twice, 0, None, RsaBackend::default())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("twice") && !err.contains("kc_dup_secret"),
            "{err}"
        );
    }

    #[test]
    fn quota_counts_and_stops_at_the_limit() {
        let mut spec = KeySpec::new("kc_q", Tier::Free);
        spec.quota = Some(2);
        let key = KeyState::new(&spec, 0, None, RsaBackend::default()).unwrap();
        assert!(key.charge_validation().is_ok());
        assert!(key.charge_validation().is_ok());
        assert!(key.charge_validation().is_err());
        assert_eq!(
            key.quota_info(),
            QuotaInfo {
                used: 2,
                remaining: 0,
                quota: QuotaLimit::Limited(2)
            }
        );
    }
}
