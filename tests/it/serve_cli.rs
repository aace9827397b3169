//! The `serve` and `keygen` commands as a user runs them: the binary, its output lines,
//! exit codes and signals.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_keyclaim-harness");

struct Served {
    child: Child,
    url: String,
    stderr: BufReader<std::process::ChildStderr>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn serve(args: &[&str]) -> Served {
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line: {first:?}"))
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let stderr = BufReader::new(child.stderr.take().unwrap());
    Served { child, url, stderr }
}

fn create(url: &str, key: &str) -> (u16, serde_json::Value) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .post(format!("{url}/api/challenge/create"))
            .json(&serde_json::json!({ "key": key }))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    })
}

fn wait_with_deadline(child: &mut Child, deadline: Duration) -> Option<std::process::ExitStatus> {
    let started = Instant::now();
    while started.elapsed() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn serve_prints_its_address_serves_and_stops_cleanly_on_sigterm() {
    let mut served = serve(&["--api-key", "kc_cli_key_1"]);
    let (status, body) = create(&served.url, "kc_cli_key_1");
    assert_eq!(status, 200, "{body}");
    let pid = served.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let exit = wait_with_deadline(&mut served.child, Duration::from_secs(10))
        .expect("exits after SIGTERM");
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn serve_without_keys_generates_one_and_says_so_on_stderr() {
    let mut served = serve(&[]);
    let mut line = String::new();
    served.stderr.read_line(&mut line).unwrap();
    let key = line
        .trim_end()
        .rsplit(' ')
        .next()
        .filter(|key| key.starts_with("kc_"))
        .unwrap_or_else(|| panic!("stderr: {line:?}"))
        .to_owned();
    assert_eq!(create(&served.url, &key).0, 200);
    assert_eq!(create(&served.url, "kc_other").0, 401);
}

/// One line per fault, in `Fault::ALL`'s order: its name, two spaces or more, and
/// what it breaks. Compared with the whole list, so an empty or short output fails.
#[test]
fn list_faults_prints_one_line_per_fault() {
    use keyclaim_harness::server::faults::Fault;
    let output = Command::new(BIN)
        .args(["serve", "--list-faults"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<(&str, &str)> = text
        .lines()
        .map(|line| {
            line.split_once("  ")
                .unwrap_or_else(|| panic!("no two spaces after the name: {line:?}"))
        })
        .collect();
    let names: Vec<&str> = lines.iter().map(|(name, _)| *name).collect();
    let expected: Vec<&str> = Fault::ALL.iter().map(|fault| fault.name()).collect();
    assert_eq!(names, expected, "{text}");
    assert!(names.contains(&"accept-replay"), "{text}");
    for (name, breaks) in &lines {
        assert!(
            !breaks.trim().is_empty(),
            "{name} says nothing it breaks: {text}"
        );
    }
}

#[test]
fn bad_arguments_exit_2_with_a_clear_message() {
    let fault = Command::new(BIN)
        .args(["serve", "--fault", "nope"])
        .output()
        .unwrap();
    assert_eq!(fault.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&fault.stderr).contains("accept-replay"));

    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, "[[key]]\nid = 5\n").unwrap();
    let bad_keys = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--keys"])
        .arg(&keys)
        .output()
        .unwrap();
    assert_eq!(bad_keys.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad_keys.stderr);
    assert!(
        stderr.contains("keys.toml") && stderr.contains("line 2"),
        "{stderr}"
    );

    let bad_prefix = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--api-key",
            "sk_live_secret_value",
        ])
        .output()
        .unwrap();
    assert_eq!(bad_prefix.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad_prefix.stderr);
    assert!(
        stderr.contains("kc_") && !stderr.contains("secret_value"),
        "{stderr}"
    );
}

#[test]
fn keygen_writes_a_pair_that_serve_uses_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("keys");
    let first = Command::new(BIN)
        .args(["keygen", "--out-dir"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(first.status.success(), "{first:?}");
    let again = Command::new(BIN)
        .args(["keygen", "--out-dir"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    let public = out.join("public.pem");
    let served = serve(&[
        "--rsa-api-key",
        "kc_cli_rsa",
        "--public-key",
        public.to_str().unwrap(),
    ]);
    let (status, body) = create(&served.url, "kc_cli_rsa");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["encrypted"], true, "{body}");
    let private = std::fs::read_to_string(out.join("private.pem")).unwrap();
    let private = keyclaim_harness::crypto::RsaPrivateKey::from_pem(&private).unwrap();
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body["challenge"].as_str().unwrap())
        .unwrap();
    assert_eq!(private.decrypt_oaep_sha256(&bytes).unwrap().len(), 64);
}
