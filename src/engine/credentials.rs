//! The keys a run uses, where a request carries them, and the response each form of
//! answer computes from them: one place for the conformance steps and the load flow.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::crypto::{ResponseKey, RsaPrivateKey};
use crate::plan::model::{AuthForm, KeyChoice, Need, ResponseForm};

/// The keys a run uses. Never printed: `Debug` is not derived.
pub struct Credentials {
    pub primary: String,
    /// HMAC secret of the primary key, when it is not the key itself.
    pub hmac_secret: Option<String>,
    pub secondary: Option<String>,
    pub rsa: Option<String>,
    pub private_key: Option<Arc<RsaPrivateKey>>,
    /// A well-formed key no server issued, fresh per run.
    pub unknown: String,
    /// The primary key without its last character, and with one more: near misses.
    primary_truncated: String,
    primary_extended: String,
}

/// Where a request carries its key: in the body's `key`, as a Bearer token, or both.
/// `None` in both for a keyless request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPlacement<'a> {
    pub body: Option<&'a str>,
    pub bearer: Option<&'a str>,
}

impl Credentials {
    pub fn new(
        primary: String,
        hmac_secret: Option<String>,
        secondary: Option<String>,
        rsa: Option<(String, Arc<RsaPrivateKey>)>,
    ) -> Self {
        let mut primary_truncated = primary.clone();
        primary_truncated.pop();
        let (rsa, private_key) = rsa.unzip();
        Self {
            primary_extended: format!("{primary}0"),
            primary_truncated,
            primary,
            hmac_secret,
            secondary,
            rsa,
            private_key,
            unknown: crate::server::keys::generate_key_id(),
        }
    }

    /// Everything a report must never show: the keys, the HMAC secret, and the near
    /// misses (most of the primary key).
    pub fn secrets(&self) -> Vec<String> {
        [
            Some(&self.primary),
            self.hmac_secret.as_ref(),
            self.secondary.as_ref(),
            self.rsa.as_ref(),
            Some(&self.primary_truncated),
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }

    /// The key a request names, `None` for `KeyChoice::Absent` or a key the run lacks.
    pub fn key(&self, choice: &KeyChoice) -> Option<&str> {
        match choice {
            KeyChoice::Primary => Some(&self.primary),
            KeyChoice::Secondary => self.secondary.as_deref(),
            KeyChoice::Rsa => self.rsa.as_deref(),
            KeyChoice::Unknown => Some(&self.unknown),
            KeyChoice::PrimaryTruncated => Some(&self.primary_truncated),
            KeyChoice::PrimaryExtended => Some(&self.primary_extended),
            KeyChoice::Absent => None,
        }
    }

    /// The HMAC secret the client holds for `choice` (a keyless request answers as the
    /// primary key would).
    pub fn secret(&self, choice: &KeyChoice) -> &str {
        match choice {
            KeyChoice::Primary | KeyChoice::Absent => {
                self.hmac_secret.as_deref().unwrap_or(&self.primary)
            }
            other => self.key(other).unwrap_or_default(),
        }
    }

    /// The HMAC secret of `key`, when it is one of the run's own keys.
    pub fn secret_of(&self, key: &str) -> Option<&str> {
        [KeyChoice::Primary, KeyChoice::Secondary, KeyChoice::Rsa]
            .into_iter()
            .find(|choice| self.key(choice) == Some(key))
            .map(|choice| self.secret(&choice))
    }

    pub fn has(&self, need: Need) -> bool {
        match need {
            Need::Rsa => self.rsa.is_some() && self.private_key.is_some(),
            Need::SecondKey => self.secondary.is_some(),
        }
    }

    /// Where `choice`'s key goes under `auth`; `Err` is what the run lacks for it.
    pub fn placement(&self, choice: &KeyChoice, auth: AuthForm) -> Result<KeyPlacement<'_>, Need> {
        let key = self.key(choice);
        let need = match choice {
            KeyChoice::Secondary => Some(Need::SecondKey),
            KeyChoice::Rsa => Some(Need::Rsa),
            _ => None,
        };
        if let (None, Some(need)) = (key, need) {
            return Err(need);
        }
        Ok(KeyPlacement {
            body: key.filter(|_| matches!(auth, AuthForm::Body | AuthForm::Both)),
            bearer: key.filter(|_| matches!(auth, AuthForm::Bearer | AuthForm::Both)),
        })
    }
}

