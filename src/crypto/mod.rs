//! The KeyClaim cryptography: the HMAC-SHA256 response, RSA-OAEP(SHA-256) encrypt and
//! decrypt, PEM key loading and key generation. No IO beyond what callers hand in.
//!
//! HMAC is always RustCrypto's `hmac` + `sha2` (SHA-NI where the CPU has it). RSA has two
//! backends behind one interface, picked at run time with [`RsaBackend`]: aws-lc-rs (the
//! default, cargo feature `aws-lc`) and RustCrypto's pure-Rust `rsa` crate (always
//! built). Both read the same PEM forms through one loader, so a key that works on one
//! works on the other.

#[cfg(feature = "aws-lc")]
mod aws_lc;
pub mod bench;
mod error;
mod pem;
mod response;
mod rustcrypto;

use std::fmt;
use std::str::FromStr;

use zeroize::Zeroizing;

pub use error::CryptoError;
use error::OaepHash;
pub use response::{RESPONSE_HEX_LEN, ResponseKey, hmac_response};

/// Which RSA implementation runs the RSA operations.
///
/// Chosen at run time (`--rsa-backend aws-lc|rustcrypto`); [`RsaBackend::default`] is
/// aws-lc when the `aws-lc` cargo feature is on (the default) and rustcrypto otherwise.
///
/// **Security:** the `rustcrypto` backend uses the `rsa` crate, which carries
/// RUSTSEC-2023-0071 (the "Marvin" timing side channel in private-key operations; no
/// fixed release exists). Its decryption is blinded, which does not close the advisory.
/// Use it to cross-check, to benchmark, or where there is no C toolchain; decrypt
/// attacker-supplied ciphertexts on a network with `aws-lc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RsaBackend {
    /// aws-lc-rs: AWS-LC's constant-time, assembly-optimised RSA.
    #[cfg(feature = "aws-lc")]
    AwsLc,
    /// RustCrypto `rsa`: pure Rust; affected by RUSTSEC-2023-0071 (see the type's doc).
    RustCrypto,
}

impl RsaBackend {
    /// Every backend this build has, default first.
    pub const ALL: &'static [RsaBackend] = &[
        #[cfg(feature = "aws-lc")]
        RsaBackend::AwsLc,
        RsaBackend::RustCrypto,
    ];

    /// The name used on the command line and in reports: `aws-lc` or `rustcrypto`.
    pub const fn name(self) -> &'static str {
        match self {
            #[cfg(feature = "aws-lc")]
            RsaBackend::AwsLc => "aws-lc",
            RsaBackend::RustCrypto => "rustcrypto",
        }
    }

    fn names() -> String {
        Self::ALL
            .iter()
            .map(|b| b.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Default for RsaBackend {
    fn default() -> Self {
        Self::ALL[0]
    }
}

impl fmt::Display for RsaBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RsaBackend {
    type Err = CryptoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|backend| backend.name() == s)
            .ok_or_else(|| CryptoError::UnknownBackend {
                given: s.to_owned(),
                built_in: Self::names(),
            })
    }
}

// Written by hand rather than derived so the list follows the `aws-lc` feature.
impl clap::ValueEnum for RsaBackend {
    fn value_variants<'a>() -> &'a [Self] {
        Self::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let value = clap::builder::PossibleValue::new(self.name());
        Some(match self {
            #[cfg(feature = "aws-lc")]
            RsaBackend::AwsLc => value.help("aws-lc-rs (default)"),
            RsaBackend::RustCrypto => {
                value.help("pure-Rust `rsa` crate; RUSTSEC-2023-0071 timing side channel")
            }
        })
    }
}

enum PublicInner {
    #[cfg(feature = "aws-lc")]
    AwsLc(aws_lc::PublicKey),
    RustCrypto(rustcrypto::PublicKey),
}

/// An RSA public key for OAEP encryption.
pub struct RsaPublicKey {
    inner: PublicInner,
}

impl fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RsaPublicKey")
            .field("backend", &self.backend())
            .field("bits", &self.bits())
            .finish()
    }
}

