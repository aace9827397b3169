//! The load engine against a server that stalls on a schedule: the open model's
//! percentiles show the stalls at their analytical size (latency counts from each
//! intended start, so no coordinated omission), the closed model's users each see a
//! stall once however long it lasts, thresholds judge the run, and the HdrHistogram
//! files are written.
//!
//! Nothing here bounds how fast the machine is: the other tests of this binary load
//! both cores while these run. Counts are fixed by the plan (`iterations`), and each
//! latency bound follows from the injected stall, which load can only lengthen.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::binary;
use common::hostile::{self, Behaviour, COLD_START, SLOW_ANSWER};
use keyclaim_harness::metrics::Latency;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_keyclaim-harness");
const KEY: &str = "kc_load_test_key_0123";
/// A run that has not ended by then hangs: kill it and fail.
const DEADLINE: Duration = Duration::from_secs(120);

/// The server stalls every answer for `STALL` once every `STALL_EVERY`.
const STALL: Duration = Duration::from_millis(100);
const STALL_EVERY: Duration = Duration::from_secs(1);
/// Open-model arrivals: 500/s, 2,500 of them, so 5 s of intended starts.
const RATE: u64 = 500;
const ARRIVALS: u64 = 2_500;
/// Closed-model users, and how long they run (as in the plan).
const USERS: u64 = 4;
const CLOSED_FOR: Duration = Duration::from_secs(5);

/// The same create at a fixed arrival rate (open) and by a fixed set of users
/// (closed). The open model's iteration bound makes its counts exact; its duration
/// only stops a run that falls far behind.
fn stall_plan() -> String {
    let closed_for = humantime::format_duration(CLOSED_FOR);
    let open = creates_at_rate(
        "open",
        RATE,
        ARRIVALS,
        r#"thresholds = ["p99 < 50ms", "error_rate < 0.1%"]"#,
    );
    format!(
        r#"{open}
[[scenario]]
name = "closed"
[scenario.load]
users = {USERS}
duration = "{closed_for}"
[[scenario.step]]
create = {{ ttl = 30 }}
expect = {{ status = 200 }}
"#
    )
}

/// `serve` stalling every answer for [`STALL`] once every [`STALL_EVERY`].
fn stalling_server() -> binary::Served {
    binary::serve(
        KEY,
        &[
            "--pause-every",
            &humantime::format_duration(STALL_EVERY).to_string(),
            "--pause-for",
            &humantime::format_duration(STALL).to_string(),
        ],
    )
}

/// Runs `scenario` of [`stall_plan`] against `url`; returns the run and the
/// scenario's report.
fn load_run(url: &str, scenario: &str, dir: &Path) -> (binary::Finished, Value) {
    let plan = dir.join("stall.toml");
    std::fs::write(&plan, stall_plan()).expect("plan written");
    let reports = dir.join("reports");
    let args = [
        "run",
        plan.to_str().expect("UTF-8 path"),
        "--scenario",
        scenario,
        "--target",
        url,
        "--api-key",
        KEY,
        "--report-dir",
        reports.to_str().expect("UTF-8 path"),
    ];
    let run = binary::spawn(&args).wait_bounded(DEADLINE);
    let report = binary::report(&reports);
    (run, report["scenarios"][0].clone())
}

/// The scenario's whole-run latency histogram, from the report.
fn latency(scenario: &Value) -> Latency {
    Latency::decode(scenario["load"]["histogram"].as_str().expect("a histogram"))
        .expect("the report's histogram decodes")
}

fn ms(us: &Value) -> f64 {
    us.as_f64().expect("a number") / 1_000.0
}

