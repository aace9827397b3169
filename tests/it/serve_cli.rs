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

/// Runs `serve` to its exit (killed, and the test failed, if it is still running after
/// `deadline`): its exit code and stderr.
fn serve_exit(args: &[&std::ffi::OsStr], deadline: Duration) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_with_deadline(&mut child, deadline);
    if status.is_none() {
        child.kill().ok();
        child.wait().ok();
    }
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let status = status.unwrap_or_else(|| panic!("serve still running: {stderr}"));
    (status.code(), stderr)
}

/// Every four-character piece of `secret`: none may appear in what serve prints.
fn pieces(secret: &str) -> Vec<&str> {
    (0..=secret.len() - 4).map(|i| &secret[i..i + 4]).collect()
}

#[test]
fn keys_file_errors_exit_2_with_file_line_and_column_and_no_part_of_a_secret() {
    const SECRET: &str = "Q9X7ZK2WJ4PV8RTM";
    const ID: &str = "kc_J3QZ8WXKH5NB";
    let files: Vec<(&str, String)> = vec![
        (
            "unclosed string",
            format!("[[key]]\nid = \"{ID}\"\nsecret = \"{SECRET}\n"),
        ),
        (
            "bare value",
            format!("[[key]]\nid = \"{ID}\"\nsecret = {SECRET}\n"),
        ),
        (
            "bare id",
            format!("[[key]]\nid = {ID}\nsecret = \"{SECRET}\"\n"),
        ),
        (
            "trailing text",
            format!("[[key]]\nid = \"{ID}\"\nsecret = \"{SECRET}\" x\n"),
        ),
        (
            "wrong type",
            format!("[[key]]\nid = \"{ID}\"\nrate_limit = \"{SECRET}\"\n"),
        ),
        (
            "secret as a field name",
            format!("[[key]]\nid = \"{ID}\"\n{SECRET} = 1\n"),
        ),
        (
            "quoted field name",
            format!("[[key]]\nid = \"{ID}\"\n\"{SECRET}\" = 1\n"),
        ),
        (
            "duplicate",
            format!("[[key]]\nid = \"{ID}\"\nsecret = \"{SECRET}\"\nsecret = \"{SECRET}\"\n"),
        ),
        (
            "bad table",
            format!("[[key]\nid = \"{ID}\"\nsecret = \"{SECRET}\"\n"),
        ),
        (
            "bad escape",
            format!("[[key]]\nid = \"{ID}\"\nsecret = \"{SECRET}\\q\"\n"),
        ),
        (
            "multi-line",
            format!("[[key]]\nid = \"{ID}\"\nsecret = \"\"\"{SECRET}\n"),
        ),
        (
            "literal",
            format!("[[key]]\nid = \"{ID}\"\nsecret = '{SECRET}\n"),
        ),
        (
            "tier",
            format!("[[key]]\nid = \"{ID}\"\ntier = \"{SECRET}\"\n"),
        ),
        (
            "array",
            format!("[[key]]\nid = \"{ID}\"\nsecret = [\"{SECRET}\"]\n"),
        ),
        ("top-level key", format!("key = \"{SECRET}\"\n")),
        (
            "inline",
            format!("[[key]]\nid = \"{ID}\", secret = \"{SECRET}\"\n"),
        ),
        ("missing id", format!("[[key]]\nsecret = \"{SECRET}\"\n")),
        (
            "table",
            format!("[[key]]\nid = \"{ID}\"\nsecret = {{ v = \"{SECRET}\" }}\n"),
        ),
        (
            "number",
            format!("[[key]]\nid = \"{ID}\"\nquota = 9{SECRET}\n"),
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut cases: Vec<(&str, Vec<u8>)> = files
        .into_iter()
        .map(|(name, text)| (name, text.into_bytes()))
        .collect();
    let mut not_utf8 = format!("[[key]]\nid = \"{ID}\"\nsecret = \"{SECRET}").into_bytes();
    not_utf8.extend_from_slice(b"\xff\"\n");
    cases.push(("not UTF-8", not_utf8));
    // One 10 MB line: the message must not grow with it.
    let long = format!(
        "[[key]]\nid = \"{ID}\"\nsecret = \"{}\n",
        SECRET.repeat(650_000)
    );
    cases.push(("10 MB line", long.into_bytes()));
    for (name, text) in cases {
        let path = dir.path().join("keys.toml");
        std::fs::write(&path, text).unwrap();
        let (code, stderr) = serve_exit(
            &["--keys".as_ref(), path.as_os_str()],
            Duration::from_secs(20),
        );
        assert_eq!(code, Some(2), "{name}: {stderr}");
        assert!(stderr.contains("keys.toml: line "), "{name}: {stderr}");
        assert!(stderr.contains(", column "), "{name}: {stderr}");
        assert!(stderr.len() < 500, "{name}: {} bytes", stderr.len());
        for piece in pieces(SECRET).into_iter().chain(pieces(&ID[3..])) {
            assert!(!stderr.contains(piece), "{name}: shows {piece:?}: {stderr}");
        }
    }
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
