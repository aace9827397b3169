//! The worker's side: register and wait for the start, say it is alive while it runs,
//! and hand its report in at the end. Every wait is bounded; a coordinator that is not
//! up yet (its pod still starting) is retried with backoff until the patience runs out.

use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::wire::{Answer, Beat, HEARTBEAT_PATH, Hello, REGISTER_PATH, REPORT_PATH};

/// A held-open registration is answered within a third of the heartbeat timeout; this
/// bounds one request when the coordinator stops answering altogether.
const REGISTER_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Heartbeats and reports: small requests (a report is a few MB at most) on a cluster
/// network.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Retry backoff for a coordinator that cannot be reached: from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("--rendezvous {url}: {why}")]
    BadUrl { url: String, why: String },
    #[error("the coordinator at {url} could not be reached within {waited}: {why}")]
    Unreachable {
        url: String,
        waited: String,
        why: String,
    },
    #[error("not part of the run: {0}")]
    Excluded(String),
    #[error("the coordinator refused this worker: {0}")]
    Mismatch(String),
    #[error("interrupted while waiting for the start")]
    Interrupted,
}

/// The start the coordinator announced.
#[derive(Debug, Clone)]
pub struct Joined {
    /// When to start, on this process's monotonic clock.
    pub start: Instant,
    /// The same instant on the wall clock, for the report.
    pub start_wall: SystemTime,
    pub heartbeat_every: Duration,
    /// The workers that take part.
    pub starting: Vec<u32>,
}

/// One worker's line to the coordinator.
pub struct Rendezvous {
    http: reqwest::Client,
    base: String,
    hello: Hello,
}

