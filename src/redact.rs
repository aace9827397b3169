//! Secret redaction for everything the harness writes: reports, console summaries, logs.
//!
//! Server answers and request bodies end up in evidence, and a misbehaving server may echo
//! an API key or key material back in any shape: raw, inside a JSON string, in a query
//! string, as hex, or as part of a base64 blob. For each registered secret the [`Redactor`]
//! precomputes every such encoding ("needles") and finds them all in one pass with
//! Aho-Corasick, so adding encodings costs memory, not time per byte of text.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use base64::Engine as _;
use base64::engine::general_purpose::{
    STANDARD, STANDARD_NO_PAD, STANDARD_PAD_INDIFFERENT, URL_SAFE, URL_SAFE_NO_PAD,
};

/// A panic report (thread, location, message) with secrets replaced, for the binary's
/// panic hook.
pub fn panic_text(
    redactor: &Redactor,
    thread: &str,
    location: Option<&str>,
    message: Option<&str>,
) -> String {
    let text = format!(
        "thread '{thread}' panicked at {}:\n{}",
        location.unwrap_or("<unknown>"),
        message.unwrap_or("Box<dyn Any>")
    );
    redactor.redact(&text).into_owned()
}

/// What every hit is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Secrets shorter than this (in characters) are ignored: redacting "abc" or "1234"
/// would mangle ordinary text and hide nothing worth hiding.
pub const MIN_SECRET_LEN: usize = 8;

/// PEM body lines shorter than this are not registered on their own: the last line of a
/// body can be a few characters that also occur in ordinary text.
const MIN_PEM_LINE_LEN: usize = 16;

/// Replaces registered secrets, in any of their common encodings, with [`REDACTED`].
#[derive(Clone, Default)]
pub struct Redactor {
    /// Secrets as registered; kept so the matcher can be rebuilt when one is added.
    secrets: BTreeSet<Vec<u8>>,
    /// Every encoding of every secret; a set so equal encodings (e.g. a secret whose
    /// URL-encoding is itself) are searched once.
    needles: BTreeSet<String>,
    /// `None` when there is nothing to find, so `redact` is a no-op that allocates nothing.
    matcher: Option<AhoCorasick>,
}

impl Redactor {
    /// A redactor for `secrets`; empty and short (< [`MIN_SECRET_LEN`] chars) ones are skipped.
    pub fn new(secrets: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        let mut redactor = Redactor::default();
        for secret in secrets {
            redactor.insert_text(secret.as_ref());
        }
        redactor.rebuild();
        redactor
    }

    /// Registers one more secret (same rules as [`Redactor::new`]).
    pub fn add_secret(&mut self, secret: &str) {
        if self.insert_text(secret) {
            self.rebuild();
        }
    }

    /// Registers a PEM private key: the whole text, and each base64 body line (>= 16 chars)
    /// together with the bytes it decodes to, so a key leaked as a fragment, re-wrapped,
    /// or re-encoded as hex is still caught.
    pub fn add_private_key_pem(&mut self, pem: &str) {
        let mut changed = false;
        changed |= self.insert_text(pem);
        changed |= self.insert_text(pem.trim());
        // Keys read on Windows or pasted through CRLF tools differ only in line endings.
        changed |= self.insert_text(pem.replace("\r\n", "\n").trim());
        for line in pem.lines().map(str::trim) {
            // Armor lines (`-----BEGIN ...`) and RFC 1421 headers (`Proc-Type: ...`) are not
            // secret; only the base64 body is.
            if line.len() < MIN_PEM_LINE_LEN || line.starts_with("-----") || line.contains(':') {
                continue;
            }
            changed |= self.insert_text(line);
            if let Ok(bytes) = STANDARD_PAD_INDIFFERENT.decode(line) {
                changed |= self.insert_bytes(&bytes);
            }
        }
        if changed {
            self.rebuild();
        }
    }

    /// Number of registered secrets (not counting their encodings).
    pub fn secret_count(&self) -> usize {
        self.secrets.len()
    }

