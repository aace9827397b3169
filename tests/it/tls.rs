//! HTTPS and HTTP/2 on loopback: certificates made here with rcgen (a private CA, a leaf
//! for 127.0.0.1, an expired one, one for another name, a client certificate), a TLS
//! front in this process (tokio-rustls in front of `serve`, byte for byte) or an h2
//! server, and the binary run against them with and without the TLS options.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use tokio::runtime::Runtime;

use crate::common::binary::{self, Finished};

const KEY: &str = "kc_tls_test_key_0123456789";
/// Bounds every run (a hang fails the test; no speed is asserted).
const DEADLINE: Duration = Duration::from_secs(120);

/// A private CA and the files the tests hand the binary.
struct Pki {
    dir: tempfile::TempDir,
    ca_params: CertificateParams,
    ca_key: KeyPair,
}

/// A certificate and its key, as PEM text.
struct Leaf {
    cert: String,
    key: String,
}

impl Pki {
    fn new() -> Pki {
        Pki::with_names(&[])
    }

    /// A CA whose own certificate also names `names` (to be misused as a leaf).
    fn with_names(names: &[&str]) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut ca_params = CertificateParams::new(names).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "keyclaim test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        Pki {
            dir,
            ca_params,
            ca_key,
        }
    }

    /// The CA's own certificate and key, as a leaf would be.
    fn ca_as_leaf(&self) -> Leaf {
        Leaf {
            cert: std::fs::read_to_string(self.ca_file()).unwrap(),
            key: self.ca_key.serialize_pem(),
        }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A leaf signed by the CA for `names`; expired when asked.
    fn leaf(&self, names: &[&str], expired: bool, client: bool) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        if client {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// Writes `leaf` as NAME.pem and NAME.key; returns their paths.
    fn write(&self, name: &str, leaf: &Leaf) -> (PathBuf, PathBuf) {
        let cert = self.dir.path().join(format!("{name}.pem"));
        let key = self.dir.path().join(format!("{name}.key"));
        std::fs::write(&cert, &leaf.cert).unwrap();
        std::fs::write(&key, &leaf.key).unwrap();
        (cert, key)
    }

    /// A server config presenting `leaf`, requiring a client certificate from this CA
    /// when asked, offering `alpn`.
    fn server(
        &self,
        leaf: &Leaf,
        require_client: bool,
        alpn: &[&[u8]],
    ) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if require_client {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_file(self.ca_file()).unwrap())
                .unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let chain = vec![CertificateDer::from_pem_slice(leaf.cert.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).unwrap();
        let mut config = builder.with_single_cert(chain, key).unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// A runtime for the servers this process runs while the binary is driven.
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A TLS front on a free loopback port: each connection's TLS is ended here and its
/// bytes go to `backend` (plain HTTP). Returns its port.
fn tls_front(runtime: &Runtime, config: Arc<rustls::ServerConfig>, backend: SocketAddr) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                tokio::io::copy_bidirectional(&mut tls, &mut plain)
                    .await
                    .ok();
            });
        }
    });
    port
}

/// `serve` behind a [`tls_front`] whose certificate, from a fresh private CA, names
/// `names`; with `client_auth` the front requires a client certificate.
struct TlsServe {
    pki: Pki,
    served: binary::Served,
    port: u16,
    runtime: Runtime,
}

impl TlsServe {
    fn start(names: &[&str], client_auth: bool) -> Self {
        let pki = Pki::new();
        let served = binary::serve(KEY, &[]);
        let runtime = runtime();
        let leaf = pki.leaf(names, false, false);
        let port = tls_front(
            &runtime,
            pki.server(&leaf, client_auth, &[b"http/1.1"]),
            served_addr(&served.url),
        );
        Self {
            pki,
            served,
            port,
            runtime,
        }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

/// An HTTP/2 server answering every request with a created challenge, over TLS (ALPN
/// h2) when `config` is given, else by prior knowledge. Counts the HTTP/2 requests.
fn h2_server(
    runtime: &Runtime,
    config: Option<Arc<rustls::ServerConfig>>,
) -> (u16, Arc<AtomicU64>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&seen);
    runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        while let Ok((stream, _)) = listener.accept().await {
            let (config, counter) = (config.clone(), Arc::clone(&counter));
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    if request.version() == http::Version::HTTP_2 {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    async {
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from_static(
                                    br#"{"challenge":"00112233445566778899aabbccddeeff","expires_in":30}"#,
                                )))
                                .unwrap(),
                        )
                    }
                });
                let builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                match config {
                    Some(config) => {
                        if let Ok(tls) = tokio_rustls::TlsAcceptor::from(config).accept(stream).await {
                            builder.serve_connection(TokioIo::new(tls), service).await.ok();
                        }
                    }
                    None => {
                        builder.serve_connection(TokioIo::new(stream), service).await.ok();
                    }
                }
            });
        }
    });
    (port, seen)
}

