//! The HTTP side of the harness: sends a request, times it, and captures the answer
//! (bounded in size, parsed as JSON when it is JSON) or the transport failure. A target
//! that misbehaves yields data, never a Rust error.

use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use serde_json::Value;

/// Largest answer body kept; the rest is read and dropped so one huge answer cannot
/// exhaust memory.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// How the harness reaches a target.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

/// One request as sent, for evidence.
#[derive(Debug, Clone)]
pub struct SentRequest {
    pub method: String,
    pub path: String,
    pub body: String,
    pub bearer: Option<String>,
}

/// One answer as received.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    /// The body as text (lossy UTF-8), cut at [`MAX_BODY_BYTES`].
    pub text: String,
    pub truncated: bool,
    /// The body as JSON, when it parses.
    pub json: Option<Value>,
}

impl Answer {
    /// The body's `error` code, when it is a string.
    pub fn error_code(&self) -> Option<&str> {
        self.json.as_ref()?.get("error")?.as_str()
    }

    /// The body's `valid` field, when it is a bool.
    pub fn valid(&self) -> Option<bool> {
        self.json.as_ref()?.get("valid")?.as_bool()
    }

    pub fn field(&self, name: &str) -> Option<&Value> {
        self.json.as_ref()?.get(name)
    }

    /// 429, or the documented `rate_limited` code under any status.
    pub fn is_rate_limited(&self) -> bool {
        self.status == 429 || self.error_code() == Some("rate_limited")
    }

    /// `Retry-After` as whole seconds, when it is one.
    pub fn retry_after_seconds(&self) -> Option<u64> {
        self.retry_after.as_deref()?.trim().parse().ok()
    }

    /// "200 valid=true", "401 error=invalid_key", "502 <non-JSON body>": what a failure
    /// message says the target answered.
    pub fn brief(&self) -> String {
        let mut parts = vec![self.status.to_string()];
        if let Some(valid) = self.valid() {
            parts.push(format!("valid={valid}"));
        }
        if let Some(code) = self.error_code() {
            parts.push(format!("error={code}"));
        }
        if self.json.is_none() {
            parts.push(
                if self.text.is_empty() {
                    "<empty body>"
                } else {
                    "<non-JSON body>"
                }
                .into(),
            );
        }
        parts.join(" ")
    }
}

/// A request that got no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    Connect(String),
    Timeout,
    /// Reset, garbage instead of HTTP, a body that broke off.
    Protocol(String),
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportError::Connect(why) => write!(f, "connection failed: {why}"),
            TransportError::Timeout => f.write_str("timed out waiting for the answer"),
            TransportError::Protocol(why) => write!(f, "broken answer: {why}"),
        }
    }
}

/// A request, what came of it, and how long it took.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub request: SentRequest,
    pub result: Result<Answer, TransportError>,
    pub latency: Duration,
}

impl Exchange {
    pub fn answer(&self) -> Option<&Answer> {
        self.result.as_ref().ok()
    }

    /// What the target did, for a failure message.
    pub fn brief(&self) -> String {
        match &self.result {
            Ok(answer) => answer.brief(),
            Err(err) => err.to_string(),
        }
    }
}

impl Client {
    /// `base` is the target URL without a trailing slash; `timeout` bounds each request
    /// from send to the last body byte.
    pub fn new(base: &str, timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::limited(5))
            .pool_max_idle_per_host(256)
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Whether anything answers HTTP at the target at all (any status counts).
    pub async fn reachable(&self) -> Result<(), TransportError> {
        self.http
            .get(format!("{}/", self.base))
            .send()
            .await
            .map(|_| ())
            .map_err(classify)
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: String,
        content_type: Option<&str>,
        bearer: Option<&str>,
    ) -> Exchange {
        let request = SentRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            body,
            bearer: bearer.map(str::to_owned),
        };
        let method =
            reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::POST);
        let mut builder = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(CONTENT_TYPE, content_type.unwrap_or("application/json"))
            .body(request.body.clone());
        if let Some(key) = bearer {
            builder = builder.header(AUTHORIZATION, format!("Bearer {key}"));
        }
        let started = Instant::now();
        let result = receive(builder).await;
        Exchange {
            request,
            result,
            latency: started.elapsed(),
        }
    }

    /// POST a JSON body to a KeyClaim path.
    pub async fn post_json(&self, path: &str, body: &Value, bearer: Option<&str>) -> Exchange {
        self.send("POST", path, body.to_string(), None, bearer)
            .await
    }
}

async fn receive(builder: reqwest::RequestBuilder) -> Result<Answer, TransportError> {
    let mut response = builder.send().await.map_err(classify)?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    let mut body = Vec::new();
    let mut truncated = false;
    while let Some(chunk) = response.chunk().await.map_err(classify)? {
        let room = MAX_BODY_BYTES.saturating_sub(body.len());
        if chunk.len() > room {
            truncated = true;
        }
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    let json = if truncated {
        None
    } else {
        serde_json::from_slice(&body).ok()
    };
    Ok(Answer {
        status,
        retry_after,
        text: String::from_utf8_lossy(&body).into_owned(),
        truncated,
        json,
    })
}

fn classify(err: reqwest::Error) -> TransportError {
    if err.is_timeout() {
        return TransportError::Timeout;
    }
    // The innermost cause says what actually happened (refused, reset, ...).
    let mut cause: &dyn std::error::Error = &err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let why = cause.to_string();
    if err.is_connect() {
        TransportError::Connect(why)
    } else {
        TransportError::Protocol(why)
    }
}
