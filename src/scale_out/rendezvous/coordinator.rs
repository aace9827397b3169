//! The coordinator's side: workers register, the start is announced once all N are in
//! (or, at the deadline, to those present or to nobody, as configured), heartbeats
//! tell the living from the lost, and reports are collected until every worker has
//! reported or is known to be missing.
//!
//! The state lives behind one mutex: a handful of requests per worker per run, never
//! on a request path of the load.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Json;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::wire::{
    Answer, Beat, HEARTBEAT_PATH, Hello, MERGED_PATH, REGISTER_PATH, REPORT_PATH, STATUS_PATH,
    Status,
};
use crate::results::RunReport;

/// A worker's report may carry a per-second histogram for every second of a long run.
const REPORT_BODY_LIMIT: usize = 512 * 1024 * 1024;

/// What to do when the registration deadline passes with workers still absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnMissing {
    /// Start with the workers present; the absent ones are listed as missing.
    Start,
    /// Call the run off: every worker is told, nothing runs.
    Fail,
}

/// How the coordinator waits.
#[derive(Debug, Clone)]
pub struct Settings {
    pub workers: u32,
    /// From the coordinator's start, how long all N have to register.
    pub register_timeout: Duration,
    pub on_missing: OnMissing,
    /// How far ahead of itself the start is announced, so every worker hears it in time.
    pub start_delay: Duration,
    /// A worker not heard from for this long is lost (a killed pod, a lost node).
    pub heartbeat_timeout: Duration,
    /// From the start, how long to wait for the reports at most.
    pub collect_timeout: Duration,
}

impl Settings {
    /// How often workers say they are alive: three chances before they count as lost.
    pub fn heartbeat_every(&self) -> Duration {
        (self.heartbeat_timeout / 3).max(Duration::from_millis(10))
    }
}

/// How the gathering ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Collected {
    /// Reports (worker index, the report.json text as the worker wrote it), in index
    /// order, and the workers that have none, with the reason.
    Reports {
        reports: Vec<(u32, String)>,
        missing: BTreeMap<u32, String>,
    },
    /// Nothing to merge: the rendezvous was called off, or no worker reported.
    Aborted { why: String },
}

