//! Runs the `keyclaim-harness` binary under a deadline: a run that does not end by
//! itself is killed and fails the test (a bound that catches hangs, not a speed
//! check). Output goes to files, so a chatty run cannot block on a full pipe.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_keyclaim-harness");

/// How often a running child is looked at.
const POLL: Duration = Duration::from_millis(20);

/// A finished run.
#[derive(Debug)]
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    /// The peak resident memory the child reached (VmHWM, KiB), where /proc has it.
    pub peak_rss_kib: Option<u64>,
}

pub struct Running {
    child: Child,
    started: Instant,
    /// Holds stdout.txt and stderr.txt.
    output: tempfile::TempDir,
}

/// Removes every KEYCLAIM_* setting the test process has from `command`'s environment,
/// so a developer's shell cannot change what a test runs.
pub fn without_settings(command: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("KEYCLAIM_") {
            command.env_remove(name);
        }
    }
    command
}

/// `keyclaim-harness ARGS...`, with no KEYCLAIM_* settings from the environment.
pub fn spawn(args: &[&str]) -> Running {
    let output = tempfile::tempdir().expect("tempdir");
    let stdout = std::fs::File::create(output.path().join("stdout.txt")).expect("stdout file");
    let stderr = std::fs::File::create(output.path().join("stderr.txt")).expect("stderr file");
    let mut command = Command::new(BIN);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    without_settings(&mut command);
    Running {
        child: command.spawn().expect("the binary starts"),
        started: Instant::now(),
        output,
    }
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the child handles SIGINT and SIGTERM itself (both bits set in
    /// `SigCgt` of /proc/PID/status). A signal sent earlier would meet the default
    /// action and kill the child outright, not test its shutdown. Fails the test past
    /// `limit`, or when /proc cannot say (these tests need Linux's /proc).
    pub fn wait_for_signal_handlers(&mut self, limit: Duration) {
        const SIGINT: u64 = 1 << (2 - 1);
        const SIGTERM: u64 = 1 << (15 - 1);
        let status_file = format!("/proc/{}/status", self.pid());
        let started = Instant::now();
        loop {
            if let Some(exit) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "exited ({exit}) before handling signals\nstderr:\n{}",
                    read(&self.output.path().join("stderr.txt"))
                );
            }
            let status = std::fs::read_to_string(&status_file)
                .unwrap_or_else(|err| panic!("{status_file}: {err}"));
            let caught = status
                .lines()
                .find_map(|line| line.strip_prefix("SigCgt:"))
                .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
                .unwrap_or_else(|| panic!("no SigCgt in {status_file}"));
            if caught & (SIGINT | SIGTERM) == SIGINT | SIGTERM {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "no SIGINT and SIGTERM handlers after {limit:?} (SigCgt {caught:x})\nstderr:\n{}",
                read(&self.output.path().join("stderr.txt"))
            );
            std::thread::sleep(POLL);
        }
    }

    /// How many sockets the child holds open (links to `socket:[...]` in
    /// /proc/PID/fd): for a run against its embedded server, each connection counts
    /// twice, once per end. Fails the test when /proc cannot say.
    pub fn open_sockets(&self) -> usize {
        let fds = format!("/proc/{}/fd", self.pid());
        std::fs::read_dir(&fds)
            .unwrap_or_else(|err| panic!("{fds}: {err}"))
            .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
            .filter(|target| target.to_string_lossy().starts_with("socket:"))
            .count()
    }

    /// The first line the child prints on stdout (e.g. `listening on http://...`),
    /// waited for up to `limit`; fails the test past it or when the child exits first.
    pub fn first_stdout_line(&mut self, limit: Duration) -> String {
        let path = self.output.path().join("stdout.txt");
        let started = Instant::now();
        loop {
            if let Some(line) = read(&path).lines().next()
                && read(&path).contains('\n')
            {
                return line.to_owned();
            }
            if let Some(exit) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "exited ({exit}) before printing a line\nstderr:\n{}",
                    read(&self.output.path().join("stderr.txt"))
                );
            }
            assert!(
                started.elapsed() < limit,
                "no stdout line after {limit:?}\nstderr:\n{}",
                read(&self.output.path().join("stderr.txt"))
            );
            std::thread::sleep(POLL);
        }
    }

    /// The first stderr line containing `needle`, waited for up to `limit`; fails the
    /// test past it or when the child exits first.
    pub fn stderr_line_with(&mut self, needle: &str, limit: Duration) -> String {
        let path = self.output.path().join("stderr.txt");
        let started = Instant::now();
        loop {
            let text = read(&path);
            if let Some(line) = text.lines().find(|line| line.contains(needle))
                && text.contains(&format!("{line}\n"))
            {
                return line.to_owned();
            }
            if let Some(exit) = self.child.try_wait().expect("try_wait") {
                panic!("exited ({exit}) before printing `{needle}`\nstderr:\n{text}");
            }
            assert!(
                started.elapsed() < limit,
                "no `{needle}` on stderr after {limit:?}\nstderr:\n{text}"
            );
            std::thread::sleep(POLL);
        }
    }

    /// Sends a signal by name ("TERM", "INT") with kill(1).
    pub fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -{name} {}", self.pid());
    }

    /// Waits for the exit; past `limit` the child is killed and the test fails.
    pub fn wait_bounded(mut self, limit: Duration) -> Finished {
        let status_file = format!("/proc/{}/status", self.pid());
        let mut peak_rss_kib = None;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            // VmHWM only grows, so the last reading before exit is the peak.
            if let Some(kib) = read_vm_hwm(&status_file) {
                peak_rss_kib = Some(kib);
            }
            if self.started.elapsed() > limit {
                self.child.kill().ok();
                self.child.wait().ok();
                panic!(
                    "still running after {limit:?}: killed\nstderr:\n{}",
                    read(&self.output.path().join("stderr.txt"))
                );
            }
            std::thread::sleep(POLL);
        };
        Finished {
            code: status.code(),
            stdout: read(&self.output.path().join("stdout.txt")),
            stderr: read(&self.output.path().join("stderr.txt")),
            elapsed: self.started.elapsed(),
            peak_rss_kib,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A test that failed before waiting leaves no process behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            self.child.kill().ok();
            self.child.wait().ok();
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn read_vm_hwm(status_file: &str) -> Option<u64> {
    let status = std::fs::read_to_string(status_file).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `keyclaim-harness serve` on a free loopback port, accepting `key`, with `extra`
/// arguments; killed when dropped.
pub struct Served {
    child: Child,
    /// `http://127.0.0.1:PORT`, from its `listening on` line.
    pub url: String,
}

pub fn serve(key: &str, extra: &[&str]) -> Served {
    use std::io::{BufRead, BufReader};
    // No rate limit unless a test asks (`extra`): load tests measure the server.
    let rate_limit: &[&str] = if extra.contains(&"--rate-limit") {
        &[]
    } else {
        &["--rate-limit", "0"]
    };
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--api-key", key])
        .args(rate_limit)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("serve prints where it listens");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_owned();
    Served { child, url }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// report.json in `dir`, parsed.
pub fn report(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("report.json"))
        .unwrap_or_else(|err| panic!("{}: {err}", dir.join("report.json").display()));
    serde_json::from_str(&text).expect("report.json is JSON")
}

/// The three reports every finished run writes.
pub fn assert_reports_written(dir: &Path) {
    for file in ["report.json", "junit.xml", "report.html"] {
        let path: PathBuf = dir.join(file);
        let size = std::fs::metadata(&path)
            .unwrap_or_else(|err| panic!("{} not written: {err}", path.display()))
            .len();
        assert!(size > 0, "{} is empty", path.display());
    }
}

/// A plan shipped in scenarios/.
pub fn plan(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(name)
        .to_string_lossy()
        .into_owned()
}