    /// True when no secret is registered and `redact` never changes anything.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `text` with every occurrence of any encoding of any secret replaced by [`REDACTED`].
    /// Overlapping or adjacent hits become one marker. Borrows when nothing matched.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let Some(matcher) = &self.matcher else {
            return Cow::Borrowed(text);
        };
        // Overlapping search, not leftmost-first: a needle of one secret may start inside a
        // hit of another (or of a different base64 alignment), and the union must go.
        let mut spans: Vec<(usize, usize)> = matcher
            .find_overlapping_iter(text)
            .map(|m| (m.start(), m.end()))
            .collect();
        if spans.is_empty() {
            return Cow::Borrowed(text);
        }
        spans.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        let mut current = spans[0];
        for &(start, end) in &spans[1..] {
            if start <= current.1 {
                current.1 = current.1.max(end);
            } else {
                push_redacted(&mut out, text, &mut copied, current);
                current = (start, end);
            }
        }
        push_redacted(&mut out, text, &mut copied, current);
        out.push_str(&text[copied..]);
        Cow::Owned(out)
    }

    /// Adds a text secret and its text-only encodings; false if it was skipped or known.
    fn insert_text(&mut self, secret: &str) -> bool {
        if secret.chars().count() < MIN_SECRET_LEN {
            return false;
        }
        if !self.insert_bytes(secret.as_bytes()) {
            return false;
        }
        self.needles.insert(secret.to_owned());
        self.needles.extend(json_escapes(secret));
        self.needles.extend(url_encodings(secret));
        self.needles.extend(markup_escapes(secret));
        true
    }

    /// Adds a byte secret and the encodings that work on any bytes (hex, base64).
    fn insert_bytes(&mut self, secret: &[u8]) -> bool {
        if secret.len() < MIN_SECRET_LEN || !self.secrets.insert(secret.to_vec()) {
            return false;
        }
        let lower = hex::encode(secret);
        self.needles.insert(lower.to_ascii_uppercase());
        self.needles.insert(lower);
        self.needles.extend(base64_needles(secret));
        true
    }

    fn rebuild(&mut self) {
        self.needles.retain(|n| !n.is_empty());
        self.matcher = if self.needles.is_empty() {
            None
        } else {
            let matcher = AhoCorasickBuilder::new()
                .match_kind(MatchKind::Standard)
                .build(&self.needles)
                // Building only fails past u32 pattern/state limits, i.e. millions of
                // secrets; failing loudly beats silently writing secrets to disk.
                .expect("redaction automaton exceeds aho-corasick limits");
            Some(matcher)
        };
    }
}

/// Never prints the secrets themselves: a `{:?}` of a settings struct must be safe to log.
impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets.len())
            .field("needles", &self.needles.len())
            .finish()
    }
}

fn push_redacted(out: &mut String, text: &str, copied: &mut usize, (start, end): (usize, usize)) {
    out.push_str(&text[*copied..start]);
    out.push_str(REDACTED);
    *copied = end;
}

