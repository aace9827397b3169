//! A loopback HTTP/1.1 server the test controls byte by byte, for targets that
//! misbehave: it resets, stalls, dribbles, lies about lengths, redirects to itself, or
//! answers like a minimal KeyClaim server. It runs on its own thread and runtime on
//! 127.0.0.1:0; dropping it closes every connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server does with each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Create answers a fresh challenge, validate answers `valid: true`: enough for a
    /// run to make progress (for interrupt tests). A request for [`HOLD_PATH`] is
    /// counted in [`Stats::held`] and never answered, so a test knows the run is
    /// waiting in that step.
    Plausible,
    /// Half a status line, then a TCP reset (SO_LINGER 0).
    Reset,
    /// Headers announcing 100 000 bytes, then one byte every 100 ms.
    Dribble,
    /// An HTML page, status 200.
    Html,
    /// `{"challenge":"ab` with a Content-Length that matches it.
    TruncatedJson,
    /// Every other request (the 2nd, 4th, ...) answers 503; the rest as `Plausible`.
    EveryOther503,
    /// 50 MiB announced and streamed as fast as the client reads.
    Huge,
    /// 302 to the same URL, forever.
    RedirectLoop,
    /// 307 (which re-sends the body, key and all) to the same path on another port of
    /// 127.0.0.1: another origin.
    RedirectElsewhere { port: u16 },
    /// Reads the request and holds the socket without a byte in answer.
    Silent,
    /// As `Plausible`, but each connection's first answer comes [`COLD_START`] late: a
    /// cold path (a worker to start, a cache to fill) that a warmed connection has
    /// already paid for.
    ColdFirstAnswer,
    /// As `Plausible`, but every answer comes [`SLOW_ANSWER`] late: a slow target.
    SlowAnswers,
    /// Every request answers 400 `{"error":"…"}` with a fresh string of this many
    /// bytes: a new "error code" per request.
    FreshErrorCode { bytes: usize },
    /// Every request answers 400 with an `error` and a `message` holding characters
    /// XML 1.0 forbids (U+FFFE, U+FFFF, U+0001, U+001B).
    Noncharacters,
    /// Create answers a challenge of this many bytes; validate answers `valid: true`.
    HugeChallenge { bytes: usize },
    /// Create as `Plausible`; validate answers `{"valid":false,"valid":true}`, which
    /// a first-wins parser reads as a refusal and a last-wins one as valid.
    DuplicateValid,
}

/// How late [`Behaviour::ColdFirstAnswer`] sends each connection's first answer.
pub const COLD_START: Duration = Duration::from_secs(1);
/// How late [`Behaviour::SlowAnswers`] sends every answer.
pub const SLOW_ANSWER: Duration = Duration::from_millis(50);

/// The `error` [`Behaviour::Noncharacters`] sends, as its JSON decodes.
pub const NONCHARACTERS: &str = "bad\u{fffe}code\u{ffff}\u{1}\u{1b}";

/// The path [`Behaviour::Plausible`] holds without an answer.
pub const HOLD_PATH: &str = "/hold";

/// The size [`Behaviour::Huge`] announces.
pub const HUGE_BYTES: u64 = 50 * 1024 * 1024;

/// What the server saw and did.
#[derive(Debug, Default)]
pub struct Stats {
    pub connections: AtomicU64,
    pub requests: AtomicU64,
    /// Requests for [`HOLD_PATH`] read and held (`Plausible`).
    pub held: AtomicU64,
    /// The most body bytes written on one connection (for `Huge`: how far the client
    /// read before it hung up).
    pub max_body_written: AtomicU64,
    /// The largest request body read.
    pub max_request_body: AtomicU64,
}

impl Stats {
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn held(&self) -> u64 {
        self.held.load(Ordering::SeqCst)
    }
}

pub struct Hostile {
    pub url: String,
    pub stats: Arc<Stats>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            shutdown.send(()).ok();
        }
        if let Some(thread) = self.thread.take() {
            thread.join().ok();
        }
    }
}

