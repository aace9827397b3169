#!/usr/bin/env python3
"""Self-check of server.py's variants, independent of the harness.

Starts server.py with a variant, runs a set of probes written from the vendor
docs, and checks that every *correct* variant passes all probes and every
*broken* variant fails (at least) the probe that targets its defect.

    python3 selftest.py [VARIANT ...] [--jobs N]

Needs the `cryptography` package (for RSA decryption on the client side only)
and a key pair in /tmp/pyvar/keys (see try_all.sh / `keyclaim-harness keygen`).
"""
import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
KEYS = os.environ.get("KEYDIR", "/tmp/pyvar/keys")
K1, K2, K3 = "kc_primary_aaaa1111", "kc_second_bbbb2222", "kc_rsa_cccc3333"

# broken variant -> probe that must fail
EXPECT = {
    "bearer-any-kc": "unknown_key", "nokey-create": "missing_key", "nokey-validate": "missing_key",
    "key-prefix": "unknown_key", "no-bearer": "bearer", "bearer-only": "hmac_body",
    "invalid-key-valid-true": "unknown_key", "invalid-key-500": "unknown_key",
    "invalid-key-wrong-code": "unknown_key", "cross-key": "cross_key",
    "hmac-any-known-key": "wrong_responses", "accept-unissued": "unissued",
    "response-first8": "wrong_responses", "response-first32": "wrong_responses",
    "empty-response": "wrong_responses", "prefix-match": "wrong_responses",
    "uppercase-only": "hmac_body", "accepts-echo": "wrong_responses",
    "accepts-hash": "wrong_responses", "any-hex64": "wrong_responses",
    "any-response": "wrong_responses", "hmac-swapped": "hmac_body", "hmac-base64": "hmac_body",
    "valid-string-false": "wrong_responses", "valid-zero": "wrong_responses",
    "valid-string-true": "hmac_body", "dup-valid": "wrong_responses",
    "refusal-no-error": "wrong_responses", "refusal-no-valid": "wrong_responses",
    "refusal-valid-true": "wrong_responses", "verdict-not-json": "hmac_body",
    "success-with-error": "hmac_body", "bad-response-code": "wrong_responses",
    "sig-constant": "signature", "sig-nonhex": "hmac_body", "sig-on-refusal": "wrong_responses",
    "sig-equals-response": "hmac_body", "challenge-repeat": "unique",
    "challenge-counter": "unique", "challenge-short": "create_shape",
    "challenge-base64": "create_shape", "expire-half": "expiry", "never-expire": "expiry",
    "expired-says-replayed": "expiry", "expired-says-invalid": "expiry",
    "expires-in-inflated": "expiry", "ttl-cap-silent": "expiry", "ttl-ignored": "expiry",
    "expires-in-missing": "create_shape", "expires-in-string": "create_shape",
    "expires-in-ms": "create_shape", "no-single-use": "hmac_body", "forget-used-2s": "expiry",
    "replay-wrong-code": "hmac_body", "race": "race", "rsa-trust-decrypted": "rsa_wrong",
    "rsa-hmac-ciphertext": "rsa_wrong", "rsa-echo-ciphertext": "rsa_wrong",
    "rsa-two-entries": "rsa_guide", "rsa-plain": "rsa_create", "rsa-pkcs1v15": "rsa_create",
    "rsa-oaep-sha1": "rsa_create", "rsa-hex-ciphertext": "rsa_create",
    "rsa-hmac-only": "rsa_guide", "rsa-no-encrypted-flag": "rsa_create",
    "rsa-leak-plaintext": "rsa_create", "rsa-constant-plaintext": "rsa_create",
    "no-rate-limit": "rate_limit", "rate-limit-wrong-code": "rate_limit",
    "rate-limit-consumes": "rate_limit", "rate-limit-empty-body": "rate_limit",
    "malformed-json-500": "malformed", "malformed-json-html": "malformed",
    "crash-after-malformed": "malformed",
}


class Fail(Exception):
    pass


def need(cond, msg):
    if not cond:
        raise Fail(msg)