/// What a run without `need` lacks, and the options that supply it, as messages say
/// it: "needs an RSA key (--rsa-api-key and --private-key)".
pub fn missing(need: Need) -> &'static str {
    match need {
        Need::Rsa => "an RSA key (--rsa-api-key and --private-key)",
        Need::SecondKey => "a second API key (--second-api-key)",
    }
}

/// 64 random hex characters: a challenge no server issued, or a wrong decryption.
pub fn random_hex64() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// The secret a client answers challenges with: pre-keyed for HMAC (the load flow's hot
/// path), and as text for the SDKs' `hash` form.
#[derive(Clone)]
pub struct Secret {
    key: ResponseKey,
    text: String,
}

impl Secret {
    pub fn new(text: &str) -> Self {
        Self {
            key: ResponseKey::new(text.as_bytes()),
            text: text.to_owned(),
        }
    }

    /// The `response` field for `form`: `named` is the challenge as the request names
    /// it, `decrypted` the RSA plaintext when the form uses one (see
    /// [`uses_decryption`]).
    pub fn response(&self, form: &ResponseForm, named: &str, decrypted: &str) -> String {
        match form {
            ResponseForm::Hmac => self.key.response_hex(named),
            ResponseForm::HmacOtherSecret => {
                let other = format!("kc_not_the_secret_{}", random_hex64());
                ResponseKey::new(other.as_bytes()).response_hex(named)
            }
            ResponseForm::Tampered => tamper(self.key.response_hex(named), |_| 0),
            ResponseForm::TamperedMiddle => tamper(self.key.response_hex(named), |len| len / 2),
            ResponseForm::TamperedLast => tamper(self.key.response_hex(named), |len| len - 1),
            ResponseForm::Truncated => {
                let mut mac = self.key.response_hex(named);
                mac.pop();
                mac
            }
            ResponseForm::Extended => self.key.response_hex(named) + "0",
            ResponseForm::Empty => String::new(),
            ResponseForm::Uppercase => self.key.response_hex(named).to_ascii_uppercase(),
            ResponseForm::Echo => named.to_owned(),
            ResponseForm::Hash => hex::encode(Sha256::digest(format!("{named}{}", self.text))),
            ResponseForm::Custom => hex::encode(Sha256::digest(format!("{named}:{}", self.text))),
            ResponseForm::Decrypted => decrypted.to_owned(),
            ResponseForm::HmacDecrypted => self.key.response_hex(decrypted),
            ResponseForm::WrongDecryption => random_hex64(),
            ResponseForm::Literal(text) => text.clone(),
        }
    }
}

/// `mac` with the hex digit at `at(len)` changed (to another hex digit).
fn tamper(mac: String, at: fn(usize) -> usize) -> String {
    let mut bytes = mac.into_bytes();
    let index = at(bytes.len());
    bytes[index] = if bytes[index] == b'0' { b'1' } else { b'0' };
    String::from_utf8(bytes).expect("hex is ASCII")
}

/// Whether `form` answers with (or from) the RSA plaintext.
pub fn uses_decryption(form: &ResponseForm) -> bool {
    matches!(form, ResponseForm::Decrypted | ResponseForm::HmacDecrypted)
}

/// Opens an RSA challenge as the Python guide does (base64, RSA-OAEP with SHA-256, UTF-8),
/// off the reactor: `None` when any part fails.
pub async fn decrypt_challenge(key: Arc<RsaPrivateKey>, ciphertext: String) -> Option<String> {
    use base64::Engine;
    tokio::task::spawn_blocking(move || {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(ciphertext.trim())
            .ok()?;
        let plain = key.decrypt_oaep_sha256(&bytes).ok()?;
        String::from_utf8(plain.to_vec()).ok()
    })
    .await
    .ok()
    .flatten()
}
