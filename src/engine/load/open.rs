//! The open model's generator: connections opened and warmed before the clock starts,
//! a clock thread that releases arrivals as they fall due, and long-lived connection
//! tasks that take them in order.
//!
//! An arrival is a number `n`, due at `start + schedule.due(n)`; `next` is the first one
//! nobody has taken. A connection that finishes an iteration takes the next due arrival
//! with one compare-and-swap and starts it at once, without a message or a spawn; only
//! connections that found nothing due wait, and the clock wakes as many of them as
//! arrivals fell due at each tick. Every iteration keeps its own intended start, so
//! latency still counts from when it was due (no coordinated omission).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::aggregate::Sample;
use super::flow::{Flow, IterationState, Scheduled};
use super::progress::{LATE_AFTER, Progress};
use super::schedule::ArrivalSchedule;
use super::transport::{Target, UserConnection};
use crate::metrics::units;
use crate::plan::model::RateSchedule;
use crate::results::GeneratorFigures;

/// A guess at a local target's latency: the peak rate times this is a default pool's
/// size when nothing answers before the clock (and a low rate's one connection, which
/// is measured only when its first answer says one is too few; see [`prepare`]).
pub const LATENCY_ESTIMATE: Duration = Duration::from_micros(500);
/// A default pool covers this many times the target's measured latency at the peak
/// rate: room for answers slower than the probe's before arrivals wait for a
/// connection (a pool that proves too small still grows while the generator is idle).
/// Not more: every connection is another socket the generator polls and another set of
/// buffers in its cache, so where the generator's core is the bottleneck a pool larger
/// than the target needs lowers the rate it can hold. Against nginx on one core the
/// closed model drives as many requests a second with 10 connections as with 40, and
/// about a tenth fewer with 80; the open model held about 125,000/s with 60 connections
/// and 100,000/s with 170.
pub const LATENCY_HEADROOM: f64 = 3.0;
/// The default pool never exceeds this (a target's accept queue is finite); a plan's
/// `pre_allocated` may ask for more.
pub const DEFAULT_POOL_CAP: u32 = 1_000;
/// The latency probe (see [`prepare`]): requests one after another for
/// [`PROBE_SPAN`] and at least [`PROBE_MIN_REQUESTS`] of them, but never past
/// [`PROBE_BUDGET`] (at least one is sent) nor [`PROBE_MAX_REQUESTS`]. Long enough to
/// outlast a pause of the machine: on a virtual machine whose cores had been idle,
/// three requests in a row against nginx now and then all took 0.4 ms and more where
/// the target answers in 0.06 ms, and sized a 120,000/s pool at 180 connections
/// instead of 25.
const PROBE_SPAN: Duration = Duration::from_millis(20);
const PROBE_MIN_REQUESTS: usize = 3;
const PROBE_BUDGET: Duration = Duration::from_millis(200);
const PROBE_MAX_REQUESTS: usize = 1_000;
/// The clock checks for a stop at least this often while it sleeps.
const CLOCK_POLL: Duration = Duration::from_millis(20);
/// Connections hand their held samples to the aggregator at least this often, so the
/// live progress and the per-second timeline stay current.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Due arrivals the clock looks at per tick; the rest wait for its next tick.
const HANDOUT_MAX: u64 = 4_096;
/// The clock's shortest sleep while the generator is busy, and the longest. Every wake
/// of the clock costs its core two thread switches and usually a wake of the runtime
/// (several µs on a virtual machine), which at one wake per arrival capped the rate at
/// well under half of what the closed model drives. A busy generator sleeps longer and
/// hands out the arrivals due by then together; each still counts from its own due
/// time, so the report shows the delay this adds.
const TICK_FINEST: Duration = Duration::from_micros(50);
const TICK_COARSEST: Duration = Duration::from_millis(1);
/// How often the tick adapts, and the runtime threads' busy share above which it
/// doubles and below which it halves (below [`TICK_FINEST`], the clock sleeps to each
/// arrival exactly).
const TICK_ADAPT_EVERY: Duration = Duration::from_millis(10);
const TICK_COARSER_ABOVE: f64 = 0.6;
const TICK_FINER_BELOW: f64 = 0.4;

/// How many connections the open model opens and warms before its clock starts.
#[derive(Debug, Clone, Copy)]
pub struct PoolSize {
    /// The plan's `pre_allocated`, or the peak rate times [`LATENCY_ESTIMATE`] (at most
    /// [`DEFAULT_POOL_CAP`]); never more than `max_in_flight`.
    pub initial: u32,
    peak_rate: f64,
    /// What the default pool may reach: [`DEFAULT_POOL_CAP`] or `max_in_flight`.
    max: u32,
    /// No `pre_allocated`: the target's measured latency may ask for more.
    measured: bool,
}

impl PoolSize {
    pub fn for_plan(rate: &RateSchedule, max_in_flight: u32, pre_allocated: Option<u32>) -> Self {
        let peak_rate = match rate {
            RateSchedule::Constant(rate) => *rate,
            RateSchedule::Ramping { start, stages } => stages
                .iter()
                .map(|stage| stage.target)
                .fold(*start, f64::max),
        };
        let max = DEFAULT_POOL_CAP.min(max_in_flight.max(1));
        let initial = match pre_allocated {
            Some(size) => size.clamp(1, max_in_flight.max(1)),
            None => connections_for(peak_rate * LATENCY_ESTIMATE.as_secs_f64(), max),
        };
        Self {
            initial,
            peak_rate,
            max,
            measured: pre_allocated.is_none(),
        }
    }

