//! Deliberate faults for self-testing: each breaks exactly one thing SPEC.md says a
//! server MUST do, so the conformance suite can prove it catches that breakage
//! (`keyclaim-harness selftest`). The table in SPEC.md §10 lists them with the check that
//! catches each.

use std::str::FromStr;

/// One deliberate fault. `serve --list-faults` prints [`Fault::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    AcceptReplay,
    ForgetUsed,
    ReplayOtherCase,
    WrongErrorCode,
    ReplayRace,
    IgnoreTtl,
    EarlyExpiry,
    ExpiredWrongCode,
    LengthenTtl,
    NoExpiresIn,
    ExpiresInString,
    ReusePending,
    CounterChallenges,
    ShortChallenges,
    AcceptAnyResponse,
    PrefixCompare,
    IgnoreLastDigit,
    AcceptTruncated,
    AcceptExtended,
    AcceptEmptyResponse,
    AcceptEcho,
    AcceptHash,
    AcceptCustom,
    AcceptUnknownChallenge,
    AcceptUnknownKey,
    BearerUnknownKey,
    UnknownKeyConsumes,
    InvalidKeyWrongCode,
    MissingKeyCreate,
    MissingKeyValidate,
    CrossKey,
    CrossKeyOwnerSecret,
    BearerCrossKey,
    PlaintextRsa,
    RsaOaepSha1,
    RsaTwoEntries,
    RsaEqualFields,
    RsaHmacCiphertext,
    RsaEchoCiphertext,
    RsaPlaintextEcho,
    ValidString,
    ValidNumber,
    DuplicateValid,
    ErrorNumber,
    QuotaStrings,
    ConstantSignature,
    GarbageSignature,
    SignatureIsResponse,
    NeverRateLimit,
    RateLimitWrongCode,
    BadInput500,
    UnknownPath200,
    ReplayOtherAuth,
    ReplayChallengeCase,
    DefaultTtlForever,
    SilentTtlCap,
    EncryptedOnPlain,
    HmacAnyKey,
    KeyPrefixMatch,
    KeyStartsWithKnown,
    RsaBearerPlaintext,
    RsaPlaintextLeak,
    RsaPredictable,
    ValidWithError,
    UnboundSignature,
    RateLimitConsumes,
    UnknownKeyValidate,
    NonObject500,
    FieldType500,
    MissingField500,
    AnyMethod,
}