#[derive(Debug, Clone)]
enum Slot {
    Absent,
    /// Registered (before the start) or running (after it), last heard from at `seen`.
    Present {
        session: String,
        seen: Instant,
    },
    Reported {
        text: String,
    },
    Missing {
        why: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Gathering,
    Started { at: Instant },
    Collected,
    Aborted,
}

struct Inner {
    settings: Settings,
    opened: Instant,
    digest: Option<String>,
    phase: Phase,
    slots: Vec<Slot>,
    aborted: Option<String>,
    merged: bool,
}

/// The rendezvous and collector of one scaled-out run.
pub struct Coordinator {
    inner: Mutex<Inner>,
    /// Bumped on every change of state, so held-open registrations and the driver wake.
    changed: watch::Sender<u64>,
}

impl Coordinator {
    pub fn new(settings: Settings) -> Arc<Self> {
        let slots = vec![Slot::Absent; settings.workers as usize];
        Arc::new(Self {
            inner: Mutex::new(Inner {
                settings,
                opened: Instant::now(),
                digest: None,
                phase: Phase::Gathering,
                slots,
                aborted: None,
                merged: false,
            }),
            changed: watch::channel(0).0,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data; carry on with it.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn notify(&self) {
        self.changed.send_modify(|version| *version += 1);
    }

    /// Registers a worker; answers at once. See [`Coordinator::register_held`] for the
    /// held-open form the HTTP route uses.
    pub fn register(&self, hello: &Hello) -> Answer {
        let (answer, changed) = self.lock().register(hello);
        if changed {
            self.notify();
        }
        answer
    }

    /// Registers a worker and, while the others are still coming, holds the answer up
    /// to `hold` for the start to be announced.
    pub async fn register_held(&self, hello: &Hello, hold: Duration) -> Answer {
        let mut changes = self.changed.subscribe();
        let until = Instant::now() + hold;
        loop {
            let answer = self.register(hello);
            if !matches!(answer, Answer::Waiting { .. }) {
                return answer;
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return answer },
                () = tokio::time::sleep_until(until) => return answer,
            }
        }
    }

    pub fn heartbeat(&self, beat: &Beat) -> Answer {
        let now = Instant::now();
        let mut inner = self.lock();
        let Some(slot) = inner.slots.get_mut(beat.index as usize) else {
            return Answer::Mismatch {
                why: format!("no worker {} in this run", beat.index),
            };
        };
        match slot {
            Slot::Present { session, seen } if *session == beat.session => {
                *seen = now;
                Answer::Ok
            }
            Slot::Missing { why } => Answer::Excluded { why: why.clone() },
            _ => Answer::Excluded {
                why: format!("worker {} is not in the run as this process", beat.index),
            },
        }
    }

    /// Takes a worker's report (its report.json text).
    pub fn report(&self, index: u32, session: &str, text: String) -> Answer {
        let answer = self.lock().report(index, session, text);
        if answer == Answer::Ok {
            self.notify();
        }
        answer
    }

    pub fn status(&self) -> Status {
        self.lock().status()
    }

    /// A receiver that changes whenever the state does (see [`Coordinator::status`]).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Marks the merged report as written: `GET /v1/merged` answers 200 from now on.
    pub fn set_merged(&self) {
        self.lock().merged = true;
    }

    /// Drives the deadlines until every worker has reported or is missing, or the
    /// rendezvous is called off. `cancel` (Ctrl-C, SIGTERM) ends the wait: whoever has
    /// not reported is missing.
    pub async fn collect(&self, cancel: &CancellationToken) -> Collected {
        let mut changes = self.changed.subscribe();
        loop {
            let next = {
                let mut inner = self.lock();
                let changed = inner.expire(Instant::now());
                let next = inner.next_deadline();
                let done = inner.finished();
                drop(inner);
                if changed {
                    self.notify();
                }
                if let Some(collected) = done {
                    return collected;
                }
                next
            };
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                changed = changes.changed() => if changed.is_err() { break },
                () = cancel.cancelled() => break,
            }
        }
        let collected = self
            .lock()
            .give_up("the coordinator was stopped before it came");
        self.notify();
        collected
    }
}

impl Inner {
    fn register(&mut self, hello: &Hello) -> (Answer, bool) {
        let workers = self.settings.workers;
        if hello.workers != workers {
            return (
                Answer::Mismatch {
                    why: format!(
                        "this worker runs with --workers {}, the coordinator with --workers {workers}",
                        hello.workers
                    ),
                },
                false,
            );
        }
        if hello.index >= workers {
            return (
                Answer::Mismatch {
                    why: format!(
                        "--worker-index {} is out of range for --workers {workers}",
                        hello.index
                    ),
                },
                false,
            );
        }
        match &self.digest {
            Some(digest) if *digest != hello.plan_digest => {
                return (
                    Answer::Mismatch {
                        why: "this worker's plans, selected scenarios or overrides differ from the other workers' (plan digests differ)".into(),
                    },
                    false,
                );
            }
            Some(_) => {}
            None => self.digest = Some(hello.plan_digest.clone()),
        }
        let now = Instant::now();
        let index = hello.index as usize;
        match self.phase {
            Phase::Aborted => (
                Answer::Excluded {
                    why: self.aborted.clone().unwrap_or_default(),
                },
                false,
            ),
            Phase::Collected => (
                Answer::Excluded {
                    why: "the run is over: the coordinator has collected its reports".into(),
                },
                false,
            ),
            Phase::Gathering => {
                let changed = match &mut self.slots[index] {
                    Slot::Present { session, seen } if *session == hello.session => {
                        *seen = now;
                        false
                    }
                    slot => {
                        // A second process for one index replaces the first before the
                        // start: the first one's pod is gone (a retry after a crash).
                        *slot = Slot::Present {
                            session: hello.session.clone(),
                            seen: now,
                        };
                        true
                    }
                };
                let registered = self.present();
                if registered == workers {
                    let at = now + self.settings.start_delay;
                    self.phase = Phase::Started { at };
                    return (self.start_answer(now, at), true);
                }
                (
                    Answer::Waiting {
                        registered,
                        workers,
                    },
                    changed,
                )
            }
            Phase::Started { at } => match &mut self.slots[index] {
                Slot::Present { session, seen } if *session == hello.session => {
                    *seen = now;
                    (self.start_answer(now, at), false)
                }
                Slot::Missing { why } => (
                    Answer::Excluded {
                        why: format!(
                            "the run started without worker {index} ({why}); its load would be out of step"
                        ),
                    },
                    false,
                ),
                Slot::Absent => {
                    let why = format!(
                        "registered {} after the start",
                        seconds(now.saturating_duration_since(at))
                    );
                    self.slots[index] = Slot::Missing { why: why.clone() };
                    (
                        Answer::Excluded {
                            why: format!(
                                "the run started without worker {index}: it {why}; its load would be out of step"
                            ),
                        },
                        true,
                    )
                }
                Slot::Present { .. } | Slot::Reported { .. } => (
                    Answer::Excluded {
                        why: format!(
                            "worker {index} is already in the run as another process; a second one would double its share"
                        ),
                    },
                    false,
                ),
            },
        }
    }

