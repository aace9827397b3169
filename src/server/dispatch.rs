//! The hyper service every connection runs: `POST` to the two KeyClaim endpoints goes
//! straight to its handler; everything else (health, unknown paths, other methods, and
//! every request when a layer such as `misanswer` or a pause schedule is installed)
//! goes through axum's router.
//!
//! The direct path is the one a load test asks for by the million. Through the router
//! a create also paid for converting hyper's body to axum's, a boxed future per layer
//! and the route lookup; here it is one comparison of the path and one boxed future.
//! The handlers are the same functions either way, so the answers are too.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::response::Response;
use http::{Method, Request};
use hyper::body::Incoming;
use hyper_util::service::TowerToHyperService;

use super::routes;
use super::state::AppState;
use crate::protocol::{CREATE_PATH, VALIDATE_PATH};

pub(crate) type DispatchFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// An endpoint served on the direct path.
#[derive(Clone, Copy)]
enum Endpoint {
    Create,
    Validate,
}

#[derive(Clone)]
pub(crate) struct Dispatch {
    app: Arc<AppState>,
    router: TowerToHyperService<Router>,
    /// Whether the two endpoints may skip the router: not when a layer of it must see
    /// every request.
    direct: bool,
}

impl Dispatch {
    pub(crate) fn new(app: Arc<AppState>, router: Router, direct: bool) -> Self {
        Self {
            app,
            router: TowerToHyperService::new(router),
            direct,
        }
    }

    fn endpoint(&self, request: &Request<Incoming>) -> Option<Endpoint> {
        if !self.direct || request.method() != Method::POST {
            return None;
        }
        match request.uri().path() {
            CREATE_PATH => Some(Endpoint::Create),
            VALIDATE_PATH => Some(Endpoint::Validate),
            _ => None,
        }
    }
}

impl hyper::service::Service<Request<Incoming>> for Dispatch {
    type Response = Response;
    type Error = Infallible;
    type Future = DispatchFuture;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let Some(endpoint) = self.endpoint(&request) else {
            return Box::pin(self.router.call(request));
        };
        let app = Arc::clone(&self.app);
        let (parts, body) = request.into_parts();
        // axum's router adds `content-length` to the header map from the body's exact
        // size; hyper writes the same line in the same place when it is missing, so
        // the direct path leaves it to hyper (`the_direct_path_answers_as_the_router`).
        Box::pin(async move {
            Ok(match endpoint {
                Endpoint::Create => routes::create(&app, parts, body).await,
                Endpoint::Validate => routes::validate(&app, parts, body).await,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::crypto::hmac_response;
    use crate::server::keys::{KeySpec, Tier};
    use crate::server::{PauseSchedule, Server, ServerConfig};

    const KEY: &str = "kc_dispatch_test";

    /// Sends `request` on `stream` and reads one whole answer (head and a
    /// `content-length` body).
    async fn exchange(stream: &mut tokio::io::DuplexStream, request: &[u8]) -> String {
        stream.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        loop {
            let text = String::from_utf8_lossy(&answer).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length: "))
                    .map_or(0, |n| n.parse::<usize>().unwrap());
                if answer.len() >= end + 4 + length {
                    return text;
                }
            }
            let mut chunk = [0; 4096];
            let read = stream.read(&mut chunk).await.unwrap();
            assert!(read > 0, "closed mid-answer: {text}");
            answer.extend_from_slice(&chunk[..read]);
        }
    }

    fn post(path: &str, body: &str) -> Vec<u8> {
        format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    /// The answers to a create, its validation, a replay, and bad requests of both
    /// kinds, with what differs from run to run (the date, challenges and signatures)
    /// masked.
    async fn answers(config: &ServerConfig) -> Vec<String> {
        let server = Server::new(config).unwrap();
        let (mut client, server_side) = tokio::io::duplex(64 * 1024);
        let served = tokio::spawn(async move { server.serve_connection(server_side).await });
        let mut answers = Vec::new();
        let created = exchange(
            &mut client,
            &post(
                crate::protocol::CREATE_PATH,
                &format!(r#"{{"key":"{KEY}","ttl":30}}"#),
            ),
        )
        .await;
        let challenge = created.split('"').nth(3).unwrap().to_owned();
        answers.push(created);
        let validation = format!(
            r#"{{"key":"{KEY}","challenge":"{challenge}","response":"{}"}}"#,
            hmac_response(KEY, &challenge)
        );
        for body in [
            validation.as_str(),
            validation.as_str(),
            r#"{"key":"kc_unknown_key","challenge":"ab","response":"cd"}"#,
            r#"{"key":"kc_dispatch_test","challenge":5}"#,
        ] {
            answers.push(exchange(&mut client, &post(crate::protocol::VALIDATE_PATH, body)).await);
        }
        for body in [
            "",
            r#"{"ttl":30}"#,
            r#"{"key":"kc_dispatch_test","ttl":0}"#,
            "[1]",
            "{",
        ] {
            answers.push(exchange(&mut client, &post(crate::protocol::CREATE_PATH, body)).await);
        }
        drop(client);
        served.await.unwrap();
        answers
            .into_iter()
            .map(|answer| {
                let masked: Vec<String> = answer
                    .split("\r\n")
                    .map(|line| {
                        if line.starts_with("date: ") {
                            return "date: (masked)".to_owned();
                        }
                        line.split('"')
                            .map(|part| {
                                let hex =
                                    part.len() == 64 && part.bytes().all(|b| b.is_ascii_hexdigit());
                                if hex { "(hex)" } else { part }
                            })
                            .collect::<Vec<_>>()
                            .join("\"")
                    })
                    .collect();
                masked.join("\r\n")
            })
            .collect()
    }

    #[tokio::test]
    async fn the_direct_path_answers_as_the_router() {
        let config = ServerConfig::new(vec![KeySpec::new(KEY, Tier::Business)]);
        // A pause schedule is a router layer, so every request goes through the router;
        // this one never pauses.
        let routed = ServerConfig {
            pause: Some(PauseSchedule {
                every: std::time::Duration::ZERO,
                pause_for: std::time::Duration::ZERO,
            }),
            ..config.clone()
        };
        let direct = answers(&config).await;
        assert!(
            direct[0].starts_with(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
            ),
            "{}",
            direct[0]
        );
        assert!(direct[1].contains(r#""valid":true"#), "{}", direct[1]);
        assert_eq!(direct, answers(&routed).await);
    }
}
