//! What the RSA backends share besides keys: the errors every crypto operation reports,
//! and the OAEP hash choice. A leaf, so the backends need nothing from `crypto` itself.

/// Errors from key loading and RSA operations. Messages never include key material.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error(
        "not a PEM RSA private key (expected \"BEGIN PRIVATE KEY\" (PKCS#8) or \"BEGIN RSA PRIVATE KEY\" (PKCS#1))"
    )]
    BadPrivateKey,
    #[error(
        "not a PEM RSA public key (expected \"BEGIN PUBLIC KEY\" (SPKI) or \"BEGIN RSA PUBLIC KEY\" (PKCS#1))"
    )]
    BadPublicKey,
    #[error("RSA-OAEP encryption failed (message too long for the key?)")]
    Encrypt,
    #[error("RSA-OAEP decryption failed (wrong key, or not OAEP with SHA-256)")]
    Decrypt,
    #[error("RSA key generation failed: unsupported size {0} bits (use 2048, 3072, 4096 or 8192)")]
    KeySize(usize),
    #[error("RSA key generation failed")]
    Generate,
    #[error("unknown RSA backend {given:?} (built in: {built_in})")]
    UnknownBackend { given: String, built_in: String },
}

/// The OAEP hash (used for both the label hash and MGF1).
#[derive(Clone, Copy, Debug)]
pub(super) enum OaepHash {
    Sha256,
    Sha1,
}
