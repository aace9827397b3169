//! The pure-Rust RSA backend (RustCrypto's `rsa` crate), for builds without a C
//! toolchain and as a second implementation to cross-check the first.
//!
//! Security: the `rsa` crate carries RUSTSEC-2023-0071 ("Marvin": a timing side channel
//! in private-key operations that can leak the key to an attacker who can time many
//! decryptions; no fixed release). Decryption here is blinded, which the crate
//! recommends, but blinding does not close that advisory. Prefer the aws-lc backend
//! wherever private keys decrypt attacker-supplied ciphertexts on a network.

use pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use sha1::Sha1;
use sha2::Sha256;
use spki::DecodePublicKey;
use zeroize::Zeroizing;

use super::error::{CryptoError, OaepHash};

pub(super) struct PublicKey(rsa::PublicKey);

impl PublicKey {
    pub(super) fn from_spki_der(der: &[u8]) -> Result<Self, CryptoError> {
        rsa::PublicKey::from_public_key_der(der)
            .map(Self)
            .map_err(|_| CryptoError::BadPublicKey)
    }

    pub(super) fn bits(&self) -> usize {
        self.0.size() * 8
    }

    pub(super) fn encrypt(&self, hash: OaepHash, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        match hash {
            OaepHash::Sha256 => self.0.oaep_encrypt::<Sha256>(plaintext),
            OaepHash::Sha1 => self.0.oaep_encrypt::<Sha1>(plaintext),
        }
        .map_err(|_| CryptoError::Encrypt)
    }
}

// Boxed: the key with its CRT values is a few hundred bytes, and the facade enum
// should not be that large for the aws-lc variant too.
pub(super) struct PrivateKey(Box<rsa::PrivateKey>);

impl PrivateKey {
    pub(super) fn from_pkcs8_der(der: &[u8]) -> Result<Self, CryptoError> {
        rsa::PrivateKey::from_pkcs8_der(der)
            .map(|key| Self(Box::new(key)))
            .map_err(|_| CryptoError::BadPrivateKey)
    }

    pub(super) fn bits(&self) -> usize {
        self.0.size() * 8
    }

    pub(super) fn decrypt_sha256(
        &self,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        // `oaep_decrypt` blinds with the OS RNG (the crate's `getrandom` feature).
        self.0
            .oaep_decrypt::<Sha256>(ciphertext)
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Decrypt)
    }
}

/// A new key pair as (PKCS#8 DER, SPKI DER).
pub(super) fn generate(bits: usize) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), CryptoError> {
    use pkcs8::EncodePrivateKey;
    use spki::EncodePublicKey;

    if !matches!(bits, 2048 | 3072 | 4096 | 8192) {
        return Err(CryptoError::KeySize(bits));
    }
    let private =
        rsa::PrivateKey::new(&mut rand::rng(), bits).map_err(|_| CryptoError::Generate)?;
    let private_der = private.to_pkcs8_der().map_err(|_| CryptoError::Generate)?;
    let public_der = private
        .as_public_key()
        .to_public_key_der()
        .map_err(|_| CryptoError::Generate)?;
    Ok((
        Zeroizing::new(private_der.as_bytes().to_vec()),
        public_der.into_vec(),
    ))
}
