//! Sending a conformance request so that rate limits do not decide the verdict: a
//! `rate_limited` answer is waited out as `Retry-After` says (else with exponential
//! backoff), bounded by the run's retry policy, and the request sent again. What every
//! attempt cost is counted.

use crate::client::{Client, Exchange};
use crate::engine::settings::RetryPolicy;
use crate::metrics::Latency;

/// Request counters and latency of a scenario, or of one burst worker.
#[derive(Default)]
pub struct Counters {
    pub requests: u64,
    /// Requests that got no HTTP answer.
    pub errors: u64,
    /// Answers to requests that carried a configured key, and how many of those were
    /// `invalid_key` or 5xx: all of them means a pass proves nothing.
    pub keyed_answers: u64,
    pub suspicious: u64,
    pub latency: Latency,
}

impl Counters {
    /// `keyed`: the request carried one of the run's configured keys.
    pub fn record(&mut self, exchange: &Exchange, keyed: bool) {
        self.requests += 1;
        self.latency.record(exchange.latency);
        match &exchange.result {
            Ok(answer) if keyed => {
                self.keyed_answers += 1;
                if answer.status >= 500 || answer.error_code() == Some("invalid_key") {
                    self.suspicious += 1;
                }
            }
            Ok(_) => {}
            Err(_) => self.errors += 1,
        }
    }

    pub fn merge(&mut self, other: &Counters) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.keyed_answers += other.keyed_answers;
        self.suspicious += other.suspicious;
        self.latency.merge(&other.latency);
    }
}

/// A request sent with retries: the last exchange, and what all attempts cost.
pub struct Sent {
    pub exchange: Exchange,
    pub counters: Counters,
    pub retries: u64,
}

/// One request as the steps describe it.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub body: String,
    pub content_type: Option<&'a str>,
    pub bearer: Option<&'a str>,
    /// It carries one of the run's configured keys (for the vacuous-pass warning).
    pub keyed: bool,
}