    /// The default pool for a target whose requests took `latencies`: the peak rate
    /// times the fastest (Little's law: the iterations in flight at that rate) times
    /// [`LATENCY_HEADROOM`]. The fastest, because a pause of the machine or of the
    /// generator only ever adds to a request's latency (see [`PROBE_SPAN`]). The
    /// plan's `pre_allocated` is final.
    fn for_latencies(&self, latencies: &[Duration]) -> u32 {
        match latencies.iter().min() {
            Some(fastest) if self.measured => connections_for(
                self.peak_rate * fastest.as_secs_f64() * LATENCY_HEADROOM,
                self.max,
            ),
            _ => self.initial,
        }
    }
}

/// `in_flight` iterations' worth of connections, rounded up: at least 1, at most `max`.
fn connections_for(in_flight: f64, max: u32) -> u32 {
    in_flight.ceil().clamp(1.0, f64::from(max)) as u32
}

/// One pre-opened connection and its scratch space.
pub struct Ready {
    connection: UserConnection,
    state: IterationState,
    /// How long its warm-up request took, when it was answered.
    warm_up: Option<Duration>,
    /// Requests it sent before the clock (not recorded): its warm-up, and the latency
    /// probe's when it was the probe.
    requests_before_clock: u64,
}

impl Ready {
    pub fn requests_before_clock(&self) -> u64 {
        self.requests_before_clock
    }

    /// Sends the flow's first request (not recorded) and counts it; how long it took,
    /// when it was answered.
    async fn send_warm_up(&mut self, flow: &Flow) -> Option<Duration> {
        let sent = Instant::now();
        self.requests_before_clock += 1;
        flow.warm(&mut self.connection, &self.state)
            .await
            .then(|| sent.elapsed())
    }
}

/// Opens the pool's connections and sends each the flow's first request (not
/// recorded), so no arrival of the run waits on a connect or a cold path. A connection
/// that fails to open stays in the pool and connects on its first iteration.
///
/// A default pool is sized from the target's latency (see [`PoolSize::for_latencies`]),
/// measured on the first connection once it is warm: a few requests sent one after
/// another (not recorded either), which see the target alone. The rest then open at
/// once. Measuring on them instead would measure the generator: a hundred connects and
/// sends queue on its core before the first answer is read, which sized a fast
/// target's pool at twice what it needed. A pool the estimate says is one connection
/// probes only when its warm-up answer says one is too few, so a low rate against a
/// rate-limited key costs one request before the clock, not four.
pub async fn prepare(
    flow: &Flow,
    target: &Target,
    timeout: Duration,
    size: PoolSize,
) -> Vec<Ready> {
    if !size.measured {
        return open_and_warm(flow, target, timeout, size.initial).await;
    }
    let mut ready = open_and_warm(flow, target, timeout, 1).await;
    let first = &mut ready[0];
    let wanted = match first.warm_up {
        // Nothing answered: the estimate stands.
        None => size.initial,
        Some(warm_up) if size.initial == 1 && size.for_latencies(&[warm_up]) == 1 => 1,
        Some(_) => match probe_latency(flow, first).await {
            probed if probed.is_empty() => size.initial,
            probed => size.for_latencies(&probed),
        },
    };
    if wanted > 1 {
        ready.extend(open_and_warm(flow, target, timeout, wanted - 1).await);
    }
    ready
}

/// Opens and warms `count` connections at once.
async fn open_and_warm(flow: &Flow, target: &Target, timeout: Duration, count: u32) -> Vec<Ready> {
    let warm = (0..count).map(|_| async {
        let mut ready = Ready {
            connection: UserConnection::new(target.clone(), timeout),
            state: flow.new_state(),
            warm_up: None,
            requests_before_clock: 0,
        };
        if ready.connection.establish().await.is_ok() {
            ready.warm_up = ready.send_warm_up(flow).await;
        }
        ready
    });
    futures::future::join_all(warm).await
}

/// The latencies of warm-up requests sent one at a time on `probe` (see
/// [`PROBE_SPAN`]); they stop at the first that is not answered.
async fn probe_latency(flow: &Flow, probe: &mut Ready) -> Vec<Duration> {
    let started = Instant::now();
    let mut latencies = Vec::new();
    while latencies.len() < PROBE_MAX_REQUESTS {
        let elapsed = started.elapsed();
        let enough = latencies.len() >= PROBE_MIN_REQUESTS && elapsed >= PROBE_SPAN;
        if enough || (!latencies.is_empty() && elapsed >= PROBE_BUDGET) {
            break;
        }
        let Some(latency) = probe.send_warm_up(flow).await else {
            break;
        };
        latencies.push(latency);
    }
    latencies
}

/// The open model's inputs.
pub struct OpenRun {
    pub flow: Arc<Flow>,
    pub samples: mpsc::Sender<Vec<Sample>>,
    pub progress: Arc<Progress>,
    pub stop: CancellationToken,
    pub target: Target,
    pub timeout: Duration,
    pub schedule: ArrivalSchedule,
    pub start: Instant,
    pub duration: Option<Duration>,
    pub iterations: Option<u64>,
    pub max_in_flight: u64,
}

