//! The faults that break the *form* of an answer rather than its meaning: a layer that
//! rewrites each JSON answer after its handler made it correctly. Installed only when
//! one of these faults is on, so a correct server never buffers an answer twice.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::Value;

use super::faults::{Fault, FaultSet};

/// The faults this layer carries out.
pub const FAULTS: [Fault; 12] = [
    Fault::ValidWithError,
    Fault::ValidString,
    Fault::ValidNumber,
    Fault::DuplicateValid,
    Fault::ErrorNumber,
    Fault::QuotaStrings,
    Fault::ExpiresInString,
    Fault::NoExpiresIn,
    Fault::ConstantSignature,
    Fault::GarbageSignature,
    Fault::InvalidKeyWrongCode,
    Fault::RateLimitWrongCode,
];

/// What `constant-signature` puts on every valid verdict.
const CONSTANT_SIGNATURE: &str = "5d41402abc4b2a76b9719d911017c5925d41402abc4b2a76b9719d911017c592";

/// Whether any fault of `faults` needs this layer.
pub fn needed(faults: &FaultSet) -> bool {
    FAULTS.iter().any(|fault| faults.has(*fault))
}

pub async fn layer(State(faults): State<FaultSet>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let (parts, body) = response.into_parts();
    // Answers are a few hundred bytes; the cap only guards against a surprise.
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let Ok(Value::Object(mut answer)) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let refusal = answer.get("valid") == Some(&Value::Bool(false));
    if answer.get("valid") == Some(&Value::Bool(true)) && faults.has(Fault::ValidWithError) {
        answer.insert("error".into(), Value::from("invalid_signature"));
    }
    if refusal && faults.has(Fault::ValidString) {
        answer.insert("valid".into(), Value::from("false"));
    }
    if refusal && faults.has(Fault::ValidNumber) {
        answer.insert("valid".into(), Value::from(0));
    }
    if let Some(Value::String(code)) = answer.get("error").cloned() {
        let code = match code.as_str() {
            "invalid_key" if faults.has(Fault::InvalidKeyWrongCode) => "unauthorized",
            "rate_limited" if faults.has(Fault::RateLimitWrongCode) => "too_many_requests",
            other => other,
        };
        let code = if faults.has(Fault::ErrorNumber) {
            Value::from(parts.status.as_u16())
        } else {
            Value::from(code)
        };
        answer.insert("error".into(), code);
    }
    if faults.has(Fault::QuotaStrings)
        && let Some(Value::Object(quota)) = answer.get_mut("quota")
    {
        for count in ["used", "remaining"] {
            if let Some(value) = quota.get_mut(count) {
                *value = Value::from(value.to_string());
            }
        }
    }
    if let Some(expires_in) = answer.get("expires_in").cloned() {
        if faults.has(Fault::NoExpiresIn) {
            answer.remove("expires_in");
        } else if faults.has(Fault::ExpiresInString) {
            answer.insert("expires_in".into(), Value::from(expires_in.to_string()));
        }
    }
    if answer.contains_key("signature") {
        if faults.has(Fault::ConstantSignature) {
            answer.insert("signature".into(), Value::from(CONSTANT_SIGNATURE));
        } else if faults.has(Fault::GarbageSignature) {
            answer.insert("signature".into(), Value::from("signed-by-keyclaim"));
        }
    }
    let mut text = Value::Object(answer).to_string();
    if refusal && faults.has(Fault::DuplicateValid) {
        // Two `valid` members: serde and Python keep the last (false), first-wins
        // parsers take true.
        text = text.replacen("\"valid\":false", "\"valid\":true,\"valid\":false", 1);
    }
    let mut parts = parts;
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(text))
}
