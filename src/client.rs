//! The HTTP side of the harness: sends a request, times it, and captures the answer
//! (bounded in size, parsed as JSON when it is JSON) or the transport failure. A target
//! that misbehaves yields data, never a Rust error.

use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use serde_json::Value;

use crate::metrics::error_codes;
use crate::tls::{self, Tls};

/// Largest answer body kept. Reading stops there and the connection is dropped, so
/// a huge or endless answer costs neither memory nor the rest of the timeout.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Redirects followed per request, and only within the target's origin: a loop ends
/// as a broken answer, and a request body (which carries the key) never leaves for
/// another host.
pub const MAX_REDIRECTS: usize = 5;

/// How the harness reaches a target.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    /// The per-request timeout, also the reachability probe's bound.
    timeout: Duration,
    /// The run's TLS settings, which the load engine's connections share too.
    tls: Tls,
}

/// What the reachability probe found at a target it could connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Something answered HTTP (any status counts).
    Answered,
    /// The connection was made, but no HTTP answer came back (silence, a reset,
    /// garbage): the target is there and misbehaves, which the scenarios will show.
    NoAnswer(TransportError),
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
    /// A member name that appears twice in one object of the body (`{"valid": true,
    /// "valid": false}`): such a body means different things to different parsers
    /// (serde and Python keep the last, others the first), so it is no answer at all.
    pub duplicate_key: Option<String>,
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

    /// How long `Retry-After` says to wait, in either of RFC 9110's forms (whole
    /// seconds or an HTTP date; a date in the past means now).
    pub fn retry_after(&self) -> Option<Duration> {
        let value = self.retry_after.as_deref()?.trim();
        if let Ok(seconds) = value.parse::<u64>() {
            return Some(Duration::from_secs(seconds));
        }
        let at = httpdate::parse_http_date(value).ok()?;
        Some(
            at.duration_since(std::time::SystemTime::now())
                .unwrap_or(Duration::ZERO),
        )
    }

    /// `200 valid=true`, `401 error=invalid_key`, `502 <non-JSON body>`: what a failure
    /// message says the target answered.
    pub fn brief(&self) -> String {
        let mut parts = vec![self.status.to_string()];
        // As sent: `valid="false"` is not `valid=false`.
        if let Some(valid) = self.field("valid") {
            parts.push(format!("valid={valid}"));
        }
        if let Some(code) = self.error_code() {
            // Cut: a message must not carry a target's 256 KiB `error`.
            parts.push(format!("error={}", error_codes::carried(code)));
        }
        if self.json.is_none() {
            parts.push(if self.truncated {
                format!("<body over {} KiB, cut>", MAX_BODY_BYTES / 1024)
            } else if self.text.is_empty() {
                "<empty body>".into()
            } else {
                "<non-JSON body>".into()
            });
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
    /// from send to the last body byte; `tls` is the run's one TLS setup.
    pub fn new(base: &str, timeout: Duration, tls: Tls) -> Result<Self, reqwest::Error> {
        let http = builder(&tls)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(same_origin_redirects())
            .pool_max_idle_per_host(256)
            // Below servers' usual keep-alive idle limits (the reference server's is
            // 10 s), so a pooled connection is not reused just as the server closes it.
            .pool_idle_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            timeout,
            tls,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn tls(&self) -> &Tls {
        &self.tls
    }

    /// Whether the target can be reached: `Err` when no connection can be made
    /// (refused, unknown host, TLS refused, nothing within the timeout). A target that
    /// accepts the connection is reachable even when it answers garbage or nothing;
    /// `GET /` is bounded by about twice the request timeout either way.
    pub async fn reachable(&self) -> Result<Reach, TransportError> {
        // Its own client: connecting and each read have the timeout, and there is no
        // total one, so a timeout means a connection failure exactly when it hit while
        // connecting. Redirects are not followed: a 3xx is an answer.
        let probe = builder(&self.tls)
            .connect_timeout(self.timeout)
            .read_timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|err| TransportError::Connect(err.to_string()))?;
        let request = async {
            let response = probe.get(format!("{}/", self.base)).send().await?;
            // nginx answers plain HTTP on its TLS port with this 400 (the body is small).
            let tls_port = response.status() == reqwest::StatusCode::BAD_REQUEST
                && response
                    .text()
                    .await
                    .is_ok_and(|text| text.contains("plain HTTP request was sent to HTTPS port"));
            Ok::<bool, reqwest::Error>(tls_port)
        };
        // An answer that dribbles its headers resets the read timeout; this caps it.
        // Connecting gave up at `timeout` already, so getting here means it connected.
        let reach = match tokio::time::timeout(self.timeout.saturating_mul(2), request).await {
            Ok(Ok(true)) => return Err(TransportError::Connect(tls::TLS_ON_PLAIN_HTTP.into())),
            Ok(Ok(false)) => Reach::Answered,
            Ok(Err(err)) if err.is_connect() => return Err(self.classify(err)),
            Ok(Err(err)) => Reach::NoAnswer(self.classify(err)),
            Err(_) => Reach::NoAnswer(TransportError::Timeout),
        };
        // No HTTP answer on http://: a TLS port answers a plain request at once with a
        // TLS alert, which reads as garbage or a close (a silent target is not asked).
        if matches!(reach, Reach::NoAnswer(TransportError::Protocol(_)))
            && self.base.starts_with("http://")
            && self.answers_tls().await
        {
            return Err(TransportError::Connect(tls::TLS_ON_PLAIN_HTTP.into()));
        }
        Ok(reach)
    }

    /// Whether the target's port answers a plain HTTP request with a TLS record.
    async fn answers_tls(&self) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(url) = reqwest::Url::parse(&self.base) else {
            return false;
        };
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return false;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect((host, port)).await.ok()?;
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
                .await
                .ok()?;
            let mut first = [0u8; 2];
            stream.read_exact(&mut first).await.ok()?;
            Some(tls::looks_like_tls(&first))
        };
        tokio::time::timeout(self.timeout.min(Duration::from_secs(2)), exchange)
            .await
            .ok()
            .flatten()
            .unwrap_or(false)
    }

    /// A reqwest error as data, with a TLS failure in the clear words of [`tls::explain`].
    fn classify(&self, err: reqwest::Error) -> TransportError {
        let host = reqwest::Url::parse(&self.base)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned))
            .unwrap_or_default();
        match tls::explain(&err, &host) {
            Some(why) => TransportError::Connect(why),
            None => classify(err),
        }
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
        let result = receive(builder, |err| self.classify(err)).await;
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