/// Coordinated omission, made visible. Against the same stalls, the open model
/// times every arrival a stall holds up from when it was due, so its p99 shows the
/// stall; each closed-model user has one request in flight when a stall begins and
/// starts no other until it ends, so the closed model records one slow sample per
/// user per stall, however long the stall lasts, while its users stay busy.
#[test]
fn the_open_model_times_every_arrival_a_stall_holds_up_and_the_closed_model_one_per_user() {
    let _timing = crate::common::timing_test();
    let server = stalling_server();
    let stall_ms = STALL.as_secs_f64() * 1_000.0;
    // A sample at least this slow waited out (half) a stall.
    let stalled_us = (STALL / 2).as_micros() as u64;

    let open_dir = tempfile::tempdir().unwrap();
    let (run, open) = load_run(&server.url, "open", open_dir.path());
    let load = &open["load"];
    // Exact, whatever the machine's speed: the plan bounds the arrivals, none was
    // dropped (2,500 cannot reach max_in_flight), and each is one request.
    assert_eq!(load["iterations"], ARRIVALS, "{load}");
    assert_eq!(load["dropped"], 0, "{load}");
    assert_eq!(open["requests"], ARRIVALS, "{open}");
    assert_eq!(load["failed_requests"], 0, "{load}");
    // The 5 s of intended starts hold at least 4 whole stalls. An arrival due t ms
    // into a stall waits at least 100 - t ms (load only adds to that), so at least
    // 4 x (100 - w) / 2 arrivals wait w ms or more: 25 (1%) of them wait 87.5 ms.
    let open_p99_ms = ms(&open["latency_us"]["p99"]);
    assert!(
        open_p99_ms >= 0.8 * stall_ms,
        "open p99 {open_p99_ms} ms hides the {stall_ms} ms stalls"
    );
    // An arrival due as a stall began waited all of it.
    let open_max_ms = ms(&open["latency_us"]["max"]);
    assert!(open_max_ms >= 0.95 * stall_ms, "open max {open_max_ms} ms");
    // Every arrival due in a stall's first half waited half a stall: 25 per stall.
    let per_stall = RATE * (STALL / 2).as_millis() as u64 / 1_000;
    let open_stalled = latency(&open)
        .histogram()
        .count_between(stalled_us, u64::MAX);
    assert!(
        open_stalled >= 4 * per_stall,
        "only {open_stalled} open samples waited half a stall"
    );
    // Nine in ten arrivals are due outside a stall: timed from anything earlier than
    // their intended start, the median would be held up by a stall too.
    let open_p50_ms = ms(&open["latency_us"]["p50"]);
    assert!(open_p50_ms < stall_ms, "open p50 {open_p50_ms} ms");
    // The plan's `p99 < 50ms` is crossed: exit 1, and the console says which.
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert!(run.stdout.contains("p99 < 50ms"), "{}", run.stdout);
    let crossed = open["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "p99 < 50ms")
        .expect("the p99 threshold's check");
    assert_eq!(crossed["outcome"], "fail", "{crossed}");
    let reports = open_dir.path().join("reports");
    for file in ["open.hgrm", "open.hlog", "report.html", "junit.xml"] {
        assert!(reports.join(file).exists(), "{file}");
    }
    // One interval per second of the run, and together they hold every request.
    let intervals = load["intervals"].as_array().expect("intervals");
    assert!(intervals.len() >= 5, "{}", intervals.len());
    let in_intervals: u64 = intervals
        .iter()
        .map(|i| i["requests"].as_u64().expect("a count"))
        .sum();
    assert_eq!(in_intervals, ARRIVALS, "{load}");

    let closed_dir = tempfile::tempdir().unwrap();
    let (run, closed) = load_run(&server.url, "closed", closed_dir.path());
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    let closed_latency = latency(&closed);
    let histogram = closed_latency.histogram();
    assert_eq!(closed["requests"], histogram.len(), "{closed}");
    assert_eq!(closed["load"]["failed_requests"], 0, "{closed}");
    // The users stayed busy: the time spent in requests, over the run, is how many
    // were in flight on average (Little's law). More than USERS - 1 means every user
    // took part; at most USERS (plus the last requests, which end after the run's
    // duration) means no more than USERS did.
    let duration_s = closed["load"]["duration_s"].as_f64().expect("duration");
    assert_eq!(duration_s, CLOSED_FOR.as_secs_f64(), "{closed}");
    let busy_s = histogram.mean() * histogram.len() as f64 / 1e6;
    let in_flight = busy_s / duration_s;
    let last_s = histogram.max() as f64 / 1e6;
    assert!(
        in_flight > (USERS - 1) as f64 && in_flight <= USERS as f64 * (1.0 + last_s / duration_s),
        "{in_flight:.2} requests in flight on average, for {USERS} users"
    );
    // Each user was caught once by each stall: 5 s hold at least 4 whole stalls and
    // touch at most 6. (A sample slowed by load alone could add to the count, but it
    // would take dozens of 50 ms hiccups to double it.)
    let closed_stalled = histogram.count_between(stalled_us, u64::MAX);
    assert!(
        (4 * USERS..=2 * 6 * USERS).contains(&closed_stalled),
        "{closed_stalled} closed samples waited half a stall, for {USERS} users"
    );
    // The same stalls weigh far less in the closed model: a few samples per stall,
    // where the open model has one per arrival due in it.
    assert!(
        closed_stalled * 2 <= open_stalled,
        "closed {closed_stalled} vs open {open_stalled} samples that waited half a stall"
    );
}

#[test]
fn a_threshold_on_an_unknown_metric_is_a_plan_error() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("bad.toml");
    std::fs::write(
        &plan,
        "[[scenario]]\nname = \"x\"\n[scenario.load]\nusers = 1\nduration = \"1s\"\nthresholds = [\"latency < 5ms\"]\n[[scenario.step]]\ncreate = {}\n",
    )
    .unwrap();
    let output = Command::new(BIN).arg("run").arg(&plan).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.toml:6:") && stderr.contains("latency"),
        "{stderr}"
    );
}

