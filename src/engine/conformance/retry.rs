//! Sending a conformance request so that rate limits do not decide the verdict: a
//! `rate_limited` answer is waited out as `Retry-After` says (else with exponential
//! backoff), bounded by the run's retry policy, and the request sent again. What every
//! attempt cost is counted.

use std::time::Duration;

use crate::client::Exchange;
use crate::engine::settings::RunSettings;
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
pub async fn send_with_retry(settings: &RunSettings, request: Request<'_>) -> Sent {
    let policy = settings.retry;
    let mut counters = Counters::default();
    let mut retries = 0;
    loop {
        let exchange = settings
            .client
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
                    .retry_after_seconds()
                    .map(Duration::from_secs)
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
