#!/usr/bin/env python3
"""Independent KeyClaim-compatible server (Python 3.11, standard library only).

Written only from the vendor's public material (API page, Python guide) and the
SDK facts in PROTOCOL-NOTES.md. It has many *variants*: some correct in the
different styles the vendor docs allow, some broken on purpose, to test whether a
conformance suite tells them apart. See README.md for the variant table.

    python3 server.py --listen 127.0.0.1:0 --api-key KEY [--api-key KEY2 ...] \
        [--rsa-api-key KEY3 --public-key PUBLIC.pem] [--rate-limit N] [--variant NAME]
    python3 server.py --list-variants
"""

import argparse
import base64
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# --------------------------------------------------------------------------
# RSA public-key encryption (RFC 8017): SPKI parsing, EME-OAEP, EME-PKCS1-v1_5
# --------------------------------------------------------------------------


def _der_next(buf, pos):
    """Read one DER TLV at pos: (tag, value bytes, next position)."""
    tag = buf[pos]
    pos += 1
    length = buf[pos]
    pos += 1
    if length & 0x80:
        nbytes = length & 0x7F
        if nbytes == 0 or nbytes > 4:
            raise ValueError("unsupported DER length")
        length = int.from_bytes(buf[pos:pos + nbytes], "big")
        pos += nbytes
    if pos + length > len(buf):
        raise ValueError("truncated DER")
    return tag, buf[pos:pos + length], pos + length


RSA_ENCRYPTION_OID = bytes.fromhex("2a864886f70d010101")  # 1.2.840.113549.1.1.1


def load_rsa_public_key(pem_text):
    """Return (n, e) from a PEM 'PUBLIC KEY' (SPKI) or 'RSA PUBLIC KEY' (PKCS#1)."""
    m = re.search(r"-----BEGIN ([A-Z ]+)-----(.*?)-----END \1-----", pem_text, re.S)
    if not m:
        raise ValueError("no PEM block found")
    label, b64 = m.group(1), m.group(2)
    der = base64.b64decode("".join(b64.split()))
    tag, seq, _ = _der_next(der, 0)
    if tag != 0x30:
        raise ValueError("not a DER SEQUENCE")
    if label == "PUBLIC KEY":
        tag, alg, pos = _der_next(seq, 0)
        if tag != 0x30:
            raise ValueError("bad AlgorithmIdentifier")
        otag, oid, _ = _der_next(alg, 0)
        if otag != 0x06 or oid != RSA_ENCRYPTION_OID:
            raise ValueError("not an rsaEncryption key")
        tag, bits, _ = _der_next(seq, pos)
        if tag != 0x03 or not bits or bits[0] != 0:
            raise ValueError("bad BIT STRING")
        tag, seq, _ = _der_next(bits[1:], 0)
        if tag != 0x30:
            raise ValueError("bad RSAPublicKey")
    elif label != "RSA PUBLIC KEY":
        raise ValueError("unsupported PEM label " + label)
    tag, nb, pos = _der_next(seq, 0)
    tag2, eb, _ = _der_next(seq, pos)
    if tag != 0x02 or tag2 != 0x02:
        raise ValueError("bad RSAPublicKey integers")
    return int.from_bytes(nb, "big"), int.from_bytes(eb, "big")


