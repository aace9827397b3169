//! Fuzzes the reference server's request handling: the input is one client's whole
//! byte stream on one HTTP/1.1 connection, fed to the server's real connection handler
//! (`Server::serve_connection`, the same hyper settings and routes `serve` uses) over an
//! in-memory pipe. No TCP, and tokio's clock is paused, so the server's deadlines fire
//! at once when the input runs out instead of after seconds.
//!
//! Property: no panic; the connection ends once the client has sent everything; what
//! the server wrote is a run of complete, well-framed answers (`../http_check.rs`), no
//! 5xx, JSON where it says JSON, and every 4xx from the routes a JSON error; and no
//! more final answers than requests.
//!
//! Input: the first byte picks the form. Even: the rest is raw bytes on the wire.
//! Odd: the rest drives `arbitrary` to build 1-4 requests from KeyClaim's methods,
//! paths, headers and JSON fields, with correct or broken framing, so mutations reach
//! the handlers behind the HTTP parser.
//!
//! Run: `cargo +nightly fuzz run server_request -- -max_total_time=60` from the
//! repository root (see README.md here).

#![no_main]

#[path = "../http_check.rs"]
mod http_check;

use std::time::Duration;

use keyclaim_harness::protocol::{CREATE_PATH, VALIDATE_PATH};
use keyclaim_harness::server::keys::{KeySpec, Tier};
use keyclaim_harness::server::{Server, ServerConfig};
use libfuzzer_sys::arbitrary::{Result as ArbResult, Unstructured};
use libfuzzer_sys::fuzz_target;

const KEY: &str = "kc_fuzz_business_key";
const RSA_KEY: &str = "kc_fuzz_rsa_key";
const FREE_KEY: &str = "kc_fuzz_free_key";
const LIMITED_KEY: &str = "kc_fuzz_limited_key";
const PUBLIC_PEM: &str =
    include_str!("../../tests/fixtures/crypto/test-only-rsa2048-public-spki.pem");

fn config() -> ServerConfig {
    let mut rsa = KeySpec::new(RSA_KEY, Tier::Pro);
    rsa.public_key_pem = Some(PUBLIC_PEM.to_owned());
    let mut free = KeySpec::new(FREE_KEY, Tier::Free);
    free.quota = Some(2);
    let mut limited = KeySpec::new(LIMITED_KEY, Tier::Business);
    limited.rate_limit = Some(2);
    let mut config = ServerConfig::new(vec![KeySpec::new(KEY, Tier::Business), rsa, free, limited]);
    // Small caps, so short inputs can cross them.
    config.body_limit = 512;
    config.max_header_bytes = 1024;
    config.max_outstanding = Some(3);
    config
}