impl Fault {
    pub const ALL: [Fault; 71] = [
        Fault::AcceptReplay,
        Fault::ForgetUsed,
        Fault::ReplayOtherCase,
        Fault::WrongErrorCode,
        Fault::ReplayRace,
        Fault::IgnoreTtl,
        Fault::EarlyExpiry,
        Fault::ExpiredWrongCode,
        Fault::LengthenTtl,
        Fault::NoExpiresIn,
        Fault::ExpiresInString,
        Fault::ReusePending,
        Fault::CounterChallenges,
        Fault::ShortChallenges,
        Fault::AcceptAnyResponse,
        Fault::PrefixCompare,
        Fault::IgnoreLastDigit,
        Fault::AcceptTruncated,
        Fault::AcceptExtended,
        Fault::AcceptEmptyResponse,
        Fault::AcceptEcho,
        Fault::AcceptHash,
        Fault::AcceptCustom,
        Fault::AcceptUnknownChallenge,
        Fault::AcceptUnknownKey,
        Fault::BearerUnknownKey,
        Fault::UnknownKeyConsumes,
        Fault::InvalidKeyWrongCode,
        Fault::MissingKeyCreate,
        Fault::MissingKeyValidate,
        Fault::CrossKey,
        Fault::CrossKeyOwnerSecret,
        Fault::BearerCrossKey,
        Fault::PlaintextRsa,
        Fault::RsaOaepSha1,
        Fault::RsaTwoEntries,
        Fault::RsaEqualFields,
        Fault::RsaHmacCiphertext,
        Fault::RsaEchoCiphertext,
        Fault::RsaPlaintextEcho,
        Fault::ValidString,
        Fault::ValidNumber,
        Fault::DuplicateValid,
        Fault::ErrorNumber,
        Fault::QuotaStrings,
        Fault::ConstantSignature,
        Fault::GarbageSignature,
        Fault::SignatureIsResponse,
        Fault::NeverRateLimit,
        Fault::RateLimitWrongCode,
        Fault::BadInput500,
        Fault::UnknownPath200,
        Fault::ReplayOtherAuth,
        Fault::ReplayChallengeCase,
        Fault::DefaultTtlForever,
        Fault::SilentTtlCap,
        Fault::EncryptedOnPlain,
        Fault::HmacAnyKey,
        Fault::KeyPrefixMatch,
        Fault::KeyStartsWithKnown,
        Fault::RsaBearerPlaintext,
        Fault::RsaPlaintextLeak,
        Fault::RsaPredictable,
        Fault::ValidWithError,
        Fault::UnboundSignature,
        Fault::RateLimitConsumes,
        Fault::UnknownKeyValidate,
        Fault::NonObject500,
        Fault::FieldType500,
        Fault::MissingField500,
        Fault::AnyMethod,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::AcceptReplay => "accept-replay",
            Fault::ForgetUsed => "forget-used",
            Fault::ReplayOtherCase => "replay-other-case",
            Fault::WrongErrorCode => "wrong-error-code",
            Fault::ReplayRace => "replay-race",
            Fault::IgnoreTtl => "ignore-ttl",
            Fault::EarlyExpiry => "early-expiry",
            Fault::ExpiredWrongCode => "expired-wrong-code",
            Fault::LengthenTtl => "lengthen-ttl",
            Fault::NoExpiresIn => "no-expires-in",
            Fault::ExpiresInString => "expires-in-string",
            Fault::ReusePending => "reuse-pending",
            Fault::CounterChallenges => "counter-challenges",
            Fault::ShortChallenges => "short-challenges",
            Fault::AcceptAnyResponse => "accept-any-response",
            Fault::PrefixCompare => "prefix-compare",
            Fault::IgnoreLastDigit => "ignore-last-digit",
            Fault::AcceptTruncated => "accept-truncated",
            Fault::AcceptExtended => "accept-extended",
            Fault::AcceptEmptyResponse => "accept-empty-response",
            Fault::AcceptEcho => "accept-echo",
            Fault::AcceptHash => "accept-hash",
            Fault::AcceptCustom => "accept-custom",
            Fault::AcceptUnknownChallenge => "accept-unknown-challenge",
            Fault::AcceptUnknownKey => "accept-unknown-key",
            Fault::BearerUnknownKey => "bearer-unknown-key",
            Fault::UnknownKeyConsumes => "unknown-key-consumes",
            Fault::InvalidKeyWrongCode => "invalid-key-wrong-code",
            Fault::MissingKeyCreate => "missing-key-create",
            Fault::MissingKeyValidate => "missing-key-validate",
            Fault::CrossKey => "cross-key",
            Fault::CrossKeyOwnerSecret => "cross-key-owner-secret",
            Fault::BearerCrossKey => "bearer-cross-key",
            Fault::PlaintextRsa => "plaintext-rsa",
            Fault::RsaOaepSha1 => "rsa-oaep-sha1",
            Fault::RsaTwoEntries => "rsa-two-entries",
            Fault::RsaEqualFields => "rsa-equal-fields",
            Fault::RsaHmacCiphertext => "rsa-hmac-ciphertext",
            Fault::RsaEchoCiphertext => "rsa-echo-ciphertext",
            Fault::RsaPlaintextEcho => "rsa-plaintext-echo",
            Fault::ValidString => "valid-string",
            Fault::ValidNumber => "valid-number",
            Fault::DuplicateValid => "duplicate-valid",
            Fault::ErrorNumber => "error-number",
            Fault::QuotaStrings => "quota-strings",
            Fault::ConstantSignature => "constant-signature",
            Fault::GarbageSignature => "garbage-signature",
            Fault::SignatureIsResponse => "signature-is-response",
            Fault::NeverRateLimit => "never-rate-limit",
            Fault::RateLimitWrongCode => "rate-limit-wrong-code",
            Fault::BadInput500 => "bad-input-500",
            Fault::UnknownPath200 => "unknown-path-200",
            Fault::ReplayOtherAuth => "replay-other-auth",
            Fault::ReplayChallengeCase => "replay-challenge-case",
            Fault::DefaultTtlForever => "default-ttl-forever",
            Fault::SilentTtlCap => "silent-ttl-cap",
            Fault::EncryptedOnPlain => "encrypted-on-plain",
            Fault::HmacAnyKey => "hmac-any-key",
            Fault::KeyPrefixMatch => "key-prefix-match",
            Fault::KeyStartsWithKnown => "key-starts-with-known",
            Fault::RsaBearerPlaintext => "rsa-bearer-plaintext",
            Fault::RsaPlaintextLeak => "rsa-plaintext-leak",
            Fault::RsaPredictable => "rsa-predictable",
            Fault::ValidWithError => "valid-with-error",
            Fault::UnboundSignature => "unbound-signature",
            Fault::RateLimitConsumes => "rate-limit-consumes",
            Fault::UnknownKeyValidate => "unknown-key-validate",
            Fault::NonObject500 => "non-object-500",
            Fault::FieldType500 => "field-type-500",
            Fault::MissingField500 => "missing-field-500",
            Fault::AnyMethod => "any-method",
        }
    }

    /// The SPEC.md clause whose MUST this fault breaks.
    pub fn clause(self) -> &'static str {
        match self {
            Fault::AcceptReplay => "KC-4.2",
            Fault::ForgetUsed => "KC-4.2",
            Fault::ReplayOtherCase => "KC-4.2",
            Fault::WrongErrorCode => "KC-4.2",
            Fault::ReplayRace => "KC-4.3",
            Fault::IgnoreTtl => "KC-4.6",
            Fault::EarlyExpiry => "KC-4.6",
            Fault::ExpiredWrongCode => "KC-4.6",
            Fault::LengthenTtl => "KC-2.3",
            Fault::NoExpiresIn => "KC-2.1",
            Fault::ExpiresInString => "KC-6.1",
            Fault::ReusePending => "KC-2.2",
            Fault::CounterChallenges => "KC-2.2",
            Fault::ShortChallenges => "KC-2.1",
            Fault::AcceptAnyResponse => "KC-4.4",
            Fault::PrefixCompare => "KC-4.4",
            Fault::IgnoreLastDigit => "KC-4.4",
            Fault::AcceptTruncated => "KC-4.4",
            Fault::AcceptExtended => "KC-4.4",
            Fault::AcceptEmptyResponse => "KC-4.4",
            Fault::AcceptEcho => "KC-4.5",
            Fault::AcceptHash => "KC-4.5",
            Fault::AcceptCustom => "KC-4.5",
            Fault::AcceptUnknownChallenge => "KC-4.8",
            Fault::AcceptUnknownKey => "KC-3.3",
            Fault::BearerUnknownKey => "KC-3.3",
            Fault::UnknownKeyConsumes => "KC-3.3",
            Fault::InvalidKeyWrongCode => "KC-3.3",
            Fault::MissingKeyCreate => "KC-3.4",
            Fault::MissingKeyValidate => "KC-3.4",
            Fault::CrossKey => "KC-4.7",
            Fault::CrossKeyOwnerSecret => "KC-4.7",
            Fault::BearerCrossKey => "KC-4.7",
            Fault::PlaintextRsa => "KC-5.2",
            Fault::RsaOaepSha1 => "KC-5.2",
            Fault::RsaTwoEntries => "KC-5.2",
            Fault::RsaEqualFields => "KC-5.3",
            Fault::RsaHmacCiphertext => "KC-5.4",
            Fault::RsaEchoCiphertext => "KC-5.4",
            Fault::RsaPlaintextEcho => "KC-5.4",
            Fault::ValidString => "KC-6.1",
            Fault::ValidNumber => "KC-6.1",
            Fault::DuplicateValid => "KC-6.1",
            Fault::ErrorNumber => "KC-6.1",
            Fault::QuotaStrings => "KC-6.1",
            Fault::ConstantSignature => "KC-6.2",
            Fault::GarbageSignature => "KC-6.2",
            Fault::SignatureIsResponse => "KC-6.2",
            Fault::NeverRateLimit => "KC-7.1",
            Fault::RateLimitWrongCode => "KC-7.1",
            Fault::BadInput500 => "KC-8.1",
            Fault::UnknownPath200 => "KC-8.2",
            Fault::ReplayOtherAuth => "KC-4.2",
            Fault::ReplayChallengeCase => "KC-4.2",
            Fault::DefaultTtlForever => "KC-4.6",
            Fault::SilentTtlCap => "KC-4.6",
            Fault::EncryptedOnPlain => "KC-2.1",
            Fault::HmacAnyKey => "KC-4.7",
            Fault::KeyPrefixMatch => "KC-3.3",
            Fault::KeyStartsWithKnown => "KC-3.3",
            Fault::RsaBearerPlaintext => "KC-5.2",
            Fault::RsaPlaintextLeak => "KC-5.2",
            Fault::RsaPredictable => "KC-2.2",
            Fault::ValidWithError => "KC-6.1",
            Fault::UnboundSignature => "KC-6.2",
            Fault::RateLimitConsumes => "KC-7.1",
            Fault::UnknownKeyValidate => "KC-3.3",
            Fault::NonObject500 => "KC-8.1",
            Fault::FieldType500 => "KC-8.1",
            Fault::MissingField500 => "KC-8.1",
            Fault::AnyMethod => "KC-8.2",
        }
    }

    /// What the fault does, as `--list-faults` says it.
    pub fn breaks(self) -> &'static str {
        match self {
            Fault::AcceptReplay => "a used challenge validates again",
            Fault::ForgetUsed => "a used challenge validates again 2 s after its use",
            Fault::ReplayOtherCase => {
                "a used challenge validates again when its response is sent in uppercase hex"
            }
            Fault::WrongErrorCode => {
                "a replayed challenge answers invalid_signature, not replayed_challenge"
            }
            Fault::ReplayRace => {
                "check-then-use is not atomic: concurrent validations of one challenge can all succeed"
            }
            Fault::IgnoreTtl => "an expired challenge still validates",
            Fault::EarlyExpiry => "challenges expire at half the TTL that expires_in advertises",
            Fault::ExpiredWrongCode => {
                "an expired challenge answers replayed_challenge, not expired_challenge"
            }
            Fault::LengthenTtl => "challenges live, and expires_in says, twice the requested ttl",
            Fault::NoExpiresIn => "a create answers without expires_in",
            Fault::ExpiresInString => {
                "expires_in is a string (\"30\"), which the Go SDK cannot read"
            }
            Fault::ReusePending => {
                "a create hands out the key's last unused challenge of the same TTL again"
            }
            Fault::CounterChallenges => "challenges count up: unique, but predictable",
            Fault::ShortChallenges => "challenges are 8 hex characters (32 bits)",
            Fault::AcceptAnyResponse => "any response validates",
            Fault::PrefixCompare => "only the first 8 hex digits of a response are compared",
            Fault::IgnoreLastDigit => "the last hex digit of a response is not compared",
            Fault::AcceptTruncated => "a response that is a prefix of the correct one validates",
            Fault::AcceptExtended => "a response that starts with the correct one validates",
            Fault::AcceptEmptyResponse => "an empty response validates",
            Fault::AcceptEcho => "the challenge itself validates as its response (the SDKs' echo)",
            Fault::AcceptHash => "hex(SHA-256(challenge + key)) validates (the SDKs' hash)",
            Fault::AcceptCustom => {
                "hex(SHA-256(challenge + \":\" + key)) validates (the SDKs' custom)"
            }
            Fault::AcceptUnknownChallenge => "any challenge validates with its HMAC, issued or not",
            Fault::AcceptUnknownKey => "any kc_ key is accepted",
            Fault::BearerUnknownKey => {
                "any kc_ key is accepted as a Bearer token (body keys are checked)"
            }
            Fault::UnknownKeyConsumes => {
                "a validation with an unknown key uses up the challenge it names"
            }
            Fault::InvalidKeyWrongCode => {
                "unknown keys are refused with unauthorized, not invalid_key"
            }
            Fault::MissingKeyCreate => {
                "a create without a key issues a challenge (for the first key)"
            }
            Fault::MissingKeyValidate => {
                "a validation without a key is judged for the challenge's owner"
            }
            Fault::CrossKey => {
                "a challenge issued to one key validates for another, with that key's HMAC"
            }
            Fault::CrossKeyOwnerSecret => {
                "a challenge validates for any key that sends the owner's HMAC"
            }
            Fault::BearerCrossKey => {
                "in the Bearer form, one key's challenge validates for another"
            }
            Fault::PlaintextRsa => "challenges for RSA keys are handed out unencrypted",
            Fault::RsaOaepSha1 => "challenges are encrypted with OAEP-SHA1, not OAEP-SHA256",
            Fault::RsaTwoEntries => {
                "an RSA challenge used by its ciphertext validates again by its plaintext"
            }
            Fault::RsaEqualFields => {
                "an RSA challenge validates whenever response equals decryptedChallenge"
            }
            Fault::RsaHmacCiphertext => {
                "the HMAC of an RSA ciphertext validates: no private key needed"
            }
            Fault::RsaEchoCiphertext => "an RSA ciphertext echoed back validates",
            Fault::RsaPlaintextEcho => {
                "named by its plaintext, an RSA challenge validates with the plaintext as its response"
            }
            Fault::ValidString => {
                "refusals say \"valid\": \"false\", a string (true in Python's if)"
            }
            Fault::ValidNumber => "refusals say \"valid\": 0",
            Fault::DuplicateValid => {
                "refusals say {\"valid\": true, \"valid\": false}: true to first-wins parsers"
            }
            Fault::ErrorNumber => "error codes are numbers, which the SDKs cannot read",
            Fault::QuotaStrings => "quota counts are strings, which the Go SDK cannot read",
            Fault::ConstantSignature => "every valid verdict carries the same signature",
            Fault::GarbageSignature => "valid verdicts carry a signature that is not hex",
            Fault::SignatureIsResponse => {
                "the signature of a valid verdict is the client's own response"
            }
            Fault::NeverRateLimit => "requests are never rate-limited",
            Fault::RateLimitWrongCode => {
                "rate limiting answers 429 too_many_requests, not rate_limited"
            }
            Fault::BadInput500 => "malformed requests answer 500 instead of a 4xx",
            Fault::UnknownPath200 => "unknown paths answer 200",
            Fault::ReplayOtherAuth => {
                "a used challenge validates again with the key in the other auth form"
            }
            Fault::ReplayChallengeCase => {
                "a used challenge validates again when named in uppercase hex"
            }
            Fault::DefaultTtlForever => {
                "a challenge created without ttl never expires (it says 30)"
            }
            Fault::SilentTtlCap => "challenges live at most 10 s whatever expires_in says",
            Fault::EncryptedOnPlain => "plain challenges come with \"encrypted\": true",
            Fault::HmacAnyKey => {
                "a response validates if it is the HMAC under any configured key's secret"
            }
            Fault::KeyPrefixMatch => "a key is accepted if it is the start of a configured key",
            Fault::KeyStartsWithKnown => "a key is accepted if it starts with a configured key",
            Fault::RsaBearerPlaintext => {
                "RSA keys sent as Bearer tokens get unencrypted challenges"
            }
            Fault::RsaPlaintextLeak => {
                "the create answer for an RSA key also carries the plaintext"
            }
            Fault::RsaPredictable => "what RSA challenges decrypt to counts up",
            Fault::ValidWithError => {
                "valid verdicts also carry an error code, which the SDKs read as a refusal"
            }
            Fault::UnboundSignature => {
                "the signature covers the challenge only, so refusals carry the one a valid verdict would"
            }
            Fault::RateLimitConsumes => "a rate-limited validation uses up its challenge",
            Fault::UnknownKeyValidate => {
                "an unknown key's validation is judged for the challenge's owner"
            }
            Fault::NonObject500 => "a body that is JSON but not an object answers 500",
            Fault::FieldType500 => "a field of the wrong type answers 500",
            Fault::MissingField500 => "a validation without a response field answers 500",
            Fault::AnyMethod => "the endpoints answer every method as they answer POST",
        }
    }
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Fault::ALL
            .into_iter()
            .find(|fault| fault.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Fault::ALL.iter().map(|fault| fault.name()).collect();
                format!(
                    "unknown fault '{name}' (known: {}; see --list-faults)",
                    names.join(", ")
                )
            })
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The faults a server runs with; empty for a correct server. A bit per fault, so the
/// request path pays one test per question, and nothing beyond `is_empty` when correct.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultSet {
    bits: u128,
}

