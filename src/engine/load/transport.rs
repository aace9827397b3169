//! The load engine's HTTP path. For `http://` targets each user owns one HTTP/1.1
//! connection driven through hyper's connection API directly (what oha does): no
//! pool lock, no URL parsing or header-map building per request beyond the few headers
//! KeyClaim needs. `https://` targets go through reqwest (rustls), which costs more
//! per request but is the same code the conformance runner uses.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, RETRY_AFTER};
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::client::{MAX_BODY_BYTES, TransportError};

/// Where requests go, resolved once per run.
#[derive(Clone)]
pub enum Target {
    Fast {
        addr: SocketAddr,
        host: HeaderValue,
        /// Base path of the target URL ("" or "/prefix").
        prefix: String,
    },
    Reqwest(crate::client::Client),
}

impl Target {
    pub async fn resolve(client: &crate::client::Client) -> Result<Target, TransportError> {
        let url = reqwest::Url::parse(client.base())
            .map_err(|err| TransportError::Connect(format!("bad target URL: {err}")))?;
        if url.scheme() != "http" {
            return Ok(Target::Reqwest(client.clone()));
        }
        let host = url.host_str().unwrap_or("localhost").to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|err| TransportError::Connect(err.to_string()))?
            .next()
            .ok_or_else(|| TransportError::Connect(format!("{host} has no address")))?;
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        };
        Ok(Target::Fast {
            addr,
            host: HeaderValue::from_str(&authority)
                .map_err(|err| TransportError::Connect(err.to_string()))?,
            prefix: url.path().trim_end_matches('/').to_owned(),
        })
    }
}

/// What a load request got back: just what the engine judges.
pub struct Reply {
    pub status: u16,
    pub body: Bytes,
    pub retry_after: Option<String>,
}

/// One user's way to send: its own connection on the fast path.
pub struct UserConnection {
    target: Target,
    sender: Option<SendRequest<Full<Bytes>>>,
    timeout: Duration,
    /// Parsed request targets by path.
    uris: Vec<(String, Uri)>,
    /// Connections this user has opened (the fast path; reqwest pools its own).
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

    /// Opens the connection now, before any request needs it (a no-op over reqwest,
    /// which connects on its first request).
    pub async fn establish(&mut self) -> Result<(), TransportError> {
        if let Target::Fast { addr, .. } = &self.target
            && self.sender.as_ref().is_none_or(SendRequest::is_closed)
        {
            let addr = *addr;
            let sender = tokio::time::timeout(self.timeout, connect(addr))
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
        let (addr, host, prefix) = match &self.target {
            Target::Fast { addr, host, prefix } => (*addr, host, prefix),
            Target::Reqwest(client) => {
                return reqwest_send(client, method, path, body, bearer).await;
            }
        };
        let sender = match &mut self.sender {
            Some(sender) if !sender.is_closed() => sender,
            _ => {
                let sender = connect(addr).await?;
                self.connects += 1;
                self.sender.insert(sender)
            }
        };
        sender
            .ready()
            .await
            .map_err(|err| TransportError::Protocol(err.to_string()))?;
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
        headers.insert(HOST, host.clone());
        headers.insert(CONTENT_TYPE, JSON.clone());
        if let Some(token) = bearer {
            headers.insert(AUTHORIZATION, token.clone());
        }
        let response = sender
            .send_request(request)
            .await
            .map_err(|err| TransportError::Protocol(err.to_string()))?;
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

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, TransportError> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|err| TransportError::Connect(err.to_string()))?;
    stream.set_nodelay(true).ok();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| TransportError::Connect(err.to_string()))?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the peer closes; errors surface on send.
        connection.await.ok();
    });
    Ok(sender)
}

async fn reqwest_send(
    client: &crate::client::Client,
    method: &Method,
    path: &str,
    body: Bytes,
    bearer: Option<&HeaderValue>,
) -> Result<Reply, TransportError> {
    let bearer = bearer
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let body = String::from_utf8_lossy(&body).into_owned();
    let exchange = client.send(method.as_str(), path, body, None, bearer).await;
    exchange.result.map(|answer| Reply {
        status: answer.status,
        body: Bytes::from(answer.text.into_bytes()),
        retry_after: answer.retry_after,
    })
}
