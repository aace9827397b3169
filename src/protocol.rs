//! The KeyClaim wire protocol: paths, request and response bodies, error codes and the
//! verdict signature. Both the harness's client and the reference server use these
//! types, so the two cannot drift apart. See SPEC.md for the contract they encode.

use serde::{Deserialize, Serialize};

use crate::crypto::ResponseKey;

pub const CREATE_PATH: &str = "/api/challenge/create";
pub const VALIDATE_PATH: &str = "/api/challenge/validate";
/// Every KeyClaim API key starts with this (the vendor's SDKs refuse others).
pub const KEY_PREFIX: &str = "kc_";
/// The TTL the docs' examples and the SDKs use when none is given.
pub const DEFAULT_TTL_S: u64 = 30;
/// The reference server's accepted TTL range, in seconds (SPEC.md §3).
pub const TTL_RANGE_S: std::ops::RangeInclusive<u64> = 1..=3600;
/// The longest challenge the harness carries from a create to its validation. The
/// largest a KeyClaim server issues is base64 of an RSA-4096 ciphertext (684
/// characters); a longer one is a failed expectation, not something every iteration
/// in flight should hold (a target could otherwise make each cost its 256 KiB body).
pub const MAX_CHALLENGE_BYTES: usize = 4096;

/// `POST /api/challenge/create`. `key` is absent when the key travels as a Bearer token.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateResponse {
    /// 64 lowercase hex characters, or base64 RSA-OAEP ciphertext when `encrypted`.
    pub challenge: String,
    pub expires_in: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<bool>,
}

/// `POST /api/challenge/validate`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ValidateRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub challenge: String,
    pub response: String,
    #[serde(
        rename = "decryptedChallenge",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub decrypted_challenge: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ValidateResponse {
    pub valid: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The SDKs' `quota` object. `remaining` is -1 when the quota is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaInfo {
    pub used: u64,
    pub remaining: i64,
    pub quota: QuotaLimit,
}

/// A number, or the string `"unlimited"`, as the SDKs read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QuotaLimit {
    Limited(u64),
    Unlimited(Unlimited),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unlimited {
    Unlimited,
}

/// Any error answer: `error` is the code, `message` says what to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
}

/// Error codes. The first five are the vendor's documented ones; the rest are the
/// reference server's own for requests the docs say nothing about (SPEC.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidKey,
    ExpiredChallenge,
    ReplayedChallenge,
    InvalidSignature,
    RateLimited,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    Internal,
}

impl ErrorCode {
    pub const DOCUMENTED: [ErrorCode; 5] = [
        ErrorCode::InvalidKey,
        ErrorCode::ExpiredChallenge,
        ErrorCode::ReplayedChallenge,
        ErrorCode::InvalidSignature,
        ErrorCode::RateLimited,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidKey => "invalid_key",
            ErrorCode::ExpiredChallenge => "expired_challenge",
            ErrorCode::ReplayedChallenge => "replayed_challenge",
            ErrorCode::InvalidSignature => "invalid_signature",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::Internal => "internal_error",
        }
    }

    pub fn parse(code: &str) -> Option<ErrorCode> {
        [
            ErrorCode::InvalidKey,
            ErrorCode::ExpiredChallenge,
            ErrorCode::ReplayedChallenge,
            ErrorCode::InvalidSignature,
            ErrorCode::RateLimited,
            ErrorCode::BadRequest,
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::PayloadTooLarge,
            ErrorCode::Internal,
        ]
        .into_iter()
        .find(|known| known.as_str() == code)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The message a verdict signature covers (SPEC.md §5): it binds the verdict to the
/// challenge exactly as the client sent it.
pub fn verdict_message(challenge: &str, valid: bool) -> String {
    format!("keyclaim-verdict:v1:{challenge}:{valid}")
}

/// The `signature` a paid-tier key receives with a verdict: lowercase hex
/// HMAC-SHA256 under the key's secret. A client recomputes it to verify the answer.
///
/// ```
/// use keyclaim_harness::crypto::ResponseKey;
/// use keyclaim_harness::protocol::{verdict_message, verdict_signature};
/// let secret = ResponseKey::new(b"kc_example_key");
/// let signature = verdict_signature(&secret, "abc123", true);
/// assert_eq!(signature, hex::encode(secret.mac(verdict_message("abc123", true).as_bytes())));
/// assert_eq!(signature.len(), 64);
/// ```
pub fn verdict_signature(secret: &ResponseKey, challenge: &str, valid: bool) -> String {
    hex::encode(secret.mac(verdict_message(challenge, valid).as_bytes()))
}

/// The key a request carries: the `Authorization: Bearer` token, else the body's `key`.
/// Returns `Err` when both are present and differ.
pub fn resolve_key<'a>(
    bearer: Option<&'a str>,
    body: Option<&'a str>,
) -> Result<Option<&'a str>, KeyConflict> {
    match (bearer, body) {
        (Some(header), Some(body)) if header != body => Err(KeyConflict),
        (Some(header), _) => Ok(Some(header)),
        (None, body) => Ok(body),
    }
}

/// The body's key and the Bearer key differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyConflict;

/// The token of an `Authorization: Bearer TOKEN` header value; the scheme is
/// case-insensitive (RFC 7235).
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_round_trip() {
        for code in ErrorCode::DOCUMENTED {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
        assert_eq!(ErrorCode::parse("nope"), None);
    }

    #[test]
    fn quota_serializes_as_the_sdks_read_it() {
        let limited = QuotaInfo {
            used: 3,
            remaining: 7,
            quota: QuotaLimit::Limited(10),
        };
        assert_eq!(
            serde_json::to_string(&limited).unwrap(),
            r#"{"used":3,"remaining":7,"quota":10}"#
        );
        let unlimited = QuotaInfo {
            used: 3,
            remaining: -1,
            quota: QuotaLimit::Unlimited(Unlimited::Unlimited),
        };
        assert_eq!(
            serde_json::to_string(&unlimited).unwrap(),
            r#"{"used":3,"remaining":-1,"quota":"unlimited"}"#
        );
    }

    #[test]
    fn bearer_and_body_keys_resolve() {
        assert_eq!(bearer_token("Bearer kc_a"), Some("kc_a"));
        assert_eq!(bearer_token("bearer  kc_a "), Some("kc_a"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(resolve_key(Some("kc_a"), None), Ok(Some("kc_a")));
        assert_eq!(resolve_key(None, Some("kc_b")), Ok(Some("kc_b")));
        assert_eq!(resolve_key(Some("kc_a"), Some("kc_a")), Ok(Some("kc_a")));
        assert_eq!(resolve_key(Some("kc_a"), Some("kc_b")), Err(KeyConflict));
        assert_eq!(resolve_key(None, None), Ok(None));
    }

    #[test]
    fn validate_request_uses_the_sdks_field_name() {
        let request = ValidateRequest {
            key: None,
            challenge: "c".into(),
            response: "r".into(),
            decrypted_challenge: Some("d".into()),
        };
        assert_eq!(
            serde_json::to_string(&request).unwrap(),
            r#"{"challenge":"c","response":"r","decryptedChallenge":"d"}"#
        );
    }
}
