//! What the server may write back on one connection: a run of complete HTTP/1.x
//! answers, each with a framing a client can follow, and JSON where it says JSON.
//!
//! Shared by the `server_request` fuzz target and its proptest stand-in in
//! `tests/it/server_hardening.rs` (included in `tests/it/common/` with `#[path]`), so
//! both hold the server to the same property, and [`exchange`], which drives one
//! in-memory connection for both. Needs `httparse`, `serde_json` and tokio.

use std::time::Duration;

use keyclaim_harness::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Writes `input` as one client's whole byte stream over an in-memory pipe,
/// half-closes, and returns all the server wrote back before it closed. A connection
/// still open after `hang` (with tokio's clock paused, only when nothing else can run)
/// is a hang: the property fails.
pub async fn exchange(server: &Server, input: &[u8], hang: Duration) -> Vec<u8> {
    let (client, server_side) = tokio::io::duplex(64 * 1024);
    let (mut from_server, mut to_server) = tokio::io::split(client);
    let talk = async {
        // The server may stop reading and close early (a bad head): allowed.
        to_server.write_all(input).await.ok();
        to_server.shutdown().await.ok();
        let mut out = Vec::new();
        from_server.read_to_end(&mut out).await.ok();
        out
    };
    let ((), out) = tokio::time::timeout(hang, async {
        tokio::join!(server.serve_connection(server_side), talk)
    })
    .await
    .expect("the connection must end once the client has sent everything");
    out
}

/// One answer read off the stream.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub json: Option<serde_json::Value>,
}

/// Splits `out` into answers, or says how it is malformed. `head_possible`: a request
/// may have been HEAD, whose answer carries a Content-Length but no body.
pub fn parse_answers(mut out: &[u8], head_possible: bool) -> Result<Vec<Answer>, String> {
    let mut answers = Vec::new();
    // Bounded: each turn consumes at least a status line.
    while !out.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        let head_len = match response.parse(out) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => {
                return Err(format!(
                    "answer {} is cut off in its head: {:?}",
                    answers.len() + 1,
                    String::from_utf8_lossy(&out[..out.len().min(200)])
                ));
            }
            Err(err) => {
                return Err(format!(
                    "answer {} has a malformed head ({err}): {:?}",
                    answers.len() + 1,
                    String::from_utf8_lossy(&out[..out.len().min(200)])
                ));
            }
        };
        let status = response.code.expect("complete");
        if !(100..=599).contains(&status) {
            return Err(format!("status {status} is out of range"));
        }
        let mut length = None;
        let mut json = false;
        for header in response.headers.iter() {
            if header.name.eq_ignore_ascii_case("transfer-encoding") {
                return Err("the server answered chunked; it always sends a length".into());
            }
            if header.name.eq_ignore_ascii_case("content-length") {
                let value = std::str::from_utf8(header.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .ok_or_else(|| format!("bad content-length {:?}", header.value))?;
                if length.replace(value).is_some() {
                    return Err("two content-length headers".into());
                }
            }
            if header.name.eq_ignore_ascii_case("content-type") {
                json = header.value.starts_with(b"application/json");
            }
        }
        let rest = &out[head_len..];
        let bodiless = status < 200 || status == 204 || status == 304;
        let length = match length {
            _ if bodiless => 0,
            // A HEAD answer's length describes a body it does not carry.
            Some(_) if head_possible && (rest.is_empty() || rest.starts_with(b"HTTP/")) => 0,
            Some(length) => length,
            None => return Err(format!("status {status} answer has no content-length")),
        };
        if rest.len() < length {
            return Err(format!(
                "status {status} answer is cut off: {} of {length} body bytes",
                rest.len()
            ));
        }
        let body = &rest[..length];
        let json = if json && !body.is_empty() {
            Some(serde_json::from_slice(body).map_err(|err| {
                format!(
                    "status {status} says JSON but is not ({err}): {:?}",
                    String::from_utf8_lossy(body)
                )
            })?)
        } else {
            None
        };
        answers.push(Answer { status, json });
        out = &rest[length..];
    }
    Ok(answers)
}

/// The property: well-formed, no 5xx, and every 4xx the routes write is a JSON error
/// with a code and a message. (hyper's own answers to unparseable heads, 400, 414 and
/// 431, have no body.)
pub fn check_answers(out: &[u8], head_possible: bool) -> Result<Vec<Answer>, String> {
    let answers = parse_answers(out, head_possible)?;
    for answer in &answers {
        if answer.status >= 500 {
            return Err(format!("a {} answer: {:?}", answer.status, answer.json));
        }
        if let Some(json) = &answer.json
            && answer.status >= 400
        {
            let code = json.get("error").and_then(|v| v.as_str());
            let message = json.get("message").and_then(|v| v.as_str());
            if code.is_none_or(str::is_empty) || message.is_none_or(str::is_empty) {
                return Err(format!(
                    "a {} answer without error/message: {json}",
                    answer.status
                ));
            }
        }
    }
    Ok(answers)
}
