//! `run --metrics-listen` and `serve --metrics-listen` against a real Prometheus text
//! parser: the Prometheus project's Python client (`prometheus_client`, its strict
//! OpenMetrics parser, through `openmetrics.py`) reads every scrape taken while a load
//! run goes on, and once the run says its counts are final, its request counts equal
//! report.json's, by scenario and by status, and the server's creates and validations
//! equal what the run saw answered.
//!
//! The parser: `KEYCLAIM_PROM_PYTHON` (a Python with `prometheus_client`; `.ci/run`
//! sets one up), else `python3` when it has the module, else a throwaway venv made
//! under `target/` with `pip install prometheus_client`. Without any, the test fails:
//! a green run means the endpoint was parsed.

use crate::common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::binary;
use serde_json::Value;

const KEY: &str = "kc_metrics_test_key_0123";
const DEADLINE: Duration = Duration::from_secs(180);
/// How often the endpoint is scraped while the run goes on.
const SCRAPE_EVERY: Duration = Duration::from_millis(250);

const PLAN: &str = r#"
[[scenario]]
name = "flow"
[scenario.load]
rate = 200
iterations = 800
duration = "60s"
[[scenario.step]]
create = { ttl = 30, save = "c" }
expect = { status = 200 }
[[scenario.step]]
validate = { challenge = "c", response = "hmac" }
expect = { status = 200, valid = true }
"#;

/// A Python that can `import prometheus_client`.
fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("KEYCLAIM_PROM_PYTHON") {
        return PathBuf::from(python);
    }
    let has_module = |python: &Path| {
        Command::new(python)
            .args(["-c", "import prometheus_client"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if has_module(Path::new("python3")) {
        return PathBuf::from("python3");
    }
    // One venv for every run of the tests, kept under target/.
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/prometheus-client-venv");
    let python = venv.join("bin/python");
    static MADE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _made = MADE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !has_module(&python) {
        let made = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "prometheus_client==0.26.0"])
                .status()
                .is_ok_and(|s| s.success());
        assert!(
            made && has_module(&python),
            "cannot set up Python's prometheus_client in {}: install it (pip install \
             prometheus_client) or set KEYCLAIM_PROM_PYTHON to a Python that has it",
            venv.display()
        );
    }
    python
}

/// One parsed sample.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// `text` through the real parser; fails the test when it does not parse.
fn parse(python: &Path, text: &str) -> Vec<Sample> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/openmetrics.py");
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the OpenMetrics parser refused the scrape: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            Sample {
                name: v["name"].as_str().unwrap().to_owned(),
                labels: v["labels"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect(),
                value: v["value"].as_f64().unwrap(),
            }
        })
        .collect()
}

/// GET http://ADDR/metrics; the body, after checking the status and content type.
fn scrape(url: &str) -> String {
    let addr = url
        .strip_prefix("http://")
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("not a metrics URL: {url}"));
    let mut stream = TcpStream::connect(addr).expect("the metrics endpoint accepts");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    // The answer is not chunked (axum sends a known length for a String body).
    body.to_owned()
}

fn sum(samples: &[Sample], name: &str, filter: impl Fn(&BTreeMap<String, String>) -> bool) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && filter(&s.labels))
        .map(|s| s.value)
        .sum()
}

