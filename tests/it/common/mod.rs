//! Shared helpers for integration tests: start the reference server on port 0 and
//! talk KeyClaim to it over real HTTP; run the binary under a deadline (`binary`); a
//! loopback target that misbehaves on purpose (`hostile`); one connection to the
//! server's connection handler over an in-memory pipe, for paused-clock tests
//! (`memory`), and what an answer on the wire must look like (`http_check`, shared
//! with the fuzz target).
#![allow(dead_code)] // not every helper is used by every build of the tests

pub mod binary;
pub mod hostile;
#[path = "../../../fuzz/http_check.rs"]
pub mod http_check;
pub mod memory;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use keyclaim_harness::crypto::hmac_response;
use keyclaim_harness::protocol::{CREATE_PATH, VALIDATE_PATH};
use keyclaim_harness::server::keys::{KeySpec, Tier};
use keyclaim_harness::server::{RunningServer, ServerConfig, spawn};
use serde_json::{Value, json};

/// Orders the tests that keep the machine busy for minutes (the self-test matrix, the
/// independent servers) against each other and against the tests that measure time
/// between processes (a rendezvous's common start): on a 2-core machine the load of one
/// can push the other's timing checks off their moment. Heavy tests hold it alone.
static BUSY: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Held by a test that loads the machine for minutes: it runs alone among the tests that
/// take [`heavy_test`] or [`timing_test`].
pub fn heavy_test() -> std::sync::RwLockWriteGuard<'static, ()> {
    // A panic in another test leaves nothing to repair: the lock only orders them.
    BUSY.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Held by a test whose assertions measure time across processes: it never runs beside
/// a [`heavy_test`].
pub fn timing_test() -> std::sync::RwLockReadGuard<'static, ()> {
    BUSY.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub const KEY_A: &str = "kc_test_key_a_0123456789";
pub const KEY_B: &str = "kc_test_key_b_9876543210";

/// A config with two plain keys on the business tier.
pub fn two_keys() -> ServerConfig {
    ServerConfig::new(vec![
        KeySpec::new(KEY_A, Tier::Business),
        KeySpec::new(KEY_B, Tier::Business),
    ])
}

pub async fn start(config: ServerConfig) -> Harness {
    let server = spawn("127.0.0.1:0", config).await.expect("server starts");
    Harness {
        base: server.url(),
        server,
        http: reqwest::Client::new(),
    }
}

pub struct Harness {
    pub server: RunningServer,
    pub base: String,
    pub http: reqwest::Client,
}

/// Status, body as JSON (Null when not JSON), and the Retry-After header.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub retry_after: Option<String>,
}

impl Answer {
    pub fn error(&self) -> Option<&str> {
        self.body.get("error").and_then(Value::as_str)
    }

    pub fn valid(&self) -> Option<bool> {
        self.body.get("valid").and_then(Value::as_bool)
    }

    pub fn challenge(&self) -> String {
        self.body["challenge"]
            .as_str()
            .unwrap_or_else(|| panic!("no challenge in {self:?}"))
            .to_owned()
    }
}

impl Harness {
    pub async fn post(&self, path: &str, body: Value, bearer: Option<&str>) -> Answer {
        let mut request = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(key) = bearer {
            request = request.bearer_auth(key);
        }
        answer(request.send().await.expect("request sent")).await
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> Answer {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body);
        answer(request.send().await.expect("request sent")).await
    }

    pub async fn create(&self, key: &str, ttl: u64) -> Answer {
        self.post(CREATE_PATH, json!({ "key": key, "ttl": ttl }), None)
            .await
    }

    pub async fn validate(&self, key: &str, challenge: &str, response: &str) -> Answer {
        self.post(
            VALIDATE_PATH,
            json!({ "key": key, "challenge": challenge, "response": response }),
            None,
        )
        .await
    }

    /// Create a challenge for `key` and validate it with the correct HMAC.
    pub async fn round_trip(&self, key: &str) -> (String, Answer) {
        let challenge = self.create(key, 30).await.challenge();
        let answer = self
            .validate(key, &challenge, &hmac_response(key, &challenge))
            .await;
        (challenge, answer)
    }
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let text = response.text().await.unwrap_or_default();
    Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        retry_after,
    }
}

/// Longest a test waits on the server over TCP: far past any deadline the tests set,
/// so it catches a hang and says nothing about speed.
pub const HANG: Duration = Duration::from_secs(15);

/// Opens a connection and sends a create's head with `Expect: 100-continue`; returns
/// once the server's `100 Continue` says the handler has begun reading the body, which
/// is held back (returned) for the caller to send.
pub async fn create_in_its_handler(addr: SocketAddr) -> (TcpStream, String) {
    let body = format!(r#"{{"key":"{KEY_A}","ttl":30}}"#);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!(
                "POST {CREATE_PATH} HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut interim = [0; 25];
    tokio::time::timeout(HANG, stream.read_exact(&mut interim))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    (stream, body)
}

/// Waits until a new connection to `addr` is refused: the server has dropped its
/// listener, which it does as shutdown begins. Fails the test past [`HANG`].
pub async fn until_refused(addr: SocketAddr) {
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        // Bounded too: with the listener open but not accepting, a connect can wait
        // in the kernel's backlog for minutes.
        match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
            Ok(Err(err)) if err.kind() == std::io::ErrorKind::ConnectionRefused => return,
            Err(_) => panic!("connections still pending {HANG:?} into shutdown"),
            Ok(other) => assert!(
                tokio::time::Instant::now() < deadline,
                "connections still accepted {HANG:?} into shutdown: {other:?}"
            ),
        }
        // Polling, bounded above; the event is the refusal.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
