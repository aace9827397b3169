//! The HTTP surface: create, validate, health, and JSON answers for everything else.

use std::borrow::Cow;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::de::DeserializeOwned;

use super::faults::Fault;
use super::keys::KeyState;
use super::state::AppState;
use super::store::{Presented, Refusal};
use crate::protocol::{
    CreateRequest, CreateResponse, DEFAULT_TTL_S, ErrorBody, ErrorCode, TTL_RANGE_S,
    ValidateRequest, ValidateResponse, bearer_token, resolve_key, verdict_signature,
};

/// A non-verdict error answer: status, code, message, and `Retry-After` when rate-limited.
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: Cow<'static, str>,
    retry_after_s: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_s: None,
        }
    }

    fn bad_request(app: &AppState, message: impl Into<Cow<'static, str>>) -> Self {
        let status = if app.faults.has(Fault::BadInput500) {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::BAD_REQUEST
        };
        Self::new(status, ErrorCode::BadRequest, message)
    }

    fn invalid_key(message: &'static str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::InvalidKey, message)
    }

    fn rate_limited(retry_after_s: u64) -> Self {
        Self {
            retry_after_s: Some(retry_after_s),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                "rate limit exceeded for this key; retry after the Retry-After seconds",
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code.as_str().to_owned(),
            message: self.message.into_owned(),
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Reads the body up to the server's size limit and deadline, and parses it as a JSON
/// object.
async fn parse_body<T: DeserializeOwned>(app: &AppState, body: Body) -> Result<T, ApiError> {
    let mut read = std::pin::pin!(axum::body::to_bytes(body, app.body_limit));
    // Nearly every body is in by the time its handler runs: one poll reads it, and
    // only a body still on its way pays for a deadline timer.
    let read = match futures::poll!(read.as_mut()) {
        Poll::Ready(read) => Ok(read),
        Poll::Pending => tokio::time::timeout(app.body_timeout, read).await,
    };
    let body = read
        .map_err(|_| {
            // hyper closes the connection after this answer: the rest of the body
            // never came, so the next request's start is unknown.
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::BadRequest,
                format!(
                    "the request body did not arrive within {}",
                    humantime::format_duration(app.body_timeout)
                ),
            )
        })?
        .map_err(|err| {
            let too_large = std::error::Error::source(&err)
                .is_some_and(|cause| cause.is::<http_body_util::LengthLimitError>());
            if too_large {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::PayloadTooLarge,
                    format!("request body is larger than {} bytes", app.body_limit),
                )
            } else {
                ApiError::bad_request(app, format!("cannot read the request body: {err}"))
            }
        })?;
    // An empty body is an empty object: SDK create calls may carry only a Bearer key.
    let json: &[u8] = match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => b"{}",
        Some(b'{') => &body,
        // serde would read a struct from an array too; KeyClaim bodies are objects.
        Some(_) => {
            return Err(ApiError::bad_request(
                app,
                "the request body must be a JSON object",
            ));
        }
    };
    serde_json::from_slice(json)
        .map_err(|err| ApiError::bad_request(app, format!("invalid JSON body: {err}")))
}

/// Finds the caller's key (Bearer header or body `key`) and charges its rate limit.
fn authenticate(
    app: &AppState,
    headers: &HeaderMap,
    body_key: Option<&str>,
) -> Result<Arc<KeyState>, ApiError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token);
    let key = resolve_key(bearer, body_key)
        .map_err(|_| {
            ApiError::invalid_key("the body's key and the Authorization Bearer key differ")
        })?
        .ok_or_else(|| {
            ApiError::invalid_key(
                "no API key: send \"key\" in the body or Authorization: Bearer kc_...",
            )
        })?;
    let state = if app.faults.has(Fault::AcceptUnknownKey) {
        app.keys.get_or_adopt(key)
    } else {
        app.keys.get(key)
    };
    let state = state.ok_or_else(|| ApiError::invalid_key("API key is invalid or inactive"))?;
    if !app.faults.has(Fault::NeverRateLimit) {
        state.check_rate().map_err(ApiError::rate_limited)?;
    }
    Ok(state)
}

