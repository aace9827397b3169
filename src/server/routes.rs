//! The HTTP surface: create, validate, health, and JSON answers for everything else.
//! Where the docs leave a choice open, the server's [`Style`]s pick; where a fault
//! breaks a guarantee, it is named at the line that breaks it.

use std::borrow::Cow;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Body as HttpBody;
use serde::Deserialize;

use super::faults::Fault;
use super::keys::KeyState;
use super::state::AppState;
use super::store::{Full, Presented, Refusal};
use super::style::Style;
use crate::protocol::{
    CreateResponse, DEFAULT_TTL_S, ErrorBody, ErrorCode, TTL_RANGE_S, ValidateResponse,
    bearer_token, resolve_key, verdict_signature,
};

/// TTLs above this are shortened under the `ttl-cap-20` style.
const STYLE_TTL_CAP_S: u64 = 20;
/// What the `silent-ttl-cap` fault keeps a challenge for at most.
const SILENT_TTL_CAP_S: u64 = 10;
/// "Never" for the `default-ttl-forever` fault: far beyond any run, still a valid
/// `Instant` offset.
const FOREVER: Duration = Duration::from_secs(10 * 365 * 86_400);

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

    /// A malformed body of the kind `fault` breaks on: a 400, or a 500 under it.
    fn malformed(app: &AppState, fault: Fault, message: impl Into<Cow<'static, str>>) -> Self {
        if app.faults.has(fault) {
            return Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::BadRequest,
                message,
            );
        }
        Self::bad_request(app, message)
    }

    fn invalid_key(message: &'static str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::InvalidKey, message)
    }

    fn rate_limited(app: &AppState, retry_after_s: u64, message: Cow<'static, str>) -> Self {
        app.counters.rate_limited();
        if app.styles.has(Style::RateLimit403) {
            return Self::new(StatusCode::FORBIDDEN, ErrorCode::RateLimited, message);
        }
        Self {
            retry_after_s: Some(retry_after_s),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                message,
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

enum BodyError {
    TooLarge,
    Read(String),
}

/// A request body as the handlers take it: hyper's own on the direct path (see
/// `dispatch`), axum's through the router.
pub trait RequestBody: HttpBody<Data = Bytes, Error: std::fmt::Display> + Unpin + Send {}

impl<B> RequestBody for B where B: HttpBody<Data = Bytes, Error: std::fmt::Display> + Unpin + Send {}

/// The whole body, up to `limit` bytes. A body that came in one piece (nearly all) is
/// passed on as it is, without copying.
async fn read_body<B: RequestBody>(mut body: B, limit: usize) -> Result<Bytes, BodyError> {
    let mut whole: Option<Bytes> = None;
    let mut joined: Option<bytes::BytesMut> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame
            .map_err(|err| BodyError::Read(err.to_string()))?
            .into_data()
        else {
            continue;
        };
        let so_far = joined.as_ref().map_or(0, |j| j.len()) + whole.as_ref().map_or(0, |w| w.len());
        if so_far + data.len() > limit {
            return Err(BodyError::TooLarge);
        }
        match (&mut joined, whole.take()) {
            (Some(joined), _) => joined.extend_from_slice(&data),
            (None, None) => whole = Some(data),
            (None, Some(first)) => {
                let mut both = bytes::BytesMut::with_capacity(first.len() + data.len());
                both.extend_from_slice(&first);
                both.extend_from_slice(&data);
                joined = Some(both);
            }
        }
    }
    Ok(joined.map_or_else(|| whole.unwrap_or_default(), bytes::BytesMut::freeze))
}

/// A create's body as the server reads it: the fields of
/// [`CreateRequest`](crate::protocol::CreateRequest), with the key borrowed from the
/// request's bytes (copied only when it has JSON escapes).
#[derive(Deserialize)]
struct CreateBody<'a> {
    #[serde(default, borrow)]
    key: Option<Cow<'a, str>>,
    #[serde(default)]
    ttl: Option<u64>,
    #[serde(default)]
    encrypted: Option<bool>,
}