def _nodup(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate key %r" % keys)
    return dict(pairs)


class Client:
    def __init__(self, port):
        self.port = port
        self.local = threading.local()

    def req(self, method, path, body=None, bearer=None, raw=None):
        conn = getattr(self.local, "conn", None)
        for attempt in range(2):
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                self.local.conn = conn
            hdrs = {"Content-Type": "application/json"}
            if bearer:
                hdrs["Authorization"] = "Bearer " + bearer
            data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
            try:
                conn.request(method, path, body=data, headers=hdrs)
                r = conn.getresponse()
                text = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    self.local.conn = None
                break
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = None
                self.local.conn = None
                if attempt == 1:
                    raise
        try:
            obj = json.loads(text, object_pairs_hook=_nodup)
        except ValueError:
            obj = None
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), text, obj

    def create(self, key=K1, ttl=30, bearer=False):
        body = {"ttl": ttl} if bearer else {"key": key, "ttl": ttl}
        return self.req("POST", "/api/challenge/create", body, bearer=key if bearer else None)

    def ch(self, key=K1, ttl=30):
        st, _, text, o = self.create(key, ttl)
        need(st == 200 and isinstance(o, dict) and isinstance(o.get("challenge"), str),
             "create failed: %s %r" % (st, text[:200]))
        return o["challenge"]

    def validate(self, ch, resp, key=K1, bearer=False, **extra):
        body = {"challenge": ch, "response": resp, **extra}
        if not bearer and key is not None:
            body["key"] = key
        return self.req("POST", "/api/challenge/validate", body,
                        bearer=key if bearer else None)


def H(key, msg):
    return hmac.new(key.encode(), msg.encode(), hashlib.sha256).hexdigest()


def is_valid(r, what):
    st, hd, text, o = r
    need(st == 200, "%s: expected 200 valid verdict, got %s %r" % (what, st, text[:200]))
    need(isinstance(o, dict), "%s: not a JSON object: %r" % (what, text[:200]))
    need(o.get("valid") is True, "%s: valid is %r" % (what, o.get("valid")))
    need("error" not in o, "%s: valid verdict carries error %r" % (what, o.get("error")))
    sig = o.get("signature")
    if sig is not None:
        need(isinstance(sig, str) and re.fullmatch(r"[0-9a-fA-F]{32,}", sig) is not None,
             "%s: signature not hex: %r" % (what, sig))
    return o


def is_refusal(r, codes, what):
    st, hd, text, o = r
    if isinstance(codes, str):
        codes = (codes,)
    need(st < 500, "%s: %s answer %r" % (what, st, text[:200]))
    need(st == 200 or 400 <= st < 500, "%s: status %s" % (what, st))
    need(isinstance(o, dict), "%s: not a JSON object: %r" % (what, text[:200]))
    need(o.get("valid") is False if st == 200 else o.get("valid", False) is False,
         "%s: valid is %r (status %s)" % (what, o.get("valid", "<missing>"), st))
    need(o.get("error") in codes, "%s: error %r, want %s" % (what, o.get("error"), codes))
    need("signature" not in o, "%s: refusal carries a signature" % what)
    return o


def is_key_refusal(r, what):
    st, hd, text, o = r
    need(st != 200 or (isinstance(o, dict) and o.get("valid") is False and "challenge" not in o),
         "%s: accepted (%s %r)" % (what, st, text[:200]))
    is_refusal(r, "invalid_key", what)


# ---------------------------------------------------------------------------
def probe_create_shape(c, v):
    st, _, text, o = c.create(K1, 30)
    need(st == 200 and isinstance(o, dict), "create: %s %r" % (st, text[:200]))
    ch = o.get("challenge")
    need(isinstance(ch, str) and re.fullmatch(r"[0-9a-fA-F]{32,}", ch or "") is not None,
         "challenge not >=128-bit hex: %r" % ch)
    need(type(o.get("expires_in")) is int and o["expires_in"] == 30,
         "expires_in %r for ttl 30" % o.get("expires_in"))
    st, _, text, o = c.create(K1, 100000)
    need(st == 200 and type(o.get("expires_in")) is int and 0 < o["expires_in"] <= 100000,
         "ttl 100000: %s %r" % (st, text[:200]))
    st, _, text, o = c.create(K1, None)
    need(st == 200 and o.get("expires_in") == 30, "default ttl: %r" % text[:200])
    st, _, text, o = c.req("POST", "/api/challenge/create", {"key": K1, "ttl": "thirty"})
    need(st == 200 or 400 <= st < 500, "ttl 'thirty': %s" % st)


def probe_unique(c, v):
    seen = [c.ch() for _ in range(20)]
    need(len(set(seen)) == 20, "challenges repeat")
    nums = [int(s, 16) for s in seen if re.fullmatch(r"[0-9a-fA-F]+", s)]
    need(not any(b - a == 1 for a, b in zip(nums, nums[1:])), "challenges are a counter")


