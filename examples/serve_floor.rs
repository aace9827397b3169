//! The floor under `serve` in `benches/serve_vs_nginx.sh`: a server that answers every
//! request with a fixed create-shaped body, so the bench can show how much of serve's
//! cost per request is the HTTP stack and the kernel, and how much is serve's own work.
//!
//! `serve_floor hyper` runs what serve runs under its handlers: a current-thread tokio
//! runtime (serve `--threads 1`), one hyper HTTP/1.1 connection per socket, the body
//! read whole. `serve_floor raw` uses no HTTP library: httparse reads each head and the
//! body is taken by its `Content-Length`; anything else (chunked bodies, bad heads) ends
//! the connection. It is not a server to use, only the least a server on tokio can cost.
//!
//! Both listen on 127.0.0.1 (an ephemeral port) and print `listening on http://ADDR`.

use std::convert::Infallible;
use std::time::{Duration, SystemTime};

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// serve's answer to a create, with a fixed challenge (the bench's nginx answers the
/// same).
const BODY: &str = r#"{"challenge":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","expires_in":30}"#;
/// Headers a raw request may carry: more ends the connection.
const MAX_HEADERS: usize = 32;
/// A raw connection that buffers more than this without a whole request is dropped.
const MAX_REQUEST_BYTES: usize = 64 * 1024;

#[derive(Clone, Copy)]
enum Stack {
    Hyper,
    Raw,
}

fn main() -> std::io::Result<()> {
    let stack = match std::env::args().nth(1).as_deref() {
        Some("hyper") => Stack::Hyper,
        Some("raw") => Stack::Raw,
        _ => {
            eprintln!("usage: serve_floor hyper|raw");
            std::process::exit(2);
        }
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(stack))
}

async fn serve(stack: Stack) -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                eprintln!("accept: {err}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        tcp.set_nodelay(true)?;
        match stack {
            Stack::Hyper => {
                tokio::spawn(async move {
                    let service = service_fn(answer);
                    // A client that goes away mid-request is no error of the floor's.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
            Stack::Raw => {
                tokio::spawn(raw_connection(tcp));
            }
        }
    }
}

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Read like serve does, though the answer does not depend on it.
    let _ = request.into_body().collect().await;
    let mut response = Response::new(Full::new(Bytes::from_static(BODY.as_bytes())));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// Keep-alive requests with `Content-Length` bodies, answered in order.
async fn raw_connection(mut tcp: TcpStream) {
    let mut input = BytesMut::with_capacity(8 * 1024);
    let mut output = Vec::with_capacity(512);
    let mut date = Date::default();
    loop {
        match whole_request(&input) {
            Err(Unsupported) => return,
            Ok(Some(length)) => {
                input.advance(length);
                output.clear();
                output.extend_from_slice(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ",
                );
                output.extend_from_slice(BODY.len().to_string().as_bytes());
                output.extend_from_slice(b"\r\ndate: ");
                output.extend_from_slice(date.now().as_bytes());
                output.extend_from_slice(b"\r\n\r\n");
                output.extend_from_slice(BODY.as_bytes());
                if tcp.write_all(&output).await.is_err() {
                    return;
                }
                continue;
            }
            Ok(None) if input.len() > MAX_REQUEST_BYTES => return,
            Ok(None) => {}
        }
        match tcp.read_buf(&mut input).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// The length of the first request in `input` (head and body) once all of it is
/// there, `Ok(None)` while it is not; `Err` for what the floor does not take: a head
/// httparse refuses, a chunked body, a `Content-Length` that is not a number.
fn whole_request(input: &[u8]) -> Result<Option<usize>, Unsupported> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(head) = request.parse(input).map_err(|_| Unsupported)? else {
        return Ok(None);
    };
    let mut body = 0;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Unsupported);
        }
        if header.name.eq_ignore_ascii_case("content-length") {
            body = std::str::from_utf8(header.value)
                .ok()
                .and_then(|value| value.trim().parse().ok())
                .ok_or(Unsupported)?;
        }
    }
    Ok((input.len() >= head + body).then_some(head + body))
}

/// A request the raw floor does not serve: its connection ends.
struct Unsupported;

/// The `date` header's value, formatted once per second as hyper does.
#[derive(Default)]
struct Date {
    second: u64,
    text: String,
}

impl Date {
    fn now(&mut self) -> &str {
        let now = SystemTime::now();
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        if second != self.second || self.text.is_empty() {
            self.second = second;
            self.text = httpdate::fmt_http_date(now);
        }
        &self.text
    }
}
