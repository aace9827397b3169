//! PEM key loading, shared by both RSA backends: every accepted form is turned into the
//! one DER form both backends read (PKCS#8 for private keys, SPKI for public keys), so a
//! key file that loads on one backend loads on the other.

use pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use pkcs8::der::pem;
use pkcs8::{EncodePrivateKey, LineEnding};
use spki::EncodePublicKey;
use zeroize::Zeroizing;

use super::error::CryptoError;

/// A private key as PKCS#8 DER (wiped on drop), from `BEGIN PRIVATE KEY` (PKCS#8) or
/// `BEGIN RSA PRIVATE KEY` (PKCS#1).
pub(super) fn private_pkcs8_der(text: &str) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    // The decode errors are dropped on purpose: they can quote the input.
    let (label, der) =
        pem::decode_vec(text.trim().as_bytes()).map_err(|_| CryptoError::BadPrivateKey)?;
    let der = Zeroizing::new(der);
    match label {
        "PRIVATE KEY" => Ok(der),
        "RSA PRIVATE KEY" => {
            let document = rsa::PrivateKey::from_pkcs1_der(&der)
                .map_err(|_| CryptoError::BadPrivateKey)?
                .to_pkcs8_der()
                .map_err(|_| CryptoError::BadPrivateKey)?;
            Ok(Zeroizing::new(document.as_bytes().to_vec()))
        }
        _ => Err(CryptoError::BadPrivateKey),
    }
}

/// A public key as SPKI DER, from `BEGIN PUBLIC KEY` (SPKI) or `BEGIN RSA PUBLIC KEY`
/// (PKCS#1).
pub(super) fn public_spki_der(text: &str) -> Result<Vec<u8>, CryptoError> {
    let (label, der) =
        pem::decode_vec(text.trim().as_bytes()).map_err(|_| CryptoError::BadPublicKey)?;
    match label {
        "PUBLIC KEY" => Ok(der),
        "RSA PUBLIC KEY" => Ok(rsa::PublicKey::from_pkcs1_der(&der)
            .map_err(|_| CryptoError::BadPublicKey)?
            .to_public_key_der()
            .map_err(|_| CryptoError::BadPublicKey)?
            .into_vec()),
        _ => Err(CryptoError::BadPublicKey),
    }
}

/// PEM-encodes PKCS#8 DER as `BEGIN PRIVATE KEY`.
pub(super) fn private_pem(pkcs8_der: &[u8]) -> Result<Zeroizing<String>, CryptoError> {
    pem::encode_string("PRIVATE KEY", LineEnding::LF, pkcs8_der)
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Generate)
}

/// PEM-encodes SPKI DER as `BEGIN PUBLIC KEY`.
pub(super) fn public_pem(spki_der: &[u8]) -> Result<String, CryptoError> {
    pem::encode_string("PUBLIC KEY", LineEnding::LF, spki_der).map_err(|_| CryptoError::Generate)
}