fuzz_target!(|data: &[u8]| {
    let Some((&form, rest)) = data.split_first() else {
        return;
    };
    let (input, head_possible, requests) = if form % 2 == 0 {
        (rest.to_vec(), rest.windows(4).any(|w| w == b"HEAD"), None)
    } else {
        match build_requests(&mut Unstructured::new(rest)) {
            // With broken framing the stream holds other requests than were built.
            Ok(built) => (built.bytes, built.head, built.framed.then_some(built.count)),
            Err(_) => return,
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    let server = Server::new(&config()).expect("the fuzz config is valid");
    let out = runtime.block_on(http_check::exchange(
        &server,
        &input,
        Duration::from_secs(3600),
    ));
    let answers = match http_check::check_answers(&out, head_possible) {
        Ok(answers) => answers,
        Err(err) => panic!(
            "{err}\n--- input ---\n{}\n--- output ---\n{}",
            String::from_utf8_lossy(&input),
            String::from_utf8_lossy(&out)
        ),
    };
    if let Some(count) = requests {
        let finals = answers.iter().filter(|a| a.status >= 200).count();
        assert!(finals <= count, "{finals} answers to {count} requests");
    }
});

struct Built {
    bytes: Vec<u8>,
    head: bool,
    count: usize,
    /// Whether every request is delimited as built (no stray CR LF, no conflicting
    /// length), so the server sees exactly `count` of them.
    framed: bool,
}

const METHODS: &[&str] = &[
    "POST", "POST", "POST", "GET", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "post",
];
const PATHS: &[&str] = &[
    CREATE_PATH,
    VALIDATE_PATH,
    "/healthz",
    "/",
    "/api/challenge/create?ttl=5",
    "/api/challenge/create/",
    "/api/challenge/%63reate",
    "//api/challenge/validate",
    "http://t/api/challenge/create",
    "*",
];
const HEADER_NAMES: &[&str] = &[
    "Authorization",
    "Authorization",
    "Content-Type",
    "Content-Length",
    "Transfer-Encoding",
    "Connection",
    "Expect",
    "Host",
    "Upgrade",
    "X-Fuzz",
];
const HEADER_VALUES: &[&str] = &[
    "Bearer kc_fuzz_business_key",
    "Bearer kc_fuzz_rsa_key",
    "Bearer kc_fuzz_free_key",
    "Bearer kc_fuzz_limited_key",
    "Bearer kc_unknown",
    "bearer kc_fuzz_business_key",
    "Bearer",
    "application/json",
    "chunked",
    "close",
    "keep-alive",
    "100-continue",
    "0",
    "12",
];
const FIELDS: &[&str] = &[
    "key",
    "ttl",
    "encrypted",
    "challenge",
    "response",
    "decrypted_challenge",
];

fn build_requests(u: &mut Unstructured<'_>) -> ArbResult<Built> {
    let count = u.int_in_range(1..=4)?;
    let mut bytes = Vec::new();
    let mut head = false;
    let mut framed = true;
    for _ in 0..count {
        let method = *u.choose(METHODS)?;
        head |= method == "HEAD";
        bytes.extend_from_slice(method.as_bytes());
        bytes.push(b' ');
        if u.ratio(1, 8)? {
            framed = false;
            bytes.extend_from_slice(some_bytes(u, 24)?);
        } else {
            bytes.extend_from_slice(u.choose(PATHS)?.as_bytes());
        }
        bytes.extend_from_slice(if u.ratio(1, 8)? {
            b" HTTP/1.0\r\n"
        } else {
            b" HTTP/1.1\r\n"
        });
        for _ in 0..u.int_in_range(0..=4)? {
            let name = *u.choose(HEADER_NAMES)?;
            framed &= !matches!(name, "Content-Length" | "Transfer-Encoding");
            bytes.extend_from_slice(name.as_bytes());
            bytes.extend_from_slice(b": ");
            if u.ratio(1, 4)? {
                framed = false;
                bytes.extend_from_slice(some_bytes(u, 32)?);
            } else {
                bytes.extend_from_slice(u.choose(HEADER_VALUES)?.as_bytes());
            }
            bytes.extend_from_slice(b"\r\n");
        }
        let body = body(u)?;
        match u.int_in_range(0..=5)? {
            // Chunked, in pieces the input chooses.
            0 => {
                bytes.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                let mut rest = &body[..];
                while !rest.is_empty() {
                    let take = u.int_in_range(1..=rest.len())?;
                    bytes.extend_from_slice(format!("{take:x}\r\n").as_bytes());
                    bytes.extend_from_slice(&rest[..take]);
                    bytes.extend_from_slice(b"\r\n");
                    rest = &rest[take..];
                }
                bytes.extend_from_slice(b"0\r\n\r\n");
            }
            // A length that does not match the body.
            1 => {
                framed = false;
                let claimed: u16 = u.arbitrary()?;
                bytes.extend_from_slice(format!("Content-Length: {claimed}\r\n\r\n").as_bytes());
                bytes.extend_from_slice(&body);
            }
            // No framing header at all.
            2 => {
                framed &= body.is_empty();
                bytes.extend_from_slice(b"\r\n");
            }
            _ => {
                bytes.extend_from_slice(
                    format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes(),
                );
                bytes.extend_from_slice(&body);
            }
        }
    }
    Ok(Built {
        bytes,
        head,
        count,
        framed,
    })
}

/// Up to `most` bytes of the input, as many as it chooses.
fn some_bytes<'a>(u: &mut Unstructured<'a>, most: usize) -> ArbResult<&'a [u8]> {
    let len = u.int_in_range(0..=most)?;
    u.bytes(len)
}

/// Arbitrary bytes, or a JSON object of KeyClaim's fields with values of every type.
fn body(u: &mut Unstructured<'_>) -> ArbResult<Vec<u8>> {
    if u.ratio(1, 4)? {
        return Ok(some_bytes(u, 64)?.to_vec());
    }
    let mut object = serde_json::Map::new();
    for _ in 0..u.int_in_range(0..=5)? {
        let field = *u.choose(FIELDS)?;
        let value = match u.int_in_range(0..=8)? {
            0 => serde_json::Value::Null,
            1 => serde_json::Value::from(u.arbitrary::<bool>()?),
            2 => serde_json::Value::from(u.arbitrary::<i64>()?),
            3 => serde_json::Value::from(u.arbitrary::<f64>()?),
            4 => serde_json::Value::from(u.arbitrary::<String>()?),
            5 => serde_json::Value::from(*u.choose(&[KEY, RSA_KEY, FREE_KEY, LIMITED_KEY])?),
            6 => serde_json::Value::from(u.int_in_range(0u64..=100_000)?),
            7 => serde_json::Value::from("0".repeat(64)),
            _ => serde_json::Value::Array(vec![]),
        };
        object.insert(field.to_owned(), value);
    }
    Ok(serde_json::to_vec(&object).expect("a map serialises"))
}
