//! The KeyClaim HMAC response: `lowercase hex(HMAC-SHA256(secret, challenge))`.
//!
//! This is the server's and the load generator's hottest path, so the key is absorbed
//! once ([`ResponseKey`] holds the HMAC state after the ipad/opad blocks) and each
//! challenge clones that state, costing the SHA-256 compressions of the message and
//! the outer hash only. [`ResponseKey::response_hex_into`] writes the hex into a
//! caller-owned buffer so the loop does not allocate.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Length of a response: 32 MAC bytes as lowercase hex.
pub const RESPONSE_HEX_LEN: usize = 64;

/// A pre-keyed HMAC-SHA256 state: the key's ipad/opad blocks are hashed once, and each
/// challenge clones the state instead of re-keying.
#[derive(Clone)]
pub struct ResponseKey {
    keyed: HmacSha256,
}

impl std::fmt::Debug for ResponseKey {
    // The state is derived from the secret; never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseKey(..)")
    }
}

impl ResponseKey {
    pub fn new(secret: &[u8]) -> Self {
        // HMAC takes keys of any length (longer ones are hashed first), so this cannot
        // fail whatever the caller passes.
        let keyed = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
        Self { keyed }
    }

    /// The raw MAC of `message`.
    #[inline]
    pub fn mac(&self, message: &[u8]) -> [u8; 32] {
        let mut state = self.keyed.clone();
        state.update(message);
        state.finalize().into_bytes().into()
    }

    /// The KeyClaim response to `challenge`: lowercase hex of the MAC.
    pub fn response_hex(&self, challenge: &str) -> String {
        const_hex::encode(self.mac(challenge.as_bytes()))
    }

    /// The KeyClaim response to `challenge`, written into `out` without allocating;
    /// returns the hex as `&str` borrowed from `out`.
    #[inline]
    pub fn response_hex_into<'a>(
        &self,
        challenge: &[u8],
        out: &'a mut [u8; RESPONSE_HEX_LEN],
    ) -> &'a str {
        let mac = self.mac(challenge);
        // const-hex only refuses an output whose length is not twice the input's; the
        // types fix that at 32 -> 64, so this cannot fail.
        const_hex::encode_to_str(mac, out).expect("64 bytes hold the hex of 32")
    }

    /// Whether `presented` (hex, either case) is the MAC of `message`, compared in
    /// constant time so a caller cannot learn the correct response byte by byte.
    pub fn verify_hex(&self, message: &[u8], presented: &str) -> bool {
        let mut decoded = [0u8; 32];
        // The `hex` crate, not const-hex: const-hex also accepts a `0x` prefix, which
        // is not a KeyClaim response.
        if hex::decode_to_slice(presented, &mut decoded).is_err() {
            return false;
        }
        self.mac(message).ct_eq(&decoded).into()
    }
}

/// The KeyClaim response for one challenge, keying afresh (use [`ResponseKey`] in loops).
///
/// ```
/// use keyclaim_harness::crypto::{ResponseKey, hmac_response};
/// // RFC 4231 test case 2.
/// let response = hmac_response("Jefe", "what do ya want for nothing?");
/// assert_eq!(response, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
/// // A pre-keyed state gives the same answer, and verifies it in constant time.
/// let key = ResponseKey::new(b"Jefe");
/// assert!(key.verify_hex(b"what do ya want for nothing?", &response));
/// ```
pub fn hmac_response(secret: &str, challenge: &str) -> String {
    ResponseKey::new(secret.as_bytes()).response_hex(challenge)
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
    fn response_hex_into_matches_response_hex() {
        let key = ResponseKey::new(b"kc_secret");
        let mut out = [0u8; RESPONSE_HEX_LEN];
        let challenge = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        assert_eq!(
            key.response_hex_into(challenge.as_bytes(), &mut out),
            key.response_hex(challenge)
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
        assert!(!key.verify_hex(b"abc", &format!("0x{}", &good[..62])));
        assert!(!key.verify_hex(b"abc", "zz"));
    }

    #[test]
    fn debug_does_not_show_the_state() {
        assert_eq!(
            format!("{:?}", ResponseKey::new(b"kc_secret")),
            "ResponseKey(..)"
        );
    }
}
