//! The default target: the reference server started in this process on 127.0.0.1:0
//! with freshly generated keys, so `run` works on a bare machine.

use std::sync::Arc;

use super::Credentials;
use crate::crypto::{RsaBackend, RsaPrivateKey, generate_key_pair};
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
