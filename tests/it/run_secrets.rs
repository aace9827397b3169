//! No key or private-key material ever leaves a run (console, logs, reports) in any
//! encoding, and hostile answer text is escaped in the HTML report.

use std::path::Path;

use base64::Engine;
use keyclaim_harness::crypto::generate_key_pair;
use keyclaim_harness::server::faults::{Fault, FaultSet};
use keyclaim_harness::server::keys::{KeySpec, Tier};
use keyclaim_harness::server::{ServerConfig, spawn};

const BIN: &str = env!("CARGO_BIN_EXE_keyclaim-harness");
const PRIMARY: &str = "kc_live_primary_5a4b3c2d1e0f9a8b";
const SECONDARY: &str = "kc_live_second_0f1e2d3c4b5a6978";
const RSA_KEY: &str = "kc_live_rsa_77aa88bb99cc00dd11";
const HMAC_SECRET: &str = "hmac-secret-Zq8!w/x+y=z&more";

/// Every form a secret could leak in.
fn encodings(secret: &str) -> Vec<String> {
    let bytes = secret.as_bytes();
    let mut forms = vec![
        secret.to_owned(),
        serde_json::to_string(secret)
            .unwrap()
            .trim_matches('"')
            .to_owned(),
        url_encode(secret),
        hex::encode(bytes),
        hex::encode_upper(bytes),
    ];
    for engine in [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        // The stable middle of the encoding at each of the three byte alignments.
        for prefix in 0..3 {
            let mut shifted = vec![b'x'; prefix];
            shifted.extend_from_slice(bytes);
            let encoded = engine.encode(&shifted);
            let start = (prefix * 4).div_ceil(3) + 1;
            let end = encoded.trim_end_matches('=').len().saturating_sub(2);
            forms.push(encoded[start..end].to_owned());
        }
    }
    forms
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn all_output(dir: &Path, stdout: &[u8], stderr: &[u8]) -> Vec<(String, String)> {
    let mut texts = vec![
        (
            "stdout".to_owned(),
            String::from_utf8_lossy(stdout).into_owned(),
        ),
        (
            "stderr".to_owned(),
            String::from_utf8_lossy(stderr).into_owned(),
        ),
    ];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        texts.push((
            path.display().to_string(),
            std::fs::read_to_string(&path).unwrap(),
        ));
    }
    texts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_any_output_in_any_encoding() {
    let pair = generate_key_pair(2048).unwrap();
    let mut primary = KeySpec::new(PRIMARY, Tier::Pro);
    primary.secret = Some(HMAC_SECRET.into());
    let mut rsa = KeySpec::new(RSA_KEY, Tier::Pro);
    rsa.public_key_pem = Some(pair.public_spki_pem.clone());
    let mut config = ServerConfig::new(vec![primary, KeySpec::new(SECONDARY, Tier::Pro), rsa]);
    // Faults make scenarios fail, so the console and reports carry request evidence.
    config.faults = FaultSet::new([
        Fault::AcceptAnyResponse,
        Fault::CrossKey,
        Fault::WrongErrorCode,
    ]);
    config.rate_limit = 50;
    let server = spawn("127.0.0.1:0", config).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("private.pem");
    std::fs::write(&key_file, pair.private_pkcs8_pem.as_bytes()).unwrap();
    let reports = dir.path().join("reports");
    let output = tokio::process::Command::new(BIN)
        .arg("run")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/conformance.toml"))
        .args([
            "--target",
            &server.url(),
            "--api-key",
            PRIMARY,
            "--second-api-key",
            SECONDARY,
        ])
        .args([
            "--rsa-api-key",
            RSA_KEY,
            "--hmac-secret",
            HMAC_SECRET,
            "--burst",
            "400",
        ])
        .arg("--private-key")
        .arg(&key_file)
        .arg("--report-dir")
        .arg(&reports)
        .env("RUST_LOG", "debug")
        .output()
        .await
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );

    let mut secrets: Vec<String> = [PRIMARY, SECONDARY, RSA_KEY, HMAC_SECRET]
        .map(String::from)
        .to_vec();
    secrets.extend(
        pair.private_pkcs8_pem
            .lines()
            .filter(|line| !line.starts_with("-----") && line.len() >= 16)
            .map(String::from),
    );
    let texts = all_output(&reports, &output.stdout, &output.stderr);
    for report in ["report.json", "junit.xml", "report.html"] {
        assert!(
            texts.iter().any(|(place, _)| place.ends_with(report)),
            "{report} was not written, so not checked"
        );
    }
    assert!(
        texts.iter().any(|(_, text)| text.contains("[REDACTED]")),
        "evidence was shown and redacted"
    );
    for (place, text) in &texts {
        for secret in &secrets {
            for form in encodings(secret) {
                assert!(!text.contains(&form), "{place} leaks a secret as {form:?}");
            }
        }
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_target_fails_checks_and_its_text_is_escaped_in_html() {
    use axum::Router;
    use axum::response::IntoResponse;
    const HOSTILE: &str = "<script>alert(1)</script></pre><img src=x onerror=alert(1)>";
    async fn hostile() -> impl IntoResponse {
        ([("content-type", "text/html")], HOSTILE)
    }
    let app = Router::new().fallback(hostile);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });

    let dir = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(BIN)
        .arg("run")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/conformance.toml"))
        .args([
            "--target",
            &url,
            "--api-key",
            PRIMARY,
            "--burst",
            "50",
            "--timeout",
            "5s",
        ])
        .arg("--report-dir")
        .arg(dir.path())
        .output()
        .await
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(
        !html.contains("<script>alert(1)"),
        "raw hostile text in the HTML report"
    );
    assert!(
        !html.contains("<img src=x"),
        "raw hostile text in the HTML report"
    );
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the text is shown escaped"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["passed"], false);
    let scenarios = report["scenarios"].as_array().unwrap();
    assert!(!scenarios.is_empty());
    let skipped_or_failed = scenarios
        .iter()
        .all(|s| s["passed"] == false || s["skipped"] == true);
    assert!(
        skipped_or_failed,
        "nothing passes against a target that only answers HTML"
    );
}

/// A private key file that group or others can read gets a warning naming the file
/// and its mode, and the key itself is never printed.
#[test]
fn a_private_key_readable_by_others_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let pair = generate_key_pair(2048).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("private.pem");
    std::fs::write(&path, pair.private_pkcs8_pem.as_bytes()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    // A closed port: the run stops at the probe (exit 3), after the key was read.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = std::process::Command::new(BIN)
        .arg("run")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/conformance.toml"))
        .args(["--target", &format!("http://127.0.0.1:{port}")])
        .args(["--api-key", PRIMARY, "--rsa-api-key", RSA_KEY, "--quiet"])
        .arg("--private-key")
        .arg(&path)
        .arg("--report-dir")
        .arg(dir.path().join("reports"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("readable by group or others (mode 644); chmod 600 it"),
        "{stderr}"
    );
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    for line in pair.private_pkcs8_pem.lines().filter(|l| l.len() > 16) {
        assert!(!stderr.contains(line), "a private-key line was printed");
    }
}