/// A validation's body as the server reads it: the fields of
/// [`ValidateRequest`](crate::protocol::ValidateRequest), borrowed like
/// [`CreateBody`]'s.
#[derive(Deserialize)]
struct ValidateBody<'a> {
    #[serde(default, borrow)]
    key: Option<Cow<'a, str>>,
    #[serde(borrow)]
    challenge: Cow<'a, str>,
    #[serde(borrow)]
    response: Cow<'a, str>,
    #[serde(rename = "decryptedChallenge", default, borrow)]
    decrypted_challenge: Option<Cow<'a, str>>,
}

/// Reads the body up to the server's size limit and deadline; the JSON object it holds
/// is for [`decode`]. A body whose declared length is over the limit is refused before
/// any of it is read, so a client that sent `Expect: 100-continue` gets the 413 at once
/// and no `100 Continue` (hyper sends that only when the body is first read).
async fn read_json<B: RequestBody>(app: &AppState, body: B) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            format!("request body is larger than {} bytes", app.body_limit),
        )
    };
    if body.size_hint().lower() > app.body_limit as u64 {
        return Err(too_large());
    }
    let mut read = std::pin::pin!(read_body(body, app.body_limit));
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
        .map_err(|err| match err {
            BodyError::TooLarge => too_large(),
            BodyError::Read(err) => {
                ApiError::bad_request(app, format!("cannot read the request body: {err}"))
            }
        })?;
    // An empty body is an empty object: SDK create calls may carry only a Bearer key.
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Ok(Bytes::from_static(b"{}")),
        Some(b'{') => Ok(body),
        // serde would read a struct from an array too; KeyClaim bodies are objects.
        Some(_) => Err(ApiError::malformed(
            app,
            Fault::NonObject500,
            "the request body must be a JSON object",
        )),
    }
}

/// Parses a body from [`read_json`]; what is wrong with it names the fault that breaks
/// on it.
fn decode<'a, T: Deserialize<'a>>(app: &AppState, json: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(json).map_err(|err| {
        let fault = if !err.is_data() {
            Fault::BadInput500
        } else if err.to_string().starts_with("missing field `response`") {
            Fault::MissingField500
        } else {
            Fault::FieldType500
        };
        ApiError::malformed(app, fault, format!("invalid JSON body: {err}"))
    })
}

/// Who is asking: their key's state, and whether it came as a Bearer token.
struct Caller {
    key: Arc<KeyState>,
    via_bearer: bool,
}

/// Why a request has no caller.
enum NoCaller {
    /// No key at all, in either form.
    Missing,
    Refused(ApiError),
}

/// Finds the caller's key (Bearer header or body `key`) and charges its rate limit.
fn authenticate(
    app: &AppState,
    headers: &HeaderMap,
    body_key: Option<&str>,
) -> Result<Caller, NoCaller> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token);
    let key = resolve_key(bearer, body_key)
        .map_err(|_| {
            NoCaller::Refused(ApiError::invalid_key(
                "the body's key and the Authorization Bearer key differ",
            ))
        })?
        .ok_or(NoCaller::Missing)?;
    let via_bearer = bearer.is_some();
    let adopt = app.faults.has(Fault::AcceptUnknownKey)
        || (via_bearer && app.faults.has(Fault::BearerUnknownKey));
    let state = if adopt {
        app.keys.get_or_adopt(key)
    } else if app.faults.has(Fault::KeyPrefixMatch) {
        app.keys
            .find(|known| !key.is_empty() && known.starts_with(key))
    } else if app.faults.has(Fault::KeyStartsWithKnown) {
        app.keys.find(|known| key.starts_with(known))
    } else {
        app.keys.get(key)
    };
    let state = state.ok_or_else(|| {
        NoCaller::Refused(ApiError::invalid_key("API key is invalid or inactive"))
    })?;
    if !app.faults.has(Fault::NeverRateLimit) {
        state.check_rate().map_err(|wait| {
            NoCaller::Refused(ApiError::rate_limited(
                app,
                wait,
                "rate limit exceeded for this key; retry after the Retry-After seconds".into(),
            ))
        })?;
    }
    Ok(Caller {
        key: state,
        via_bearer,
    })
}

