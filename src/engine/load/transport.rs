//! The load engine's HTTP path, for `http://` and `https://` alike: each user owns one
//! connection driven through hyper's connection API directly (what oha does): no pool
//! lock, no URL parsing or header-map building per request beyond the few headers
//! KeyClaim needs. Over https the connection is tokio-rustls on the run's one rustls
//! config (`crate::tls`), whose session cache makes a reconnect a resumption. With
//! `--http2` the connection is HTTP/2 (ALPN h2, or prior knowledge on http) carrying one
//! stream at a time, so `--users 50` means 50 connections over either protocol.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, RETRY_AFTER};
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use crate::client::{MAX_BODY_BYTES, TransportError};
use crate::tls;

/// Where requests go, resolved once per run.
#[derive(Clone)]
pub struct Target {
    addr: SocketAddr,
    /// The Host header (HTTP/1.1).
    host: HeaderValue,
    /// Base path of the target URL ("" or "/prefix"); over h2 the whole origin before
    /// it, since h2 requests carry scheme and authority.
    prefix: String,
    /// The TLS side of an https:// target: the run's connector and the name checked.
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// The host as the certificate errors name it.
    host_name: Arc<str>,
    http2: bool,
}

impl Target {
    pub async fn resolve(client: &crate::client::Client) -> Result<Target, TransportError> {
        let url = reqwest::Url::parse(client.base())
            .map_err(|err| TransportError::Connect(format!("bad target URL: {err}")))?;
        let settings = client.tls();
        let host = url.host_str().unwrap_or("localhost").to_owned();
        let tls = match url.scheme() {
            "http" => None,
            "https" => Some((
                TlsConnector::from(Arc::clone(settings.config())),
                tls::server_name(&host).map_err(TransportError::Connect)?,
            )),
            other => {
                return Err(TransportError::Connect(format!(
                    "unsupported scheme {other}: use http:// or https://"
                )));
            }
        };
        let port = url.port_or_known_default().unwrap_or(80);
        let lookup = host.trim_start_matches('[').trim_end_matches(']');
        let addr = tokio::net::lookup_host((lookup, port))
            .await
            .map_err(|err| TransportError::Connect(err.to_string()))?
            .next()
            .ok_or_else(|| TransportError::Connect(format!("{host} has no address")))?;
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.clone(),
        };
        let path = url.path().trim_end_matches('/');
        let prefix = if settings.http2() {
            format!("{}://{authority}{path}", url.scheme())
        } else {
            path.to_owned()
        };
        Ok(Target {
            addr,
            host: HeaderValue::from_str(&authority)
                .map_err(|err| TransportError::Connect(err.to_string()))?,
            prefix,
            tls,
            host_name: host.into(),
            http2: settings.http2(),
        })
    }
}

/// What a load request got back: just what the engine judges.
pub struct Reply {
    pub status: u16,
    pub body: Bytes,
    pub retry_after: Option<String>,
}

/// A connection's sending half, by protocol.
enum Sender {
    Http1(http1::SendRequest<Full<Bytes>>),
    Http2(http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    fn is_closed(&self) -> bool {
        match self {
            Sender::Http1(sender) => sender.is_closed(),
            Sender::Http2(sender) => sender.is_closed(),
        }
    }
}

/// One user's way to send: its own connection.
pub struct UserConnection {
    target: Target,
    sender: Option<Sender>,
    timeout: Duration,
    /// Parsed request targets by path.
    uris: Vec<(String, Uri)>,
    /// Connections this user has opened.
    connects: u64,
}

static JSON: HeaderValue = HeaderValue::from_static("application/json");

impl UserConnection {
    pub fn new(target: Target, timeout: Duration) -> Self {
        Self {
            target,
            sender: None,
            timeout,
            uris: Vec::new(),
            connects: 0,
        }
    }

    /// Opens the connection now, before any request needs it.
    pub async fn establish(&mut self) -> Result<(), TransportError> {
        if self.sender.as_ref().is_none_or(Sender::is_closed) {
            let sender = tokio::time::timeout(self.timeout, connect(&self.target))
                .await
                .map_err(|_| TransportError::Timeout)??;
            self.sender = Some(sender);
            self.connects += 1;
        }
        Ok(())
    }