#[test]
fn metrics_parse_during_a_run_and_end_equal_to_the_report() {
    let python = python();
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("metrics.toml");
    std::fs::write(&plan, PLAN).unwrap();
    let reports = dir.path().join("reports");

    // serve, with its own metrics listener: the second line says where.
    let mut server = Command::new(binary::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--api-key", KEY])
        .args(["--rate-limit", "0", "--metrics-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let mut next = || lines.next().expect("a line").expect("UTF-8");
    let url = next().strip_prefix("listening on ").unwrap().to_owned();
    let server_metrics = next().strip_prefix("metrics on ").unwrap().to_owned();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            self.0.kill().ok();
            self.0.wait().ok();
        }
    }
    let _server = Kill(server);

    let mut run = binary::spawn(&[
        "run",
        plan.to_str().unwrap(),
        "--target",
        &url,
        "--api-key",
        KEY,
        "--quiet",
        "--report-dir",
        reports.to_str().unwrap(),
        "--metrics-listen",
        "127.0.0.1:0",
        "--metrics-linger",
        "120s",
    ]);
    let line = run.stderr_line_with("metrics: serving ", DEADLINE);
    let run_metrics = line
        .split("metrics: serving ")
        .nth(1)
        .unwrap()
        .trim()
        .to_owned();

    // Scrape until the run says its counts are final; every scrape must parse.
    let started = Instant::now();
    let mut during = 0;
    let last = loop {
        assert!(started.elapsed() < DEADLINE, "the run never finished");
        let samples = parse(&python, &scrape(&run_metrics));
        let finished = sum(&samples, "keyclaim_load_run_finished", |_| true);
        let requests = sum(&samples, "keyclaim_load_requests_total", |_| true);
        if finished == 1.0 {
            break samples;
        }
        if requests > 0.0 {
            during += 1;
        }
        std::thread::sleep(SCRAPE_EVERY);
    };
    assert!(during > 0, "no scrape saw the run under way");

    let report = binary::report(&reports);
    let scenario = &report["scenarios"][0];
    let requests = scenario["requests"].as_u64().unwrap() as f64;
    assert!(requests >= 1_600.0, "{requests}");
    assert_eq!(
        sum(&last, "keyclaim_load_requests_total", |_| true),
        requests
    );
    for (status, n) in scenario["load"]["status_counts"].as_object().unwrap() {
        assert_eq!(
            sum(&last, "keyclaim_load_requests_total", |l| &l["status"]
                == status),
            n.as_f64().unwrap(),
            "status {status}"
        );
    }
    for step in scenario["load"]["steps"].as_array().unwrap() {
        let name = step["name"].as_str().unwrap();
        let of_step = |l: &BTreeMap<String, String>| l["step"] == name;
        assert_eq!(
            sum(&last, "keyclaim_load_requests_total", of_step),
            step["requests"].as_f64().unwrap(),
            "step {name}"
        );
        assert_eq!(
            sum(
                &last,
                "keyclaim_load_request_duration_seconds_count",
                of_step
            ),
            step["requests"].as_f64().unwrap(),
            "histogram of step {name}"
        );
    }
    let iterations = scenario["load"]["iterations"].as_f64().unwrap();
    assert_eq!(
        sum(&last, "keyclaim_load_iterations_total", |_| true),
        iterations
    );
    assert_eq!(sum(&last, "keyclaim_load_target_rate", |_| true), 200.0);
    assert_eq!(sum(&last, "keyclaim_load_in_flight", |_| true), 0.0);

    // The server counted what the run saw answered, and the open model's warm-up
    // (the creates sent before the clock started, not recorded).
    let server = parse(&python, &scrape(&server_metrics));
    let steps = scenario["load"]["steps"].as_array().unwrap();
    let warm_ups = scenario["load"]["generator"]["warm_up_requests"]
        .as_f64()
        .unwrap();
    assert!(warm_ups >= 1.0, "{}", scenario["load"]);
    assert_eq!(
        sum(&server, "keyclaim_server_creates_total", |_| true),
        steps[0]["requests"].as_f64().unwrap() - steps[0]["failed"].as_f64().unwrap() + warm_ups
    );
    assert_eq!(
        sum(
            &server,
            "keyclaim_server_validations_total",
            |l| l["verdict"] == "valid"
        ),
        steps[1]["requests"].as_f64().unwrap() - steps[1]["failed"].as_f64().unwrap()
    );
    assert!(sum(&server, "keyclaim_server_store_entries", |_| true) > 0.0);
    assert!(sum(&server, "keyclaim_server_store_memory_bytes", |_| true) > 0.0);

    // Ctrl-C ends the linger; the run had passed.
    run.signal("INT");
    let finished = run.wait_bounded(DEADLINE);
    assert_eq!(finished.code, Some(0), "{finished:?}");
}