/// How the generator kept up, besides the counters in [`Progress`].
#[derive(Debug, Default, Clone, Copy)]
pub struct GeneratorCounts {
    /// Connections opened in the background during the run.
    pub grown: u64,
    /// Clock ticks at which every connection was busy but the pool did not grow,
    /// because the runtime's threads were busy.
    pub growth_deferred: u64,
    /// Connects an iteration waited on (a reconnect after the target closed one).
    pub connects_on_path: u64,
    /// Late iterations started by a connection that had been waiting idle.
    pub late_with_idle: u64,
    /// The clock thread's worst lateness waking from a sleep (the OS's timer slack and
    /// scheduling: with the generator's core busy, this grows).
    pub clock_lag_max: Duration,
    /// The clock's coarsest tick: how long it let due arrivals wait for a connection
    /// to be woken, at most, while the generator was busy.
    pub clock_tick_max: Duration,
    /// The share of the run the runtime's threads were busy (0 to 1).
    pub runtime_busy: f64,
}

/// What the clock and the connections share.
struct Shared {
    schedule: ArrivalSchedule,
    start: Instant,
    duration: Option<Duration>,
    iterations: Option<u64>,
    max_in_flight: u64,
    stop: CancellationToken,
    /// The first arrival nobody has taken (started or dropped). Taken strictly in order.
    next: AtomicU64,
    /// Connections waiting for an arrival.
    idle: AtomicU64,
    /// Connection tasks alive, counting one being opened.
    connections: AtomicU64,
    /// A connection is being opened in the background; one at a time.
    growing: AtomicBool,
    /// Wakes waiting connections: one per due arrival, or all at a flush or the end.
    wake: Notify,
    /// Bumped every [`FLUSH_EVERY`]; a connection that sees it change flushes.
    flush_epoch: AtomicU64,
    grown: AtomicU64,
    growth_deferred: AtomicU64,
    connects_on_path: AtomicU64,
    late_with_idle: AtomicU64,
    flow: Arc<Flow>,
    samples: mpsc::Sender<Vec<Sample>>,
    progress: Arc<Progress>,
    target: Target,
    timeout: Duration,
}

/// How many of `first`, `first + 1`, ... are due, at most `max`, where `is_due` holds
/// for `first` and for every arrival before one it holds for. A search rather than a
/// count: at 140,000/s a 1 ms tick finds 140 due, and one schedule lookup each was a
/// measurable part of the clock's work.
fn count_due(first: u64, max: u64, is_due: impl Fn(u64) -> bool) -> u64 {
    // Double until one is not due (or the cap), then halve the gap: the first `due`
    // are due, and the first `not_due` are not all due.
    let (mut due, mut step) = (1, 1);
    let mut not_due = loop {
        let probe = (due + step).min(max);
        if probe <= due {
            return due;
        }
        if !is_due(first + probe - 1) {
            break probe;
        }
        due = probe;
        step *= 2;
    };
    while not_due - due > 1 {
        let mid = due + (not_due - due) / 2;
        if is_due(first + mid - 1) {
            due = mid;
        } else {
            not_due = mid;
        }
    }
    due
}

enum Take {
    /// Arrival taken: when it was due, and `now`, when the generator began it.
    Due(Scheduled),
    /// Nothing due yet.
    NotYet,
    /// The schedule is over (or the run stopped).
    End,
}

impl Shared {
    /// When arrival `n` is due, or `None` when the run ends before it.
    fn due(&self, n: u64) -> Option<Instant> {
        if self.iterations.is_some_and(|max| n >= max) {
            return None;
        }
        let offset = self.schedule.due(n)?;
        if self.duration.is_some_and(|d| offset > d) {
            return None;
        }
        self.start.checked_add(offset)
    }

    fn take(&self, now: Instant) -> Take {
        let mut n = self.next.load(Ordering::Acquire);
        loop {
            if self.stop.is_cancelled() {
                return Take::End;
            }
            let Some(due) = self.due(n) else {
                return Take::End;
            };
            if due > now {
                return Take::NotYet;
            }
            match self
                .next
                .compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return Take::Due(Scheduled {
                        intended: due,
                        began: now,
                    });
                }
                Err(actual) => n = actual,
            }
        }
    }

    /// How many arrivals from `first` on (`first` itself due) are due by `now`, at most
    /// `max`.
    fn due_by(&self, first: u64, now: Instant, max: u64) -> u64 {
        count_due(first, max, |n| self.due(n).is_some_and(|at| at <= now))
    }

    /// Takes due arrivals that no connection can start (every one of `max_in_flight`
    /// is busy) and counts them dropped; at most `count`.
    fn drop_due(&self, now: Instant, count: u64) {
        for _ in 0..count {
            match self.take(now) {
                Take::Due(_) => {
                    self.progress.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Take::NotYet | Take::End => break,
            }
        }
    }
}