    /// How many connections this user has opened so far.
    pub fn connects(&self) -> u64 {
        self.connects
    }

    /// Sends one request, reconnecting first when the connection is gone.
    pub async fn send(
        &mut self,
        method: &Method,
        path: &str,
        body: Bytes,
        bearer: Option<&HeaderValue>,
    ) -> Result<Reply, TransportError> {
        match tokio::time::timeout(self.timeout, self.send_inner(method, path, body, bearer)).await
        {
            Ok(result) => {
                if result.is_err() {
                    // Whatever broke, the next request starts on a fresh connection.
                    self.sender = None;
                }
                result
            }
            Err(_) => {
                self.sender = None;
                Err(TransportError::Timeout)
            }
        }
    }

    async fn send_inner(
        &mut self,
        method: &Method,
        path: &str,
        body: Bytes,
        bearer: Option<&HeaderValue>,
    ) -> Result<Reply, TransportError> {
        let target = &self.target;
        let sender = match &mut self.sender {
            Some(sender) if !sender.is_closed() => sender,
            _ => {
                let sender = connect(target).await?;
                self.connects += 1;
                self.sender.insert(sender)
            }
        };
        let prefix = &target.prefix;
        // A flow uses a handful of paths: parse each once per connection.
        let uri =
            match self.uris.iter().find(|(known, _)| known == path) {
                Some((_, uri)) => uri.clone(),
                None => {
                    let uri: Uri = format!("{prefix}{path}").parse().map_err(
                        |err: http::uri::InvalidUri| TransportError::Protocol(err.to_string()),
                    )?;
                    self.uris.push((path.to_owned(), uri.clone()));
                    uri
                }
            };
        // hyper adds Content-Length from the `Full` body itself.
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method.clone();
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        headers.insert(CONTENT_TYPE, JSON.clone());
        if let Some(token) = bearer {
            headers.insert(AUTHORIZATION, token.clone());
        }
        let protocol = |err: hyper::Error| TransportError::Protocol(err.to_string());
        let response = match sender {
            Sender::Http1(sender) => {
                sender.ready().await.map_err(protocol)?;
                request.headers_mut().insert(HOST, target.host.clone());
                sender.send_request(request).await.map_err(protocol)?
            }
            // h2 takes the authority from the URI (`:authority`), not a Host header.
            Sender::Http2(sender) => {
                sender.ready().await.map_err(protocol)?;
                sender.send_request(request).await.map_err(protocol)?
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|err| TransportError::Protocol(err.to_string()))?
            .to_bytes();
        Ok(Reply {
            status,
            body,
            retry_after,
        })
    }
}

/// Opens one connection to the target: TCP, TLS over it for https, then the HTTP/1.1 or
/// HTTP/2 handshake, whose connection task runs until the sender is dropped.
async fn connect(target: &Target) -> Result<Sender, TransportError> {
    let stream = tokio::net::TcpStream::connect(target.addr)
        .await
        .map_err(|err| TransportError::Connect(err.to_string()))?;
    stream.set_nodelay(true).ok();
    match &target.tls {
        None => handshake(target, stream).await,
        Some((connector, name)) => {
            let stream = connector
                .connect(name.clone(), stream)
                .await
                .map_err(|err| {
                    TransportError::Connect(
                        tls::explain(&err, &target.host_name).unwrap_or_else(|| err.to_string()),
                    )
                })?;
            handshake(target, stream).await
        }
    }
}

async fn handshake<S>(target: &Target, stream: S) -> Result<Sender, TransportError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let io = TokioIo::new(stream);
    let failed = |err: hyper::Error| TransportError::Connect(err.to_string());
    // Either connection task ends when the sender is dropped or the peer closes;
    // errors surface on send.
    if target.http2 {
        let (sender, connection) = http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(failed)?;
        tokio::spawn(async move { connection.await.ok() });
        Ok(Sender::Http2(sender))
    } else {
        let (sender, connection) = http1::handshake(io).await.map_err(failed)?;
        tokio::spawn(async move { connection.await.ok() });
        Ok(Sender::Http1(sender))
    }
}
