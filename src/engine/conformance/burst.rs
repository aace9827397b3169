//! A burst step: up to `max_requests` requests, `concurrency` at once, until the first
//! `rate_limited` answer. It keeps counts, not answers, so a long burst holds no list.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use serde_json::json;

use super::retry::Counters;
use crate::client::{Answer, Exchange};
use crate::engine::credentials::{Secret, random_hex64};
use crate::engine::settings::RunSettings;
use crate::plan::model::{BurstStep, Endpoint, ResponseForm};
use crate::protocol::{CREATE_PATH, VALIDATE_PATH};

/// What a burst saw.
#[derive(Default)]
pub struct BurstTally {
    pub counters: Counters,
    /// "200" -> count, "no answer" -> count.
    statuses: BTreeMap<String, u64>,
    pub first_limited: Option<Exchange>,
    pub last: Option<Exchange>,
    /// It stopped because a round of requests in a row got no answer.
    pub gave_up: bool,
}

impl BurstTally {
    fn add(&mut self, exchange: Exchange, limited: bool, keyed: bool) {
        self.counters.record(&exchange, keyed);
        let label = match &exchange.result {
            Ok(answer) => answer.status.to_string(),
            Err(_) => "no answer".to_owned(),
        };
        *self.statuses.entry(label).or_default() += 1;
        if limited && self.first_limited.is_none() {
            self.first_limited = Some(exchange);
        } else {
            self.last = Some(exchange);
        }
    }

    fn merge(&mut self, other: BurstTally) {
        self.counters.merge(&other.counters);
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        if self.first_limited.is_none() {
            self.first_limited = other.first_limited;
        }
        if other.last.is_some() {
            self.last = other.last;
        }
    }

    /// "2999x 200, 1x 429".
    pub fn summary(&self) -> String {
        self.statuses
            .iter()
            .map(|(status, n)| format!("{n}x {status}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Requests the pressure around the probe validations sends at most.
const PRESSURE_REQUESTS: u32 = 5_000;

/// What came of the validations attempted while the limit held.
pub struct Probe {
    /// The bodies of the attempts refused as rate-limited: each must validate later.
    pub limited: Vec<serde_json::Value>,
    /// An answer that was neither a refusal for the rate nor a verdict, if any.
    pub odd: Option<Exchange>,
}

/// Sends each validation in `bodies` once while the burst's other workers keep
/// creating at full speed (after they meet the limit again: between the burst and the
/// probe the limiter refills). An attempt the limiter lets through uses its challenge
/// legitimately; one it refuses is kept for the caller to try again later.
pub async fn probe(
    settings: &RunSettings,
    burst: &BurstStep,
    key: Option<&str>,
    bodies: &[serde_json::Value],
) -> (Probe, Counters) {
    let client = &settings.client;
    let done = AtomicBool::new(false);
    let sent = AtomicU32::new(0);
    // Attempts start once the pressure meets the limit again: between the burst and
    // the probe the limiter has refilled.
    let limited = tokio::sync::Notify::new();
    let pressure = || async {
        let mut counters = Counters::default();
        let mut create = json!({ "ttl": 30 });
        if let Some(key) = key {
            create["key"] = json!(key);
        }
        while !done.load(Ordering::Relaxed)
            && sent.fetch_add(1, Ordering::Relaxed) < PRESSURE_REQUESTS
        {
            let exchange = client.post_json(CREATE_PATH, &create, None).await;
            if exchange.answer().is_some_and(Answer::is_rate_limited) {
                limited.notify_one();
            }
            counters.record(&exchange, burst.key.is_configured());
        }
        // Out of requests without meeting the limit: let the attempts go anyway.
        limited.notify_one();
        counters
    };
    let attempts = async {
        limited.notified().await;
        let mut counters = Counters::default();
        let mut probe = Probe {
            limited: Vec::new(),
            odd: None,
        };
        for body in bodies {
            let exchange = client.post_json(VALIDATE_PATH, body, None).await;
            counters.record(&exchange, burst.key.is_configured());
            let answer = exchange.answer();
            if answer.is_some_and(Answer::is_rate_limited) {
                probe.limited.push(body.clone());
            } else if answer.and_then(Answer::valid) != Some(true) && probe.odd.is_none() {
                probe.odd = Some(exchange);
            }
        }
        done.store(true, Ordering::Relaxed);
        (probe, counters)
    };
    let workers = (1..burst.concurrency.max(2)).map(|_| pressure());
    let ((probe, mut counters), pressure) =
        tokio::join!(attempts, futures::future::join_all(workers));
    for other in pressure {
        counters.merge(&other);
    }
    (probe, counters)
}

/// Sends the burst with `key` (in the body) and `secret`; `max` is the step's
/// `max_requests` or the run's `--burst`. Returns the tally and how many unanswered
/// requests in a row end it.
pub async fn send(
    settings: &RunSettings,
    burst: &BurstStep,
    key: Option<&str>,
    secret: &Secret,
    max: u32,
) -> (BurstTally, u32) {
    let client = &settings.client;
    let issued = AtomicU32::new(0);
    let stop = AtomicBool::new(false);
    // A target that stopped answering would cost every remaining request its
    // timeout: a round of unanswered requests in a row (as many as are in flight)
    // ends the burst.
    let give_up_after = burst.concurrency.max(1);
    let unanswered = AtomicU32::new(0);
    let gave_up = AtomicBool::new(false);
    let worker = || async {
        let mut tally = BurstTally::default();
        while !stop.load(Ordering::Relaxed) && issued.fetch_add(1, Ordering::Relaxed) < max {
            let (path, mut body) = match burst.endpoint {
                Endpoint::Create => (CREATE_PATH, json!({ "ttl": 30 })),
                Endpoint::Validate => {
                    let challenge = random_hex64();
                    let response = secret.response(&ResponseForm::Hmac, &challenge, "");
                    (
                        VALIDATE_PATH,
                        json!({ "challenge": challenge, "response": response }),
                    )
                }
            };
            if let Some(key) = key {
                body["key"] = json!(key);
            }
            let exchange = client.post_json(path, &body, None).await;
            let limited = exchange.answer().is_some_and(Answer::is_rate_limited);
            if limited {
                stop.store(true, Ordering::Relaxed);
            }
            if exchange.result.is_ok() {
                unanswered.store(0, Ordering::Relaxed);
            } else if unanswered.fetch_add(1, Ordering::Relaxed) + 1 >= give_up_after {
                gave_up.store(true, Ordering::Relaxed);
                stop.store(true, Ordering::Relaxed);
            }
            tally.add(exchange, limited, burst.key.is_configured());
        }
        tally
    };
    let workers = (0..burst.concurrency.max(1)).map(|_| worker());
    let mut total = BurstTally::default();
    for tally in futures::future::join_all(workers).await {
        total.merge(tally);
    }
    total.gave_up = gave_up.load(Ordering::Relaxed);
    (total, give_up_after)
}
