//! Deliberate faults for self-testing: each breaks exactly one documented guarantee, so
//! the conformance suite can prove it catches that breakage.

use std::str::FromStr;

/// One deliberate fault. `serve --list-faults` prints [`Fault::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    AcceptReplay,
    IgnoreTtl,
    AcceptAnyResponse,
    NeverRateLimit,
    WrongErrorCode,
    ReplayRace,
    AcceptUnknownKey,
    PlaintextRsa,
    RsaOaepSha1,
    CrossKey,
    BadInput500,
}

impl Fault {
    pub const ALL: [Fault; 11] = [
        Fault::AcceptReplay,
        Fault::IgnoreTtl,
        Fault::AcceptAnyResponse,
        Fault::NeverRateLimit,
        Fault::WrongErrorCode,
        Fault::ReplayRace,
        Fault::AcceptUnknownKey,
        Fault::PlaintextRsa,
        Fault::RsaOaepSha1,
        Fault::CrossKey,
        Fault::BadInput500,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::AcceptReplay => "accept-replay",
            Fault::IgnoreTtl => "ignore-ttl",
            Fault::AcceptAnyResponse => "accept-any-response",
            Fault::NeverRateLimit => "never-rate-limit",
            Fault::WrongErrorCode => "wrong-error-code",
            Fault::ReplayRace => "replay-race",
            Fault::AcceptUnknownKey => "accept-unknown-key",
            Fault::PlaintextRsa => "plaintext-rsa",
            Fault::RsaOaepSha1 => "rsa-oaep-sha1",
            Fault::CrossKey => "cross-key",
            Fault::BadInput500 => "bad-input-500",
        }
    }

    /// The guarantee this fault breaks.
    pub fn breaks(self) -> &'static str {
        match self {
            Fault::AcceptReplay => "single use: a used challenge validates again",
            Fault::IgnoreTtl => "TTL: an expired challenge still validates",
            Fault::AcceptAnyResponse => "bad responses refused: any response validates",
            Fault::NeverRateLimit => "rate limiting: requests are never rate-limited",
            Fault::WrongErrorCode => {
                "error codes: a replayed challenge answers invalid_signature, not replayed_challenge"
            }
            Fault::ReplayRace => {
                "atomic single use: check-then-use is not atomic, concurrent validations of one challenge can all succeed"
            }
            Fault::AcceptUnknownKey => "invalid keys refused: any kc_ key is accepted",
            Fault::PlaintextRsa => "RSA flow: challenges for RSA keys are handed out unencrypted",
            Fault::RsaOaepSha1 => {
                "RSA flow: challenges are encrypted with OAEP-SHA1, not OAEP-SHA256"
            }
            Fault::CrossKey => "key isolation: a challenge issued to one key validates for another",
            Fault::BadInput500 => "bad input: malformed requests answer 500 instead of a 4xx",
        }
    }
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Fault::ALL
            .into_iter()
            .find(|fault| fault.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Fault::ALL.iter().map(|fault| fault.name()).collect();
                format!(
                    "unknown fault '{name}' (known: {}; see --list-faults)",
                    names.join(", ")
                )
            })
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The faults a server runs with; empty for a correct server.
#[derive(Debug, Clone, Default)]
pub struct FaultSet {
    active: Vec<Fault>,
}

impl FaultSet {
    pub fn new(faults: impl IntoIterator<Item = Fault>) -> Self {
        let mut active: Vec<Fault> = faults.into_iter().collect();
        active.dedup();
        Self { active }
    }

    pub fn has(&self, fault: Fault) -> bool {
        self.active.contains(&fault)
    }

    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = Fault> + '_ {
        self.active.iter().copied()
    }
}

/// `--list-faults`: one line per fault, its name, spaces, what it breaks.
pub fn list_faults() -> String {
    let width = Fault::ALL.iter().map(|f| f.name().len()).max().unwrap_or(0);
    Fault::ALL
        .iter()
        .map(|fault| format!("{:width$}  {}\n", fault.name(), fault.breaks()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_unknown_names_list_the_known() {
        for fault in Fault::ALL {
            assert_eq!(fault.name().parse::<Fault>(), Ok(fault));
        }
        let err = "nope".parse::<Fault>().unwrap_err();
        assert!(err.contains("accept-replay"), "{err}");
    }

    #[test]
    fn list_has_one_line_per_fault() {
        let list = list_faults();
        assert_eq!(list.lines().count(), Fault::ALL.len());
        assert!(list.lines().all(|line| line.contains("  ")));
    }
}