/// The answer to a request that carries no key.
fn missing_key(app: &AppState) -> ApiError {
    if app.styles.has(Style::MissingKey400) {
        return ApiError::bad_request(
            app,
            "no API key: send \"key\" in the body or Authorization: Bearer kc_...",
        );
    }
    ApiError::invalid_key("no API key: send \"key\" in the body or Authorization: Bearer kc_...")
}

/// `POST /api/challenge/create`. Handlers take the request's parts: extracting a
/// `HeaderMap` would clone every header.
pub async fn create<B: RequestBody>(app: &AppState, parts: Parts, body: B) -> Response {
    issue(app, parts, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn issue<B: RequestBody>(
    app: &AppState,
    parts: Parts,
    body: B,
) -> Result<Response, ApiError> {
    let json = read_json(app, body).await?;
    let request: CreateBody = decode(app, &json)?;
    let (key, via_bearer) = match authenticate(app, &parts.headers, request.key.as_deref()) {
        Ok(caller) => (caller.key, caller.via_bearer),
        // Deliberately broken: a keyless create is issued for the first key.
        Err(NoCaller::Missing) if app.faults.has(Fault::MissingKeyCreate) => {
            (app.keys.first().ok_or_else(|| missing_key(app))?, false)
        }
        Err(NoCaller::Missing) => return Err(missing_key(app)),
        Err(NoCaller::Refused(refusal)) => return Err(refusal),
    };
    let ttl = request.ttl.unwrap_or(DEFAULT_TTL_S);
    if !TTL_RANGE_S.contains(&ttl) {
        return Err(ApiError::bad_request(
            app,
            format!(
                "ttl must be whole seconds from {} to {}; got {ttl}",
                TTL_RANGE_S.start(),
                TTL_RANGE_S.end()
            ),
        ));
    }
    if request.encrypted == Some(true) && key.public_key.is_none() {
        return Err(ApiError::bad_request(
            app,
            "encrypted challenges need a public key assigned to this API key",
        ));
    }
    let (expires_in, lifetime) = lifetime(app, ttl, request.ttl.is_none());
    let issued = app
        .store
        .issue(&key, ttl, lifetime)
        .map_err(|full| store_full(app, full, ttl))?;
    let plaintext_rsa = app.faults.has(Fault::PlaintextRsa)
        || (via_bearer && app.faults.has(Fault::RsaBearerPlaintext));
    match key.public_key.as_ref().filter(|_| !plaintext_rsa) {
        None => {
            // Written before the challenge is stored (which takes `issued`), sent only
            // once it is.
            let answer = create_answer(
                issued.wire(),
                expires_in,
                app.faults.has(Fault::EncryptedOnPlain).then_some(true),
            );
            app.store
                .insert(issued, None)
                .map_err(|full| store_full(app, full, ttl))?;
            app.counters.created();
            Ok(answer)
        }
        Some(public_key) => {
            let plaintext = issued.wire().as_bytes();
            let ciphertext = if app.faults.has(Fault::RsaOaepSha1) {
                public_key.encrypt_oaep_sha1(plaintext)
            } else {
                public_key.encrypt_oaep_sha256(plaintext)
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
            let plaintext = issued.wire().to_owned();
            app.store
                .insert(issued, Some(&ciphertext))
                .map_err(|full| store_full(app, full, ttl))?;
            let answer = CreateResponse {
                challenge: ciphertext,
                expires_in,
                encrypted: (!app.styles.has(Style::NoEncryptedFlag)).then_some(true),
            };
            if app.faults.has(Fault::RsaPlaintextLeak) {
                // Deliberately broken: the plaintext rides along, "for debugging".
                let mut leaky = serde_json::to_value(answer).expect("answers serialize");
                leaky["challenge_id"] = serde_json::Value::from(plaintext);
                return Ok(Json(leaky).into_response());
            }
            app.counters.created();
            Ok(create_answer(
                &answer.challenge,
                answer.expires_in,
                answer.encrypted,
            ))
        }
    }
}

/// A create's answer: the JSON `serde` would write for a [`CreateResponse`] of these
/// fields, written directly. It is the one answer a load test asks for by the million,
/// and its text needs no escaping: a challenge is hex, or base64 when encrypted.
fn create_answer(challenge: &str, expires_in: u64, encrypted: Option<bool>) -> Response {
    use std::fmt::Write as _;
    debug_assert!(
        challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)),
        "needs no JSON escaping"
    );
    const OPEN: &str = "{\"challenge\":\"";
    const EXPIRES: &str = "\",\"expires_in\":";
    const ENCRYPTED: &str = ",\"encrypted\":";
    let digits = expires_in
        .checked_ilog10()
        .map_or(1, |log| log as usize + 1);
    let flag = encrypted.map_or(0, |on| ENCRYPTED.len() + if on { 4 } else { 5 });
    // Exactly the length: a body whose buffer is full becomes `Bytes` without a
    // second allocation.
    let length = OPEN.len() + challenge.len() + EXPIRES.len() + digits + flag + 1;
    let mut text = String::with_capacity(length);
    text.push_str(OPEN);
    text.push_str(challenge);
    write!(text, "{EXPIRES}{expires_in}").expect("writing to a String");
    if let Some(encrypted) = encrypted {
        write!(text, "{ENCRYPTED}{encrypted}").expect("writing to a String");
    }
    text.push('}');
    debug_assert_eq!(text.len(), length);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        text,
    )
        .into_response()
}