async fn receive(
    builder: reqwest::RequestBuilder,
    classify: impl Fn(reqwest::Error) -> TransportError,
) -> Result<Answer, TransportError> {
    let mut response = builder.send().await.map_err(&classify)?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    let mut body = Vec::new();
    let mut truncated = false;
    while let Some(chunk) = response.chunk().await.map_err(&classify)? {
        let room = MAX_BODY_BYTES - body.len();
        if chunk.len() > room {
            // Stop reading: dropping `response` closes the connection, so the rest is
            // never received (a 50 MB or endless answer costs 256 KiB and no time).
            body.extend_from_slice(&chunk[..room]);
            truncated = true;
            break;
        }
        body.extend_from_slice(&chunk);
    }
    let json = if truncated {
        None
    } else {
        serde_json::from_slice(&body).ok()
    };
    let duplicate_key = json.as_ref().and_then(|_| first_duplicate_key(&body));
    Ok(Answer {
        status,
        retry_after,
        text: String::from_utf8_lossy(&body).into_owned(),
        truncated,
        json,
        duplicate_key,
    })
}

/// The first member name that occurs twice in one object of the JSON `body`, at any
/// depth; `None` when there is none or the body is not JSON.
pub fn first_duplicate_key(body: &[u8]) -> Option<String> {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use std::cell::RefCell;

    /// Walks any JSON value, recording the first duplicated name it meets.
    struct Walk<'a>(&'a RefCell<Option<String>>);

    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element_seed(Walk(self.0))?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(name) = map.next_key::<String>()? {
                if !seen.insert(name.clone()) && self.0.borrow().is_none() {
                    *self.0.borrow_mut() = Some(name);
                }
                map.next_value_seed(Walk(self.0))?;
            }
            Ok(())
        }
    }

    let found = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    Walk(&found).deserialize(&mut deserializer).ok()?;
    found.into_inner()
}