def probe_hmac_body(c, v):
    ch = c.ch()
    resp = H(K1, ch)
    o = is_valid(c.validate(ch, resp), "HMAC validate (body key)")
    if "signature" in o:
        need(o["signature"] != resp, "signature equals the response")
    is_refusal(c.validate(ch, resp), "replayed_challenge", "replay")


def probe_bearer(c, v):
    st, _, text, o = c.create(K1, 30, bearer=True)
    need(st == 200 and isinstance(o, dict) and "challenge" in o, "create Bearer: %s %r" % (st, text[:200]))
    ch = o["challenge"]
    is_valid(c.validate(ch, H(K1, ch), key=K1, bearer=True), "validate Bearer")


def probe_signature(c, v):
    sigs = []
    for _ in range(2):
        ch = c.ch()
        o = is_valid(c.validate(ch, H(K1, ch)), "validate")
        sigs.append(o.get("signature"))
    if sigs[0] is not None:
        need(sigs[0] != sigs[1], "same signature on two verdicts")


def probe_unknown_key(c, v):
    for k in ("kc_unknown_zzzz9999", "kc_"):
        is_key_refusal(c.create(k, 30), "create body key %s" % k)
        is_key_refusal(c.create(k, 30, bearer=True), "create Bearer %s" % k)
    ch = c.ch()
    is_key_refusal(c.validate(ch, H("kc_unknown_zzzz9999", ch), key="kc_unknown_zzzz9999"),
                   "validate unknown key")
    is_key_refusal(c.validate(ch, H("kc_unknown_zzzz9999", ch), key="kc_unknown_zzzz9999",
                              bearer=True), "validate unknown Bearer key")


def probe_missing_key(c, v):
    is_key_refusal(c.req("POST", "/api/challenge/create", {"ttl": 30}), "create without key")
    ch = c.ch()
    is_key_refusal(c.validate(ch, H(K1, ch), key=None), "validate without key")


def probe_cross_key(c, v):
    codes = ("invalid_signature", "expired_challenge", "replayed_challenge", "invalid_key")
    ch = c.ch(K1)
    is_refusal(c.validate(ch, H(K2, ch), key=K2), codes, "K1's challenge by K2 (K2 HMAC)")
    ch = c.ch(K1)
    is_refusal(c.validate(ch, H(K1, ch), key=K2), codes, "K1's challenge by K2 (K1 HMAC)")


def probe_unissued(c, v):
    ch = secrets.token_hex(16)
    is_refusal(c.validate(ch, H(K1, ch)), ("invalid_signature", "expired_challenge"),
               "never-issued challenge")


def probe_wrong_responses(c, v):
    def attempts(ch):
        good = H(K1, ch)
        yield "empty", ""
        yield "first8", good[:8] + "0" * 56
        yield "first32", good[:32] + "0" * 32
        yield "truncated", good[:-1]
        yield "extended", good + "0"
        yield "echo", ch
        yield "hash", hashlib.sha256((ch + K1).encode()).hexdigest()
        yield "random", secrets.token_hex(32)
        yield "other key", H(K2, ch)
        yield "base64", base64.b64encode(bytes.fromhex(good)).decode()
    for name, _ in list(attempts("00")):
        ch = c.ch()
        resp = dict(attempts(ch))[name]
        is_refusal(c.validate(ch, resp), "invalid_signature", "response %s" % name)
        # the right answer afterwards: valid, or replayed if the style consumes on failure
        r = c.validate(ch, H(K1, ch))
        if v == "consume-on-attempt":
            is_refusal(r, "replayed_challenge", "after failed attempt")
        else:
            is_valid(r, "right answer after a wrong one (%s)" % name)


def probe_expiry(c, v):
    out = {}

    def short():
        ch = c.ch(K1, 2)
        time.sleep(1.3)
        is_valid(c.validate(ch, H(K1, ch)), "ttl 2 at 1.3 s")
        ch2 = c.ch(K1, 2)
        time.sleep(2.4)
        is_refusal(c.validate(ch2, H(K1, ch2)), "expired_challenge", "ttl 2 at 2.4 s")
        # used then expired: either code is fine
        time.sleep(0.1)

    def long_():
        st, _, text, o = c.create(K1, 15)
        need(st == 200 and o.get("expires_in") == 15, "expires_in for ttl 15: %r" % text[:200])
        ch = o["challenge"]
        ch_b = c.ch(K1, 15)
        is_valid(c.validate(ch_b, H(K1, ch_b)), "ttl 15 first use")
        time.sleep(3.0)
        is_refusal(c.validate(ch_b, H(K1, ch_b)), "replayed_challenge", "replay 3 s later")
        time.sleep(8.5)
        is_valid(c.validate(ch, H(K1, ch)), "ttl 15 at 11.5 s")

    def run(f, k):
        try:
            f()
        except Exception as e:  # noqa
            out[k] = e
    ts = [threading.Thread(target=run, args=(short, "s")), threading.Thread(target=run, args=(long_, "l"))]
    [t.start() for t in ts]
    [t.join() for t in ts]
    if out:
        raise Fail("; ".join(str(e) for e in out.values()))