// Handlers take the whole request: extracting `HeaderMap` would clone every header.
pub async fn create(
    State(app): State<Arc<AppState>>,
    request: Request,
) -> Result<Json<CreateResponse>, ApiError> {
    let (parts, body) = request.into_parts();
    let request: CreateRequest = parse_body(&app, body).await?;
    let key = authenticate(&app, &parts.headers, request.key.as_deref())?;
    let ttl = request.ttl.unwrap_or(DEFAULT_TTL_S);
    if !TTL_RANGE_S.contains(&ttl) {
        return Err(ApiError::bad_request(
            &app,
            format!(
                "ttl must be whole seconds from {} to {}; got {ttl}",
                TTL_RANGE_S.start(),
                TTL_RANGE_S.end()
            ),
        ));
    }
    if request.encrypted == Some(true) && key.public_key.is_none() {
        return Err(ApiError::bad_request(
            &app,
            "encrypted challenges need a public key assigned to this API key",
        ));
    }
    let issued = app.store.issue(&key, Duration::from_secs(ttl)).map_err(|_| {
        ApiError {
            retry_after_s: Some(ttl),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                format!(
                    "this key has {} outstanding challenges, the most allowed; validate or let some expire",
                    app.max_outstanding
                ),
            )
        }
    })?;
    let plaintext_rsa = app.faults.has(Fault::PlaintextRsa);
    match key.public_key.as_ref().filter(|_| !plaintext_rsa) {
        None => {
            let challenge = issued.hex().to_owned();
            app.store.insert(issued, None);
            Ok(Json(CreateResponse {
                challenge,
                expires_in: ttl,
                encrypted: None,
            }))
        }
        Some(public_key) => {
            let ciphertext = if app.faults.has(Fault::RsaOaepSha1) {
                public_key.encrypt_oaep_sha1(issued.hex().as_bytes())
            } else {
                public_key.encrypt_oaep_sha256(issued.hex().as_bytes())
            };
            let ciphertext = match ciphertext {
                Ok(bytes) => base64::engine::general_purpose::STANDARD.encode(bytes),
                Err(err) => {
                    app.store.abandon(issued);
                    return Err(ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        ErrorCode::Internal,
                        err.to_string(),
                    ));
                }
            };
            app.store.insert(issued, Some(&ciphertext));
            Ok(Json(CreateResponse {
                challenge: ciphertext,
                expires_in: ttl,
                encrypted: Some(true),
            }))
        }
    }
}

pub async fn validate(
    State(app): State<Arc<AppState>>,
    request: Request,
) -> Result<Json<ValidateResponse>, ApiError> {
    let (parts, body) = request.into_parts();
    let request: ValidateRequest = parse_body(&app, body).await?;
    let key = authenticate(&app, &parts.headers, request.key.as_deref())?;
    key.charge_validation().map_err(|_| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::RateLimited,
            "this key's validation quota is used up",
        )
    })?;
    let presented = Presented {
        challenge: &request.challenge,
        response: &request.response,
        decrypted_challenge: request.decrypted_challenge.as_deref(),
    };
    let verdict = app.store.validate(&key, &presented, &app.faults).await;
    let quota = Some(key.quota_info());
    Ok(Json(match verdict {
        Ok(()) => ValidateResponse {
            valid: true,
            signature: key
                .tier
                .signs_verdicts()
                .then(|| verdict_signature(&key.response_key, &request.challenge, true)),
            quota,
            error: None,
            message: None,
        },
        Err(refusal) => {
            let (code, message) = refusal_answer(refusal, &app);
            ValidateResponse {
                valid: false,
                signature: None,
                quota,
                error: Some(code.as_str().to_owned()),
                message: Some(message.to_owned()),
            }
        }
    }))
}

fn refusal_answer(refusal: Refusal, app: &AppState) -> (ErrorCode, &'static str) {
    match refusal {
        Refusal::Replayed if app.faults.has(Fault::WrongErrorCode) => {
            (ErrorCode::InvalidSignature, "response signature is invalid")
        }
        Refusal::Replayed => (
            ErrorCode::ReplayedChallenge,
            "challenge has already been used",
        ),
        Refusal::Expired => (ErrorCode::ExpiredChallenge, "challenge has expired"),
        Refusal::BadResponse => (ErrorCode::InvalidSignature, "response signature is invalid"),
        Refusal::Unknown => (
            ErrorCode::InvalidSignature,
            "unknown challenge: not issued to this key, or long expired",
        ),
    }
}

pub async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "no such endpoint; KeyClaim has POST /api/challenge/create and POST /api/challenge/validate",
    )
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "method not allowed; KeyClaim endpoints take POST",
    )
}