    fn start_answer(&self, now: Instant, at: Instant) -> Answer {
        let start_in_ms = if at >= now {
            i64::try_from(at.duration_since(now).as_millis()).unwrap_or(i64::MAX)
        } else {
            -i64::try_from(now.duration_since(at).as_millis()).unwrap_or(i64::MAX)
        };
        Answer::Start {
            start_in_ms,
            heartbeat_ms: u64::try_from(self.settings.heartbeat_every().as_millis())
                .unwrap_or(u64::MAX),
            starting: self
                .indexes(|slot| matches!(slot, Slot::Present { .. } | Slot::Reported { .. })),
        }
    }

    fn report(&mut self, index: u32, session: &str, text: String) -> Answer {
        let Some(slot) = self.slots.get(index as usize) else {
            return Answer::Mismatch {
                why: format!("no worker {index} in this run"),
            };
        };
        match slot {
            Slot::Present { session: own, .. }
                if own == session && matches!(self.phase, Phase::Started { .. }) => {}
            Slot::Missing { why } => {
                return Answer::Excluded {
                    why: format!("worker {index} was counted as missing ({why})"),
                };
            }
            Slot::Reported { .. } => {
                return Answer::Excluded {
                    why: format!("worker {index} has reported already"),
                };
            }
            _ => {
                return Answer::Excluded {
                    why: format!("worker {index} is not in the run as this process"),
                };
            }
        }
        let report: RunReport = match serde_json::from_str(&text) {
            Ok(report) => report,
            Err(err) => {
                return Answer::Mismatch {
                    why: format!("not a keyclaim-harness report: {err}"),
                };
            }
        };
        let own = report
            .worker
            .is_some_and(|tag| tag.index == index && tag.workers == self.settings.workers);
        if !own || Some(&report.plan_digest) != self.digest.as_ref() {
            return Answer::Mismatch {
                why: format!("the report is not worker {index}'s of this run"),
            };
        }
        self.slots[index as usize] = Slot::Reported { text };
        Answer::Ok
    }