fn served_addr(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").parse().unwrap()
}

/// A load plan: `users` closed-model users, a bounded number of iterations.
fn load_plan(dir: &Path, create_only: bool) -> PathBuf {
    let validate = if create_only {
        ""
    } else {
        r#"
[[scenario.step]]
validate = { challenge = "c", response = "hmac" }
expect = { status = 200, valid = true }
"#
    };
    let plan = dir.join("load.toml");
    std::fs::write(
        &plan,
        format!(
            r#"
[[scenario]]
name = "tls-load"
[scenario.load]
users = 4
iterations = 200
[[scenario.step]]
create = {{ ttl = 30, save = "c" }}
expect = {{ status = 200 }}
{validate}"#
        ),
    )
    .unwrap();
    plan
}

/// `run` against `target` with `extra`; the run, and report.json (Null when none).
fn run(plan: &Path, target: &str, extra: &[&str], dir: &Path) -> (Finished, Value) {
    let reports = dir.join(format!("reports-{}", rand_suffix()));
    let mut args = vec![
        "run",
        plan.to_str().unwrap(),
        "--target",
        target,
        "--api-key",
        KEY,
        "--timeout",
        "5s",
        "--report-dir",
        reports.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let finished = binary::spawn(&args).wait_bounded(DEADLINE);
    let report = std::fs::read_to_string(reports.join("report.json"))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(Value::Null);
    (finished, report)
}

fn rand_suffix() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn conformance_plan() -> PathBuf {
    PathBuf::from(binary::plan("conformance.toml"))
}

const CONFORMANCE_SUBSET: [&str; 4] = [
    "--scenario",
    "create-answer",
    "--scenario",
    "unknown-endpoint",
];

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_private_ca_target_passes_with_cacert_and_fails_clearly_without() {
    let front = TlsServe::start(&["127.0.0.1", "localhost"], false);
    let target = front.url();
    let dir = tempfile::tempdir().unwrap();
    let ca = front.pki.ca_file();

    let mut args = vec!["--cacert", path(&ca)];
    args.extend(CONFORMANCE_SUBSET);
    let (conformance, report) = run(&conformance_plan(), &target, &args, dir.path());
    assert_eq!(
        conformance.code,
        Some(0),
        "{}\n{}",
        conformance.stdout,
        conformance.stderr
    );
    assert_eq!(report["passed"], true);
    assert!(
        report.get("insecure").is_none(),
        "only an insecure run says so"
    );

    let (load, report) = run(
        &load_plan(dir.path(), false),
        &target,
        &["--cacert", path(&ca)],
        dir.path(),
    );
    assert_eq!(load.code, Some(0), "{}\n{}", load.stdout, load.stderr);
    let figures = &report["scenarios"][0]["load"];
    assert_eq!(figures["protocol"], "http/1.1");
    assert_eq!(figures["failed_requests"], 0, "{figures}");
    assert_eq!(report["scenarios"][0]["requests"], 400);
    assert!(load.stdout.contains("http/1.1"), "{}", load.stdout);

    // The plan's `[plan] cacert`, relative to the plan file, does what --cacert does.
    let planned = front.pki.dir.path().join("with-ca.toml");
    let text = std::fs::read_to_string(load_plan(dir.path(), false)).unwrap();
    std::fs::write(&planned, format!("[plan]\ncacert = \"ca.pem\"\n{text}")).unwrap();
    let (load, _) = run(&planned, &target, &[], dir.path());
    assert_eq!(load.code, Some(0), "{}\n{}", load.stdout, load.stderr);

    // Without the CA: exit 3, and the words say what failed and which flag fixes it.
    let (refused, report) = run(
        &conformance_plan(),
        &target,
        &CONFORMANCE_SUBSET,
        dir.path(),
    );
    assert_eq!(refused.code, Some(3), "{}", refused.stderr);
    for words in ["127.0.0.1", "unknown CA", "--cacert", "--insecure"] {
        assert!(
            refused.stderr.contains(words),
            "{words}: {}",
            refused.stderr
        );
    }
    let message = report["scenarios"][0]["checks"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("unknown CA") && message.contains("--cacert"),
        "{message}"
    );
}

#[test]
fn insecure_skips_verification_and_says_so_loudly() {
    let front = TlsServe::start(&["127.0.0.1"], false);
    let dir = tempfile::tempdir().unwrap();
    let (finished, report) = run(
        &load_plan(dir.path(), false),
        &front.url(),
        &["--insecure"],
        dir.path(),
    );
    assert_eq!(
        finished.code,
        Some(0),
        "{}\n{}",
        finished.stdout,
        finished.stderr
    );
    assert!(
        finished.stderr.contains("WARNING: --insecure"),
        "{}",
        finished.stderr
    );
    assert_eq!(report["insecure"], true);
    assert_eq!(report["scenarios"][0]["load"]["failed_requests"], 0);
}

#[test]
fn name_mismatch_expired_and_ca_as_leaf_each_say_what_failed() {
    let pki = Pki::new();
    let served = binary::serve(KEY, &[]);
    let runtime = runtime();
    let backend = served_addr(&served.url);
    let dir = tempfile::tempdir().unwrap();
    let ca = pki.ca_file();
    let cases = [
        (
            pki.leaf(&["api.example.test"], false, false),
            "name mismatch",
        ),
        (pki.leaf(&["127.0.0.1"], true, false), "has expired"),
    ];
    let ca_pki = Pki::with_names(&["127.0.0.1"]);
    let ca_leaf = ca_pki.ca_as_leaf();
    let cases = cases
        .into_iter()
        .map(|(leaf, words)| (pki.server(&leaf, false, &[b"http/1.1"]), ca.clone(), words))
        .chain([(
            ca_pki.server(&ca_leaf, false, &[b"http/1.1"]),
            ca_pki.ca_file(),
            "CA certificate used as the server's own",
        )]);
    for (config, ca, words) in cases {
        let port = tls_front(&runtime, config, backend);
        let (finished, _) = run(
            &conformance_plan(),
            &format!("https://127.0.0.1:{port}"),
            &["--cacert", path(&ca), "--scenario", "create-answer"],
            dir.path(),
        );
        eprintln!("{words}: {}", finished.stderr.trim());
        assert_eq!(finished.code, Some(3), "{words}: {}", finished.stderr);
        assert!(
            finished.stderr.contains(words),
            "{words}: {}",
            finished.stderr
        );
        assert!(finished.stderr.contains("127.0.0.1"), "{}", finished.stderr);
        assert!(
            finished.stderr.contains("--insecure"),
            "{}",
            finished.stderr
        );
    }
}

#[test]
fn tls_and_plain_http_mixed_up_say_which_scheme_to_use() {
    let front = TlsServe::start(&["127.0.0.1"], false);
    let dir = tempfile::tempdir().unwrap();
    let ca = front.pki.ca_file();
    let args = ["--cacert", path(&ca), "--scenario", "create-answer"];

    let https_to_plain = front.served.url.replacen("http://", "https://", 1);
    let (finished, _) = run(&conformance_plan(), &https_to_plain, &args, dir.path());
    assert_eq!(finished.code, Some(3), "{}", finished.stderr);
    assert!(
        finished
            .stderr
            .contains("the target answered plain HTTP on a TLS connection: use http://"),
        "{}",
        finished.stderr
    );

    let http_to_tls = format!("http://127.0.0.1:{}", front.port);
    let (finished, _) = run(&conformance_plan(), &http_to_tls, &args, dir.path());
    assert_eq!(finished.code, Some(3), "{}", finished.stderr);
    assert!(
        finished.stderr.contains("use https://"),
        "{}",
        finished.stderr
    );
}

#[test]
fn client_certificates_are_sent_when_the_server_requires_them() {
    let front = TlsServe::start(&["127.0.0.1"], true);
    let target = front.url();
    let dir = tempfile::tempdir().unwrap();
    let ca = front.pki.ca_file();
    let (cert, key) = front
        .pki
        .write("client", &front.pki.leaf(&["harness.test"], false, true));

    let mut args = vec![
        "--cacert",
        path(&ca),
        "--cert",
        path(&cert),
        "--key",
        path(&key),
    ];
    args.extend(CONFORMANCE_SUBSET);
    let (accepted, report) = run(&conformance_plan(), &target, &args, dir.path());
    assert_eq!(
        accepted.code,
        Some(0),
        "{}\n{}",
        accepted.stdout,
        accepted.stderr
    );
    assert_eq!(report["passed"], true);

    let (load, report) = run(
        &load_plan(dir.path(), false),
        &target,
        &[
            "--cacert",
            path(&ca),
            "--cert",
            path(&cert),
            "--key",
            path(&key),
        ],
        dir.path(),
    );
    assert_eq!(load.code, Some(0), "{}\n{}", load.stdout, load.stderr);
    assert_eq!(report["scenarios"][0]["load"]["failed_requests"], 0);

    // Without one the server refuses, and the words name the flags.
    let mut args = vec!["--cacert", path(&ca)];
    args.extend(CONFORMANCE_SUBSET);
    let (refused, report) = run(&conformance_plan(), &target, &args, dir.path());
    assert_ne!(refused.code, Some(0), "{}", refused.stderr);
    let text = format!("{}{}{report}", refused.stdout, refused.stderr);
    assert!(text.contains("--cert"), "{text}");
    // The key's content appears nowhere.
    let key_text = std::fs::read_to_string(&key).unwrap();
    let body = key_text.lines().nth(1).unwrap();
    assert!(!accepted.stdout.contains(body) && !accepted.stderr.contains(body));
}

#[test]
fn http2_load_runs_end_to_end_over_tls_and_prior_knowledge() {
    let pki = Pki::new();
    let runtime = runtime();
    let leaf = pki.leaf(&["127.0.0.1"], false, false);
    let (tls_port, tls_seen) = h2_server(&runtime, Some(pki.server(&leaf, false, &[b"h2"])));
    let (plain_port, plain_seen) = h2_server(&runtime, None);
    let dir = tempfile::tempdir().unwrap();
    let ca = pki.ca_file();
    let plan = load_plan(dir.path(), true);
    for (target, extra, seen) in [
        (
            format!("https://127.0.0.1:{tls_port}"),
            vec!["--http2", "--cacert", path(&ca)],
            &tls_seen,
        ),
        (
            format!("http://127.0.0.1:{plain_port}"),
            vec!["--http2"],
            &plain_seen,
        ),
    ] {
        let (finished, report) = run(&plan, &target, &extra, dir.path());
        assert_eq!(
            finished.code,
            Some(0),
            "{target}: {}\n{}",
            finished.stdout,
            finished.stderr
        );
        let figures = &report["scenarios"][0]["load"];
        assert_eq!(figures["protocol"], "h2", "{figures}");
        assert_eq!(figures["failed_requests"], 0, "{figures}");
        assert_eq!(report["scenarios"][0]["requests"], 200);
        // Every load request arrived as HTTP/2 (the probe adds one).
        assert!(seen.load(Ordering::Relaxed) >= 200, "{target}: {seen:?}");
        assert!(finished.stdout.contains("h2"), "{}", finished.stdout);
    }
}

#[test]
fn bad_pem_files_exit_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("not-a-ca.pem");
    std::fs::write(&bad, "this is not PEM").unwrap();
    let (finished, _) = run(
        &conformance_plan(),
        "https://127.0.0.1:9",
        &["--cacert", path(&bad)],
        dir.path(),
    );
    assert_eq!(finished.code, Some(2), "{}", finished.stderr);
    assert!(
        finished.stderr.contains("not-a-ca.pem"),
        "{}",
        finished.stderr
    );
    assert!(finished.stderr.contains("--cacert"), "{}", finished.stderr);

    let pki = Pki::new();
    let (cert, _) = pki.write("client", &pki.leaf(&["harness.test"], false, true));
    let key = dir.path().join("client.key");
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nTOPSECRETKEYBYTES\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let (finished, _) = run(
        &conformance_plan(),
        "https://127.0.0.1:9",
        &["--cert", path(&cert), "--key", path(&key)],
        dir.path(),
    );
    assert_eq!(finished.code, Some(2), "{}", finished.stderr);
    assert!(
        finished.stderr.contains("client.key"),
        "{}",
        finished.stderr
    );
    assert!(
        !finished.stderr.contains("TOPSECRET"),
        "{}",
        finished.stderr
    );
}

#[test]
fn a_reconnect_resumes_the_tls_session() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let front = TlsServe::start(&["127.0.0.1"], false);
    let tls = keyclaim_harness::tls::Tls::new(&keyclaim_harness::tls::TlsOptions {
        cacert: Some(front.pki.ca_file()),
        ..Default::default()
    })
    .unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(tls.config()));
    let kinds = front.runtime.block_on(async {
        let mut kinds = Vec::new();
        for _ in 0..2 {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", front.port))
                .await
                .unwrap();
            let name = keyclaim_harness::tls::server_name("127.0.0.1").unwrap();
            let mut stream = connector.connect(name, tcp).await.unwrap();
            kinds.push(stream.get_ref().1.handshake_kind());
            // Reading the answer also reads the session tickets TLS 1.3 sends after
            // the handshake.
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut answer = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
                .await
                .expect("answered in time")
                .ok();
        }
        kinds
    });
    assert_eq!(
        kinds,
        vec![
            Some(rustls::HandshakeKind::Full),
            Some(rustls::HandshakeKind::Resumed)
        ]
    );
}