def _mgf1(seed, length, hname):
    out = bytearray()
    counter = 0
    while len(out) < length:
        out += hashlib.new(hname, seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return bytes(out[:length])


def _xor(a, b):
    return bytes(x ^ y for x, y in zip(a, b))


def rsa_oaep_encrypt(n, e, message, hname="sha256", label=b""):
    """RSAES-OAEP-ENCRYPT (RFC 8017 7.1.1), same hash for OAEP and MGF1."""
    k = (n.bit_length() + 7) // 8
    lhash = hashlib.new(hname, label).digest()
    hlen = len(lhash)
    if len(message) > k - 2 * hlen - 2:
        raise ValueError("message too long")
    db = lhash + b"\x00" * (k - len(message) - 2 * hlen - 2) + b"\x01" + message
    seed = os.urandom(hlen)
    masked_db = _xor(db, _mgf1(seed, k - hlen - 1, hname))
    masked_seed = _xor(seed, _mgf1(masked_db, hlen, hname))
    em = b"\x00" + masked_seed + masked_db
    return pow(int.from_bytes(em, "big"), e, n).to_bytes(k, "big")


def rsa_pkcs1v15_encrypt(n, e, message):
    """RSAES-PKCS1-v1_5-ENCRYPT (only used by a broken variant)."""
    k = (n.bit_length() + 7) // 8
    ps = bytearray()
    while len(ps) < k - len(message) - 3:
        b = os.urandom(1)
        if b != b"\x00":
            ps += b
    em = b"\x00\x02" + bytes(ps) + b"\x00" + message
    return pow(int.from_bytes(em, "big"), e, n).to_bytes(k, "big")


# --------------------------------------------------------------------------
# Variants
# --------------------------------------------------------------------------

BASE = {
    # status of verdict refusals on validate, per error code
    "refusal_status": {"expired_challenge": 200, "replayed_challenge": 200,
                       "invalid_signature": 200},
    "invalid_key_status": 401,            # create and validate
    "validate_invalid_key_status": None,  # None = same as invalid_key_status
    "rl_status": 429,
    "rl_retry_after": True,
    "rl_window": False,                   # fixed window instead of token bucket
    "method_status": 405,
    "consume_on_fail": False,
    "foreign_consumes": False,
    "signature": True,
    "messages": True,
    "rich": False,                        # quota object + "encrypted": false
    "ttl_cap": 86400,
    "ttl_lenient": False,
    "lenient_fields": False,              # missing challenge/response -> 200 refusal, not 400                 # invalid ttl -> default 30 instead of 400
    "case_insensitive": False,
    "challenge_bytes": 16,
    "challenge_upper": False,
    "rsa_guide": True,                    # response == plaintext, challenge = ciphertext
    "rsa_hmac": True,                     # response == HMAC(key, plaintext)
    "rsa_hmac_ct_with_proof": False,
    "hmac_either_order": False,
    "unknown_code": "invalid_signature",
    "expired_over_replayed": False,
    "http10": False,
    "bearer_wins": False,
    "broken": None,                       # name of the single deliberate defect
}

# name -> (kind, description, overrides)
VARIANTS = {}


def _v(name, kind, desc, **over):
    VARIANTS[name] = (kind, desc, over)


def _b(name, desc, **over):
    over.setdefault("broken", name)
    VARIANTS[name] = ("broken", desc, over)


# ---- correct variants ----------------------------------------------------
_v("correct", "correct",
   "reference reading: 200 verdicts, 401 invalid_key, 429+Retry-After, 405, both RSA readings")
_v("refusals-400", "correct",
   "verdict refusals (expired/replayed/bad response) as 400 {valid:false,error}",
   refusal_status={"expired_challenge": 400, "replayed_challenge": 400,
                   "invalid_signature": 400})
_v("refusals-4xx-mixed", "correct",
   "refusals as 410 expired / 409 replayed / 422 bad response, body {valid:false,error}",
   refusal_status={"expired_challenge": 410, "replayed_challenge": 409,
                   "invalid_signature": 422})
_v("ratelimit-403", "correct", "rate limiting as 403 {error:rate_limited} without Retry-After",
   rl_status=403, rl_retry_after=False)
_v("ratelimit-429-bare", "correct", "rate limiting as 429 {error:rate_limited} without Retry-After",
   rl_retry_after=False)
_v("ratelimit-window", "correct", "fixed one-second window rate limiter instead of token bucket",
   rl_window=True)
_v("invalid-key-200", "correct",
   "invalid key on validate answered 200 {valid:false,error:invalid_key}",
   validate_invalid_key_status=200)
_v("method-501", "correct", "unknown methods answered 501", method_status=501)
_v("method-404", "correct", "unknown methods answered 404", method_status=404)
_v("consume-on-attempt", "correct",
   "a challenge is used up by any validation attempt by its owner, even a failed one",
   consume_on_fail=True)
_v("foreign-consumes", "correct",
   "another valid key's attempt on a challenge is refused but uses the challenge up",
   foreign_consumes=True)
_v("no-signature", "correct", "no signature on valid verdicts (signatures are a paid-plan feature)",
   signature=False)
_v("minimal", "correct", "no optional fields: no signature, no message", signature=False,
   messages=False)
_v("rich", "correct", "adds SDK-known optional fields: quota{used,remaining,quota}, encrypted:false",
   rich=True)
_v("ttl-cap-300", "correct", "TTLs above 300 s are shortened to 300 and expires_in says 300",
   ttl_cap=300)
_v("ttl-lenient", "correct",
   "an invalid ttl (0, negative, string, object) means the default 30 instead of a 400",
   ttl_lenient=True)
_v("lenient-fields", "correct",
   "a validate without challenge/response (or mistyped) is a 200 invalid_signature refusal, not 400",
   lenient_fields=True)
_v("case-insensitive", "correct", "hex response compared case-insensitively (same bytes)",
   case_insensitive=True)
_v("challenge-64hex", "correct", "challenges are 32 random bytes (64 hex chars)", challenge_bytes=32)
_v("challenge-upper-hex", "correct", "challenges are uppercase hex (still hex)", challenge_upper=True)
_v("rsa-guide-only", "correct",
   "RSA: only the Python guide's reading (challenge=ciphertext, response=plaintext)",
   rsa_hmac=False)
_v("rsa-hmac-ct-with-proof", "correct",
   "RSA: also accepts HMAC(key, ciphertext) when decryptedChallenge proves the decryption",
   rsa_hmac_ct_with_proof=True)
_v("hmac-either-order", "correct",
   "also accepts HMAC(key=challenge, msg=apiKey), the API page's literal HMAC-SHA256(challenge, apiKey)",
   hmac_either_order=True)
_v("unknown-as-expired", "correct", "never-issued / foreign challenges refused as expired_challenge",
   unknown_code="expired_challenge")
_v("expired-over-replayed", "correct",
   "a used challenge past its TTL is refused as expired_challenge (not replayed_challenge)",
   expired_over_replayed=True)
_v("http10", "correct", "HTTP/1.0 style: no keep-alive, Connection: close on every answer",
   http10=True)
_v("bearer-wins", "correct",
   "when both Bearer and body key are sent, the Bearer key is used and the body key ignored",
   bearer_wins=True)

# ---- broken variants -----------------------------------------------------
# authentication
_b("bearer-any-kc", "accepts any unknown kc_ key in the Authorization: Bearer form")
_b("nokey-create", "create without any key issues a challenge")
_b("nokey-validate", "validate without any key checks the response against the owner's key")
_b("key-prefix", "a key is accepted if it is a kc_-prefix of a known key (e.g. 'kc_')")
_b("no-bearer", "ignores Authorization: Bearer (body key only): SDK clients get invalid_key")
_b("bearer-only", "ignores the body key (Bearer only): the documented body form gets invalid_key")
_b("invalid-key-valid-true", "invalid key on validate answered 200 {valid:true}")
_b("invalid-key-500", "invalid key answered 500 {error:invalid_key}")
_b("invalid-key-wrong-code", "invalid key answered 401 {error:invalid_signature}")
_b("cross-key", "owner not checked: key B validates key A's challenge with HMAC under B")
_b("hmac-any-known-key", "response accepted if it is the HMAC under any configured key")
_b("accept-unissued", "stateless: a never-issued challenge validates if its HMAC matches")
# the response
_b("response-first8", "compares only the first 8 hex chars of the response")
_b("response-first32", "compares only the first 32 hex chars of the response")
_b("empty-response", "accepts an empty response")
_b("prefix-match", "accepts a truncated or extended response (prefix match either way)")
_b("uppercase-only", "expects the HMAC in uppercase hex: the SDKs' lowercase is refused")
_b("accepts-echo", "also accepts the challenge itself as the response (SDK 'echo')")
_b("accepts-hash", "also accepts hex SHA-256(challenge + key) (SDK 'hash')")
_b("any-hex64", "accepts any 64 hex chars (an HMAC under any secret)")
_b("any-response", "accepts any response at all")
_b("hmac-swapped", "only HMAC(key=challenge, msg=apiKey): the Python guide's response is refused")
_b("hmac-base64", "expects the HMAC base64-encoded instead of hex")
# verdict shape
_b("valid-string-false", "refusals carry \"valid\": \"false\" (a string)")
_b("valid-zero", "refusals carry \"valid\": 0")
_b("valid-string-true", "valid verdicts carry \"valid\": \"true\" (a string)")
_b("dup-valid", "refusals are {\"valid\": true, \"valid\": false, ...} (duplicate key)")
_b("refusal-no-error", "refusals carry no error code")
_b("refusal-no-valid", "refusals are 200 {error} without a valid field")
_b("refusal-valid-true", "refusals are {valid:true, error:CODE}")
_b("verdict-not-json", "valid verdicts are a Python repr, not JSON")
_b("success-with-error", "valid verdicts also carry error:invalid_signature")
_b("bad-response-code", "a wrong response is refused with error invalid_response (undocumented)")
# signature
_b("sig-constant", "the same signature on every valid verdict")
_b("sig-nonhex", "the signature is not hex")
_b("sig-on-refusal", "refusals carry a signature too (over the challenge only, not the verdict)")
_b("sig-equals-response", "the signature is the client's response echoed")
# challenge generation
_b("challenge-repeat", "challenges repeat (a pool of 4); re-issuing re-arms a used one")
_b("challenge-counter", "challenges are a predictable counter")
_b("challenge-short", "challenges are 8 hex chars (32 bits)")
_b("challenge-base64", "challenges are base64, not hex")
# time
_b("expire-half", "challenges expire at half the TTL advertised in expires_in")
_b("never-expire", "challenges never expire")
_b("expired-says-replayed", "an expired challenge is refused as replayed_challenge")
_b("expired-says-invalid", "an expired challenge is refused as invalid_signature")
_b("expires-in-inflated", "expires_in advertises twice the TTL actually kept")
_b("ttl-cap-silent", "keeps challenges at most 10 s but advertises the requested TTL")
_b("ttl-ignored", "ignores the requested TTL: always 30 s (so a 5 s challenge lives 30 s)")
_b("expires-in-missing", "create answers without expires_in")
_b("expires-in-string", "expires_in is a string (\"30\")")
_b("expires-in-ms", "expires_in is in milliseconds")
# single use
_b("no-single-use", "challenges can be validated any number of times")
_b("forget-used-2s", "forgets used challenges 2 s after use: replay works again")
_b("replay-wrong-code", "a replay is refused as invalid_signature instead of replayed_challenge")
_b("race", "check-then-use race: concurrent validations of one challenge can both succeed")
# RSA
_b("rsa-trust-decrypted", "RSA: valid whenever response == decryptedChallenge, decryption unchecked")
_b("rsa-hmac-ciphertext", "RSA: accepts HMAC(key, ciphertext) as the response (no private key needed)")
_b("rsa-echo-ciphertext", "RSA: accepts the ciphertext echoed as the response")
_b("rsa-two-entries", "RSA: ciphertext and plaintext are separate entries, each usable once")
_b("rsa-plain", "RSA: challenges for a key with a public key are not encrypted")
_b("rsa-pkcs1v15", "RSA: encrypts with PKCS#1 v1.5 padding instead of OAEP")
_b("rsa-oaep-sha1", "RSA: OAEP with SHA-1 instead of SHA-256")
_b("rsa-hex-ciphertext", "RSA: ciphertext returned hex-encoded instead of base64")
_b("rsa-hmac-only", "RSA: refuses the Python guide's reading (response = plaintext)")
_b("rsa-no-encrypted-flag", "RSA: encrypted challenges come without \"encrypted\": true")
_b("rsa-leak-plaintext", "RSA: create answer also carries the plaintext challenge")
_b("rsa-constant-plaintext", "RSA: every encrypted challenge has the same plaintext")
# rate limiting
_b("no-rate-limit", "never rate-limits")
_b("rate-limit-wrong-code", "rate limits as 429 {error:too_many_requests}")
_b("rate-limit-consumes", "a rate-limited validate still uses the challenge up")
_b("rate-limit-empty-body", "rate limits as 429 with an empty body (no error code)")
# HTTP robustness
_b("malformed-json-500", "malformed JSON answered 500")
_b("malformed-json-html", "malformed JSON answered 400 with an HTML page")
_b("crash-after-malformed", "exits (stops serving) after a malformed JSON body")


def variant_config(name):
    kind, desc, over = VARIANTS[name]
    cfg = dict(BASE)
    cfg.update(over)
    return cfg


MESSAGES = {
    "invalid_key": "API key is invalid or inactive",
    "expired_challenge": "Challenge has expired",
    "replayed_challenge": "Challenge has already been used",
    "invalid_signature": "Response signature is invalid",
    "rate_limited": "Rate limit exceeded",
}

DEFAULT_TTL = 30
MAX_BODY = 64 * 1024

# --------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------


class Entry:
    __slots__ = ("owner", "challenge", "expires", "used", "used_at", "plain", "cipher")

    def __init__(self, owner, challenge, expires, plain=None, cipher=None):
        self.owner = owner
        self.challenge = challenge
        self.expires = expires
        self.used = False
        self.used_at = 0.0
        self.plain = plain
        self.cipher = cipher


class RateLimiter:
    def __init__(self, rate, window):
        self.rate = rate
        self.window = window
        self.lock = threading.Lock()
        self.state = {}

    def take(self, key):
        """Return 0 if allowed, else seconds to wait before retrying."""
        if self.rate <= 0:
            return 0
        now = time.monotonic()
        with self.lock:
            if self.window:
                sec = int(now)
                start, count = self.state.get(key, (sec, 0))
                if start != sec:
                    start, count = sec, 0
                if count >= self.rate:
                    self.state[key] = (start, count)
                    return max(0.001, start + 1 - now)
                self.state[key] = (start, count + 1)
                return 0
            tokens, last = self.state.get(key, (float(self.rate), now))
            tokens = min(float(self.rate), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self.state[key] = (tokens - 1.0, now)
                return 0
            self.state[key] = (tokens, now)
            return (1.0 - tokens) / self.rate


class App:
    def __init__(self, keys, rsa_keys, rate, cfg):
        self.keys = set(keys) | set(rsa_keys)
        self.rsa = dict(rsa_keys)  # key -> (n, e)
        self.cfg = cfg
        self.broken = cfg["broken"]
        self.limiter = RateLimiter(0 if self.broken == "no-rate-limit" else rate,
                                   cfg["rl_window"])
        self.lock = threading.Lock()
        self.store = {}
        self.counter = 0
        self.counter_lock = threading.Lock()
        self.sig_secret = secrets.token_bytes(32)
        self.pool = [secrets.token_hex(16) for _ in range(4)]
        self.const_plain = secrets.token_hex(16)
        self.used_count = {}

    # ---- helpers
    def new_challenge_string(self):
        b = self.broken
        if b == "challenge-counter":
            with self.counter_lock:
                self.counter += 1
                return "%032x" % self.counter
        if b == "challenge-repeat":
            return secrets.choice(self.pool)
        if b == "challenge-short":
            return secrets.token_hex(4)
        if b == "challenge-base64":
            return base64.b64encode(secrets.token_bytes(16)).decode()
        c = secrets.token_hex(self.cfg["challenge_bytes"])
        return c.upper() if self.cfg["challenge_upper"] else c

    def sign(self, owner, challenge, verdict):
        msg = json.dumps([owner or "", challenge, verdict, time.time_ns(),
                          secrets.token_hex(8)]).encode()
        return hmac.new(self.sig_secret, msg, hashlib.sha256).hexdigest()

    def prune(self, now):
        if len(self.store) < 100000:
            return
        dead = [c for c, e in self.store.items() if e.expires < now - 600]
        for c in dead:
            del self.store[c]


def hmac_hex(secret, msg):
    return hmac.new(secret.encode("utf-8"), msg.encode("utf-8"), hashlib.sha256).hexdigest()


def eq(a, b):
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def parse_ttl(value, lenient=False):
    """TTL in seconds: absent/null -> 30; a positive finite number -> ceil(value).
    Anything else (0, negative, string, bool, object) -> None (refused with 400),
    or 30 when lenient."""
    if value is None:
        return DEFAULT_TTL
    if isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value) and value > 0:
        return int(math.ceil(value))
    return DEFAULT_TTL if lenient else None


# --------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "KeyClaimIndependentPy/1.0"
    sys_version = ""
    timeout = 60
    disable_nagle_algorithm = True
    app = None  # set at start-up

    def version_string(self):
        return self.server_version

    def log_message(self, fmt, *args):  # no per-request logs (and never keys)
        pass

    def __getattr__(self, name):
        # any HTTP method other than POST (GET, PUT, FOO, ...)
        if name.startswith("do_"):
            return self._other_method
        raise AttributeError(name)

    # ---- output
    def send_body(self, status, obj=None, raw=None, headers=(), ctype="application/json"):
        cfg = self.app.cfg
        body = raw if raw is not None else (b"" if obj is None else json.dumps(obj).encode())
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        if cfg["http10"] or self.close_connection:
            self.send_header("Connection", "close")
            self.close_connection = True
        # headers and body in one write (no Nagle / delayed-ACK stall)
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(body)
        self.flush_headers()

    def send_error(self, code, message=None, explain=None):
        # errors raised by http.server itself (bad request line, headers, ...)
        self.close_connection = True
        try:
            self.send_body(code, {"error": "bad_request", "message": message or ""})
        except OSError:
            pass

    def msg(self, obj, code):
        if self.app.cfg["messages"]:
            obj["message"] = MESSAGES.get(code, code)
        return obj

    # ---- input
    def read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            data = bytearray()
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    raise ValueError("eof in chunked body")
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while True:  # trailers
                        t = self.rfile.readline(1024)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline(8)
                if len(data) > MAX_BODY:
                    raise OverflowError()
        n = self.headers.get("Content-Length")
        if n is None:
            return b""
        n = int(n)
        if n < 0:
            raise ValueError("negative length")
        if n > MAX_BODY:
            raise OverflowError()
        return self.rfile.read(n)

    def _other_method(self):
        path = self.path.split("?", 1)[0]
        # drain any body so keep-alive stays in sync
        try:
            self.read_body()
        except Exception:
            self.close_connection = True
        if path not in ("/api/challenge/create", "/api/challenge/validate"):
            self.send_body(404, {"error": "not_found"})
            return
        st = self.app.cfg["method_status"]
        hdrs = [("Allow", "POST")] if st == 405 else []
        self.send_body(st, {"error": "method_not_allowed"}, headers=hdrs)

    def do_POST(self):
        app = self.app
        path = self.path.split("?", 1)[0]
        try:
            raw = self.read_body()
        except OverflowError:
            self.close_connection = True
            self.send_body(413, {"error": "payload_too_large"})
            return
        except (ValueError, OSError):
            self.close_connection = True
            self.send_body(400, {"error": "invalid_request", "message": "unreadable body"})
            return
        if path == "/api/challenge/create":
            endpoint = "create"
        elif path == "/api/challenge/validate":
            endpoint = "validate"
        else:
            self.send_body(404, {"error": "not_found"})
            return
        try:
            body = json.loads(raw.decode("utf-8")) if raw.strip() else {}
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError):
            self.malformed(endpoint)
            return
        try:
            if endpoint == "create":
                self.create(body)
            else:
                self.validate(body)
        except Exception as exc:  # never leak details, keep serving
            sys.stderr.write("internal error: %s\n" % type(exc).__name__)
            self.close_connection = True
            self.send_body(500, {"error": "internal_error"})

    def malformed(self, endpoint):
        b = self.app.broken
        if b == "malformed-json-500":
            self.send_body(500, {"error": "internal_error"})
            return
        if b == "malformed-json-html":
            page = b"<html><body><h1>400 Bad Request</h1></body></html>"
            self.send_body(400, raw=page, ctype="text/html")
            return
        obj = {"error": "invalid_request", "message": "body is not a JSON object"}
        if endpoint == "validate":
            obj = {"valid": False, **obj}
        self.send_body(400, obj)
        if b == "crash-after-malformed":
            sys.stderr.write("crash-after-malformed: exiting\n")
            sys.stderr.flush()
            os._exit(3)

    # ---- authentication
    def authenticate(self, body, endpoint):
        """Return (key, None) or (None, reason); key may be '' for the nokey variants."""
        app, cfg, b = self.app, self.app.cfg, self.app.broken
        bearer = None
        hdr = self.headers.get("Authorization")
        if hdr is not None and b != "no-bearer":
            parts = hdr.strip().split(None, 1)
            if len(parts) == 2 and parts[0].lower() == "bearer":
                bearer = parts[1].strip()
        bodykey = None
        if "key" in body and b != "bearer-only":
            bodykey = body.get("key")
            if not isinstance(bodykey, str):
                return None, "invalid"
        if bearer is None and bodykey is None:
            if (b == "nokey-create" and endpoint == "create") or \
               (b == "nokey-validate" and endpoint == "validate"):
                return "", None
            return None, "missing"
        if bearer is not None and bodykey is not None and bearer != bodykey:
            if cfg["bearer_wins"]:
                bodykey = None
            else:
                return None, "mismatch"
        key = bearer if bearer is not None else bodykey
        if key in app.keys:
            return key, None
        if b == "bearer-any-kc" and bearer is not None and key.startswith("kc_"):
            return key, None
        if b == "key-prefix" and key.startswith("kc_"):
            for k in app.keys:
                if k.startswith(key):
                    return k, None
        return None, "invalid"

    def refuse_key(self, endpoint):
        b = self.app.broken
        cfg = self.app.cfg
        if b == "invalid-key-valid-true" and endpoint == "validate":
            self.send_body(200, {"valid": True})
            return
        code = "invalid_signature" if b == "invalid-key-wrong-code" else "invalid_key"
        obj = self.msg({"error": code}, "invalid_key")
        status = cfg["invalid_key_status"]
        if endpoint == "validate":
            obj = {"valid": False, **obj}
            if cfg["validate_invalid_key_status"] is not None:
                status = cfg["validate_invalid_key_status"]
        if b == "invalid-key-500":
            status = 500
        self.send_body(status, obj)

    def rate_limited(self, key, endpoint):
        wait = self.app.limiter.take(key)
        if not wait:
            return False
        cfg, b = self.app.cfg, self.app.broken
        headers = []
        if cfg["rl_retry_after"]:
            headers.append(("Retry-After", str(max(1, math.ceil(wait)))))
        if b == "rate-limit-empty-body":
            self.send_body(429, raw=b"", headers=headers)
            return True
        code = "too_many_requests" if b == "rate-limit-wrong-code" else "rate_limited"
        obj = self.msg({"error": code}, "rate_limited")
        if endpoint == "validate":
            obj = {"valid": False, **obj}
        self.send_body(cfg["rl_status"], obj, headers=headers)
        return True

    # ---- create
    def create(self, body):
        app, cfg, b = self.app, self.app.cfg, self.app.broken
        key, why = self.authenticate(body, "create")
        if key is None:
            self.refuse_key("create")
            return
        if key and self.rate_limited(key, "create"):
            return
        ttl = parse_ttl(body.get("ttl"), cfg["ttl_lenient"])
        if ttl is None:
            self.send_body(400, {"error": "invalid_request",
                                 "message": "ttl must be a positive number of seconds"})
            return
        ttl = min(ttl, cfg["ttl_cap"])
        if b == "ttl-ignored":
            ttl = DEFAULT_TTL
        keep = ttl
        if b == "expire-half":
            keep = ttl / 2.0
        elif b == "ttl-cap-silent":
            keep = min(ttl, 10)
        now = time.monotonic()
        expires = now + keep
        out = {}
        pub = app.rsa.get(key)
        if pub is not None and b != "rsa-plain":
            plain = app.const_plain if b == "rsa-constant-plaintext" else app.new_challenge_string()
            n, e = pub
            if b == "rsa-pkcs1v15":
                ct = rsa_pkcs1v15_encrypt(n, e, plain.encode())
            elif b == "rsa-oaep-sha1":
                ct = rsa_oaep_encrypt(n, e, plain.encode(), "sha1")
            else:
                ct = rsa_oaep_encrypt(n, e, plain.encode(), "sha256")
            cipher = ct.hex() if b == "rsa-hex-ciphertext" else base64.b64encode(ct).decode()
            with app.lock:
                app.prune(now)
                if b == "rsa-two-entries":
                    app.store[cipher] = Entry(key, cipher, expires, plain=plain, cipher=cipher)
                    app.store[plain] = Entry(key, plain, expires, plain=plain, cipher=None)
                else:
                    entry = Entry(key, cipher, expires, plain=plain, cipher=cipher)
                    app.store[cipher] = entry
                    if b != "rsa-constant-plaintext":
                        app.store[plain] = entry
            out["challenge"] = cipher
            out["expires_in"] = ttl
            if b != "rsa-no-encrypted-flag":
                out["encrypted"] = True
            if b == "rsa-leak-plaintext":
                out["plaintext"] = plain
        else:
            with app.lock:
                app.prune(now)
                for _ in range(8):
                    ch = app.new_challenge_string()
                    if ch not in app.store or b == "challenge-repeat":
                        break
                app.store[ch] = Entry(key, ch, expires)
            out["challenge"] = ch
            out["expires_in"] = ttl
            if cfg["rich"]:
                out["encrypted"] = False
        if b == "expires-in-missing":
            del out["expires_in"]
        elif b == "expires-in-string":
            out["expires_in"] = str(ttl)
        elif b == "expires-in-ms":
            out["expires_in"] = ttl * 1000
        elif b == "expires-in-inflated":
            out["expires_in"] = ttl * 2
        self.send_body(200, out)

    # ---- validate
    def check_response(self, entry, key, challenge, resp, dec):
        app, cfg, b = self.app, self.app.cfg, self.app.broken
        # the HMAC secret is the owner's key (cross-key: wrongly the presenting key)
        secret = key if (b == "cross-key" and key) else (entry.owner or key)
        if entry.plain is not None:  # RSA challenge
            if b == "rsa-trust-decrypted" and isinstance(dec, str) and isinstance(resp, str) \
                    and resp == dec:
                return True
            if not isinstance(resp, str):
                return False
            if b == "rsa-hmac-ciphertext" and entry.cipher and eq(resp, hmac_hex(secret, entry.cipher)):
                return True
            if b == "rsa-echo-ciphertext" and entry.cipher and eq(resp, entry.cipher):
                return True
            if dec is not None and not (isinstance(dec, str) and eq(dec, entry.plain)):
                return False
            r = resp.lower() if cfg["case_insensitive"] else resp
            via_cipher = entry.cipher is not None and challenge == entry.cipher
            if b == "rsa-two-entries" and challenge == entry.plain:
                via_cipher = False
            if cfg["rsa_guide"] and b != "rsa-hmac-only" and via_cipher and eq(r, entry.plain):
                return True
            if cfg["rsa_hmac"] and eq(r, hmac_hex(secret, entry.plain)):
                return True
            if cfg["rsa_hmac_ct_with_proof"] and via_cipher and dec is not None \
                    and eq(r, hmac_hex(secret, entry.cipher)):
                return True
            return False
        # plain HMAC challenge
        if not isinstance(resp, str):
            return False
        ch = entry.challenge
        secrets_ = list(app.keys) if b == "hmac-any-known-key" else [secret]
        for s in secrets_:
            expected = hmac_hex(s, ch)
            if b == "hmac-swapped":
                expected = hmac_hex(ch, s)
            elif b == "hmac-base64":
                expected = base64.b64encode(bytes.fromhex(expected)).decode()
            elif b == "uppercase-only":
                expected = expected.upper()
            r = resp.lower() if cfg["case_insensitive"] else resp
            if b == "response-first8":
                if r[:8] == expected[:8] and len(r) >= 8:
                    return True
                continue
            if b == "response-first32":
                if r[:32] == expected[:32] and len(r) >= 32:
                    return True
                continue
            if b == "prefix-match" and r and (expected.startswith(r) or r.startswith(expected)):
                return True
            if eq(r, expected):
                return True
            if cfg["hmac_either_order"] and eq(r, hmac_hex(ch, s)):
                return True
            if b == "accepts-hash" and eq(r, hashlib.sha256((ch + s).encode()).hexdigest()):
                return True
        if b == "empty-response" and resp == "":
            return True
        if b == "accepts-echo" and eq(resp, ch):
            return True
        if b == "any-hex64" and re.fullmatch(r"[0-9a-fA-F]{64}", resp):
            return True
        if b == "any-response":
            return True
        return False

    def refusal(self, code, entry=None, challenge=None):
        cfg, b = self.app.cfg, self.app.broken
        if code == "invalid_signature" and b == "bad-response-code":
            code = "invalid_response"
        status = cfg["refusal_status"].get(code, 200)
        if b == "dup-valid":
            raw = '{"valid": true, "valid": false, "error": %s}' % json.dumps(code)
            self.send_body(status, raw=raw.encode())
            return
        obj = {"valid": False, "error": code}
        self.msg(obj, code)
        if b == "valid-string-false":
            obj["valid"] = "false"
        elif b == "valid-zero":
            obj["valid"] = 0
        elif b == "refusal-no-error":
            del obj["error"]
            obj.pop("message", None)
        elif b == "refusal-no-valid":
            del obj["valid"]
        elif b == "refusal-valid-true":
            obj["valid"] = True
        elif b == "sig-on-refusal" and isinstance(challenge, str):
            obj["signature"] = hmac.new(self.app.sig_secret, challenge.encode(),
                                        hashlib.sha256).hexdigest()
        self.send_body(status, obj)

    def success(self, entry, challenge, resp):
        app, cfg, b = self.app, self.app.cfg, self.app.broken
        if b == "verdict-not-json":
            self.send_body(200, raw=repr({"valid": True}).encode())
            return
        obj = {"valid": "true" if b == "valid-string-true" else True}
        if cfg["signature"]:
            if b == "sig-constant":
                sig = hashlib.sha256(b"keyclaim").hexdigest()
            elif b == "sig-nonhex":
                sig = "signed:" + base64.b64encode(secrets.token_bytes(24)).decode()
            elif b == "sig-equals-response":
                sig = resp
            elif b == "sig-on-refusal":
                sig = hmac.new(app.sig_secret, challenge.encode(), hashlib.sha256).hexdigest()
            else:
                sig = app.sign(entry.owner, entry.challenge, True)
            obj["signature"] = sig
        if b == "success-with-error":
            obj["error"] = "invalid_signature"
        if cfg["rich"]:
            with app.lock:
                used = app.used_count.get(entry.owner, 0) + 1
                app.used_count[entry.owner] = used
            obj["quota"] = {"used": used, "remaining": -1, "quota": "unlimited"}
        self.send_body(200, obj)

    def validate(self, body):
        app, cfg, b = self.app, self.app.cfg, self.app.broken
        key, why = self.authenticate(body, "validate")
        if key is None:
            self.refuse_key("validate")
            return
        challenge = body.get("challenge")
        resp = body.get("response")
        dec = body.get("decryptedChallenge")
        if key and self.rate_limited(key, "validate"):
            if b == "rate-limit-consumes" and isinstance(challenge, str):
                with app.lock:
                    e = app.store.get(challenge)
                    if e is not None and e.owner == key:
                        e.used, e.used_at = True, time.monotonic()
            return
        if not isinstance(challenge, str) or not isinstance(resp, str) or \
                (dec is not None and not isinstance(dec, str)):
            if cfg["lenient_fields"]:
                # a missing/mistyped field is just a refusal
                self.refusal("invalid_signature", None, challenge)
            else:
                self.send_body(400, self.msg({"valid": False, "error": "invalid_request"},
                                             "challenge and response must be strings"))
            return
        now = time.monotonic()
        lock = app.lock
        lock.acquire()
        try:
            entry = app.store.get(challenge)
            if entry is None and b == "accept-unissued" and key:
                entry = Entry(key, challenge, now + DEFAULT_TTL)
                app.store[challenge] = entry
            if entry is None:
                self.refusal(cfg["unknown_code"], None, challenge)
                return
            owner_ok = (entry.owner == key) or b == "cross-key" or \
                (b == "nokey-validate" and key == "")
            if not owner_ok:
                if cfg["foreign_consumes"]:
                    entry.used, entry.used_at = True, now
                self.refusal(cfg["unknown_code"], None, challenge)
                return
            expired = now >= entry.expires and b != "never-expire"
            used = entry.used
            if used and b == "forget-used-2s" and now - entry.used_at > 2.0:
                used = False
            if used and b != "no-single-use":
                if cfg["expired_over_replayed"] and expired:
                    self.refusal("expired_challenge", entry, challenge)
                elif b == "replay-wrong-code":
                    self.refusal("invalid_signature", entry, challenge)
                else:
                    self.refusal("replayed_challenge", entry, challenge)
                return
            if expired:
                if b == "expired-says-replayed":
                    self.refusal("replayed_challenge", entry, challenge)
                elif b == "expired-says-invalid":
                    self.refusal("invalid_signature", entry, challenge)
                else:
                    self.refusal("expired_challenge", entry, challenge)
                return
            if not self.check_response(entry, key, challenge, resp, dec):
                if cfg["consume_on_fail"]:
                    entry.used, entry.used_at = True, now
                self.refusal("invalid_signature", entry, challenge)
                return
            if b == "race":
                # check-then-use: release the lock between the check and the mark
                lock.release()
                lock = None
                time.sleep(0.02)
                with app.lock:
                    entry.used, entry.used_at = True, time.monotonic()
            else:
                entry.used, entry.used_at = True, now
        finally:
            if lock is not None:
                lock.release()
        self.success(entry, challenge, resp if isinstance(resp, str) else "")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512