#[test]
fn iterations_bound_a_run_and_thresholds_can_pass() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("flow.toml");
    std::fs::write(
        &plan,
        r#"
[[scenario]]
name = "flow"
[scenario.load]
users = 4
iterations = 300
thresholds = ["error_rate < 1%", "requests >= 600"]
[[scenario.step]]
create = { ttl = 30, save = "c" }
expect = { status = 200 }
[[scenario.step]]
validate = { challenge = "c", response = "hmac" }
expect = { status = 200, valid = true }
"#,
    )
    .unwrap();
    let output = Command::new(BIN)
        .arg("run")
        .arg(&plan)
        .arg("--report-dir")
        .arg(dir.path().join("r"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("r/report.json")).unwrap())
            .unwrap();
    let load = &report["scenarios"][0]["load"];
    assert_eq!(load["iterations"], 300);
    assert_eq!(report["scenarios"][0]["requests"], 600);
    assert_eq!(load["failed_requests"], 0);
    assert_eq!(load["steps"][1]["requests"], 300);
}

/// Runs `plan` (one open-model scenario) against `url`; returns the run and the
/// scenario's report.
fn open_run(url: &str, plan: &str, extra: &[&str], dir: &Path) -> (binary::Finished, Value) {
    let path = dir.join("open.toml");
    std::fs::write(&path, plan).expect("plan written");
    let reports = dir.join("reports");
    let mut args = vec![
        "run",
        path.to_str().expect("UTF-8 path"),
        "--target",
        url,
        "--api-key",
        KEY,
        "--report-dir",
        reports.to_str().expect("UTF-8 path"),
    ];
    args.extend_from_slice(extra);
    let run = binary::spawn(&args).wait_bounded(DEADLINE);
    let report = binary::report(&reports);
    (run, report["scenarios"][0].clone())
}

/// A scenario `name` of `arrivals` creates at `rate` a second (the open model), its
/// load table ending with `extra`; its duration only stops a run that falls far behind.
fn creates_at_rate(name: &str, rate: u64, arrivals: u64, extra: &str) -> String {
    format!(
        r#"
[[scenario]]
name = "{name}"
[scenario.load]
rate = {rate}
iterations = {arrivals}
duration = "60s"
{extra}
[[scenario.step]]
create = {{ ttl = 30 }}
expect = {{ status = 200 }}
"#
    )
}