impl RsaPublicKey {
    /// Loads a PEM public key on the default backend: SPKI (`BEGIN PUBLIC KEY`) or
    /// PKCS#1 (`BEGIN RSA PUBLIC KEY`).
    pub fn from_pem(pem: &str) -> Result<Self, CryptoError> {
        Self::from_pem_with(pem, RsaBackend::default())
    }

    /// Loads a PEM public key (SPKI or PKCS#1) on `backend`.
    pub fn from_pem_with(pem: &str, backend: RsaBackend) -> Result<Self, CryptoError> {
        let der = pem::public_spki_der(pem)?;
        let inner = match backend {
            #[cfg(feature = "aws-lc")]
            RsaBackend::AwsLc => PublicInner::AwsLc(aws_lc::PublicKey::from_spki_der(&der)?),
            RsaBackend::RustCrypto => {
                PublicInner::RustCrypto(rustcrypto::PublicKey::from_spki_der(&der)?)
            }
        };
        Ok(Self { inner })
    }

    pub fn backend(&self) -> RsaBackend {
        match self.inner {
            #[cfg(feature = "aws-lc")]
            PublicInner::AwsLc(_) => RsaBackend::AwsLc,
            PublicInner::RustCrypto(_) => RsaBackend::RustCrypto,
        }
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        match &self.inner {
            #[cfg(feature = "aws-lc")]
            PublicInner::AwsLc(key) => key.bits(),
            PublicInner::RustCrypto(key) => key.bits(),
        }
    }

    /// RSA-OAEP with SHA-256 for the hash and MGF1, as KeyClaim specifies.
    pub fn encrypt_oaep_sha256(&self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.encrypt(OaepHash::Sha256, plaintext)
    }

    /// RSA-OAEP with SHA-1: the wrong padding, used only by the server's `rsa-oaep-sha1` fault.
    pub fn encrypt_oaep_sha1(&self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.encrypt(OaepHash::Sha1, plaintext)
    }

    fn encrypt(&self, hash: OaepHash, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        match &self.inner {
            #[cfg(feature = "aws-lc")]
            PublicInner::AwsLc(key) => key.encrypt(hash, plaintext),
            PublicInner::RustCrypto(key) => key.encrypt(hash, plaintext),
        }
    }
}

enum PrivateInner {
    #[cfg(feature = "aws-lc")]
    AwsLc(aws_lc::PrivateKey),
    RustCrypto(rustcrypto::PrivateKey),
}

/// An RSA private key for OAEP decryption.
pub struct RsaPrivateKey {
    inner: PrivateInner,
}

impl fmt::Debug for RsaPrivateKey {
    // Backend and size only: nothing derived from the key's secret parts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RsaPrivateKey")
            .field("backend", &self.backend())
            .field("bits", &self.bits())
            .finish_non_exhaustive()
    }
}

impl RsaPrivateKey {
    /// Loads a PEM private key on the default backend: PKCS#8 (`BEGIN PRIVATE KEY`) or
    /// PKCS#1 (`BEGIN RSA PRIVATE KEY`).
    pub fn from_pem(pem: &str) -> Result<Self, CryptoError> {
        Self::from_pem_with(pem, RsaBackend::default())
    }

    /// Loads a PEM private key (PKCS#8 or PKCS#1) on `backend`. See [`RsaBackend`] for
    /// the advisory that affects `rustcrypto`.
    pub fn from_pem_with(pem: &str, backend: RsaBackend) -> Result<Self, CryptoError> {
        let der = pem::private_pkcs8_der(pem)?;
        let inner = match backend {
            #[cfg(feature = "aws-lc")]
            RsaBackend::AwsLc => PrivateInner::AwsLc(aws_lc::PrivateKey::from_pkcs8_der(&der)?),
            RsaBackend::RustCrypto => {
                PrivateInner::RustCrypto(rustcrypto::PrivateKey::from_pkcs8_der(&der)?)
            }
        };
        Ok(Self { inner })
    }