/// Runs the open model on the `ready` connections until the schedule ends or `stop`.
pub async fn drive(run: OpenRun, ready: Vec<Ready>) -> GeneratorCounts {
    let shared = Arc::new(Shared {
        schedule: run.schedule,
        start: run.start,
        duration: run.duration,
        iterations: run.iterations,
        max_in_flight: run.max_in_flight,
        stop: run.stop,
        next: AtomicU64::new(0),
        idle: AtomicU64::new(0),
        connections: AtomicU64::new(ready.len() as u64),
        growing: AtomicBool::new(false),
        wake: Notify::new(),
        flush_epoch: AtomicU64::new(0),
        grown: AtomicU64::new(0),
        growth_deferred: AtomicU64::new(0),
        connects_on_path: AtomicU64::new(0),
        late_with_idle: AtomicU64::new(0),
        flow: run.flow,
        samples: run.samples,
        progress: run.progress,
        target: run.target,
        timeout: run.timeout,
    });
    let runtime = tokio::runtime::Handle::current();
    let mut busy = RuntimeBusy::new(&runtime);
    let mut tasks = JoinSet::new();
    for Ready {
        connection, state, ..
    } in ready
    {
        tasks.spawn(serve_arrivals(Arc::clone(&shared), connection, state));
    }
    let (done, clock_result) = oneshot::channel();
    {
        let shared = Arc::clone(&shared);
        let runtime = runtime.clone();
        std::thread::spawn(move || {
            done.send(clock(&shared, &runtime)).ok();
        });
    }
    while tasks.join_next().await.is_some() {}
    let ClockEnd {
        grown: mut grown_tasks,
        lag_max: clock_lag_max,
        tick_max: clock_tick_max,
    } = clock_result.await.unwrap_or_default();
    while grown_tasks.join_next().await.is_some() {}
    GeneratorCounts {
        grown: shared.grown.load(Ordering::Relaxed),
        growth_deferred: shared.growth_deferred.load(Ordering::Relaxed),
        connects_on_path: shared.connects_on_path.load(Ordering::Relaxed),
        late_with_idle: shared.late_with_idle.load(Ordering::Relaxed),
        clock_lag_max,
        clock_tick_max,
        runtime_busy: busy.share_since_last(),
    }
}

/// A connection's life: take the next due arrival and run it; when none is due, wait
/// to be woken. Samples go to the aggregator in batches, as the closed model's do.
async fn serve_arrivals(
    shared: Arc<Shared>,
    mut connection: UserConnection,
    mut state: IterationState,
) {
    let mut epoch = shared.flush_epoch.load(Ordering::Relaxed);
    let mut woken = false;
    loop {
        let scheduled = match shared.take(Instant::now()) {
            Take::Due(scheduled) => scheduled,
            Take::End => break,
            Take::NotYet => {
                let now_epoch = shared.flush_epoch.load(Ordering::Relaxed);
                if now_epoch != epoch {
                    epoch = now_epoch;
                    Flow::flush(&mut state, &shared.samples).await;
                }
                let notified = shared.wake.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                shared.idle.fetch_add(1, Ordering::SeqCst);
                // An arrival that fell due between the take above and registering
                // would otherwise wait for the clock's next tick.
                let scheduled = match shared.take(Instant::now()) {
                    Take::Due(scheduled) => Some(scheduled),
                    Take::End => {
                        shared.idle.fetch_sub(1, Ordering::SeqCst);
                        break;
                    }
                    Take::NotYet => None,
                };
                if let Some(scheduled) = scheduled {
                    shared.idle.fetch_sub(1, Ordering::SeqCst);
                    scheduled
                } else {
                    tokio::select! {
                        biased;
                        () = notified.as_mut() => {}
                        () = shared.stop.cancelled() => {
                            shared.idle.fetch_sub(1, Ordering::SeqCst);
                            break;
                        }
                    }
                    shared.idle.fetch_sub(1, Ordering::SeqCst);
                    woken = true;
                    continue;
                }
            }
        };
        let progress = &shared.progress;
        progress.iterations.fetch_add(1, Ordering::Relaxed);
        progress.in_flight.fetch_add(1, Ordering::Relaxed);
        if scheduled.lag() > LATE_AFTER {
            progress.late.fetch_add(1, Ordering::Relaxed);
            if woken {
                shared.late_with_idle.fetch_add(1, Ordering::Relaxed);
            }
        }
        woken = false;
        let connects = connection.connects();
        shared
            .flow
            .run(
                &mut connection,
                &mut state,
                &shared.samples,
                Some(scheduled),
            )
            .await;
        let reconnects = connection.connects() - connects;
        if reconnects > 0 {
            shared
                .connects_on_path
                .fetch_add(reconnects, Ordering::Relaxed);
        }
        progress.in_flight.fetch_sub(1, Ordering::Relaxed);
        let now_epoch = shared.flush_epoch.load(Ordering::Relaxed);
        if now_epoch != epoch {
            epoch = now_epoch;
            Flow::flush(&mut state, &shared.samples).await;
        }
    }
    Flow::flush(&mut state, &shared.samples).await;
    shared.connections.fetch_sub(1, Ordering::SeqCst);
}