    /// Applies every deadline that has passed by `now`; says whether anything changed.
    fn expire(&mut self, now: Instant) -> bool {
        let heartbeat = self.settings.heartbeat_timeout;
        let mut changed = false;
        match self.phase {
            Phase::Gathering => {
                // A registered worker that stopped asking is gone (its pod died while
                // waiting); a replacement may still come.
                for slot in &mut self.slots {
                    if let Slot::Present { seen, .. } = slot
                        && now.saturating_duration_since(*seen) > heartbeat
                    {
                        *slot = Slot::Absent;
                        changed = true;
                    }
                }
                if now >= self.opened + self.settings.register_timeout {
                    let absent = self.indexes(|slot| matches!(slot, Slot::Absent));
                    let why = format!(
                        "worker(s) {} did not register within {}",
                        crate::results::worker_list(&absent),
                        seconds(self.settings.register_timeout)
                    );
                    if self.settings.on_missing == OnMissing::Start && self.present() > 0 {
                        for index in absent {
                            self.slots[index as usize] = Slot::Missing {
                                why: format!(
                                    "did not register within {}",
                                    seconds(self.settings.register_timeout)
                                ),
                            };
                        }
                        self.phase = Phase::Started {
                            at: now + self.settings.start_delay,
                        };
                    } else {
                        self.abort(why);
                    }
                    changed = true;
                }
            }
            Phase::Started { at } => {
                for slot in &mut self.slots {
                    if let Slot::Present { seen, .. } = slot
                        && now.saturating_duration_since((*seen).max(at)) > heartbeat
                    {
                        let since = now.saturating_duration_since(at);
                        *slot = Slot::Missing {
                            why: format!(
                                "lost: no word for {} ({} after the start)",
                                seconds(heartbeat),
                                seconds(since)
                            ),
                        };
                        changed = true;
                    }
                }
                if now >= at + self.settings.collect_timeout {
                    for slot in &mut self.slots {
                        if matches!(slot, Slot::Present { .. } | Slot::Absent) {
                            *slot = Slot::Missing {
                                why: format!(
                                    "no report within {} of the start",
                                    seconds(self.settings.collect_timeout)
                                ),
                            };
                            changed = true;
                        }
                    }
                }
            }
            Phase::Collected | Phase::Aborted => {}
        }
        changed
    }

    /// The next instant a deadline could pass.
    fn next_deadline(&self) -> Instant {
        let heartbeat = self.settings.heartbeat_timeout;
        let oldest_seen = self.slots.iter().filter_map(|slot| match slot {
            Slot::Present { seen, .. } => Some(*seen),
            _ => None,
        });
        let far = Instant::now() + Duration::from_secs(3600);
        match self.phase {
            Phase::Gathering => oldest_seen
                .map(|seen| seen + heartbeat + Duration::from_millis(1))
                .chain([self.opened + self.settings.register_timeout])
                .min()
                .unwrap_or(far),
            Phase::Started { at } => oldest_seen
                .map(|seen| seen.max(at) + heartbeat + Duration::from_millis(1))
                .chain([at + self.settings.collect_timeout])
                .min()
                .unwrap_or(far),
            Phase::Collected | Phase::Aborted => far,
        }
    }

    /// The outcome, once every worker has reported or is missing (or it was called off).
    fn finished(&mut self) -> Option<Collected> {
        match self.phase {
            Phase::Aborted => Some(Collected::Aborted {
                why: self.aborted.clone().unwrap_or_default(),
            }),
            Phase::Started { .. }
                if self
                    .slots
                    .iter()
                    .all(|slot| matches!(slot, Slot::Reported { .. } | Slot::Missing { .. })) =>
            {
                Some(self.close())
            }
            _ => None,
        }
    }

    /// Ends the wait now: whoever has not reported is missing for `why`.
    fn give_up(&mut self, why: &str) -> Collected {
        if let Some(done) = self.finished() {
            return done;
        }
        if self.phase == Phase::Gathering {
            self.abort(format!("stopped before the start: {why}"));
            return self
                .finished()
                .unwrap_or(Collected::Aborted { why: why.into() });
        }
        for slot in &mut self.slots {
            if matches!(slot, Slot::Present { .. } | Slot::Absent) {
                *slot = Slot::Missing {
                    why: format!("no report: {why}"),
                };
            }
        }
        self.close()
    }

