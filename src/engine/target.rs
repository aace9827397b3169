//! What a run points at: the user's target URL, or the reference server started in this
//! process on 127.0.0.1:0 with freshly generated keys, so `run` works on a bare machine;
//! how reports name it; and the report of a run that could not reach it.

use std::sync::Arc;
use std::time::SystemTime;

use super::conformance::not_run;
use super::credentials::Credentials;
use crate::crypto::{GeneratedKeyPair, RsaBackend, RsaPrivateKey, generate_key_pair};
use crate::plan::model::Scenario;
use crate::results::{CheckResult, Outcome, RunReport};
use crate::scale_out::WorkerSlice;
use crate::server::faults::FaultSet;
use crate::server::keys::{KeySpec, Tier, generate_key_id};
use crate::server::style::StyleSet;
use crate::server::{
    RunningServer, SERVE_RATE_BURST, SERVE_RATE_LIMIT, ServerConfig, ServerError, spawn,
};

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

/// How to start the embedded server.
pub struct Embedded {
    pub faults: FaultSet,
    pub styles: StyleSet,
    /// A burst step will probe rate limiting: turn the limit on.
    pub rate_limited: bool,
    pub backend: RsaBackend,
    /// The RSA key pair of its RSA key; a fresh one when `None` (selftest starts many
    /// servers and shares one pair).
    pub key_pair: Option<Arc<GeneratedKeyPair>>,
}

pub async fn start_embedded(embedded: Embedded) -> Result<EmbeddedTarget, EmbeddedError> {
    let Embedded {
        faults,
        styles,
        rate_limited,
        backend,
        key_pair,
    } = embedded;
    let pair = match key_pair {
        Some(pair) => pair,
        None => Arc::new(
            tokio::task::spawn_blocking(|| generate_key_pair(2048))
                .await
                .expect("key generation does not panic")?,
        ),
    };
    let private = RsaPrivateKey::from_pem_with(&pair.private_pkcs8_pem, backend)?;
    let (primary, secondary, rsa) = (generate_key_id(), generate_key_id(), generate_key_id());
    let mut rsa_spec = KeySpec::new(rsa.clone(), Tier::Business);
    rsa_spec.public_key_pem = Some(pair.public_spki_pem.clone());
    let mut config = ServerConfig::new(vec![
        KeySpec::new(primary.clone(), Tier::Business),
        KeySpec::new(secondary.clone(), Tier::Business),
        rsa_spec,
    ]);
    // When a burst step probes rate limiting, `serve`'s limit: its burst allowance covers
    // every other scenario of a run (none waits on the limit, so no timing check is
    // pushed past its moment), and its rate is low enough that the burst crosses it even
    // on a loaded machine. Otherwise none, so load runs measure the server.
    if rate_limited {
        config.rate_limit = SERVE_RATE_LIMIT;
        config.rate_burst = Some(SERVE_RATE_BURST);
    }
    // No per-key cap (`ServerConfig::new`'s default): load runs create far more
    // challenges than any client would hold; the memory budget bounds the store.
    config.faults = faults;
    config.styles = styles;
    config.rsa_backend = backend;
    let server = spawn("127.0.0.1:0", config).await?;
    Ok(EmbeddedTarget {
        server,
        credentials: Credentials::new(
            primary,
            None,
            Some(secondary),
            Some((rsa, Arc::new(private))),
        ),
        private_key_pem: pair.private_pkcs8_pem.clone(),
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
                strict,
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
        start: None,
        plan_share: Default::default(),
        insecure: false,
    }
}