/// The clock thread: sleeps to each due arrival with the OS's fine timer (tokio's
/// timer wheel has 1 ms ticks, which would add up to 1 ms of false latency to every
/// sub-millisecond request), then wakes as many waiting connections as arrivals fell
/// due; connections that come free take the rest. While the generator is busy it
/// sleeps at least a tick (see [`TICK_FINEST`]); when arrivals starve, it grows the
/// pool or drops them (see [`relieve_starvation`]).
fn clock(shared: &Arc<Shared>, runtime: &tokio::runtime::Handle) -> ClockEnd {
    let mut grown = JoinSet::new();
    let mut lag_max = Duration::ZERO;
    let mut tick = Tick::new(runtime, first_tick(shared));
    // Arrivals below this were handed out (a connection woken or being opened for
    // them); the clock does not hand them out again.
    let mut handed: u64 = 0;
    let mut next_flush = Instant::now() + FLUSH_EVERY;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let mut cpu_then = (Instant::now(), process_cpu());
    // The share of its cores the process used over the last flush period; until it is
    // known (and where the OS does not say), the threads' busy time alone decides.
    let mut cpu_share = 1.0;
    // The threads' busy share over the same period; 0 until known, so the last tick's
    // share alone decides.
    let mut busy_over_flush = RuntimeBusy::new(runtime);
    let mut busy_share_over_flush = 0.0;
    // When the clock meant to wake from its last sleep.
    let mut wake_at: Option<Instant> = None;
    while !shared.stop.is_cancelled() {
        let now = Instant::now();
        if let Some(at) = wake_at.take() {
            lag_max = lag_max.max(now.saturating_duration_since(at));
        }
        tick.adapt(now);
        if now >= next_flush {
            shared.flush_epoch.fetch_add(1, Ordering::Relaxed);
            shared.wake.notify_waiters();
            next_flush = now + FLUSH_EVERY;
            let cpu_now = (now, process_cpu());
            if let (Some(before), Some(after)) = (cpu_then.1, cpu_now.1) {
                cpu_share = after.saturating_sub(before).as_secs_f64()
                    / ((now - cpu_then.0).as_secs_f64() * cores).max(1e-9);
            }
            cpu_then = cpu_now;
            busy_share_over_flush = busy_over_flush.share_since_last();
        }
        let generator_busy = generator_busy(tick.busy_share, busy_share_over_flush, cpu_share);
        relieve_starvation(shared, now, generator_busy, &mut grown, runtime);
        let head = shared.next.load(Ordering::Acquire);
        let first = head.max(handed);
        let Some(due) = shared.due(first) else {
            break;
        };
        if due > now {
            let nap = (due - now)
                .max(tick.length)
                .min(next_flush - now)
                .min(CLOCK_POLL);
            wake_at = Some(now + nap);
            std::thread::sleep(nap);
            continue;
        }
        let fresh = shared.due_by(first, now, HANDOUT_MAX);
        // Woken connections that have not taken their arrival yet are still counted
        // idle; do not count them twice.
        let waiting = handed.saturating_sub(head);
        let idle = shared.idle.load(Ordering::SeqCst).saturating_sub(waiting);
        for _ in 0..fresh.min(idle) {
            shared.wake.notify_one();
        }
        // The rest go to the first connection to come free; if none does for
        // STARVED_AFTER, `relieve_starvation` acts on a later tick.
        handed = first + fresh;
    }
    // Connections still waiting see the end (or the stop) when woken.
    shared.wake.notify_waiters();
    ClockEnd {
        grown,
        lag_max,
        tick_max: tick.max,
    }
}

/// How long the oldest untaken arrival may wait, with every connection busy, before
/// the clock opens another connection (or, at `max_in_flight`, drops it): longer than
/// the coarsest tick, so arrivals handed out together that connections finishing
/// within a tick take neither grow the pool nor count as dropped.
const STARVED_AFTER: Duration = Duration::from_millis(2);

/// When the oldest untaken arrival has waited [`STARVED_AFTER`] and every connection
/// is busy: opens one more connection in the background, or, with `max_in_flight`
/// busy, drops the arrivals that waited that long. A new connection helps only when
/// every one is waiting on the target; when the generator's own threads are busy it
/// would only add work (the run reports saturation instead).
fn relieve_starvation(
    shared: &Arc<Shared>,
    now: Instant,
    generator_busy: bool,
    grown: &mut JoinSet<()>,
    runtime: &tokio::runtime::Handle,
) {
    let Some(starved_since) = now.checked_sub(STARVED_AFTER) else {
        return;
    };
    let head = shared.next.load(Ordering::Acquire);
    if shared.due(head).is_none_or(|due| due > starved_since) {
        return;
    }
    let connections = shared.connections.load(Ordering::SeqCst);
    if shared.progress.in_flight.load(Ordering::SeqCst) < connections {
        return;
    }
    if connections >= shared.max_in_flight {
        shared.drop_due(starved_since, HANDOUT_MAX);
    } else if generator_busy {
        shared.growth_deferred.fetch_add(1, Ordering::Relaxed);
    } else if !shared.growing.swap(true, Ordering::SeqCst) {
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let shared = Arc::clone(shared);
        grown.spawn_on(
            async move {
                let mut connection = UserConnection::new(shared.target.clone(), shared.timeout);
                let state = shared.flow.new_state();
                // Connected but not warmed: arrivals are waiting for it, and a warm-up
                // against a slow target would hold the growth back. A failure here
                // surfaces on the first iteration's request.
                let _ = connection.establish().await;
                shared.grown.fetch_add(1, Ordering::Relaxed);
                shared.growing.store(false, Ordering::SeqCst);
                serve_arrivals(shared, connection, state).await;
            },
            runtime,
        );
    }
}

/// What the clock thread hands back: the connections it opened, its worst lag and its
/// coarsest tick.
#[derive(Default)]
struct ClockEnd {
    grown: JoinSet<()>,
    lag_max: Duration,
    tick_max: Duration,
}