/// Builds a reqwest client on the run's TLS config (and its protocol).
fn builder(tls: &Tls) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder().tls_backend_preconfigured((**tls.config()).clone());
    if tls.http2() {
        // On http:// there is no ALPN to agree on h2: prior knowledge, as oha does.
        builder.http2_prior_knowledge()
    } else {
        builder.http1_only()
    }
}

fn classify(err: reqwest::Error) -> TransportError {
    // The innermost cause says what actually happened (refused, reset, ...).
    let mut cause: &dyn std::error::Error = &err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let why = cause.to_string();
    // A connect timeout is a connection failure first: nothing was sent.
    if err.is_connect() {
        TransportError::Connect(why)
    } else if err.is_timeout() {
        TransportError::Timeout
    } else {
        TransportError::Protocol(why)
    }
}

/// Follows at most [`MAX_REDIRECTS`] redirects, and only to the target's own origin;
/// a redirect elsewhere is not followed, and its 3xx is the answer the checks see.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let same_origin = attempt
            .previous()
            .first()
            .is_some_and(|first| first.origin() == attempt.url().origin());
        if !same_origin {
            attempt.stop()
        } else if attempt.previous().len() > MAX_REDIRECTS {
            let path = attempt.url().path().to_owned();
            attempt.error(format!(
                "redirected more than {MAX_REDIRECTS} times (a loop?), last to {path}"
            ))
        } else {
            attempt.follow()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &str, truncated: bool) -> Answer {
        Answer {
            status: 200,
            retry_after: None,
            text: text.to_owned(),
            truncated,
            json: serde_json::from_str(text).ok().filter(|_| !truncated),
            duplicate_key: first_duplicate_key(text.as_bytes()),
        }
    }

    #[test]
    fn duplicated_names_are_found_at_any_depth() {
        assert_eq!(
            first_duplicate_key(br#"{"valid":true,"valid":false}"#).as_deref(),
            Some("valid")
        );
        assert_eq!(
            first_duplicate_key(br#"{"quota":{"used":1,"used":2},"valid":true}"#).as_deref(),
            Some("used")
        );
        assert_eq!(
            first_duplicate_key(br#"[{"a":1},{"a":2}]"#),
            None,
            "one name in two objects is no duplicate"
        );
        assert_eq!(first_duplicate_key(br#"{"valid":true}"#), None);
        assert_eq!(first_duplicate_key(b"not json"), None);
    }

    #[test]
    fn brief_says_what_kind_of_body_came() {
        assert_eq!(answer(r#"{"valid":true}"#, false).brief(), "200 valid=true");
        assert_eq!(answer("", false).brief(), "200 <empty body>");
        assert_eq!(answer("<html>", false).brief(), "200 <non-JSON body>");
        assert_eq!(
            answer(r#"{"challenge":"ab"#, false).brief(),
            "200 <non-JSON body>"
        );
        assert_eq!(answer("xxxx", true).brief(), "200 <body over 256 KiB, cut>");
    }

    #[test]
    fn transport_errors_read_as_what_happened() {
        assert_eq!(
            TransportError::Timeout.to_string(),
            "timed out waiting for the answer"
        );
        assert_eq!(
            TransportError::Connect("refused".into()).to_string(),
            "connection failed: refused"
        );
    }
}
