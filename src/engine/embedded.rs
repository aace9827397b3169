//! The default target: the reference server started in this process on 127.0.0.1:0
//! with freshly generated keys, so `run` works on a bare machine.

use std::sync::Arc;

use super::Credentials;
use crate::crypto::{RsaPrivateKey, generate_key_pair};
use crate::server::faults::FaultSet;
use crate::server::keys::{KeySpec, Tier, generate_key_id};
use crate::server::{RunningServer, ServerConfig, ServerError, spawn};

/// Requests per second per key on the embedded server: low enough that the
/// rate-limit scenario's burst crosses it quickly, high enough that other scenarios
/// seldom meet it.
pub const EMBEDDED_RATE_LIMIT: u32 = 200;

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

pub async fn start_embedded(faults: FaultSet) -> Result<EmbeddedTarget, EmbeddedError> {
    let pair = tokio::task::spawn_blocking(|| generate_key_pair(2048))
        .await
        .expect("key generation does not panic")?;
    let private = RsaPrivateKey::from_pem(&pair.private_pkcs8_pem)?;
    let (primary, secondary, rsa) = (generate_key_id(), generate_key_id(), generate_key_id());
    let mut rsa_spec = KeySpec::new(rsa.clone(), Tier::Business);
    rsa_spec.public_key_pem = Some(pair.public_spki_pem.clone());
    let mut config = ServerConfig::new(vec![
        KeySpec::new(primary.clone(), Tier::Business),
        KeySpec::new(secondary.clone(), Tier::Business),
        rsa_spec,
    ]);
    config.rate_limit = EMBEDDED_RATE_LIMIT;
    config.faults = faults;
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