/// The clock's shortest sleep, adapted to how busy the runtime's threads are.
struct Tick {
    length: Duration,
    max: Duration,
    /// The runtime threads' busy share over the last [`TICK_ADAPT_EVERY`]; until then,
    /// 1: the pool was just sized for the target, and a first 10 ms that knew nothing
    /// of the generator's load grew saturated runs' pools before it was known.
    busy_share: f64,
    busy: RuntimeBusy,
    next_adapt: Instant,
}

impl Tick {
    fn new(runtime: &tokio::runtime::Handle, length: Duration) -> Self {
        Self {
            length,
            max: Duration::ZERO,
            busy_share: 1.0,
            busy: RuntimeBusy::new(runtime),
            next_adapt: Instant::now() + TICK_ADAPT_EVERY,
        }
    }

    fn adapt(&mut self, now: Instant) {
        if now < self.next_adapt {
            return;
        }
        self.next_adapt = now + TICK_ADAPT_EVERY;
        self.busy_share = self.busy.share_since_last();
        self.length = next_tick(self.length, self.busy_share);
        self.max = self.max.max(self.length);
    }
}

/// The tick the clock starts with: the coarsest when the schedule's first arrivals
/// come closer together than [`TICK_FINEST`] (one wake per arrival would swamp the
/// generator before the tick had adapted, and it starts behind), else exact.
fn first_tick(shared: &Shared) -> Duration {
    const SPAN: u32 = 64;
    match (shared.due(0), shared.due(u64::from(SPAN))) {
        (Some(first), Some(last)) if (last - first) / SPAN < TICK_FINEST => TICK_COARSEST,
        _ => Duration::ZERO,
    }
}

/// The tick after one whose last [`TICK_ADAPT_EVERY`] kept the runtime `busy` (0 to 1).
fn next_tick(tick: Duration, busy: f64) -> Duration {
    if busy > TICK_COARSER_ABOVE {
        (tick * 2).clamp(TICK_FINEST, TICK_COARSEST)
    } else if busy < TICK_FINER_BELOW {
        let finer = tick / 2;
        if finer < TICK_FINEST {
            Duration::ZERO
        } else {
            finer
        }
    } else {
        tick
    }
}

/// The pool does not grow while, over the last [`TICK_ADAPT_EVERY`] or the last
/// [`FLUSH_EVERY`], the runtime's threads were busy at least this share of the time
/// and, over the last [`FLUSH_EVERY`], the process used at least [`GROW_BELOW_CPU`] of
/// its cores (the kernel charges CPU in 10 ms ticks, so the CPU share is the coarser
/// one). Above these, arrivals that wait for a connection wait for the generator's CPU,
/// and every connection added makes each request dearer, so a pool grown under load
/// kept growing until the generator fell behind for good. The longer window keeps one
/// quiet 10 ms (the threads parked through a stall of the machine) from growing a
/// busy generator's pool: at 140,000/s on one core, 38 connections grown that way
/// (on 70) were enough for the run to fall behind and stay behind.
const GROW_BELOW_BUSY: f64 = 0.6;
const GROW_BELOW_CPU: f64 = 0.5;

/// Whether the generator has no capacity to spare: its threads were busy (not parked)
/// over the last tick's window or the last flush period, and it used the CPU itself
/// (busy threads that another process kept off the CPU would not gain from fewer
/// connections). All three are shares from 0 to 1.
fn generator_busy(busy_over_tick: f64, busy_over_flush: f64, cpu: f64) -> bool {
    busy_over_tick.max(busy_over_flush) >= GROW_BELOW_BUSY && cpu >= GROW_BELOW_CPU
}

/// How busy the runtime's worker threads were (tokio counts each worker's time spent
/// not parked): the generator's own load, whatever else the machine runs.
pub struct RuntimeBusy {
    metrics: tokio::runtime::RuntimeMetrics,
    at: Instant,
    busy: Duration,
}

impl RuntimeBusy {
    pub fn new(runtime: &tokio::runtime::Handle) -> Self {
        let metrics = runtime.metrics();
        let busy = Self::total(&metrics);
        Self {
            metrics,
            at: Instant::now(),
            busy,
        }
    }

    fn total(metrics: &tokio::runtime::RuntimeMetrics) -> Duration {
        (0..metrics.num_workers())
            .map(|worker| metrics.worker_total_busy_duration(worker))
            .sum()
    }

    /// The share (0 to 1) of the time since the last call (or `new`) the workers were
    /// busy, averaged over the workers.
    pub fn share_since_last(&mut self) -> f64 {
        let (now, busy) = (Instant::now(), Self::total(&self.metrics));
        let wall = (now - self.at).as_secs_f64() * self.metrics.num_workers().max(1) as f64;
        let share = (busy.saturating_sub(self.busy).as_secs_f64() / wall.max(1e-9)).min(1.0);
        (self.at, self.busy) = (now, busy);
        share
    }
}

/// Late iterations at or above this share of all make the run suspect.
const LATE_SHARE: f64 = 0.01;
/// And at least this many: in a short run one late wake-up of a busy machine is 1% of
/// its iterations, but it is a hiccup, not a generator that cannot keep up.
const LATE_AT_LEAST: u64 = 5;
/// The generator's CPU (or its threads' busy time) at or above this share of its cores
/// means it had none to spare.
const BUSY_SHARE: f64 = 0.9;