def probe_race(c, v):
    for _ in range(3):
        ch = c.ch()
        resp = H(K1, ch)
        with ThreadPoolExecutor(8) as ex:
            rs = list(ex.map(lambda _: c.validate(ch, resp), range(8)))
        ok = sum(1 for r in rs if isinstance(r[3], dict) and r[3].get("valid") is True)
        need(ok == 1, "%d of 8 concurrent validations succeeded" % ok)


# ---- RSA
_priv = None


def decrypt(ct_b64):
    global _priv
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    if _priv is None:
        _priv = serialization.load_pem_private_key(open(os.path.join(KEYS, "private.pem"), "rb").read(), None)
    raw = base64.b64decode(ct_b64, validate=True)
    return _priv.decrypt(raw, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                           algorithm=hashes.SHA256(), label=None)).decode()


def rsa_challenge(c):
    st, _, text, o = c.create(K3, 30)
    need(st == 200 and isinstance(o, dict), "RSA create: %s %r" % (st, text[:200]))
    need(o.get("encrypted") is True, "RSA create: encrypted is %r" % o.get("encrypted"))
    try:
        pt = decrypt(o["challenge"])
    except Exception as e:
        raise Fail("RSA challenge does not decrypt with OAEP-SHA256: %s" % type(e).__name__)
    return o, o["challenge"], pt


def probe_rsa_create(c, v):
    o, ct, pt = rsa_challenge(c)
    need(re.fullmatch(r"[0-9a-fA-F]{32,}", pt) is not None, "plaintext not hex: %r" % pt)
    need(pt not in json.dumps(o), "plaintext leaked in the create answer")
    _, _, pt2 = rsa_challenge(c)
    need(pt != pt2, "two RSA challenges with the same plaintext")


def probe_rsa_guide(c, v):
    _, ct, pt = rsa_challenge(c)
    is_valid(c.validate(ct, pt, key=K3, decryptedChallenge=pt), "RSA guide reading")
    is_refusal(c.validate(ct, pt, key=K3, decryptedChallenge=pt), "replayed_challenge",
               "RSA guide replay")
    r = c.validate(pt, H(K3, pt), key=K3)
    is_refusal(r, ("replayed_challenge", "invalid_signature", "expired_challenge"),
               "RSA replay through the plaintext")
    if v != "rsa-guide-only":
        _, ct, pt = rsa_challenge(c)
        is_valid(c.validate(pt, H(K3, pt), key=K3), "RSA HMAC reading (challenge=plaintext)")
        is_refusal(c.validate(ct, pt, key=K3, decryptedChallenge=pt), "replayed_challenge",
                   "RSA replay through the ciphertext")


def probe_rsa_wrong(c, v):
    fake = secrets.token_hex(16)
    for name, mk in (("response==decryptedChallenge (wrong)", lambda ct, pt: (ct, fake, {"decryptedChallenge": fake})),
                     ("HMAC of ciphertext", lambda ct, pt: (ct, H(K3, ct), {})),
                     ("echo ciphertext", lambda ct, pt: (ct, ct, {})),
                     ("HMAC of ciphertext, wrong decryptedChallenge",
                      lambda ct, pt: (ct, H(K3, ct), {"decryptedChallenge": fake}))):
        _, ct, pt = rsa_challenge(c)
        ch, resp, extra = mk(ct, pt)
        is_refusal(c.validate(ch, resp, key=K3, **extra), "invalid_signature", "RSA " + name)


def probe_malformed(c, v):
    for raw in (b"{bad json", b"[1,2]", b"\xff\xfe"):
        st, hd, text, o = c.req("POST", "/api/challenge/validate", raw=raw, bearer=K1)
        need(400 <= st < 500, "malformed %r: status %s" % (raw, st))
        need(isinstance(o, dict), "malformed %r: body not JSON: %r" % (raw, text[:100]))
    time.sleep(0.2)
    c.ch()
    st, _, _, _ = c.req("GET", "/api/challenge/create")
    need(st in (404, 405, 501), "GET create: %s" % st)
    st, _, _, _ = c.req("POST", "/api/nope", {})
    need(st == 404, "unknown path: %s" % st)