/// No start-up transient: the open model opens its connections and sends each one
/// request (not recorded) before its clock starts, so not one arrival of the run waits
/// on a connect or a target's cold first answer. Against a target whose first answer on
/// each connection takes a second, every recorded latency stays well under it, and the
/// target saw exactly one extra request per pre-allocated connection.
#[test]
fn the_open_model_starts_its_clock_on_warm_connections() {
    // A second's worth of connections: the pool grows (and meets a cold answer) only
    // if the run falls a whole second behind.
    const PRE_ALLOCATED: u64 = 100;
    const ARRIVALS: u64 = 200;
    let server = hostile::start(Behaviour::ColdFirstAnswer);
    let dir = tempfile::tempdir().unwrap();
    let plan = creates_at_rate(
        "warm",
        100,
        ARRIVALS,
        &format!("pre_allocated = {PRE_ALLOCATED}"),
    );
    let (run, scenario) = open_run(&server.url, &plan, &[], dir.path());
    let load = &scenario["load"];
    assert_eq!(run.code, Some(0), "{}\n{scenario}", run.stdout);
    assert_eq!(load["iterations"], ARRIVALS, "{load}");
    assert_eq!(scenario["requests"], ARRIVALS, "{scenario}");
    let generator = &load["generator"];
    assert_eq!(generator["pre_allocated"], PRE_ALLOCATED, "{generator}");
    // A plan's pool is final: no latency probe.
    assert_eq!(generator["warm_up_requests"], PRE_ALLOCATED, "{generator}");
    assert_eq!(generator["connects_on_arrival_path"], 0, "{generator}");
    // A connection opened during the run (only when all 100 were busy at once) would
    // meet the cold answer: there is none, and each connection the target saw (besides
    // the run's reachability probe, one `GET /`) was warmed with one request before
    // the clock.
    const PROBE: u64 = 1;
    assert_eq!(generator["grown"], 0, "{generator}");
    assert_eq!(
        server.stats.connections(),
        PRE_ALLOCATED + PROBE,
        "{generator}"
    );
    assert_eq!(
        server.stats.requests(),
        ARRIVALS + PRE_ALLOCATED + PROBE,
        "{generator}"
    );
    let max_ms = ms(&scenario["latency_us"]["max"]);
    assert!(
        max_ms < COLD_START.as_secs_f64() * 1_000.0 / 2.0,
        "an arrival waited {max_ms} ms: on a cold connection"
    );
}

/// A slow target gets a pool sized for it before the clock starts: the warm-up measures
/// its latency, and the pool opens three times the rate times that latency (the
/// iterations in flight, by Little's law) instead of the default guess, which at 400/s
/// is one connection, so the run's first arrivals do not wait for the pool to grow.
#[test]
fn a_slow_targets_pool_is_sized_from_its_warm_up_latency() {
    const RATE: u64 = 400;
    const ARRIVALS: u64 = 400;
    let server = hostile::start(Behaviour::SlowAnswers);
    let dir = tempfile::tempdir().unwrap();
    let plan = creates_at_rate("slow", RATE, ARRIVALS, "");
    let (run, scenario) = open_run(&server.url, &plan, &[], dir.path());
    let load = &scenario["load"];
    assert_eq!(run.code, Some(0), "{}\n{scenario}", run.stdout);
    assert_eq!(load["iterations"], ARRIVALS, "{load}");
    // 400/s x 50 ms = 20 in flight, and the pool holds three times that. A loaded
    // machine only lengthens the measured latency, so the pool may be larger, never
    // smaller (up to the default cap).
    let in_flight = RATE * SLOW_ANSWER.as_millis() as u64 / 1_000;
    let warmed = load["generator"]["pre_allocated"].as_u64().unwrap_or(0);
    assert!((3 * in_flight..=1_000).contains(&warmed), "{load}");
}