/// The answer to a create the store has no room for: the key's cap (retry after the
/// TTL, when the newest would have expired), or the memory budget (retry when the
/// earliest outstanding challenge expires and its room can be reused).
fn store_full(app: &AppState, full: Full, ttl: u64) -> ApiError {
    match full {
        Full::KeyAtCap => ApiError::rate_limited(
            app,
            ttl,
            format!(
                "this key has {} outstanding challenges, the most allowed; validate or let some expire",
                app.max_outstanding.unwrap_or_default()
            )
            .into(),
        ),
        Full::Memory { retry_after_s } => ApiError::rate_limited(
            app,
            retry_after_s,
            "the server's challenge store is full of outstanding challenges; retry after the Retry-After seconds"
                .into(),
        ),
    }
}

/// What a create with `ttl` advertises as `expires_in`, and how long the challenge
/// really lives; `defaulted` when the client sent no `ttl`.
fn lifetime(app: &AppState, ttl: u64, defaulted: bool) -> (u64, Duration) {
    let ttl = if app.styles.has(Style::TtlCap20) {
        ttl.min(STYLE_TTL_CAP_S)
    } else {
        ttl
    };
    let faults = &app.faults;
    if faults.is_empty() {
        return (ttl, Duration::from_secs(ttl));
    }
    // Each deliberately broken: a lifetime other than the one `expires_in` says.
    if faults.has(Fault::LengthenTtl) {
        return (ttl * 2, Duration::from_secs(ttl * 2));
    }
    if faults.has(Fault::EarlyExpiry) {
        return (ttl, Duration::from_secs(ttl) / 2);
    }
    if faults.has(Fault::SilentTtlCap) {
        return (ttl, Duration::from_secs(ttl.min(SILENT_TTL_CAP_S)));
    }
    if faults.has(Fault::DefaultTtlForever) && defaulted {
        return (ttl, FOREVER);
    }
    (ttl, Duration::from_secs(ttl))
}

