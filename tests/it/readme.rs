//! The README's quick start runs as written: every ```sh block under "## Quick start"
//! runs in bash, in an empty folder (so the plans come from the binary, as for an
//! installed one), with this build's `keyclaim-harness` first on PATH. A block that
//! names a host outside the machine (`example.com`) is for reading, not run. Ports the
//! README fixes are swapped for free ones; anything a block leaves running is stopped.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::binary;

/// A block that has not finished by then hangs: kill it and fail.
const DEADLINE: Duration = Duration::from_secs(300);

/// The ```sh blocks of the README's section `heading`.
fn blocks(readme: &str, heading: &str) -> Vec<String> {
    let start = readme
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("README has no ## {heading}"));
    let section = &readme[start + 1..];
    let section = &section[..section[3..]
        .find("\n## ")
        .map_or(section.len(), |end| end + 3)];
    let mut found = Vec::new();
    let mut rest = section;
    while let Some(open) = rest.find("```sh\n") {
        let body = &rest[open + 6..];
        let close = body.find("```").expect("closed block");
        found.push(body[..close].to_owned());
        rest = &body[close + 3..];
    }
    found
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_quick_start_runs_as_written() {
    // Minutes of load and processes of its own: not beside the other heavy tests.
    let _heavy = common::heavy_test();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let blocks = blocks(&readme, "Quick start");
    assert!(blocks.len() >= 2, "{blocks:?}");
    let bin_dir = std::path::Path::new(binary::BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut ran = 0;
    for block in blocks.iter().filter(|b| !b.contains("example.com")) {
        let dir = tempfile::tempdir().unwrap();
        let mut script = block.replace("127.0.0.1:8080", &format!("127.0.0.1:{}", free_port()));
        for port in ["8081", "7450"] {
            script = script.replace(
                &format!("127.0.0.1:{port}"),
                &format!("127.0.0.1:{}", free_port()),
            );
        }
        // Stop what the block started in the background, whatever happens.
        let script =
            format!("set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{script}");
        let mut command = Command::new("bash");
        command
            .args(["-c", &script])
            .current_dir(dir.path())
            .env("PATH", &path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        binary::without_settings(&mut command);
        let mut child = command.spawn().expect("bash runs");
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > DEADLINE {
                child.kill().ok();
                panic!("this README block hung:\n{block}");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let output = child.wait_with_output().unwrap();
        assert!(
            status.success(),
            "this README block failed ({status}):\n{block}\n--- stdout\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        // What the blocks say they leave behind.
        if block.contains("merge ") {
            binary::assert_reports_written(&dir.path().join("reports/load-merged"));
        }
        ran += 1;
    }
    assert!(ran >= 2, "ran {ran} blocks");
}