/// The pool is sized from the target's latency on a warm connection, not from the
/// warm-up's own requests: against a target whose first answer on each connection
/// takes a second (and the rest come at once), 100/s keeps well under one iteration in
/// flight. Sized from the warm-up's latency, the pool would open 100 connections.
#[test]
fn the_pool_is_sized_from_the_targets_latency_on_a_warm_connection() {
    const RATE: u64 = 100;
    const ARRIVALS: u64 = 50;
    let server = hostile::start(Behaviour::ColdFirstAnswer);
    let dir = tempfile::tempdir().unwrap();
    let plan = creates_at_rate("cold", RATE, ARRIVALS, "");
    let (run, scenario) = open_run(&server.url, &plan, &[], dir.path());
    let load = &scenario["load"];
    assert_eq!(run.code, Some(0), "{}\n{scenario}", run.stdout);
    // One connection (100/s x the warm answers' latency x 3, rounded up); a loaded
    // machine's slower answers may ask for a few more, never for a cold start's worth.
    let generator = &load["generator"];
    let warmed = generator["pre_allocated"].as_u64().unwrap_or(0);
    let cold_start_worth = RATE * COLD_START.as_millis() as u64 / 1_000;
    assert!((1..cold_start_worth / 10).contains(&warmed), "{load}");
    // The probe's requests are counted with the warm-up's: the target saw those, the
    // run's reachability probe and the iterations, and nothing else.
    let before_clock = generator["warm_up_requests"].as_u64().unwrap_or(0);
    assert!(before_clock > warmed, "{generator}");
    assert_eq!(
        server.stats.requests(),
        ARRIVALS + before_clock + 1,
        "{generator}"
    );
}

/// At `max_in_flight`, an arrival that waited 2 ms for a connection is dropped and
/// counted, never queued for longer: against a target that never answers, the pool
/// grows to five connections, each starts one iteration, and the other arrivals of the
/// second are dropped, to the one.
#[test]
fn arrivals_beyond_max_in_flight_are_dropped_and_counted() {
    const IN_FLIGHT: u64 = 5;
    let server = hostile::start(Behaviour::Silent);
    let dir = tempfile::tempdir().unwrap();
    let plan = format!(
        r#"
[[scenario]]
name = "full"
[scenario.load]
rate = 100
duration = "1s"
max_in_flight = {IN_FLIGHT}
[[scenario.step]]
create = {{ ttl = 30 }}
expect = {{ status = 200 }}
"#
    );
    // The warm-up requests and the iterations time out after 2 s, past the second of
    // arrivals, so no connection comes free while they fall due.
    let (_, scenario) = open_run(&server.url, &plan, &["--timeout", "2s"], dir.path());
    let load = &scenario["load"];
    let (iterations, dropped) = (
        load["iterations"].as_u64().unwrap(),
        load["dropped"].as_u64().unwrap(),
    );
    // Every arrival is either begun or dropped and counted; never more begun than
    // max_in_flight. (The pool grows in the background, and on a loaded machine it may
    // reach max_in_flight only after some arrivals were already dropped.)
    // The last arrival is due 10 ms before the end; a clock running late on a loaded
    // machine may meet the end first.
    assert!((99..=100).contains(&(iterations + dropped)), "{load}");
    assert!((1..=IN_FLIGHT).contains(&iterations), "{load}");
    assert!(dropped >= 99 - IN_FLIGHT, "{load}");
    // The pool grew from its default (1 at 100/s) towards max_in_flight, never past it.
    let pool = load["generator"]["pre_allocated"].as_u64().unwrap_or(0)
        + load["generator"]["grown"].as_u64().unwrap_or(0);
    assert!((1..=IN_FLIGHT).contains(&pool), "{load}");
    assert!(iterations <= pool, "{load}");
}
