//! The KeyClaim cryptography: the HMAC-SHA256 response, RSA-OAEP(SHA-256) encrypt and
//! decrypt, PEM key loading and key generation. No IO beyond what callers hand in.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepAlgorithm, OaepPrivateDecryptingKey,
    OaepPublicEncryptingKey, PrivateDecryptingKey, PublicEncryptingKey,
};
use hmac::{Hmac, KeyInit, Mac};
use pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use sha2::Sha256;
use spki::{DecodePublicKey, EncodePublicKey};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

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
}

/// A pre-keyed HMAC-SHA256 state: the key's ipad/opad blocks are hashed once, and each
/// challenge clones the state instead of re-keying.
#[derive(Clone)]
pub struct ResponseKey {
    keyed: HmacSha256,
}

impl ResponseKey {
    pub fn new(secret: &[u8]) -> Self {
        let keyed = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
        Self { keyed }
    }

    /// The raw MAC of `message`.
    pub fn mac(&self, message: &[u8]) -> [u8; 32] {
        let mut state = self.keyed.clone();
        state.update(message);
        state.finalize().into_bytes().into()
    }

    /// The KeyClaim response to `challenge`: lowercase hex of the MAC.
    pub fn response_hex(&self, challenge: &str) -> String {
        hex::encode(self.mac(challenge.as_bytes()))
    }

    /// Whether `presented` (hex, either case) is the MAC of `message`, compared in
    /// constant time so a caller cannot learn the correct response byte by byte.
    pub fn verify_hex(&self, message: &[u8], presented: &str) -> bool {
        let mut decoded = [0u8; 32];
        if hex::decode_to_slice(presented, &mut decoded).is_err() {
            return false;
        }
        self.mac(message).ct_eq(&decoded).into()
    }
}

/// The KeyClaim response for one challenge, keying afresh (use [`ResponseKey`] in loops).
pub fn hmac_response(secret: &str, challenge: &str) -> String {
    ResponseKey::new(secret.as_bytes()).response_hex(challenge)
}

/// An RSA public key for OAEP encryption.
pub struct RsaPublicKey {
    key: OaepPublicEncryptingKey,
}

impl RsaPublicKey {
    /// Loads a PEM public key: SPKI (`BEGIN PUBLIC KEY`) or PKCS#1 (`BEGIN RSA PUBLIC KEY`).
    pub fn from_pem(pem: &str) -> Result<Self, CryptoError> {
        let spki_der = match rsa::PublicKey::from_public_key_pem(pem) {
            Ok(key) => key.to_public_key_der(),
            Err(_) => rsa::PublicKey::from_pkcs1_pem(pem)
                .map_err(|_| CryptoError::BadPublicKey)?
                .to_public_key_der(),
        }
        .map_err(|_| CryptoError::BadPublicKey)?;
        let key = PublicEncryptingKey::from_der(spki_der.as_bytes())
            .map_err(|_| CryptoError::BadPublicKey)?;
        let key = OaepPublicEncryptingKey::new(key).map_err(|_| CryptoError::BadPublicKey)?;
        Ok(Self { key })
    }

    /// RSA-OAEP with SHA-256 for the hash and MGF1, as KeyClaim specifies.
    pub fn encrypt_oaep_sha256(&self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.encrypt(&OAEP_SHA256_MGF1SHA256, plaintext)
    }

    /// RSA-OAEP with SHA-1: the wrong padding, used only by the server's `rsa-oaep-sha1` fault.
    pub fn encrypt_oaep_sha1(&self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.encrypt(&OAEP_SHA1_MGF1SHA1, plaintext)
    }

    fn encrypt(
        &self,
        algorithm: &'static OaepAlgorithm,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let mut out = vec![0u8; self.key.ciphertext_size()];
        let written = self
            .key
            .encrypt(algorithm, plaintext, &mut out, None)
            .map_err(|_| CryptoError::Encrypt)?
            .len();
        out.truncate(written);
        Ok(out)
    }
}