/// The secret as it appears inside a JSON string: as serde_json writes it, with `/`
/// escaped (PHP, some Java encoders), and with non-ASCII as `\uXXXX` (ASCII-only writers).
fn json_escapes(secret: &str) -> Vec<String> {
    let quoted = serde_json::to_string(secret).expect("serializing a str cannot fail");
    let serde_form = quoted[1..quoted.len() - 1].to_owned();
    let slash_form = serde_form.replace('/', "\\/");
    let mut ascii_form = String::with_capacity(serde_form.len());
    for c in serde_form.chars() {
        if c.is_ascii() {
            ascii_form.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                ascii_form.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    vec![serde_form, slash_form, ascii_form]
}

/// The secret percent-encoded as common encoders do it: RFC 3986 (only unreserved left
/// as is), WHATWG form-urlencoded (what `url`/`serde_urlencoded`/reqwest use), and
/// JavaScript's `encodeURIComponent`; each with `%20` or `+` for space, upper or lower hex.
fn url_encodings(secret: &str) -> Vec<String> {
    fn rfc3986(b: u8) -> bool {
        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
    }
    fn form(b: u8) -> bool {
        b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_')
    }
    fn uri_component(b: u8) -> bool {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
            )
    }
    let mut out = Vec::new();
    for keep in [rfc3986 as fn(u8) -> bool, form, uri_component] {
        for plus in [false, true] {
            for upper in [false, true] {
                out.push(percent_encode(secret, keep, plus, upper));
            }
        }
    }
    out
}

fn percent_encode(secret: &str, keep: fn(u8) -> bool, space_plus: bool, upper: bool) -> String {
    let mut out = String::with_capacity(secret.len() * 3);
    for &b in secret.as_bytes() {
        if keep(b) {
            out.push(b as char);
        } else if b == b' ' && space_plus {
            out.push('+');
        } else if upper {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

/// The secret as HTML/XML writers escape it (`&apos;` for XML, `&#39;` for HTML), for
/// reports whose text is redacted only after it was rendered.
fn markup_escapes(secret: &str) -> Vec<String> {
    ["&apos;", "&#39;", "&#x27;"]
        .into_iter()
        .map(|apos| {
            let mut out = String::with_capacity(secret.len());
            for c in secret.chars() {
                match c {
                    '&' => out.push_str("&amp;"),
                    '<' => out.push_str("&lt;"),
                    '>' => out.push_str("&gt;"),
                    '"' => out.push_str("&quot;"),
                    '\'' => out.push_str(apos),
                    c => out.push(c),
                }
            }
            out
        })
        .collect()
}

/// Base64 needles: the whole encoding (standard and URL-safe, padded and not), and for a
/// secret embedded at any offset in a larger blob, the part of the encoding that does not
/// depend on neighbouring bytes. Base64 works in 3-byte groups, so an embedded secret sits
/// at one of three alignments; encoding it after 0, 1 or 2 filler bytes and keeping only
/// the characters whose 6 bits all come from the secret gives a needle for each.
fn base64_needles(secret: &[u8]) -> Vec<String> {
    let mut out = vec![
        STANDARD.encode(secret),
        STANDARD_NO_PAD.encode(secret),
        URL_SAFE.encode(secret),
        URL_SAFE_NO_PAD.encode(secret),
    ];
    for prefix in 0..3usize {
        let mut shifted = vec![0u8; prefix];
        shifted.extend_from_slice(secret);
        let total_bits = shifted.len() * 8;
        // Character i carries bits [6i, 6i + 6): keep it only if they all lie in the secret.
        let first = (prefix * 8).div_ceil(6);
        let last = total_bits / 6;
        for engine in [STANDARD_NO_PAD, URL_SAFE_NO_PAD] {
            let encoded = engine.encode(&shifted);
            out.push(encoded[first..last].to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "kc_live_9f8e7d6c5b4a3f2e1d0c";
    /// Exercises JSON, URL and markup escaping, which `SECRET` does not.
    const SPECIAL: &str = "p@ss w/\"q\" & <x> 'y' é\n";

    fn redactor() -> Redactor {
        Redactor::new([SECRET, SPECIAL])
    }

    fn assert_redacted(text: &str, forbidden: &str) {
        let out = redactor().redact(text).into_owned();
        assert!(
            !out.contains(forbidden),
            "{forbidden:?} survived in {out:?}"
        );
        assert!(out.contains(REDACTED), "nothing redacted in {out:?}");
    }

    #[test]
    fn raw() {
        assert_redacted(&format!("key={SECRET}; done"), SECRET);
        assert_redacted(&format!("x{SPECIAL}y"), SPECIAL);
        assert_eq!(
            redactor().redact(&format!("a {SECRET} b")),
            format!("a {REDACTED} b")
        );
    }

    #[test]
    fn json_escaped() {
        let json = serde_json::json!({ "key": SPECIAL, "other": SECRET }).to_string();
        let escaped = serde_json::to_string(SPECIAL).unwrap();
        let escaped = &escaped[1..escaped.len() - 1];
        assert!(json.contains(escaped));
        assert_redacted(&json, escaped);
        assert_redacted(&json, SECRET);
        let slashed = escaped.replace('/', "\\/");
        assert_redacted(&format!("{{\"k\":\"{slashed}\"}}"), &slashed);
        let ascii = escaped.replace('é', "\\u00e9");
        assert_redacted(&format!("{{\"k\":\"{ascii}\"}}"), &ascii);
    }

    #[test]
    fn url_encoded() {
        let pct = percent_encode(
            SPECIAL,
            |b| b.is_ascii_alphanumeric() || b"-._~".contains(&b),
            false,
            true,
        );
        assert!(pct.contains("%20") && pct.contains("%C3%A9"));
        assert_redacted(&format!("GET /x?key={pct}&a=b"), &pct);
        let plus = percent_encode(
            SPECIAL,
            |b| b.is_ascii_alphanumeric() || b"-._~".contains(&b),
            true,
            false,
        );
        assert!(plus.contains('+') && plus.contains("%c3%a9"));
        assert_redacted(&format!("key={plus}"), &plus);
        // WHATWG form encoding, as reqwest/serde_urlencoded produce it.
        let form: String = SPECIAL
            .bytes()
            .map(|b| match b {
                b' ' => "+".to_owned(),
                b if b.is_ascii_alphanumeric() || b"*-._".contains(&b) => (b as char).to_string(),
                b => format!("%{b:02X}"),
            })
            .collect();
        assert_redacted(&format!("key={form}"), &form);
    }

    #[test]
    fn hex_both_cases() {
        let lower = hex::encode(SECRET);
        let upper = lower.to_ascii_uppercase();
        assert_redacted(&format!("bytes: {lower}."), &lower);
        assert_redacted(&format!("bytes: {upper}."), &upper);
        let special = hex::encode(SPECIAL);
        assert_redacted(&format!("0x{special}"), &special);
    }

    #[test]
    fn base64_whole_all_variants() {
        for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
            for secret in [SECRET, SPECIAL] {
                let encoded = engine.encode(secret);
                let out = redactor()
                    .redact(&format!("token {encoded} end"))
                    .into_owned();
                assert_eq!(out, format!("token {REDACTED} end"), "{encoded}");
            }
        }
    }

    #[test]
    fn base64_embedded_at_every_offset() {
        for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
            for secret in [SECRET, SPECIAL] {
                for before in 0..7 {
                    for after in 0..4 {
                        let mut blob = vec![0xfbu8; before];
                        blob.extend_from_slice(secret.as_bytes());
                        blob.extend(std::iter::repeat_n(0xffu8, after));
                        let encoded = engine.encode(&blob);
                        let out = redactor().redact(&encoded).into_owned();
                        assert!(out.contains(REDACTED), "{before}/{after}: {out}");
                        // No 12-char run of the secret's own encoding may survive.
                        for needle in base64_needles(secret.as_bytes()) {
                            assert!(!out.contains(&needle), "{before}/{after}: {out}");
                        }
                        let leftover = out.replace(REDACTED, "");
                        assert!(
                            leftover.len()
                                <= (before * 4).div_ceil(3) + (after * 4).div_ceil(3) + 4,
                            "too much left for {before}/{after}: {out}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn markup_escaped() {
        for apos in ["&apos;", "&#39;", "&#x27;"] {
            let escaped = SPECIAL
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
                .replace('\'', apos);
            assert_redacted(&format!("<pre>{escaped}</pre>"), &escaped);
        }
    }

    #[test]
    fn short_and_empty_secrets_are_ignored() {
        let r = Redactor::new(["", "abc", "1234567"]);
        assert!(r.is_empty());
        let text = "abc 1234567 616263";
        assert!(matches!(r.redact(text), Cow::Borrowed(t) if t == text));
    }

    #[test]
    fn untouched_text_is_borrowed() {
        let text = "nothing secret here";
        assert!(matches!(redactor().redact(text), Cow::Borrowed(_)));
    }

    #[test]
    fn overlapping_hits_merge() {
        let r = Redactor::new(["aaaaBBBBcccc", "ccccDDDDeeee"]);
        assert_eq!(
            r.redact("x aaaaBBBBccccDDDDeeee y"),
            format!("x {REDACTED} y")
        );
    }

    #[test]
    fn debug_hides_secrets() {
        let debug = format!("{:?}", redactor());
        assert!(!debug.contains(SECRET) && !debug.contains("kc_live"));
        assert!(debug.contains("secrets: 2"));
    }

    #[test]
    fn private_key_pem_whole_lines_and_der_hex() {
        let body = [
            "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj",
            "MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu",
            "NMoSfm76oqFvAp8Gy0iz5sxjZmSnXyCdPEovGhLa0VzMaQ8s+CLOyS56YyCFGeJZ",
            "Ag==",
        ];
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            body.join("\n")
        );
        let mut r = Redactor::default();
        r.add_private_key_pem(&pem);
        let out = r.redact(&format!("key:\n{pem}")).into_owned();
        assert_eq!(out, format!("key:\n{REDACTED}"));
        let json = serde_json::to_string(&pem).unwrap();
        assert!(!r.redact(&json).contains("MIIEvQIBADANBgkq"));
        for line in &body[..3] {
            let out = r.redact(&format!("fragment {line} end")).into_owned();
            assert_eq!(out, format!("fragment {REDACTED} end"));
            let der_hex = hex::encode(STANDARD.decode(line).unwrap());
            assert!(!r.redact(&der_hex).contains(&der_hex[..40]));
        }
        // The short last line is not a secret by itself; the armor lines never are.
        assert_eq!(r.redact("Ag=="), "Ag==");
        assert_eq!(
            r.redact("-----BEGIN PRIVATE KEY-----"),
            "-----BEGIN PRIVATE KEY-----"
        );
    }

    #[test]
    fn panic_messages_are_redacted() {
        let redactor = Redactor::new(["kc_live_panic_secret_1234"]);
        let text = panic_text(
            &redactor,
            "main",
            Some("src/engine/scenario.rs:10:5"),
            Some("unexpected answer {\"key\":\"kc_live_panic_secret_1234\"}"),
        );
        assert!(!text.contains("kc_live_panic_secret_1234"), "{text}");
        assert!(text.contains(REDACTED) && text.contains("src/engine/scenario.rs:10:5"));
    }
}