/// Whether the generator, not the target, was the bottleneck, and the warning that
/// says so: at least 1% of iterations (and 5) began more than 10 ms late, and the generator
/// had no capacity to spare (its CPU or its threads' busy time at 90% or more of its
/// cores, or the pool could not grow because its threads were busy), or most late
/// iterations had a connection waiting idle (so no busy target held them up). Late
/// iterations with every connection busy and room to grow are the target's doing,
/// measured honestly from their intended start.
pub fn saturation(generator: &GeneratorFigures, iterations: u64, late: u64) -> Option<String> {
    if late < LATE_AT_LEAST || (late as f64) < LATE_SHARE * iterations as f64 {
        return None;
    }
    let mut why = Vec::new();
    if generator.runtime_busy >= BUSY_SHARE {
        why.push(format!(
            "its threads were busy {:.0}% of the time",
            100.0 * generator.runtime_busy
        ));
    } else if let Some(cpu) = generator.cpu_cores
        && cpu >= BUSY_SHARE * f64::from(generator.cores.max(1))
    {
        why.push(format!(
            "it used {:.0}% of its {} core{}",
            100.0 * cpu / f64::from(generator.cores.max(1)),
            generator.cores,
            if generator.cores == 1 { "" } else { "s" }
        ));
    }
    if generator.growth_deferred > 0 {
        why.push(format!(
            "{} time{} every connection was busy and it had no capacity to open another",
            generator.growth_deferred,
            if generator.growth_deferred == 1 {
                ""
            } else {
                "s"
            }
        ));
    }
    if generator.late_with_idle_connection * 2 >= late {
        why.push(format!(
            "{} of the late iterations had a connection waiting idle",
            generator.late_with_idle_connection
        ));
    }
    if why.is_empty() {
        return None;
    }
    Some(format!(
        "the load generator was the bottleneck, not the target: {late} of {iterations} iterations ({:.1}%) began more than {} ms late (start lag p99 {}, max {}; clock lag max {}) and {}. The latency figures include the generator's own delay: lower the rate, or spread it over more workers (--workers)",
        100.0 * late as f64 / iterations as f64,
        LATE_AFTER.as_millis(),
        units::readable(generator.start_lag_us.p99),
        units::readable(generator.start_lag_us.max),
        units::readable(generator.clock_lag_max_us),
        why.join(", and ")
    ))
}

/// CPU time (user + system) this process has used so far, where the OS says
/// (`/proc/self/stat` on Linux, in the kernel's fixed 100 ticks a second).
pub fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces and parentheses: fields count from its end.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime 14 and stime 15 (1-based, `man 5 proc`).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::model::Stage;

    #[test]
    fn the_default_pool_is_the_peak_rate_times_the_latency_estimate() {
        assert_eq!(
            PoolSize::for_plan(&RateSchedule::Constant(20_000.0), 10_000, None).initial,
            10
        );
        assert_eq!(
            PoolSize::for_plan(&RateSchedule::Constant(10.0), 10_000, None).initial,
            1
        );
        let ramp = RateSchedule::Ramping {
            start: 100.0,
            stages: vec![
                Stage {
                    duration: Duration::from_secs(1),
                    target: 4_000.0,
                },
                Stage {
                    duration: Duration::from_secs(1),
                    target: 0.0,
                },
            ],
        };
        assert_eq!(PoolSize::for_plan(&ramp, 10_000, None).initial, 2);
        // Capped by default and by max_in_flight; the plan's word wins within it.
        assert_eq!(
            PoolSize::for_plan(&RateSchedule::Constant(1e7), 10_000, None).initial,
            DEFAULT_POOL_CAP
        );
        assert_eq!(
            PoolSize::for_plan(&RateSchedule::Constant(90_000.0), 30, None).initial,
            30
        );
        assert_eq!(
            PoolSize::for_plan(&RateSchedule::Constant(10.0), 100, Some(64)).initial,
            64
        );
    }

    #[test]
    fn a_default_pool_covers_three_times_the_targets_latency_at_the_rate() {
        let size = PoolSize::for_plan(&RateSchedule::Constant(1_000.0), 10_000, None);
        let ms = |ms: &[u64]| {
            ms.iter()
                .map(|&ms| Duration::from_millis(ms))
                .collect::<Vec<_>>()
        };
        // 50 ms at 1,000/s keeps 50 in flight; answers held up by a pause do not count.
        assert_eq!(size.for_latencies(&ms(&[50, 900, 75])), 150);
        assert_eq!(size.for_latencies(&ms(&[0])), 1);
        // A fast target at a high rate: 0.07 ms at 140,000/s keeps 10 in flight.
        let fast = PoolSize::for_plan(&RateSchedule::Constant(140_000.0), 10_000, None);
        assert_eq!(fast.initial, 70);
        assert_eq!(fast.for_latencies(&[Duration::from_micros(70)]), 30);
        // Nothing answered: the estimate stands.
        assert_eq!(size.for_latencies(&[]), size.initial);
        // Never past max_in_flight or the default cap.
        let capped = PoolSize::for_plan(&RateSchedule::Constant(1_000.0), 30, None);
        assert_eq!(capped.for_latencies(&ms(&[50])), 30);
        let huge = PoolSize::for_plan(&RateSchedule::Constant(1e6), 1_000_000, None);
        assert_eq!(huge.for_latencies(&ms(&[50])), DEFAULT_POOL_CAP);
        // The plan's pre_allocated is final.
        let planned = PoolSize::for_plan(&RateSchedule::Constant(1_000.0), 100, Some(5));
        assert_eq!(planned.for_latencies(&ms(&[50])), 5);
    }

    #[test]
    fn the_tick_coarsens_while_the_generator_is_busy_and_returns_to_exact_when_idle() {
        let mut tick = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..7 {
            tick = next_tick(tick, 0.9);
            seen.push(tick.as_micros());
        }
        assert_eq!(seen, [50, 100, 200, 400, 800, 1_000, 1_000]);
        // Between the two bounds it holds; below the lower it halves, then sleeps to
        // each arrival exactly.
        assert_eq!(next_tick(tick, 0.5), tick);
        let mut finer = Vec::new();
        for _ in 0..6 {
            tick = next_tick(tick, 0.3);
            finer.push(tick.as_micros());
        }
        assert_eq!(finer, [500, 250, 125, 62, 0, 0]);
    }

    #[test]
    fn the_clock_counts_the_due_arrivals_up_to_its_cap() {
        for first in [0, 7, 1 << 40] {
            for due in 1..70 {
                for max in 1..70 {
                    let counted = count_due(first, max, |n| n < first + due);
                    assert_eq!(counted, due.min(max), "first {first}, {due} due, cap {max}");
                }
            }
        }
    }

    #[test]
    fn one_quiet_tick_does_not_grow_a_busy_generators_pool() {
        // Busy over the tick or over the flush period, on its own CPU: held back.
        assert!(generator_busy(0.9, 0.9, 0.9));
        assert!(generator_busy(0.9, 0.0, 0.9));
        // The threads parked through one 10 ms (a stall of the machine) while the last
        // 100 ms were busy: still held back.
        assert!(generator_busy(0.2, 0.9, 0.9));
        // Idle over both: the arrivals wait on the target, so the pool may grow.
        assert!(!generator_busy(0.2, 0.3, 0.9));
        // Busy threads another process kept off the CPU: growing costs the generator
        // nothing it has.
        assert!(!generator_busy(0.9, 0.9, 0.3));
    }

    #[test]
    fn process_cpu_counts_the_cpu_this_process_burns() {
        let before = process_cpu();
        if cfg!(not(target_os = "linux")) && before.is_none() {
            return; // Not offered here: the report leaves `cpu_cores` out.
        }
        let before = before.expect("/proc/self/stat is readable on Linux");
        // Spin until the kernel's 10 ms tick has charged this process at least twice.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut spins = 0_u64;
        while process_cpu().is_some_and(|now| now < before + Duration::from_millis(20)) {
            spins = std::hint::black_box(spins + 1);
            assert!(
                Instant::now() < deadline,
                "10 s of spinning charged no CPU time"
            );
        }
    }
}

