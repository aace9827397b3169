//! The aws-lc-rs RSA backend (the default): AWS-LC's constant-time, assembly-optimised
//! RSA, roughly six times the pure-Rust backend's private-key throughput.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey,
    OaepPublicEncryptingKey, PrivateDecryptingKey, PublicEncryptingKey,
};
use zeroize::Zeroizing;

use super::error::{CryptoError, OaepHash};

pub(super) struct PublicKey(OaepPublicEncryptingKey);

impl PublicKey {
    pub(super) fn from_spki_der(der: &[u8]) -> Result<Self, CryptoError> {
        let key = PublicEncryptingKey::from_der(der).map_err(|_| CryptoError::BadPublicKey)?;
        OaepPublicEncryptingKey::new(key)
            .map(Self)
            .map_err(|_| CryptoError::BadPublicKey)
    }

    pub(super) fn bits(&self) -> usize {
        self.0.key_size_bits()
    }

    pub(super) fn encrypt(&self, hash: OaepHash, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let algorithm = match hash {
            OaepHash::Sha256 => &OAEP_SHA256_MGF1SHA256,
            OaepHash::Sha1 => &OAEP_SHA1_MGF1SHA1,
        };
        let mut out = vec![0u8; self.0.ciphertext_size()];
        let written = self
            .0
            .encrypt(algorithm, plaintext, &mut out, None)
            .map_err(|_| CryptoError::Encrypt)?
            .len();
        out.truncate(written);
        Ok(out)
    }
}

pub(super) struct PrivateKey(OaepPrivateDecryptingKey);

impl PrivateKey {
    pub(super) fn from_pkcs8_der(der: &[u8]) -> Result<Self, CryptoError> {
        let key = PrivateDecryptingKey::from_pkcs8(der).map_err(|_| CryptoError::BadPrivateKey)?;
        OaepPrivateDecryptingKey::new(key)
            .map(Self)
            .map_err(|_| CryptoError::BadPrivateKey)
    }

    pub(super) fn bits(&self) -> usize {
        self.0.key_size_bits()
    }

    pub(super) fn decrypt_sha256(
        &self,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let mut out = Zeroizing::new(vec![0u8; self.0.min_output_size()]);
        let written = self
            .0
            .decrypt(&OAEP_SHA256_MGF1SHA256, ciphertext, &mut out, None)
            .map_err(|_| CryptoError::Decrypt)?
            .len();
        out.truncate(written);
        Ok(out)
    }
}

/// A new key pair as (PKCS#8 DER, SPKI DER).
pub(super) fn generate(bits: usize) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), CryptoError> {
    let size = match bits {
        2048 => KeySize::Rsa2048,
        3072 => KeySize::Rsa3072,
        4096 => KeySize::Rsa4096,
        8192 => KeySize::Rsa8192,
        other => return Err(CryptoError::KeySize(other)),
    };
    let private = PrivateDecryptingKey::generate(size).map_err(|_| CryptoError::Generate)?;
    let private_der: Pkcs8V1Der = private.as_der().map_err(|_| CryptoError::Generate)?;
    let public_der: PublicKeyX509Der = private
        .public_key()
        .as_der()
        .map_err(|_| CryptoError::Generate)?;
    Ok((
        Zeroizing::new(private_der.as_ref().to_vec()),
        public_der.as_ref().to_vec(),
    ))
}
