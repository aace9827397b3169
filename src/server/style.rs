//! Styles: the choices the vendor's docs leave open, made the other way than the
//! reference server makes them. A server in any style is correct; the conformance suite
//! must pass it (with non-strict outcomes where the style leaves a SHOULD), and
//! `--strict` pins the reference's choices. `keyclaim-harness selftest` proves both.

use std::str::FromStr;

/// One open choice, made differently from the reference. `serve --style NAME`
/// (repeatable); `serve --list-styles` prints [`Style::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Style {
    /// Refused verdicts (replayed, expired, bad response, unknown challenge) answer a
    /// 4xx with the verdict body: 409, 410, 400 and 404.
    Refusals4xx,
    /// Refused verdicts answer 403 with the verdict body ("security check failed").
    Refusals403,
    /// Rate limiting answers 403 `rate_limited` without `Retry-After`.
    RateLimit403,
    /// An unknown key on validate answers `200 {valid: false, error: invalid_key}`.
    InvalidKeyVerdict,
    /// A request without a key answers 400 `bad_request`.
    MissingKey400,
    /// A method a path does not take answers 501.
    Method501,
    /// A failed validation uses up the challenge too.
    ConsumeOnFailure,
    /// No verdict signatures (the free plan).
    NoSignatures,
    /// No `quota` object in verdicts.
    NoQuota,
    /// TTLs above 20 s are shortened to 20 (and `expires_in` says so).
    TtlCap20,
    /// Only the Python guide's RSA reading validates; the API page's is refused.
    PythonRsaOnly,
    /// Responses must be lowercase hex; uppercase is refused.
    LowercaseOnly,
    /// Unknown and foreign challenges answer 404 `not_found`.
    UnknownChallenge404,
    /// Challenges are uppercase hex.
    UppercaseChallenges,
    /// Encrypted challenges come without `"encrypted": true`.
    NoEncryptedFlag,
    /// An RSA challenge's `decryptedChallenge` is not read: the response alone proves
    /// the decryption.
    RsaResponseOnly,
}

impl Style {
    pub const ALL: [Style; 16] = [
        Style::Refusals4xx,
        Style::Refusals403,
        Style::RateLimit403,
        Style::InvalidKeyVerdict,
        Style::MissingKey400,
        Style::Method501,
        Style::ConsumeOnFailure,
        Style::NoSignatures,
        Style::NoQuota,
        Style::TtlCap20,
        Style::PythonRsaOnly,
        Style::LowercaseOnly,
        Style::UnknownChallenge404,
        Style::UppercaseChallenges,
        Style::NoEncryptedFlag,
        Style::RsaResponseOnly,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Style::Refusals4xx => "refusals-4xx",
            Style::Refusals403 => "refusals-403",
            Style::RateLimit403 => "rate-limit-403",
            Style::InvalidKeyVerdict => "invalid-key-verdict",
            Style::MissingKey400 => "missing-key-400",
            Style::Method501 => "method-501",
            Style::ConsumeOnFailure => "consume-on-failure",
            Style::NoSignatures => "no-signatures",
            Style::NoQuota => "no-quota",
            Style::TtlCap20 => "ttl-cap-20",
            Style::PythonRsaOnly => "python-rsa-only",
            Style::LowercaseOnly => "lowercase-only",
            Style::UnknownChallenge404 => "unknown-challenge-404",
            Style::UppercaseChallenges => "uppercase-challenges",
            Style::NoEncryptedFlag => "no-encrypted-flag",
            Style::RsaResponseOnly => "rsa-response-only",
        }
    }

    /// What the style does, as `--list-styles` says it.
    pub fn describe(self) -> &'static str {
        match self {
            Style::Refusals4xx => {
                "refused verdicts answer 409 (replayed), 410 (expired), 400 (bad response), 404 (unknown challenge)"
            }
            Style::Refusals403 => "refused verdicts answer 403",
            Style::RateLimit403 => "rate limiting answers 403 without Retry-After",
            Style::InvalidKeyVerdict => {
                "an unknown key on validate answers 200 {valid: false, error: invalid_key}"
            }
            Style::MissingKey400 => "a request without a key answers 400 bad_request",
            Style::Method501 => "an unsupported method answers 501",
            Style::ConsumeOnFailure => "a failed validation uses up the challenge",
            Style::NoSignatures => "verdicts carry no signature",
            Style::NoQuota => "verdicts carry no quota object",
            Style::TtlCap20 => "TTLs above 20 s are shortened to 20 (expires_in says so)",
            Style::PythonRsaOnly => "only the Python guide's RSA reading validates",
            Style::LowercaseOnly => "responses in uppercase hex are refused",
            Style::UnknownChallenge404 => "unknown and foreign challenges answer 404 not_found",
            Style::UppercaseChallenges => "challenges are uppercase hex",
            Style::NoEncryptedFlag => "encrypted challenges come without \"encrypted\": true",
            Style::RsaResponseOnly => {
                "an RSA challenge's decryptedChallenge is not read: the response alone proves the decryption"
            }
        }
    }
}

impl FromStr for Style {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Style::ALL
            .into_iter()
            .find(|style| style.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Style::ALL.iter().map(|style| style.name()).collect();
                format!(
                    "unknown style '{name}' (known: {}; see --list-styles)",
                    names.join(", ")
                )
            })
    }
}

impl std::fmt::Display for Style {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The styles a server runs with; empty for the reference's choices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StyleSet {
    bits: u64,
}

impl StyleSet {
    pub fn new(styles: impl IntoIterator<Item = Style>) -> Self {
        Self {
            bits: styles.into_iter().fold(0, |bits, style| bits | bit(style)),
        }
    }

    pub fn has(&self, style: Style) -> bool {
        self.bits & bit(style) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.bits == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = Style> + '_ {
        Style::ALL.into_iter().filter(|style| self.has(*style))
    }
}

fn bit(style: Style) -> u64 {
    const { assert!(Style::ALL.len() <= 64, "one bit per style") };
    1 << (style as u32)
}

/// `--list-styles`: one line per style, its name and what it does.
pub fn list_styles() -> String {
    let width = Style::ALL.iter().map(|s| s.name().len()).max().unwrap_or(0);
    Style::ALL
        .iter()
        .map(|style| format!("{:width$}  {}\n", style.name(), style.describe()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_the_list_has_each() {
        for style in Style::ALL {
            assert_eq!(style.name().parse::<Style>(), Ok(style));
        }
        assert!(
            "nope"
                .parse::<Style>()
                .unwrap_err()
                .contains("refusals-4xx")
        );
        assert_eq!(list_styles().lines().count(), Style::ALL.len());
    }
}