#[cfg(test)]
mod saturation_tests {
    use super::*;
    use crate::results::LatencySummary;

    fn generator(cpu: f64, busy: f64, deferred: u64, late_idle: u64) -> GeneratorFigures {
        GeneratorFigures {
            pre_allocated: 100,
            warm_up_requests: 100,
            grown: 0,
            growth_deferred: deferred,
            connects_on_arrival_path: 0,
            start_lag_us: LatencySummary {
                p50: 50,
                p90: 400,
                p95: 400,
                p99: 25_000,
                p999: 40_000,
                max: 52_000,
            },
            late_with_idle_connection: late_idle,
            clock_lag_max_us: 300,
            clock_tick_max_us: 0,
            cpu_cores: Some(cpu),
            cores: 1,
            runtime_busy: busy,
            saturated: false,
        }
    }

    #[test]
    fn a_generator_without_capacity_to_spare_is_named_the_bottleneck() {
        let busy = saturation(&generator(0.97, 0.5, 0, 0), 10_000, 500).expect("saturated");
        assert!(busy.contains("500 of 10000 iterations (5.0%)"), "{busy}");
        assert!(busy.contains("97% of its 1 core"), "{busy}");
        assert!(busy.contains("start lag p99 25.0 ms"), "{busy}");
        let threads = saturation(&generator(0.5, 0.95, 0, 0), 10_000, 500).expect("saturated");
        assert!(threads.contains("busy 95% of the time"), "{threads}");
        let stuck = saturation(&generator(0.5, 0.5, 7, 0), 10_000, 500).expect("saturated");
        assert!(
            stuck.contains("7 times every connection was busy"),
            "{stuck}"
        );
        let idle = saturation(&generator(0.5, 0.5, 0, 300), 10_000, 500).expect("saturated");
        assert!(
            idle.contains("300 of the late iterations had a connection waiting idle"),
            "{idle}"
        );
    }

    #[test]
    fn late_iterations_behind_a_busy_target_or_under_one_percent_are_not_the_generators() {
        // Every connection busy with the target, room to grow, CPU to spare.
        assert_eq!(saturation(&generator(0.3, 0.2, 0, 10), 10_000, 500), None);
        // A busy generator that kept up: fewer than 1% late.
        assert_eq!(saturation(&generator(0.99, 0.99, 3, 99), 10_000, 99), None);
        assert_eq!(saturation(&generator(0.99, 0.99, 3, 0), 0, 0), None);
        // One late wake-up in a short run: 1 of 60 is over 1%, but a hiccup.
        assert_eq!(saturation(&generator(0.99, 0.99, 0, 1), 60, 1), None);
        assert!(saturation(&generator(0.99, 0.99, 0, 5), 60, 5).is_some());
    }
}