impl FaultSet {
    pub fn new(faults: impl IntoIterator<Item = Fault>) -> Self {
        Self {
            bits: faults.into_iter().fold(0, |bits, fault| bits | bit(fault)),
        }
    }

    pub fn has(&self, fault: Fault) -> bool {
        self.bits & bit(fault) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.bits == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = Fault> + '_ {
        Fault::ALL.into_iter().filter(|fault| self.has(*fault))
    }
}

fn bit(fault: Fault) -> u128 {
    const { assert!(Fault::ALL.len() <= 128, "one bit per fault") };
    1 << (fault as u32)
}

/// `--list-faults`: one line per fault: its name, the clause it breaks, what it does.
pub fn list_faults() -> String {
    let width = Fault::ALL.iter().map(|f| f.name().len()).max().unwrap_or(0);
    Fault::ALL
        .iter()
        .map(|fault| {
            format!(
                "{:width$}  {:7} {}\n",
                fault.name(),
                fault.clause(),
                fault.breaks()
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_unknown_names_list_the_known() {
        for fault in Fault::ALL {
            assert_eq!(fault.name().parse::<Fault>(), Ok(fault));
        }
        let err = "nope".parse::<Fault>().unwrap_err();
        assert!(err.contains("accept-replay"), "{err}");
    }

    #[test]
    fn list_has_one_line_per_fault() {
        let list = list_faults();
        assert_eq!(list.lines().count(), Fault::ALL.len());
        assert!(list.lines().all(|line| line.contains("  ")));
    }
}