/// Nothing a connection does outlives this, whatever the client does.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);
/// Requests one connection serves at most.
const REQUESTS_PER_CONNECTION: usize = 10_000;
/// The largest request head and body accepted.
const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// Starts a server on 127.0.0.1:0 that behaves as told.
pub fn start(behaviour: Behaviour) -> Hostile {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.set_nonblocking(true).expect("nonblocking");
    let url = format!("http://{}", listener.local_addr().expect("local addr"));
    let stats = Arc::new(Stats::default());
    let (shutdown, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = {
        let (stats, url) = (Arc::clone(&stats), url.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("tokio listener");
                loop {
                    let stream = tokio::select! {
                        accepted = listener.accept() => match accepted {
                            Ok((stream, _)) => stream,
                            Err(_) => continue,
                        },
                        _ = &mut stopped => break,
                    };
                    stats.connections.fetch_add(1, Ordering::SeqCst);
                    let (stats, url) = (Arc::clone(&stats), url.clone());
                    tokio::spawn(async move {
                        tokio::time::timeout(
                            CONNECTION_LIFETIME,
                            serve(stream, behaviour, &stats, &url),
                        )
                        .await
                        .ok();
                    });
                }
            });
            // Dropping the runtime cancels every connection task, closing its socket.
        })
    };
    Hostile {
        url,
        stats,
        shutdown: Some(shutdown),
        thread: Some(thread),
    }
}

/// One request as the server read it.
struct Request {
    path: String,
    body: Vec<u8>,
}

/// Serves one connection until the client leaves or the behaviour ends it.
async fn serve(mut stream: TcpStream, behaviour: Behaviour, stats: &Stats, url: &str) {
    let mut buffer = Vec::new();
    for index in 0..REQUESTS_PER_CONNECTION {
        let Some(request) = read_request(&mut stream, &mut buffer).await else {
            return;
        };
        let n = stats.requests.fetch_add(1, Ordering::SeqCst) + 1;
        stats
            .max_request_body
            .fetch_max(request.body.len() as u64, Ordering::SeqCst);
        let keep_going = match behaviour {
            Behaviour::Plausible if request.path == HOLD_PATH => {
                stats.held.fetch_add(1, Ordering::SeqCst);
                hold(&mut stream).await;
                return;
            }
            Behaviour::Plausible => plausible(&mut stream, &request).await,
            Behaviour::ColdFirstAnswer => {
                if index == 0 {
                    tokio::time::sleep(COLD_START).await;
                }
                plausible(&mut stream, &request).await
            }
            Behaviour::SlowAnswers => {
                tokio::time::sleep(SLOW_ANSWER).await;
                plausible(&mut stream, &request).await
            }
            Behaviour::EveryOther503 if n.is_multiple_of(2) => {
                respond(
                    &mut stream,
                    "503 Service Unavailable",
                    "text/plain",
                    b"upstream unavailable",
                )
                .await
            }
            Behaviour::EveryOther503 => plausible(&mut stream, &request).await,
            Behaviour::Reset => {
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: applic")
                    .await
                    .ok();
                stream.flush().await.ok();
                // SO_LINGER 0: closing sends a reset instead of a FIN.
                stream.set_zero_linger().ok();
                return;
            }
            Behaviour::Dribble => {
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                // Bounded: a minute of dribbling at most.
                for _ in 0..600 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if stream.write_all(b" ").await.is_err() {
                        return;
                    }
                }
                return;
            }
            Behaviour::Html => {
                respond(
                    &mut stream,
                    "200 OK",
                    "text/html",
                    b"<!DOCTYPE html>\n<html><head><title>Welcome</title></head><body><h1>It works!</h1></body></html>\n",
                )
                .await
            }
            Behaviour::TruncatedJson => {
                respond(
                    &mut stream,
                    "200 OK",
                    "application/json",
                    br#"{"challenge":"ab"#,
                )
                .await
            }
            Behaviour::Huge => {
                huge(&mut stream, stats).await;
                return;
            }
            Behaviour::RedirectLoop => {
                let head = format!(
                    "HTTP/1.1 302 Found\r\nLocation: {url}{}\r\nContent-Length: 0\r\n\r\n",
                    request.path
                );
                stream.write_all(head.as_bytes()).await.is_ok()
            }
            Behaviour::RedirectElsewhere { port } => {
                let head = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{port}{}\r\nContent-Length: 0\r\n\r\n",
                    request.path
                );
                stream.write_all(head.as_bytes()).await.is_ok()
            }
            Behaviour::Silent => {
                hold(&mut stream).await;
                return;
            }
            Behaviour::FreshErrorCode { bytes } => {
                // Unique by its number, padded to the size asked for.
                let code = format!("{n:x}{}", "q".repeat(bytes.saturating_sub(16)));
                let body = serde_json::json!({ "error": code, "message": "no" }).to_string();
                respond(&mut stream, "400 Bad Request", "application/json", body.as_bytes()).await
            }
            Behaviour::Noncharacters => {
                let body = serde_json::json!({
                    "error": NONCHARACTERS,
                    "message": format!("refused {NONCHARACTERS}"),
                })
                .to_string();
                respond(&mut stream, "400 Bad Request", "application/json", body.as_bytes()).await
            }
            Behaviour::HugeChallenge { bytes } if request.path.ends_with("/create") => {
                let body = format!(r#"{{"challenge":"{}","expires_in":30}}"#, "a".repeat(bytes));
                respond(&mut stream, "200 OK", "application/json", body.as_bytes()).await
            }
            Behaviour::HugeChallenge { .. } => plausible(&mut stream, &request).await,
            Behaviour::DuplicateValid if request.path.ends_with("/validate") => {
                respond(
                    &mut stream,
                    "200 OK",
                    "application/json",
                    br#"{"valid":false,"valid":true}"#,
                )
                .await
            }
            Behaviour::DuplicateValid => plausible(&mut stream, &request).await,
        };
        if !keep_going {
            return;
        }
    }
}