    pub fn backend(&self) -> RsaBackend {
        match self.inner {
            #[cfg(feature = "aws-lc")]
            PrivateInner::AwsLc(_) => RsaBackend::AwsLc,
            PrivateInner::RustCrypto(_) => RsaBackend::RustCrypto,
        }
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        match &self.inner {
            #[cfg(feature = "aws-lc")]
            PrivateInner::AwsLc(key) => key.bits(),
            PrivateInner::RustCrypto(key) => key.bits(),
        }
    }

    /// RSA-OAEP(SHA-256, MGF1-SHA-256) decryption; the plaintext is wiped on drop.
    pub fn decrypt_oaep_sha256(
        &self,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        match &self.inner {
            #[cfg(feature = "aws-lc")]
            PrivateInner::AwsLc(key) => key.decrypt_sha256(ciphertext),
            PrivateInner::RustCrypto(key) => key.decrypt_sha256(ciphertext),
        }
    }
}

/// A freshly generated key pair, PEM-encoded.
pub struct GeneratedKeyPair {
    /// PKCS#8 `BEGIN PRIVATE KEY`; wiped from memory on drop.
    pub private_pkcs8_pem: Zeroizing<String>,
    /// SPKI `BEGIN PUBLIC KEY`.
    pub public_spki_pem: String,
}

/// Generates an RSA key pair of `bits` (2048, 3072, 4096 or 8192) on the default backend.
pub fn generate_key_pair(bits: usize) -> Result<GeneratedKeyPair, CryptoError> {
    generate_key_pair_with(bits, RsaBackend::default())
}

/// Generates an RSA key pair of `bits` (2048, 3072, 4096 or 8192) on `backend`. The
/// pure-Rust backend is several times slower here (seconds for 4096 bits).
pub fn generate_key_pair_with(
    bits: usize,
    backend: RsaBackend,
) -> Result<GeneratedKeyPair, CryptoError> {
    let (private_der, public_der) = match backend {
        #[cfg(feature = "aws-lc")]
        RsaBackend::AwsLc => aws_lc::generate(bits)?,
        RsaBackend::RustCrypto => rustcrypto::generate(bits)?,
    };
    Ok(GeneratedKeyPair {
        private_pkcs8_pem: pem::private_pem(&private_der)?,
        public_spki_pem: pem::public_pem(&public_der)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oaep_sha256_round_trip_with_generated_pair() {
        let pair = generate_key_pair(2048).unwrap();
        let public = RsaPublicKey::from_pem(&pair.public_spki_pem).unwrap();
        let private = RsaPrivateKey::from_pem(&pair.private_pkcs8_pem).unwrap();
        let ciphertext = public.encrypt_oaep_sha256(b"challenge").unwrap();
        assert_eq!(ciphertext.len(), 256);
        assert_eq!(
            &**private.decrypt_oaep_sha256(&ciphertext).unwrap(),
            b"challenge"
        );
        let sha1 = public.encrypt_oaep_sha1(b"challenge").unwrap();
        assert!(private.decrypt_oaep_sha256(&sha1).is_err());
    }

    #[test]
    fn backend_names_round_trip() {
        for &backend in RsaBackend::ALL {
            assert_eq!(backend.to_string().parse::<RsaBackend>().unwrap(), backend);
        }
        assert_eq!(RsaBackend::default(), RsaBackend::ALL[0]);
        let err = "openssl".parse::<RsaBackend>().unwrap_err().to_string();
        assert!(err.contains("rustcrypto"), "{err}");
    }

    #[cfg(feature = "aws-lc")]
    #[test]
    fn aws_lc_is_the_default() {
        assert_eq!(RsaBackend::default(), RsaBackend::AwsLc);
    }

    #[test]
    fn unsupported_key_size_is_refused_on_every_backend() {
        for &backend in RsaBackend::ALL {
            assert!(matches!(
                generate_key_pair_with(1000, backend),
                Err(CryptoError::KeySize(1000))
            ));
        }
    }
}