/// `POST /api/challenge/validate`.
pub async fn validate<B: RequestBody>(app: &AppState, parts: Parts, body: B) -> Response {
    match judge(app, parts, body).await {
        Ok(response) | Err(response) => response,
    }
}

async fn judge<B: RequestBody>(
    app: &AppState,
    parts: Parts,
    body: B,
) -> Result<Response, Response> {
    let json = read_json(app, body)
        .await
        .map_err(IntoResponse::into_response)?;
    let request: ValidateBody = decode(app, &json).map_err(IntoResponse::into_response)?;
    let caller = match authenticate(app, &parts.headers, request.key.as_deref()) {
        Ok(caller) => caller,
        // Deliberately broken: a keyless validation is judged for the challenge's owner.
        Err(NoCaller::Missing) if app.faults.has(Fault::MissingKeyValidate) => Caller {
            key: app
                .store
                .owner_of(&request.challenge)
                .ok_or_else(|| refused_key(app, missing_key(app)))?,
            via_bearer: false,
        },
        Err(NoCaller::Missing) => return Err(refused_key(app, missing_key(app))),
        // Deliberately broken: an unknown key's validation is judged for the owner.
        Err(NoCaller::Refused(refusal))
            if refusal.code == ErrorCode::InvalidKey
                && app.faults.has(Fault::UnknownKeyValidate) =>
        {
            Caller {
                key: app
                    .store
                    .owner_of(&request.challenge)
                    .ok_or_else(|| refused_key(app, refusal))?,
                via_bearer: false,
            }
        }
        Err(NoCaller::Refused(refusal)) => {
            let consumes = match refusal.code {
                ErrorCode::InvalidKey => app.faults.has(Fault::UnknownKeyConsumes),
                ErrorCode::RateLimited => app.faults.has(Fault::RateLimitConsumes),
                _ => false,
            };
            if consumes {
                // Deliberately broken: the challenge is used up before the refusal.
                app.store.consume(&request.challenge);
            }
            return Err(refused_key(app, refusal));
        }
    };
    let key = caller.key;
    key.charge_validation().map_err(|_| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::RateLimited,
            "this key's validation quota is used up",
        )
        .into_response()
    })?;
    let presented = Presented {
        challenge: &request.challenge,
        response: &request.response,
        decrypted_challenge: request.decrypted_challenge.as_deref(),
        via_bearer: caller.via_bearer,
    };
    let verdict = app.store.validate(&key, &presented).await;
    let quota = (!app.styles.has(Style::NoQuota)).then(|| key.quota_info());
    app.counters
        .validated(verdict.err().map(|refusal| refusal_answer(refusal, app).0));
    Ok(match verdict {
        Ok(()) => {
            let signature = (key.tier.signs_verdicts() && !app.styles.has(Style::NoSignatures))
                .then(|| signature(app, &key, &request));
            Json(ValidateResponse {
                valid: true,
                signature,
                quota,
                error: None,
                message: None,
            })
            .into_response()
        }
        Err(refusal) => {
            let (code, message) = refusal_answer(refusal, app);
            (
                refusal_status(refusal, app),
                Json(ValidateResponse {
                    valid: false,
                    // Deliberately broken: the same signature as a valid verdict's.
                    signature: app
                        .faults
                        .has(Fault::UnboundSignature)
                        .then(|| signature(app, &key, &request)),
                    quota,
                    error: Some(code.as_str().to_owned()),
                    message: Some(message.to_owned()),
                }),
            )
                .into_response()
        }
    })
}

/// A key refusal on validate: the error answer, or, in the `invalid-key-verdict`
/// style, a verdict that says `invalid_key`.
fn refused_key(app: &AppState, refusal: ApiError) -> Response {
    app.counters.validated(Some(refusal.code));
    if refusal.code == ErrorCode::InvalidKey && app.styles.has(Style::InvalidKeyVerdict) {
        return Json(ValidateResponse {
            valid: false,
            signature: None,
            quota: None,
            error: Some(ErrorCode::InvalidKey.as_str().to_owned()),
            message: Some(refusal.message.into_owned()),
        })
        .into_response();
    }
    refusal.into_response()
}