def main(argv=None):
    ap = argparse.ArgumentParser(description="Independent KeyClaim server with variants")
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--api-key", action="append", default=[])
    ap.add_argument("--rsa-api-key", action="append", default=[])
    ap.add_argument("--public-key", action="append", default=[])
    ap.add_argument("--rate-limit", type=int, default=50)
    ap.add_argument("--variant", default="correct")
    ap.add_argument("--list-variants", action="store_true")
    args = ap.parse_args(argv)

    if args.list_variants:
        for name, (kind, desc, _) in VARIANTS.items():
            print("%s\t%s\t%s" % (name, kind, desc))
        return 0
    if args.variant not in VARIANTS:
        sys.stderr.write("unknown variant %r (see --list-variants)\n" % args.variant)
        return 2
    if args.rsa_api_key and not args.public_key:
        sys.stderr.write("--rsa-api-key needs --public-key\n")
        return 2
    rsa_keys = {}
    pubs = []
    for path in args.public_key:
        with open(path, "r", encoding="ascii") as f:
            pubs.append(load_rsa_public_key(f.read()))
    for i, k in enumerate(args.rsa_api_key):
        rsa_keys[k] = pubs[min(i, len(pubs) - 1)]
    if not args.api_key and not rsa_keys:
        sys.stderr.write("at least one --api-key is required\n")
        return 2

    cfg = variant_config(args.variant)
    app = App(args.api_key, rsa_keys, args.rate_limit, cfg)
    handler = type("H", (Handler,), {"app": app})
    if cfg["http10"]:
        handler.protocol_version = "HTTP/1.0"

    host, _, port = args.listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    httpd = Server((host, int(port)), handler)
    shown = httpd.server_address[0]
    sys.stdout.write("listening on http://%s:%d\n" % (shown, httpd.server_address[1]))
    sys.stdout.flush()
    sys.stderr.write("variant %s (%s)\n" % (args.variant, VARIANTS[args.variant][0]))
    sys.stderr.flush()

    def stop(signum, frame):
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        httpd.serve_forever(poll_interval=0.1)
    finally:
        httpd.server_close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