/// Holds the socket without answering, reading (and ignoring) whatever else arrives,
/// until the client leaves.
async fn hold(stream: &mut TcpStream) {
    let mut sink = [0u8; 4096];
    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
}

/// Reads one request (head and Content-Length body); `None` when the client left or
/// sent something too large.
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Request> {
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buffer.len() > MAX_REQUEST_BYTES {
            return None;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let length: usize = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0);
    if length > MAX_REQUEST_BYTES {
        return None;
    }
    while buffer.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = buffer[head_end..head_end + length].to_vec();
    buffer.drain(..head_end + length);
    Some(Request { path, body })
}

/// Writes a complete answer; whether the connection is still good.
async fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &[u8]) -> bool {
    let mut answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    // One write: a head and body written apart meet Nagle and delayed ACKs, 40 ms an
    // answer, too slow for the tests that need many.
    answer.extend_from_slice(body);
    stream.write_all(&answer).await.is_ok()
}

/// A minimal KeyClaim: a fresh challenge for create, `valid: true` for validate.
async fn plausible(stream: &mut TcpStream, request: &Request) -> bool {
    static ISSUED: AtomicU64 = AtomicU64::new(0);
    let body = if request.path.ends_with("/create") {
        let ttl = serde_json::from_slice::<serde_json::Value>(&request.body)
            .ok()
            .and_then(|body| body["ttl"].as_u64())
            .unwrap_or(30);
        let n = ISSUED.fetch_add(1, Ordering::SeqCst);
        format!(r#"{{"challenge":"{n:064x}","expires_in":{ttl}}}"#)
    } else if request.path.ends_with("/validate") {
        r#"{"valid":true}"#.to_owned()
    } else {
        return respond(
            stream,
            "404 Not Found",
            "application/json",
            br#"{"error":"not_found"}"#,
        )
        .await;
    };
    respond(stream, "200 OK", "application/json", body.as_bytes()).await
}

/// Streams [`HUGE_BYTES`] until done or the client hangs up, recording how far it got.
async fn huge(stream: &mut TcpStream, stats: &Stats) {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {HUGE_BYTES}\r\n\r\n"
    );
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let block = vec![b'x'; 64 * 1024];
    let mut written = 0u64;
    while written < HUGE_BYTES {
        match stream.write(&block).await {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n as u64,
        }
        stats.max_body_written.fetch_max(written, Ordering::SeqCst);
    }
}