impl Rendezvous {
    /// `url` is the coordinator's base URL (`http://host:port`).
    pub fn new(url: &str, hello: Hello) -> Result<Self, JoinError> {
        let bad = |why: String| JoinError::BadUrl {
            url: url.to_owned(),
            why,
        };
        let parsed = reqwest::Url::parse(url).map_err(|err| bad(err.to_string()))?;
        if parsed.scheme() != "http" || parsed.host().is_none() {
            return Err(bad(
                "give the coordinator's address as http://HOST:PORT (in-cluster, plain HTTP)"
                    .into(),
            ));
        }
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|err| bad(err.to_string()))?;
        Ok(Self {
            http,
            base: url.trim_end_matches('/').to_owned(),
            hello,
        })
    }

    /// A random session id for a worker process.
    pub fn session() -> String {
        format!("{:016x}", rand::random::<u64>())
    }

    async fn post(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
        timeout: Duration,
    ) -> Result<Answer, String> {
        let answer = self
            .http
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|err| format!("{err:#}"))?;
        let status = answer.status();
        let text = answer.text().await.map_err(|err| format!("{err:#}"))?;
        serde_json::from_str(&text)
            .map_err(|_| format!("{status} from the coordinator: {}", first_line(&text)))
    }

    fn json(body: &impl Serialize) -> String {
        serde_json::to_string(body).expect("wire types serialize")
    }

    /// Registers and waits for the start, at most `patience` in all (or until
    /// `cancel`). `on_wait(registered, workers)` hears how many are in whenever that
    /// changes.
    pub async fn join(
        &self,
        patience: Duration,
        cancel: &CancellationToken,
        mut on_wait: impl FnMut(u32, u32),
    ) -> Result<Joined, JoinError> {
        let deadline = Instant::now() + patience;
        let mut backoff = BACKOFF.0;
        let mut last_error = String::from("no answer yet");
        let mut heard = None;
        loop {
            let answer = tokio::select! {
                answer = self.post(REGISTER_PATH, Self::json(&self.hello), REGISTER_REQUEST_TIMEOUT) => answer,
                () = cancel.cancelled() => return Err(JoinError::Interrupted),
                () = tokio::time::sleep_until(deadline) => Err(last_error.clone()),
            };
            match answer {
                Ok(Answer::Start {
                    start_in_ms,
                    heartbeat_ms,
                    starting,
                }) => {
                    let (now, wall) = (Instant::now(), SystemTime::now());
                    let offset = Duration::from_millis(start_in_ms.unsigned_abs());
                    let (start, start_wall) = if start_in_ms >= 0 {
                        (now + offset, wall + offset)
                    } else {
                        (now.checked_sub(offset).unwrap_or(now), wall - offset)
                    };
                    return Ok(Joined {
                        start,
                        start_wall,
                        heartbeat_every: Duration::from_millis(heartbeat_ms.max(10)),
                        starting,
                    });
                }
                Ok(Answer::Waiting {
                    registered,
                    workers,
                }) => {
                    backoff = BACKOFF.0;
                    if heard != Some(registered) {
                        heard = Some(registered);
                        on_wait(registered, workers);
                    }
                }
                Ok(Answer::Excluded { why }) => return Err(JoinError::Excluded(why)),
                Ok(Answer::Mismatch { why }) => return Err(JoinError::Mismatch(why)),
                Ok(Answer::Ok) => {
                    return Err(JoinError::Mismatch(
                        "the coordinator answered a registration with `ok`; is it a keyclaim-harness coordinator of this version?".into(),
                    ));
                }
                Err(why) => {
                    last_error = why;
                    if Instant::now() >= deadline {
                        return Err(JoinError::Unreachable {
                            url: self.base.clone(),
                            waited: humantime::format_duration(patience).to_string(),
                            why: last_error,
                        });
                    }
                    tokio::select! {
                        () = tokio::time::sleep(backoff.min(deadline - Instant::now())) => {}
                        () = cancel.cancelled() => return Err(JoinError::Interrupted),
                    }
                    backoff = (backoff * 2).min(BACKOFF.1);
                }
            }
        }
    }

    /// Says "alive" every `every` until `stop` is cancelled. Heartbeats that fail are
    /// retried at the next beat; being counted as lost is said once, as a warning.
    pub fn heartbeats(
        &self,
        every: Duration,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let http = self.http.clone();
        let url = format!("{}{HEARTBEAT_PATH}", self.base);
        let beat = Self::json(&Beat {
            index: self.hello.index,
            session: self.hello.session.clone(),
        });
        tokio::spawn(async move {
            let mut told = false;
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    () = stop.cancelled() => return,
                }
                let sent = http
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(beat.clone())
                    .timeout(every.max(Duration::from_secs(1)))
                    .send()
                    .await;
                let answer = match sent {
                    Ok(answer) => answer.json::<Answer>().await.ok(),
                    Err(_) => None,
                };
                if let Some(Answer::Excluded { why } | Answer::Mismatch { why }) = answer
                    && !told
                {
                    told = true;
                    tracing::warn!(
                        "the coordinator no longer counts this worker in ({why}); running on, its report stays local"
                    );
                }
            }
        })
    }

    /// Hands the report (report.json's text) to the coordinator, retrying a coordinator
    /// that cannot be reached for at most `patience`.
    pub async fn hand_in(&self, report_json: String, patience: Duration) -> Result<(), JoinError> {
        let path = format!("{REPORT_PATH}/{}/{}", self.hello.index, self.hello.session);
        let deadline = Instant::now() + patience;
        let mut backoff = BACKOFF.0;
        loop {
            match self.post(&path, report_json.clone(), REQUEST_TIMEOUT).await {
                Ok(Answer::Ok) => return Ok(()),
                Ok(Answer::Excluded { why }) => return Err(JoinError::Excluded(why)),
                Ok(Answer::Mismatch { why }) => return Err(JoinError::Mismatch(why)),
                Ok(other) => {
                    return Err(JoinError::Mismatch(format!(
                        "unexpected answer to a report: {other:?}"
                    )));
                }
                Err(why) if Instant::now() + backoff >= deadline => {
                    return Err(JoinError::Unreachable {
                        url: self.base.clone(),
                        waited: humantime::format_duration(patience).to_string(),
                        why,
                    });
                }
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF.1);
                }
            }
        }
    }
}

fn first_line(text: &str) -> &str {
    let line = text.lines().next().unwrap_or("");
    &line[..line.floor_char_boundary(200)]
}