def probe_rate_limit(c, v):
    # server started with --rate-limit 20
    time.sleep(1.2)
    ch = c.ch(K2)
    with ThreadPoolExecutor(16) as ex:
        rs = list(ex.map(lambda _: c.create(K1, 30), range(120)))
    # the bucket of K1 is now empty; K2 still fine
    limited = [r for r in rs if r[0] != 200]
    need(limited, "120 requests in a burst, none rate limited")
    for st, hd, text, o in limited:
        need(st in (403, 429), "rate limited with status %s" % st)
        need(isinstance(o, dict) and o.get("error") == "rate_limited",
             "rate limited body %r" % text[:100])
    need(sum(1 for r in rs if r[0] == 200) >= 10, "burst allowed fewer than 10")
    for attempt in range(5):
        ch = c.ch(K2) if attempt else ch
        for _ in range(200):  # drain K2's allowance, then validate right away
            if c.create(K2, 30)[0] != 200:
                break
        r = c.validate(ch, H(K2, ch), key=K2)
        if r[0] != 200:
            break
        time.sleep(1.2)
    need(r[0] in (403, 429), "K2 validate right after its burst was not rate limited: %s" % r[0])
    time.sleep(1.5)
    is_valid(c.validate(ch, H(K2, ch), key=K2), "validate after the rate limit passed")


PROBES = [probe_create_shape, probe_unique, probe_hmac_body, probe_bearer, probe_signature,
          probe_unknown_key, probe_missing_key, probe_cross_key, probe_unissued,
          probe_wrong_responses, probe_race, probe_rsa_create, probe_rsa_guide,
          probe_rsa_wrong, probe_expiry, probe_malformed]


def start(variant, rate):
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "server.py"), "--listen", "127.0.0.1:0",
                          "--api-key", K1, "--api-key", K2, "--rsa-api-key", K3,
                          "--public-key", os.path.join(KEYS, "public.pem"),
                          "--rate-limit", str(rate), "--variant", variant],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    m = re.fullmatch(r"listening on http://127\.0\.0\.1:(\d+)\n", line)
    if not m:
        p.kill()
        raise RuntimeError("bad first line %r" % line)
    return p, int(m.group(1))


def run_variant(variant, kind):
    results = {}
    p, port = start(variant, 100000)
    try:
        c = Client(port)
        for pr in PROBES:
            name = pr.__name__[6:]
            try:
                pr(c, variant)
                results[name] = None
            except Fail as e:
                results[name] = str(e)
            except Exception as e:
                results[name] = "%s: %s" % (type(e).__name__, e)
            if variant == "crash-after-malformed" and p.poll() is not None:
                results[name] = results[name] or "server exited"
    finally:
        p.terminate()
        p.wait(5)
    p, port = start(variant, 20)
    try:
        try:
            probe_rate_limit(Client(port), variant)
            results["rate_limit"] = None
        except Exception as e:
            results["rate_limit"] = str(e)
    finally:
        p.terminate()
        p.wait(5)
    failed = {k: m for k, m in results.items() if m}
    if kind == "correct":
        ok = not failed
    else:
        ok = EXPECT.get(variant) in failed
    return variant, kind, ok, failed


def main():
    args = sys.argv[1:]
    jobs = 3
    if "--jobs" in args:
        i = args.index("--jobs")
        jobs = int(args[i + 1])
        del args[i:i + 2]
    out = subprocess.run([sys.executable, os.path.join(HERE, "server.py"), "--list-variants"],
                         capture_output=True, text=True, check=True).stdout
    variants = [l.split("\t")[:2] for l in out.splitlines()]
    if args:
        variants = [v for v in variants if v[0] in args]
    bad = 0
    with ThreadPoolExecutor(jobs) as ex:
        for name, kind, ok, failed in ex.map(lambda v: run_variant(*v), variants):
            tag = "OK " if ok else "BAD"
            bad += not ok
            exp = "" if kind == "correct" else " (expect %s)" % EXPECT.get(name)
            print("%s %-24s %-7s failed: %s%s" % (tag, name, kind, ",".join(failed) or "-", exp))
            if not ok or os.environ.get("VERBOSE"):
                for k, m in failed.items():
                    print("      %s: %s" % (k, m))
            sys.stdout.flush()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