/// An RSA private key for OAEP decryption.
pub struct RsaPrivateKey {
    key: OaepPrivateDecryptingKey,
}

impl RsaPrivateKey {
    /// Loads a PEM private key: PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`).
    pub fn from_pem(pem: &str) -> Result<Self, CryptoError> {
        let pkcs8_der = match rsa::PrivateKey::from_pkcs8_pem(pem) {
            Ok(key) => key.to_pkcs8_der(),
            Err(_) => rsa::PrivateKey::from_pkcs1_pem(pem)
                .map_err(|_| CryptoError::BadPrivateKey)?
                .to_pkcs8_der(),
        }
        .map_err(|_| CryptoError::BadPrivateKey)?;
        let key = PrivateDecryptingKey::from_pkcs8(pkcs8_der.as_bytes())
            .map_err(|_| CryptoError::BadPrivateKey)?;
        let key = OaepPrivateDecryptingKey::new(key).map_err(|_| CryptoError::BadPrivateKey)?;
        Ok(Self { key })
    }

    /// RSA-OAEP(SHA-256, MGF1-SHA-256) decryption.
    pub fn decrypt_oaep_sha256(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let mut out = Zeroizing::new(vec![0u8; self.key.min_output_size()]);
        let written = self
            .key
            .decrypt(&OAEP_SHA256_MGF1SHA256, ciphertext, &mut out, None)
            .map_err(|_| CryptoError::Decrypt)?
            .len();
        out.truncate(written);
        Ok(out)
    }
}

/// A freshly generated key pair, PEM-encoded.
pub struct GeneratedKeyPair {
    /// PKCS#8 `BEGIN PRIVATE KEY`; wiped from memory on drop.
    pub private_pkcs8_pem: Zeroizing<String>,
    /// SPKI `BEGIN PUBLIC KEY`.
    pub public_spki_pem: String,
}

/// Generates an RSA key pair of `bits` (2048, 3072, 4096 or 8192).
pub fn generate_key_pair(bits: usize) -> Result<GeneratedKeyPair, CryptoError> {
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
    let private_pem = rsa::PrivateKey::from_pkcs8_der(private_der.as_ref())
        .map_err(|_| CryptoError::Generate)?
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|_| CryptoError::Generate)?;
    let public_pem = rsa::PublicKey::from_public_key_der(public_der.as_ref())
        .map_err(|_| CryptoError::Generate)?
        .to_public_key_pem(LineEnding::LF)
        .map_err(|_| CryptoError::Generate)?;
    Ok(GeneratedKeyPair {
        private_pkcs8_pem: Zeroizing::new(private_pem.to_string()),
        public_spki_pem: public_pem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_response_matches_rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            hmac_response("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verify_hex_accepts_either_case_and_refuses_others() {
        let key = ResponseKey::new(b"kc_secret");
        let good = key.response_hex("abc");
        assert!(key.verify_hex(b"abc", &good));
        assert!(key.verify_hex(b"abc", &good.to_uppercase()));
        assert!(!key.verify_hex(b"abd", &good));
        assert!(!key.verify_hex(b"abc", &good[..62]));
        assert!(!key.verify_hex(b"abc", "zz"));
    }

    #[test]
    fn oaep_sha256_round_trip_with_generated_pair() {
        let pair = generate_key_pair(2048).unwrap();
        let public = RsaPublicKey::from_pem(&pair.public_spki_pem).unwrap();
        let private = RsaPrivateKey::from_pem(&pair.private_pkcs8_pem).unwrap();
        let ciphertext = public.encrypt_oaep_sha256(b"challenge").unwrap();
        assert_eq!(ciphertext.len(), 256);
        assert_eq!(&**private.decrypt_oaep_sha256(&ciphertext).unwrap(), b"challenge");
        let sha1 = public.encrypt_oaep_sha1(b"challenge").unwrap();
        assert!(private.decrypt_oaep_sha256(&sha1).is_err());
    }
}