/// The verdict signature (SPEC.md §6), or what a fault makes of it.
fn signature(app: &AppState, key: &KeyState, request: &ValidateBody) -> String {
    if app.faults.has(Fault::SignatureIsResponse) {
        return request.response.clone().into_owned();
    }
    if app.faults.has(Fault::UnboundSignature) {
        // Covers the challenge, not the verdict.
        return hex::encode(
            key.response_key
                .mac(format!("keyclaim-verdict:v1:{}", request.challenge).as_bytes()),
        );
    }
    verdict_signature(&key.response_key, &request.challenge, true)
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
        Refusal::Expired if app.faults.has(Fault::ExpiredWrongCode) => (
            ErrorCode::ReplayedChallenge,
            "challenge has already been used",
        ),
        Refusal::Expired => (ErrorCode::ExpiredChallenge, "challenge has expired"),
        Refusal::BadResponse => (ErrorCode::InvalidSignature, "response signature is invalid"),
        Refusal::Unknown if app.styles.has(Style::UnknownChallenge404) => (
            ErrorCode::NotFound,
            "unknown challenge: not issued to this key, or long expired",
        ),
        Refusal::Unknown => (
            ErrorCode::InvalidSignature,
            "unknown challenge: not issued to this key, or long expired",
        ),
    }
}

/// The status of a refused verdict: 200 (what every vendor client reads as a verdict),
/// or what a style picks.
fn refusal_status(refusal: Refusal, app: &AppState) -> StatusCode {
    let styles = &app.styles;
    if refusal == Refusal::Unknown && styles.has(Style::UnknownChallenge404) {
        return StatusCode::NOT_FOUND;
    }
    if styles.has(Style::Refusals403) {
        return StatusCode::FORBIDDEN;
    }
    if styles.has(Style::Refusals4xx) {
        return match refusal {
            Refusal::Replayed => StatusCode::CONFLICT,
            Refusal::Expired => StatusCode::GONE,
            Refusal::BadResponse => StatusCode::BAD_REQUEST,
            Refusal::Unknown => StatusCode::NOT_FOUND,
        };
    }
    StatusCode::OK
}

pub async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

pub async fn not_found(State(app): State<Arc<AppState>>) -> Response {
    if app.faults.has(Fault::UnknownPath200) {
        return Json(serde_json::json!({})).into_response();
    }
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "no such endpoint; KeyClaim has POST /api/challenge/create and POST /api/challenge/validate",
    )
    .into_response()
}

pub async fn method_not_allowed(State(app): State<Arc<AppState>>) -> ApiError {
    let status = if app.styles.has(Style::Method501) {
        StatusCode::NOT_IMPLEMENTED
    } else {
        StatusCode::METHOD_NOT_ALLOWED
    };
    ApiError::new(
        status,
        ErrorCode::MethodNotAllowed,
        "method not allowed; KeyClaim endpoints take POST",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_create_answer_is_the_json_serde_writes() {
        for (encrypted, expires_in) in [
            (None, 30),
            (Some(true), 0),
            (Some(false), 3600),
            (None, 9),
            (None, 10),
            (None, u64::MAX),
        ] {
            let answer = CreateResponse {
                challenge: "ab12CD+/==".to_owned(),
                expires_in,
                encrypted,
            };
            let written = create_answer(&answer.challenge, expires_in, encrypted);
            assert_eq!(written.headers()[header::CONTENT_TYPE], "application/json");
            let body = futures::executor::block_on(axum::body::to_bytes(written.into_body(), 1024))
                .unwrap();
            assert_eq!(body, serde_json::to_vec(&answer).unwrap());
        }
    }
}