/// Sends, and when the answer is `rate_limited`, waits and sends again (see the module).
pub async fn send_with_retry(client: &Client, policy: RetryPolicy, request: Request<'_>) -> Sent {
    let mut counters = Counters::default();
    let mut retries = 0;
    loop {
        let exchange = client
            .send(
                request.method,
                request.path,
                request.body.clone(),
                request.content_type,
                request.bearer,
            )
            .await;
        counters.record(&exchange, request.keyed);
        let wait = exchange
            .answer()
            .filter(|answer| answer.is_rate_limited() && retries < u64::from(policy.max_retries))
            .map(|answer| {
                answer
                    .retry_after()
                    .unwrap_or(policy.backoff * 2u32.pow(retries as u32))
                    .min(policy.max_wait)
            });
        match wait {
            Some(wait) => {
                retries += 1;
                tokio::time::sleep(wait).await;
            }
            None => {
                return Sent {
                    exchange,
                    counters,
                    retries,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use axum::http::{HeaderValue, StatusCode, header::RETRY_AFTER};
    use axum::response::{IntoResponse, Response};
    use serde_json::json;

    use super::*;

    /// A loopback target that refuses the first `refusals` requests with `status`, the
    /// error code `error` and `retry_after` (if any), then answers 200; it notes when
    /// each request came.
    struct Target {
        client: Client,
        arrivals: Arc<Mutex<Vec<Instant>>>,
    }

    async fn target(
        refusals: usize,
        status: u16,
        error: &'static str,
        retry_after: Option<&'static str>,
    ) -> Target {
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let seen = arrivals.clone();
        let answer = move || {
            let mut seen = seen.lock().unwrap();
            seen.push(Instant::now());
            if seen.len() > refusals {
                return (StatusCode::OK, axum::Json(json!({"challenge": "ab"}))).into_response();
            }
            let status = StatusCode::from_u16(status).unwrap();
            let mut response: Response =
                (status, axum::Json(json!({"error": error}))).into_response();
            if let Some(value) = retry_after {
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static(value));
            }
            response
        };
        let app = axum::Router::new().fallback(move || std::future::ready(answer()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Target {
            client: Client::new(&url, Duration::from_secs(10), crate::tls::Tls::system()).unwrap(),
            arrivals,
        }
    }

    impl Target {
        async fn send(&self, policy: RetryPolicy) -> Sent {
            let request = Request {
                method: "POST",
                path: "/api/challenge/create",
                body: "{}".to_owned(),
                content_type: None,
                bearer: None,
                keyed: true,
            };
            // Bounded whatever the policy says, so a wait that ignores `max_wait`
            // fails here instead of hanging.
            tokio::time::timeout(
                Duration::from_secs(60),
                send_with_retry(&self.client, policy, request),
            )
            .await
            .expect("send_with_retry to finish")
        }

        /// The pauses between consecutive requests.
        fn gaps(&self) -> Vec<Duration> {
            let arrivals = self.arrivals.lock().unwrap();
            arrivals.windows(2).map(|pair| pair[1] - pair[0]).collect()
        }
    }

    fn status(sent: &Sent) -> u16 {
        sent.exchange.answer().expect("an answer").status
    }

    #[tokio::test]
    async fn retry_after_is_waited_out_and_the_request_sent_again() {
        let target = target(1, 429, "rate_limited", Some("1")).await;
        let sent = target.send(RetryPolicy::default()).await;
        assert_eq!(status(&sent), 200);
        assert_eq!((sent.retries, sent.counters.requests), (1, 2));
        let gaps = target.gaps();
        assert!(
            gaps[0] >= Duration::from_secs(1),
            "waited only {:?}",
            gaps[0]
        );
    }

    #[tokio::test]
    async fn without_retry_after_the_wait_doubles_and_the_retries_are_bounded() {
        let target = target(usize::MAX, 429, "rate_limited", None).await;
        let backoff = Duration::from_millis(20);
        let policy = RetryPolicy {
            max_retries: 3,
            max_wait: Duration::from_secs(10),
            backoff,
        };
        let sent = target.send(policy).await;
        // The last answer stands once the retries are spent: the scenario judges it.
        assert_eq!(status(&sent), 429);
        assert_eq!((sent.retries, sent.counters.requests), (3, 4));
        let gaps = target.gaps();
        for (retry, gap) in gaps.iter().enumerate() {
            let floor = backoff * 2u32.pow(retry as u32);
            assert!(
                *gap >= floor,
                "retry {retry} waited {gap:?}, less than {floor:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_long_retry_after_is_cut_to_the_longest_wait() {
        let target = target(1, 429, "rate_limited", Some("3600")).await;
        let policy = RetryPolicy {
            max_wait: Duration::from_millis(50),
            ..RetryPolicy::default()
        };
        let sent = target.send(policy).await;
        assert_eq!((status(&sent), sent.retries), (200, 1));
    }

    #[tokio::test]
    async fn a_403_rate_limited_answer_is_ridden_out_too() {
        let target = target(2, 403, "rate_limited", None).await;
        let policy = RetryPolicy {
            backoff: Duration::from_millis(5),
            ..RetryPolicy::default()
        };
        let sent = target.send(policy).await;
        assert_eq!((status(&sent), sent.retries), (200, 2));
    }

    #[tokio::test]
    async fn other_refusals_are_not_retried_and_a_refused_key_is_suspicious() {
        let target = target(usize::MAX, 401, "invalid_key", Some("1")).await;
        let sent = target.send(RetryPolicy::default()).await;
        assert_eq!(
            (status(&sent), sent.retries, sent.counters.requests),
            (401, 0, 1)
        );
        // What the vacuous-pass warning counts.
        assert_eq!(
            (sent.counters.keyed_answers, sent.counters.suspicious),
            (1, 1)
        );
    }
}