    fn close(&mut self) -> Collected {
        let mut reports = Vec::new();
        let mut missing = BTreeMap::new();
        for (index, slot) in self.slots.iter().enumerate() {
            match slot {
                Slot::Reported { text } => reports.push((index as u32, text.clone())),
                Slot::Missing { why } => {
                    missing.insert(index as u32, why.clone());
                }
                Slot::Absent | Slot::Present { .. } => {
                    missing.insert(index as u32, "no report".into());
                }
            }
        }
        if reports.is_empty() {
            let why = format!(
                "no worker reported ({})",
                missing
                    .iter()
                    .map(|(index, why)| format!("worker {index}: {why}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            self.abort(why.clone());
            return Collected::Aborted { why };
        }
        self.phase = Phase::Collected;
        Collected::Reports { reports, missing }
    }

    fn abort(&mut self, why: String) {
        self.phase = Phase::Aborted;
        self.aborted = Some(why);
    }

    fn present(&self) -> u32 {
        self.indexes(|slot| matches!(slot, Slot::Present { .. }))
            .len() as u32
    }

    fn indexes(&self, which: impl Fn(&Slot) -> bool) -> Vec<u32> {
        (0..self.settings.workers)
            .filter(|index| which(&self.slots[*index as usize]))
            .collect()
    }

    fn status(&self) -> Status {
        let started = matches!(self.phase, Phase::Started { .. });
        let present = self.indexes(|slot| matches!(slot, Slot::Present { .. }));
        Status {
            phase: match self.phase {
                Phase::Gathering => "gathering",
                Phase::Started { .. } => "started",
                Phase::Collected => "collected",
                Phase::Aborted => "aborted",
            }
            .into(),
            workers: self.settings.workers,
            registered: if started { Vec::new() } else { present.clone() },
            running: if started { present } else { Vec::new() },
            reported: self.indexes(|slot| matches!(slot, Slot::Reported { .. })),
            missing: self
                .slots
                .iter()
                .enumerate()
                .filter_map(|(index, slot)| match slot {
                    Slot::Missing { why } => Some((index as u32, why.clone())),
                    _ => None,
                })
                .collect(),
            since_start_ms: match self.phase {
                Phase::Started { at } => {
                    let now = Instant::now();
                    Some(if now >= at {
                        i64::try_from(now.duration_since(at).as_millis()).unwrap_or(i64::MAX)
                    } else {
                        -i64::try_from(at.duration_since(now).as_millis()).unwrap_or(i64::MAX)
                    })
                }
                _ => None,
            },
        }
    }
}

/// "12.0s", "250ms".
fn seconds(span: Duration) -> String {
    if span >= Duration::from_secs(1) {
        format!("{:.1}s", span.as_secs_f64())
    } else {
        format!("{}ms", span.as_millis())
    }
}

/// The coordinator's HTTP routes (paths and bodies: [`REGISTER_PATH`] and the rest).
pub fn router(coordinator: Arc<Coordinator>) -> axum::Router {
    axum::Router::new()
        .route(REGISTER_PATH, post(register))
        .route(HEARTBEAT_PATH, post(heartbeat))
        .route(
            &format!("{REPORT_PATH}/{{index}}/{{session}}"),
            post(report),
        )
        .route(STATUS_PATH, get(status))
        .route(MERGED_PATH, get(merged))
        .layer(DefaultBodyLimit::max(REPORT_BODY_LIMIT))
        .with_state(coordinator)
}

/// Serves [`router`] on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    coordinator: Arc<Coordinator>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(coordinator))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

async fn register(
    State(coordinator): State<Arc<Coordinator>>,
    Json(hello): Json<Hello>,
) -> Json<Answer> {
    // Held at most a third of the heartbeat timeout: a worker that asks again is alive.
    let hold = coordinator.lock().settings.heartbeat_every();
    Json(coordinator.register_held(&hello, hold).await)
}

async fn heartbeat(
    State(coordinator): State<Arc<Coordinator>>,
    Json(beat): Json<Beat>,
) -> Json<Answer> {
    Json(coordinator.heartbeat(&beat))
}

async fn report(
    State(coordinator): State<Arc<Coordinator>>,
    Path((index, session)): Path<(u32, String)>,
    body: String,
) -> Json<Answer> {
    Json(coordinator.report(index, &session, body))
}

async fn status(State(coordinator): State<Arc<Coordinator>>) -> Json<Status> {
    Json(coordinator.status())
}

async fn merged(State(coordinator): State<Arc<Coordinator>>) -> StatusCode {
    if coordinator.lock().merged {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::WorkerTag;

    fn settings(workers: u32, on_missing: OnMissing) -> Settings {
        Settings {
            workers,
            register_timeout: Duration::from_secs(60),
            on_missing,
            start_delay: Duration::from_secs(2),
            heartbeat_timeout: Duration::from_secs(9),
            collect_timeout: Duration::from_secs(3600),
        }
    }

    fn hello(index: u32, workers: u32) -> Hello {
        Hello {
            index,
            workers,
            plan_digest: "run-1".into(),
            session: format!("session-{index}"),
        }
    }

    fn report_of(index: u32, workers: u32) -> String {
        serde_json::to_string(&RunReport {
            passed: true,
            interrupted: false,
            strict: false,
            plans: vec!["p".into()],
            target: "t".into(),
            started_at: "2026-11-23T15:00:00Z".into(),
            elapsed_s: 1.0,
            scenarios: Vec::new(),
            plan_digest: "run-1".into(),
            worker: Some(WorkerTag { index, workers }),
            merged: None,
            start: None,
            plan_share: BTreeMap::new(),
            insecure: false,
        })
        .unwrap()
    }

    fn collect_in_background(coordinator: &Arc<Coordinator>) -> tokio::task::JoinHandle<Collected> {
        let coordinator = Arc::clone(coordinator);
        tokio::spawn(async move { coordinator.collect(&CancellationToken::new()).await })
    }

    #[tokio::test(start_paused = true)]
    async fn the_start_is_announced_a_moment_ahead_once_every_worker_is_in() {
        let coordinator = Coordinator::new(settings(3, OnMissing::Fail));
        assert_eq!(
            coordinator.register(&hello(0, 3)),
            Answer::Waiting {
                registered: 1,
                workers: 3
            }
        );
        // A held registration is answered as soon as the last worker comes.
        let held = {
            let coordinator = Arc::clone(&coordinator);
            tokio::spawn(async move {
                coordinator
                    .register_held(&hello(1, 3), Duration::from_secs(3))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        let last = coordinator.register(&hello(2, 3));
        let expected = Answer::Start {
            start_in_ms: 2_000,
            heartbeat_ms: 3_000,
            starting: vec![0, 1, 2],
        };
        assert_eq!(last, expected);
        assert_eq!(held.await.unwrap(), expected);
        // Asking again later tells how much of the lead is left.
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(
            coordinator.register(&hello(0, 3)),
            Answer::Start {
                start_in_ms: 1_500,
                heartbeat_ms: 3_000,
                starting: vec![0, 1, 2],
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_deadline_the_run_starts_with_those_present_and_a_late_worker_is_left_out() {
        let coordinator = Coordinator::new(settings(3, OnMissing::Start));
        let collected = collect_in_background(&coordinator);
        coordinator.register(&hello(0, 3));
        coordinator.register(&hello(2, 3));
        // Workers still waiting keep asking, as the held registration makes them.
        for _ in 0..21 {
            tokio::time::sleep(Duration::from_secs(3)).await;
            coordinator.register(&hello(0, 3));
            coordinator.register(&hello(2, 3));
        }
        let status = coordinator.status();
        assert_eq!(status.phase, "started");
        assert_eq!(status.running, vec![0, 2]);
        assert_eq!(
            status.missing.get(&1).map(String::as_str),
            Some("did not register within 60.0s")
        );
        let Answer::Excluded { why } = coordinator.register(&hello(1, 3)) else {
            panic!("a worker that comes after the start is left out")
        };
        assert!(why.contains("the run started without worker 1"), "{why}");
        for index in [0, 2] {
            assert_eq!(
                coordinator.report(index, &format!("session-{index}"), report_of(index, 3)),
                Answer::Ok
            );
        }
        let Collected::Reports { reports, missing } = collected.await.unwrap() else {
            panic!("two workers reported")
        };
        assert_eq!(
            reports.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![0, 2]
        );
        assert_eq!(missing.keys().copied().collect::<Vec<_>>(), vec![1]);
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_deadline_fail_calls_the_run_off_for_everyone() {
        let coordinator = Coordinator::new(settings(3, OnMissing::Fail));
        let collected = collect_in_background(&coordinator);
        for _ in 0..25 {
            coordinator.register(&hello(0, 3));
            coordinator.register(&hello(1, 3));
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        let Collected::Aborted { why } = collected.await.unwrap() else {
            panic!("the run must be called off")
        };
        assert_eq!(why, "worker(s) 2 did not register within 60.0s");
        assert_eq!(
            coordinator.register(&hello(0, 3)),
            Answer::Excluded { why: why.clone() }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_that_falls_silent_is_lost_and_the_others_are_collected() {
        let coordinator = Coordinator::new(settings(2, OnMissing::Fail));
        let collected = collect_in_background(&coordinator);
        coordinator.register(&hello(0, 2));
        coordinator.register(&hello(1, 2));
        // Worker 0 beats every 3 s; worker 1 was killed just after the start.
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let beat = Beat {
                index: 0,
                session: "session-0".into(),
            };
            assert_eq!(coordinator.heartbeat(&beat), Answer::Ok);
        }
        let status = coordinator.status();
        assert_eq!(
            status.missing.get(&1).map(String::as_str),
            Some("lost: no word for 9.0s (9.0s after the start)")
        );
        assert_eq!(
            coordinator.report(0, "session-0", report_of(0, 2)),
            Answer::Ok
        );
        let Collected::Reports { reports, missing } = collected.await.unwrap() else {
            panic!("worker 0 reported")
        };
        assert_eq!(reports.len(), 1);
        assert!(missing[&1].starts_with("lost"), "{missing:?}");
        // The lost worker's report, should it come after all, is refused.
        assert!(matches!(
            coordinator.report(1, "session-1", report_of(1, 2)),
            Answer::Excluded { .. }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn workers_of_another_run_are_refused() {
        let coordinator = Coordinator::new(settings(2, OnMissing::Fail));
        coordinator.register(&hello(0, 2));
        let other_plan = Hello {
            plan_digest: "run-2".into(),
            ..hello(1, 2)
        };
        for (hello, says) in [
            (other_plan, "plan digests differ"),
            (hello(1, 3), "--workers 3, the coordinator with --workers 2"),
            (
                Hello {
                    index: 2,
                    ..hello(1, 2)
                },
                "out of range",
            ),
        ] {
            let Answer::Mismatch { why } = coordinator.register(&hello) else {
                panic!("{hello:?} must be refused")
            };
            assert!(why.contains(says), "{why}");
        }
        // A report that is not the worker's own is refused too.
        coordinator.register(&hello(1, 2));
        assert!(matches!(
            coordinator.report(1, "session-1", report_of(0, 2)),
            Answer::Mismatch { .. }
        ));
    }
}
