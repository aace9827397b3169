//! What a run points at: the user's target URL, or the reference server started in this
//! process on 127.0.0.1:0 with freshly generated keys, so `run` works on a bare machine;
//! how reports name it; and the report of a run that could not reach it.

use std::sync::Arc;
use std::time::SystemTime;

use super::conformance::not_run;
use super::credentials::Credentials;
use crate::crypto::{RsaBackend, RsaPrivateKey, generate_key_pair};
use crate::plan::model::Scenario;
use crate::results::{CheckResult, Outcome, RunReport};
use crate::scale_out::WorkerSlice;
use crate::server::faults::FaultSet;
use crate::server::keys::{KeySpec, Tier, generate_key_id};
use crate::server::{RunningServer, ServerConfig, ServerError, spawn};

/// Requests per second per key on the embedded server when a burst step will probe
/// rate limiting: low enough that the burst crosses it quickly, high enough that other
/// scenarios seldom meet it. Without burst steps there is no limit, so load runs
/// measure the server, not its limiter.
pub const EMBEDDED_RATE_LIMIT: u32 = 200;

/// Outstanding challenges per key on the embedded server.
pub const EMBEDDED_MAX_OUTSTANDING: u64 = 10_000_000;

pub struct EmbeddedTarget {
    pub server: RunningServer,
    pub credentials: Credentials,
    /// The generated private key PEM, so the caller can register it for redaction.
    pub private_key_pem: zeroize::Zeroizing<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("cannot generate the embedded server's RSA key: {0}")]
    Crypto(#[from] crate::crypto::CryptoError),
    #[error("cannot start the embedded server: {0}")]
    Server(#[from] ServerError),
}

pub async fn start_embedded(
    faults: FaultSet,
    rate_limited: bool,
    backend: RsaBackend,
) -> Result<EmbeddedTarget, EmbeddedError> {
    let pair = tokio::task::spawn_blocking(|| generate_key_pair(2048))
        .await
        .expect("key generation does not panic")?;
    let private = RsaPrivateKey::from_pem_with(&pair.private_pkcs8_pem, backend)?;
    let (primary, secondary, rsa) = (generate_key_id(), generate_key_id(), generate_key_id());
    let mut rsa_spec = KeySpec::new(rsa.clone(), Tier::Business);
    rsa_spec.public_key_pem = Some(pair.public_spki_pem.clone());
    let mut config = ServerConfig::new(vec![
        KeySpec::new(primary.clone(), Tier::Business),
        KeySpec::new(secondary.clone(), Tier::Business),
        rsa_spec,
    ]);
    config.rate_limit = if rate_limited { EMBEDDED_RATE_LIMIT } else { 0 };
    // Load runs create far more challenges than any client would hold; the cap is for
    // deployments, not for a generator measuring the server.
    config.max_outstanding = EMBEDDED_MAX_OUTSTANDING;
    config.faults = faults;
    config.rsa_backend = backend;
    let server = spawn("127.0.0.1:0", config).await?;
    Ok(EmbeddedTarget {
        server,
        credentials: Credentials {
            primary,
            hmac_secret: None,
            secondary: Some(secondary),
            rsa: Some(rsa),
            private_key: Some(Arc::new(private)),
            unknown: generate_key_id(),
        },
        private_key_pem: pair.private_pkcs8_pem,
    })
}

/// The target as shown in reports: no userinfo, no query.
pub fn target_label(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            parsed.set_username("").ok();
            parsed.set_password(None).ok();
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.to_string().trim_end_matches('/').to_owned()
        }
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

/// What a run that could not reach its target leaves behind: every selected scenario
/// failed with the reason, so a CI dashboard reading junit.xml shows the outage rather
/// than a missing file.
pub fn unreachable_report(
    scenarios: &[Scenario],
    target_label: &str,
    why: &str,
    plans: Vec<String>,
    plan_digest: String,
    strict: bool,
    worker: Option<WorkerSlice>,
) -> RunReport {
    let scenarios: Vec<_> = scenarios
        .iter()
        .map(|scenario| {
            not_run(
                scenario,
                CheckResult {
                    name: "target reachable".into(),
                    outcome: Outcome::Fail,
                    message: format!(
                        "{}: not run: cannot reach the target {target_label}: {why}",
                        scenario.name
                    ),
                    evidence: None,
                },
            )
        })
        .collect();
    RunReport {
        passed: false,
        interrupted: false,
        strict,
        plans,
        target: target_label.to_owned(),
        started_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        elapsed_s: 0.0,
        scenarios,
        plan_digest,
        worker: worker.map(WorkerSlice::tag),
        merged: None,
    }
}
