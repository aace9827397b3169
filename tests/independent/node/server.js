#!/usr/bin/env node
// Independent KeyClaim server (Node.js 20, built-in modules only).
// Written only from the vendor's API page, the vendor's Python guide and
// /work/shared/PROTOCOL-NOTES.md. Many variants: some correct, some broken on
// purpose (see README.md and `--list-variants`).
'use strict';

const http = require('http');
const crypto = require('crypto');
const fs = require('fs');

// ---------------------------------------------------------------------------
// Variants: [name, 'correct' | 'broken', one-line description]
// ---------------------------------------------------------------------------
const VARIANTS = [
  // ---- correct ----
  ['correct', 'correct', 'best reading: 200 verdicts, 401 invalid_key, 429+Retry-After, 404/405, failed attempt consumes, server-signed signature, both RSA readings'],
  ['refusal-400', 'correct', 'validation refusals (expired/replayed/invalid_signature/unknown) answered 400 with {valid:false,error}'],
  ['refusal-403', 'correct', 'validation refusals answered 403 ("security check failed") with {valid:false,error}'],
  ['refusal-422', 'correct', 'validation refusals answered 422 with {valid:false,error} (Go SDK reads 400/422+valid as a verdict)'],
  ['invalid-key-200', 'correct', 'invalid key on validate answered 200 {valid:false,error:invalid_key} (create still 401)'],
  ['ratelimit-403', 'correct', 'rate limit answered 403 {error:rate_limited} without Retry-After'],
  ['ratelimit-fixed-window', 'correct', 'rate limit is a fixed 1-second window of N requests instead of a token bucket'],
  ['methods-404', 'correct', 'non-POST methods on the API paths answered 404 instead of 405'],
  ['methods-501', 'correct', 'unrecognised methods (e.g. BREW) answered 501 Not Implemented (RFC 9110), known non-POST methods 405'],
  ['keep-on-failure', 'correct', 'a wrong response does not consume the challenge; only a successful validation does'],
  ['no-signature', 'correct', 'never sends "signature" (documented as optional, Pro/Business only)'],
  ['signature-apikey', 'correct', 'signature = hex HMAC-SHA256(api key, "valid:" + challenge), verifiable by the client'],
  ['ttl-cap-300', 'correct', 'TTL above 300 s shortened to 300, advertised honestly in expires_in'],
  ['ttl-lenient', 'correct', 'unusable ttl (0, negative, non-integer, string) replaced by the default 30, advertised in expires_in'],
  ['rsa-python-only', 'correct', 'RSA keys: only the Python guide reading (challenge=ciphertext, response=decryptedChallenge=plaintext)'],
  ['extras-message-quota', 'correct', 'adds "message" to refusals and a numeric "quota" {used,remaining,quota} to validate answers'],
  ['quota-unlimited', 'correct', 'adds "quota" {used, remaining:-1, quota:"unlimited"} to validate answers'],
  ['unknown-as-expired', 'correct', 'unknown and foreign challenges refused with expired_challenge'],
  ['unknown-custom-code', 'correct', 'unknown and foreign challenges refused with an undocumented code invalid_challenge (valid:false)'],
  ['challenge-128bit', 'correct', 'challenges are 16 random bytes (32 hex chars) instead of 32 bytes'],
  ['challenge-uppercase', 'correct', 'challenges issued as uppercase hex; HMAC computed over the string as issued'],
  ['lowercase-only', 'correct', 'response hex compared case-sensitively (lowercase only, as hexdigest and all SDKs send)'],
  ['create-201', 'correct', 'create answered 201 Created'],
  ['auth-header-precedence', 'correct', 'when both Bearer and body key are sent, the Bearer key is used and the body key ignored'],
  ['require-json-content-type', 'correct', 'requests without Content-Type application/json refused with 415'],

  // ---- broken: authentication ----
  ['bearer-unchecked', 'broken', 'any Bearer token starting with kc_ is accepted (never checked against the key list)'],
  ['key-startswith', 'broken', 'a key is accepted when a known key starts with it (so "kc_" or "kc_prim" authenticate)'],
  ['bearer-ignored', 'broken', 'Authorization: Bearer is ignored; only the body key works (SDKs break)'],
  ['bearer-validate-ignored', 'broken', 'Bearer accepted on create but ignored on validate'],
  ['validate-key-unchecked', 'broken', 'validate never checks the key; uses the challenge owner\'s key (invalid key gets a verdict)'],
  ['invalid-key-wrong-code', 'broken', 'invalid key answered 401 {error:"unauthorized"} instead of invalid_key'],
  // ---- broken: key isolation ----
  ['cross-key-challenge', 'broken', 'a challenge issued to one key validates for another key (ownership not checked)'],
  ['foreign-consumes', 'broken', 'another key\'s attempt on a challenge consumes it (one key can burn another key\'s challenges)'],
  // ---- broken: the response check ----
  ['any-response', 'broken', 'any non-empty response is accepted'],
  ['prefix-compare', 'broken', 'only the first 8 hex chars of the response are compared'],
  ['startswith-compare', 'broken', 'response accepted if the expected HMAC starts with it (empty response accepted)'],
  ['echo-accepted', 'broken', 'the challenge itself (SDK "echo" method) is accepted as the response'],
  ['hmac-swapped-only', 'broken', 'expects HMAC(key=challenge, msg=api key): arguments swapped, vendor clients fail'],
  ['uppercase-only', 'broken', 'expects uppercase hex; the lowercase hexdigest of every vendor client is refused'],
  ['hmac-over-bytes', 'broken', 'HMAC computed over the hex-decoded challenge bytes, not the challenge string'],
  ['challenge-case-mismatch', 'broken', 'issues uppercase hex but verifies the HMAC of the lowercase string'],
  // ---- broken: single use ----
  ['no-single-use', 'broken', 'challenges are never consumed: replay succeeds'],
  ['replay-after-delay', 'broken', 'the used mark is forgotten after 3 s: replay succeeds a few seconds later'],
  ['replay-wrong-code', 'broken', 'replay refused with invalid_signature instead of replayed_challenge'],
  ['race-check-then-use', 'broken', 'check-then-use race: concurrent validations of one challenge all succeed'],
  ['replay-per-auth-form', 'broken', 'used mark kept per auth form: replay with the other form (Bearer vs body) succeeds'],
  ['replay-case-variant', 'broken', 'challenge looked up case-insensitively, used mark case-sensitive: replay with UPPERCASE challenge succeeds'],
  // ---- broken: expiry ----
  ['no-expiry', 'broken', 'challenges never expire'],
  ['expiry-early', 'broken', 'challenges expire after half the advertised TTL'],
  ['expiry-late', 'broken', 'challenges accepted up to 5 s after the TTL'],
  ['ttl-ignored', 'broken', 'the requested ttl is echoed in expires_in but every challenge lives 30 s'],
  ['expires-in-default-lie', 'broken', 'expires_in is always 30 whatever ttl was asked (the real TTL is the asked one)'],
  ['expired-wrong-code', 'broken', 'expired challenges purged at expiry, then refused as unknown (invalid_signature), never expired_challenge'],
  ['ttl-milliseconds', 'broken', 'ttl treated as milliseconds: challenges expire at once'],
  ['ttl-missing-never-expires', 'broken', 'create without ttl advertises 30 but the challenge never expires (NaN expiry)'],
  ['ttl-cap-silent', 'broken', 'TTL silently capped at 10 s while expires_in advertises the asked value'],
  // ---- broken: create answer ----
  ['expires-in-string', 'broken', 'expires_in sent as a string ("30")'],
  ['expires-in-ms', 'broken', 'expires_in sent in milliseconds (30000)'],
  ['encrypted-missing', 'broken', 'RSA challenges are sent without "encrypted": true'],
  ['encrypted-on-plain', 'broken', '"encrypted": true also sent on plain (HMAC-key) challenges'],
  ['challenge-not-hex', 'broken', 'challenges are base64url, not hex'],
  ['challenge-counter', 'broken', 'challenges are a sequential counter (predictable)'],
  ['challenge-time-seeded', 'broken', 'challenge derived from key + current second: repeats within a second (and re-arms a used one)'],
  ['challenge-short', 'broken', 'challenges are 2 random bytes (4 hex chars): collide and are guessable'],
  // ---- broken: verdict shape ----
  ['valid-string', 'broken', '"valid" sent as a string ("true"/"false")'],
  ['valid-number', 'broken', '"valid" sent as a number (1/0)'],
  ['valid-true-with-error', 'broken', 'validation refusals say "valid": true next to the error code'],
  ['dup-valid-last-true', 'broken', 'refusals carry a duplicated "valid" key, false first then true'],
  ['dup-valid-first-true', 'broken', 'refusals carry a duplicated "valid" key, true first then false'],
  ['error-in-message-only', 'broken', 'refusal code sent in "message", no "error" field'],
  ['error-nested', 'broken', 'refusal code sent as an object {"error":{"code":...}}'],
  ['success-with-error', 'broken', 'successful verdicts also carry "error": "invalid_signature"'],
  ['success-status-400', 'broken', 'successful verdicts answered with HTTP 400'],
  ['quota-string-numbers', 'broken', 'quota used/remaining/quota sent as numeric strings'],
  ['signature-constant', 'broken', 'signature is the same constant for every verdict'],
  ['signature-base64', 'broken', 'signature sent as base64, not hex'],
  // ---- broken: RSA ----
  ['rsa-echo-decrypted', 'broken', 'RSA: valid whenever response == decryptedChallenge (plaintext never checked)'],
  ['rsa-hmac-ciphertext', 'broken', 'RSA: HMAC(api key, ciphertext) also accepted (no private key needed)'],
  ['rsa-not-encrypted', 'broken', 'RSA: challenge sent in clear while claiming "encrypted": true'],
  ['rsa-pkcs1v15', 'broken', 'RSA: encrypts with PKCS#1 v1.5 padding instead of OAEP-SHA256'],
  ['rsa-oaep-sha1', 'broken', 'RSA: encrypts with OAEP-SHA1 instead of OAEP-SHA256'],
  ['rsa-base64url', 'broken', 'RSA: ciphertext encoded as unpadded base64url, not standard base64'],
  ['rsa-hmac-only', 'broken', 'RSA: refuses the Python guide reading (response = decrypted challenge); only HMAC accepted'],
  ['rsa-bearer-plain', 'broken', 'RSA: create with Bearer auth returns an unencrypted challenge answerable by HMAC'],
  ['rsa-plaintext-leak', 'broken', 'RSA: create answer also carries the plaintext in "challenge_id"'],
  ['rsa-fixed-plaintext', 'broken', 'RSA: same plaintext under every (randomised) ciphertext: one seen answer answers all'],
  // ---- broken: malformed input ----
  ['malformed-json-500', 'broken', 'malformed JSON answered 500'],
  ['nonstring-key-crash', 'broken', 'a non-string "key" crashes the process'],
  // ---- broken: rate limiting ----
  ['ratelimit-none', 'broken', 'never rate-limits (ignores --rate-limit)'],
  ['ratelimit-global', 'broken', 'one bucket shared by all keys: one key\'s traffic rate-limits another'],
  ['ratelimit-stuck', 'broken', 'once limited, a key stays limited for 60 s'],
  ['ratelimit-bad-body', 'broken', 'rate limit answered 429 {error:"too_many_requests"} (no rate_limited code)'],
  ['ratelimit-consumes-challenge', 'broken', 'a rate-limited validate still consumes the challenge'],
  ['ratelimit-too-strict', 'broken', 'allows only a quarter of --rate-limit per second'],
];
const VARIANT_SET = new Map(VARIANTS.map((v) => [v[0], v]));

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------
function parseArgs(argv) {
  const o = { listen: '127.0.0.1:0', apiKeys: [], rsaKeys: [], publicKeys: [], rateLimit: 50, variant: 'correct', list: false };
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    let val = null;
    const eq = a.indexOf('=');
    if (a.startsWith('--') && eq > 0) { val = a.slice(eq + 1); a = a.slice(0, eq); }
    const next = () => {
      if (val !== null) return val;
      if (i + 1 >= argv.length) die(`missing value for ${a}`);
      return argv[++i];
    };
    switch (a) {
      case '--listen': o.listen = next(); break;
      case '--api-key': o.apiKeys.push(next()); break;
      case '--rsa-api-key': o.rsaKeys.push(next()); break;
      case '--public-key': o.publicKeys.push(next()); break;
      case '--rate-limit': o.rateLimit = Number(next()); break;
      case '--variant': o.variant = next(); break;
      case '--list-variants': o.list = true; break;
      case '-h': case '--help':
        process.stdout.write('usage: node server.js --listen HOST:PORT --api-key KEY [--api-key KEY ...] ' +
          '[--rsa-api-key KEY --public-key PUBLIC.pem] [--rate-limit N] [--variant NAME]\n' +
          '       node server.js --list-variants\n');
        process.exit(0);
        break;
      default: die(`unknown argument ${a}`);
    }
  }
  return o;
}
function die(msg) { process.stderr.write(`server.js: ${msg}\n`); process.exit(2); }

const opts = parseArgs(process.argv.slice(2));
if (opts.list) {
  for (const [n, c, d] of VARIANTS) process.stdout.write(`${n}\t${c}\t${d}\n`);
  process.exit(0);
}
if (!VARIANT_SET.has(opts.variant)) die(`unknown variant ${opts.variant} (see --list-variants)`);
if (!Number.isFinite(opts.rateLimit) || opts.rateLimit <= 0) die('--rate-limit must be a positive number');
if (opts.rsaKeys.length !== opts.publicKeys.length) die('each --rsa-api-key needs one --public-key');
if (opts.apiKeys.length + opts.rsaKeys.length === 0) die('at least one --api-key is required');

const V = opts.variant;
const is = (...names) => names.includes(V);

// key -> { key, publicKey (KeyObject|null) }
const KEYS = new Map();
for (const k of opts.apiKeys) KEYS.set(k, { key: k, publicKey: null });
opts.rsaKeys.forEach((k, i) => {
  let pub;
  try { pub = crypto.createPublicKey(fs.readFileSync(opts.publicKeys[i])); } catch (e) { die(`cannot read public key: ${e.message}`); }
  KEYS.set(k, { key: k, publicKey: pub });
});

const SERVER_SECRET = crypto.randomBytes(32);
const DEFAULT_TTL = 30;
const MAX_TTL = is('ttl-cap-300') ? 300 : 86400;
const BODY_LIMIT = 64 * 1024;
const PURGE_AFTER_MS = 10 * 60 * 1000; // keep used/expired records this long after expiry

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------
function hmacHex(key, msg) { return crypto.createHmac('sha256', key).update(msg).digest('hex'); }
function safeEq(a, b) {
  if (typeof a !== 'string' || typeof b !== 'string') return false;
  const ha = crypto.createHash('sha256').update(a).digest();
  const hb = crypto.createHash('sha256').update(b).digest();
  return crypto.timingSafeEqual(ha, hb) && a.length === b.length;
}
function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

// Key lookup in constant time over the key list.
function findKey(presented) {
  if (typeof presented !== 'string') return null;
  if (is('key-startswith')) {
    if (presented === '') return null;
    for (const k of KEYS.keys()) if (k.startsWith(presented)) return k;
    return null;
  }
  let found = null;
  for (const k of KEYS.keys()) if (safeEq(k, presented)) found = k;
  return found;
}

function parseBearer(req) {
  const h = req.headers['authorization'];
  if (typeof h !== 'string') return undefined;
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(h);
  return m ? m[1] : undefined;
}

// Returns { key: string|null, form: 'body'|'bearer' }
function authenticate(req, body, endpoint) {
  let bearer = parseBearer(req);
  if (is('bearer-ignored')) bearer = undefined;
  if (is('bearer-validate-ignored') && endpoint === 'validate') bearer = undefined;
  const hasBody = body.key !== undefined && body.key !== null;
  const bodyKey = body.key;
  if (hasBody && typeof bodyKey !== 'string') {
    if (is('nonstring-key-crash')) {
      // Deliberate crash outside any try/catch.
      process.nextTick(() => { bodyKey.startsWith('kc_'); });
    }
    return { key: null, form: 'body' };
  }
  if (bearer !== undefined && is('bearer-unchecked')) {
    if (bearer.startsWith('kc_')) {
      if (!KEYS.has(bearer)) KEYS.set(bearer, { key: bearer, publicKey: null });
      return { key: bearer, form: 'bearer' };
    }
  }
  if (bearer !== undefined && hasBody) {
    if (is('auth-header-precedence')) return { key: findKey(bearer), form: 'bearer' };
    if (!safeEq(bearer, bodyKey)) return { key: null, form: 'bearer' };
    return { key: findKey(bearer), form: 'bearer' };
  }
  if (bearer !== undefined) return { key: findKey(bearer), form: 'bearer' };
  if (hasBody) return { key: findKey(bodyKey), form: 'body' };
  return { key: null, form: 'none' };
}

// ---------------------------------------------------------------------------
// Rate limiting
// ---------------------------------------------------------------------------
const buckets = new Map();
function rateAllow(key) {
  if (is('ratelimit-none')) return true;
  const id = is('ratelimit-global') ? '*' : key;
  const N = is('ratelimit-too-strict') ? Math.max(1, opts.rateLimit / 4) : opts.rateLimit;
  const now = Date.now();
  let b = buckets.get(id);
  if (is('ratelimit-fixed-window')) {
    const win = Math.floor(now / 1000);
    if (!b || b.win !== win) { b = { win, count: 0 }; buckets.set(id, b); }
    if (b.count >= N) return false;
    b.count++;
    return true;
  }
  if (!b) { b = { tokens: N, last: now, blockedUntil: 0 }; buckets.set(id, b); }
  if (is('ratelimit-stuck') && now < b.blockedUntil) return false;
  b.tokens = Math.min(N, b.tokens + ((now - b.last) / 1000) * N);
  b.last = now;
  if (b.tokens >= 1) { b.tokens -= 1; return true; }
  if (is('ratelimit-stuck')) b.blockedUntil = now + 60000;
  return false;
}

// ---------------------------------------------------------------------------
// Challenge store
// ---------------------------------------------------------------------------
const store = new Map(); // issued string -> record
const plainIndex = new Map(); // RSA plaintext -> record
const quotaUsed = new Map();
let counter = 0;
const fixedPlain = new Map();

function newChallengeString(key) {
  if (is('challenge-128bit')) return crypto.randomBytes(16).toString('hex');
  if (is('challenge-short')) return crypto.randomBytes(2).toString('hex');
  if (is('challenge-not-hex')) return crypto.randomBytes(32).toString('base64url');
  if (is('challenge-counter')) return (++counter).toString(16).padStart(64, '0');
  if (is('challenge-time-seeded')) return hmacHex(SERVER_SECRET, `${key}:${Math.floor(Date.now() / 1000)}`);
  return crypto.randomBytes(32).toString('hex');
}

function encryptFor(pub, plain) {
  let padding = crypto.constants.RSA_PKCS1_OAEP_PADDING;
  let oaepHash = 'sha256';
  if (is('rsa-pkcs1v15')) padding = crypto.constants.RSA_PKCS1_PADDING;
  if (is('rsa-oaep-sha1')) oaepHash = 'sha1';
  const params = { key: pub, padding };
  if (padding === crypto.constants.RSA_PKCS1_OAEP_PADDING) params.oaepHash = oaepHash;
  const ct = crypto.publicEncrypt(params, Buffer.from(plain, 'utf8'));
  return ct.toString(is('rsa-base64url') ? 'base64url' : 'base64');
}

function purge() {
  const now = Date.now();
  for (const [k, r] of store) {
    const exp = Number.isFinite(r.expiresAt) ? r.expiresAt : Infinity;
    if (now > exp + PURGE_AFTER_MS) { store.delete(k); if (r.plain && plainIndex.get(r.plain) === r) plainIndex.delete(r.plain); }
  }
}
setInterval(purge, 10000).unref();

// ---------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------
function sendJson(res, status, obj, headers = {}) {
  const body = typeof obj === 'string' ? obj : JSON.stringify(obj);
  res.writeHead(status, Object.assign({
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
  }, headers));
  res.end(body);
}

const MESSAGES = {
  invalid_key: 'API key is invalid or inactive',
  expired_challenge: 'Challenge has expired',
  replayed_challenge: 'Challenge has already been used',
  invalid_signature: 'Response signature is invalid',
  rate_limited: 'Rate limit exceeded',
  invalid_challenge: 'Unknown challenge',
  invalid_request: 'Malformed request',
};

function quotaFor(key) {
  if (is('extras-message-quota')) {
    const used = quotaUsed.get(key) || 0;
    return { used, remaining: Math.max(0, 100000 - used), quota: 100000 };
  }
  if (is('quota-unlimited')) return { used: quotaUsed.get(key) || 0, remaining: -1, quota: 'unlimited' };
  if (is('quota-string-numbers')) {
    const used = quotaUsed.get(key) || 0;
    return { used: String(used), remaining: String(100000 - used), quota: '100000' };
  }
  return undefined;
}

function validObj(b) {
  if (is('valid-string')) return String(b);
  if (is('valid-number')) return b ? 1 : 0;
  return b;
}

// Build a refusal body. withValid: add "valid": false (validate endpoint).
function refusalBody(code, withValid, key) {
  if (is('dup-valid-last-true') && withValid) {
    return `{"valid":false,"error":${JSON.stringify(code)},"valid":true}`;
  }
  if (is('dup-valid-first-true') && withValid) {
    return `{"valid":true,"valid":false,"error":${JSON.stringify(code)}}`;
  }
  const o = {};
  if (withValid) o.valid = validObj(false);
  if (is('error-in-message-only')) o.message = code;
  else if (is('error-nested')) o.error = { code, message: MESSAGES[code] || code };
  else o.error = code;
  if (is('extras-message-quota') && MESSAGES[code]) o.message = MESSAGES[code];
  if (withValid && key) { const q = quotaFor(key); if (q) o.quota = q; }
  return o;
}

// A verdict refusal (challenge-related) on validate.
function refuseVerdict(res, code, key) {
  let status = 200;
  if (is('refusal-400')) status = 400;
  if (is('refusal-403')) status = 403;
  if (is('refusal-422')) status = 422;
  const body = refusalBody(code, true, key);
  if (is('valid-true-with-error') && typeof body === 'object') body.valid = true;
  sendJson(res, status, body);
}

function refuseKey(res, endpoint) {
  const code = is('invalid-key-wrong-code') ? 'unauthorized' : 'invalid_key';
  if (endpoint === 'validate' && is('invalid-key-200')) return sendJson(res, 200, refusalBody(code, true));
  sendJson(res, 401, refusalBody(code, endpoint === 'validate'), { 'WWW-Authenticate': 'Bearer' });
}

function refuseRate(res, endpoint) {
  if (is('ratelimit-bad-body')) return sendJson(res, 429, { error: 'too_many_requests' }, { 'Retry-After': '1' });
  if (is('ratelimit-403')) return sendJson(res, 403, refusalBody('rate_limited', endpoint === 'validate'));
  sendJson(res, 429, refusalBody('rate_limited', endpoint === 'validate'), { 'Retry-After': '1' });
}

function badRequest(res, endpoint) {
  if (is('malformed-json-500')) return sendJson(res, 500, { error: 'internal_error' });
  sendJson(res, 400, refusalBody('invalid_request', endpoint === 'validate'));
}

// ---------------------------------------------------------------------------
// Create
// ---------------------------------------------------------------------------
function handleCreate(req, res, body) {
  const auth = authenticate(req, body, 'create');
  if (!auth.key) return refuseKey(res, 'create');
  if (!rateAllow(auth.key)) return refuseRate(res, 'create');
  const key = auth.key;

  // ttl
  let ttl = DEFAULT_TTL;
  let ttlMissing = false;
  if (body.ttl === undefined || body.ttl === null) {
    ttlMissing = true;
  } else if (typeof body.ttl === 'number' && Number.isInteger(body.ttl) && body.ttl >= 1) {
    ttl = Math.min(body.ttl, MAX_TTL);
  } else if (is('ttl-lenient')) {
    ttl = DEFAULT_TTL;
  } else {
    return badRequest(res, 'create');
  }

  const now = Date.now();
  let lifeMs = ttl * 1000;
  if (is('ttl-ignored')) lifeMs = DEFAULT_TTL * 1000;
  if (is('ttl-milliseconds')) lifeMs = ttl;
  if (is('ttl-cap-silent')) lifeMs = Math.min(ttl, 10) * 1000;
  let expiresAt = now + lifeMs;
  if (is('ttl-missing-never-expires') && ttlMissing) expiresAt = NaN; // bug: now + body.ttl * 1000 with ttl undefined

  const entry = KEYS.get(key);
  let plain = newChallengeString(key);
  if (entry.publicKey && is('rsa-fixed-plaintext')) {
    if (!fixedPlain.has(key)) fixedPlain.set(key, plain);
    plain = fixedPlain.get(key);
  }
  if (is('challenge-uppercase', 'challenge-case-mismatch')) plain = plain.toUpperCase();

  let encrypted = !!entry.publicKey;
  if (encrypted && is('rsa-bearer-plain') && auth.form === 'bearer') encrypted = false;
  let issued = plain;
  if (encrypted && !is('rsa-not-encrypted')) issued = encryptFor(entry.publicKey, plain);

  const rec = {
    owner: key,
    issued,
    plain,
    encrypted,
    created: now,
    expiresAt,
    used: false,
    usedAt: 0,
    usedForms: new Set(),
    usedStrings: new Set(),
  };
  const storeKey = is('challenge-case-mismatch') ? issued.toLowerCase() : issued;
  if (is('challenge-case-mismatch')) rec.plain = plain.toLowerCase();
  store.set(storeKey, rec);
  if (encrypted) plainIndex.set(plain, rec);

  const out = { challenge: issued, expires_in: ttl };
  if (is('expires-in-string')) out.expires_in = String(ttl);
  if (is('expires-in-ms')) out.expires_in = ttl * 1000;
  if (is('expires-in-default-lie')) out.expires_in = DEFAULT_TTL;
  if ((encrypted && !is('encrypted-missing')) || is('encrypted-on-plain')) out.encrypted = true;
  if (encrypted && is('rsa-plaintext-leak')) out.challenge_id = plain;
  sendJson(res, is('create-201') ? 201 : 200, out);
}

// ---------------------------------------------------------------------------
// Validate
// ---------------------------------------------------------------------------
function hmacMatches(apiKey, message, response) {
  if (typeof response !== 'string') return false;
  let expected;
  if (is('hmac-swapped-only')) expected = hmacHex(message, apiKey);
  else if (is('hmac-over-bytes')) expected = hmacHex(apiKey, Buffer.from(message, 'hex'));
  else expected = hmacHex(apiKey, message);
  if (is('any-response')) return response.length > 0;
  if (is('prefix-compare')) return response.toLowerCase().slice(0, 8) === expected.slice(0, 8);
  if (is('startswith-compare')) return expected.startsWith(response.toLowerCase());
  if (is('uppercase-only')) return safeEq(response, expected.toUpperCase());
  if (is('lowercase-only')) return safeEq(response, expected);
  return safeEq(response.toLowerCase(), expected);
}

function checkResponse(rec, mode, key, response, decrypted) {
  if (!rec.encrypted) {
    if (is('echo-accepted') && response === rec.issued) return true;
    return hmacMatches(key, rec.plain, response);
  }
  // RSA challenge.
  if (mode === 'plain') {
    // Challenge given as the decrypted plaintext (API page: "continue with normal HMAC validation").
    if (decrypted !== undefined && !safeEq(decrypted, rec.plain)) return false;
    return hmacMatches(key, rec.plain, response);
  }
  // mode === 'cipher': challenge given as the ciphertext as received.
  if (is('rsa-echo-decrypted') && decrypted !== undefined && response === decrypted) return true;
  if (is('rsa-hmac-ciphertext') && hmacMatches(key, rec.issued, response)) return true;
  if (decrypted !== undefined && !safeEq(decrypted, rec.plain)) return false;
  if (is('rsa-python-only')) return decrypted !== undefined && safeEq(response, rec.plain);
  if (is('rsa-hmac-only')) return hmacMatches(key, rec.plain, response);
  // Python guide reading: response = decrypted plaintext (proves the private key).
  if (safeEq(response, rec.plain)) return true;
  // HMAC reading: response = HMAC(api key, decrypted plaintext).
  return hmacMatches(key, rec.plain, response);
}

function isUsed(rec, form, chString) {
  if (is('no-single-use')) return false;
  if (is('replay-after-delay')) return rec.used && Date.now() - rec.usedAt < 3000;
  if (is('replay-per-auth-form')) return rec.usedForms.has(form);
  if (is('replay-case-variant')) return rec.usedStrings.has(chString);
  return rec.used;
}
function markUsed(rec, form, chString) {
  rec.used = true;
  rec.usedAt = Date.now();
  rec.usedForms.add(form);
  rec.usedStrings.add(chString);
}

function unknownCode() {
  if (is('unknown-as-expired')) return 'expired_challenge';
  if (is('unknown-custom-code')) return 'invalid_challenge';
  return 'invalid_signature';
}

async function handleValidate(req, res, body) {
  const { challenge, response, decryptedChallenge } = body;
  let key;
  let form;
  if (is('validate-key-unchecked')) {
    form = parseBearer(req) !== undefined ? 'bearer' : 'body';
    key = null; // resolved from the challenge below
  } else {
    const auth = authenticate(req, body, 'validate');
    if (!auth.key) return refuseKey(res, 'validate');
    key = auth.key;
    form = auth.form;
  }

  const rateKey = key || (typeof body.key === 'string' ? body.key : parseBearer(req)) || 'anonymous';
  if (!rateAllow(rateKey)) {
    if (is('ratelimit-consumes-challenge') && typeof challenge === 'string') {
      const r = store.get(challenge);
      if (r && r.owner === key) markUsed(r, form, challenge);
    }
    return refuseRate(res, 'validate');
  }

  if (typeof challenge !== 'string' || challenge === '' || typeof response !== 'string' ||
      (decryptedChallenge !== undefined && decryptedChallenge !== null && typeof decryptedChallenge !== 'string')) {
    return badRequest(res, 'validate');
  }
  const decrypted = decryptedChallenge === null ? undefined : decryptedChallenge;

  // Look the challenge up.
  let mode = 'cipher';
  let rec = store.get(challenge);
  if (!rec && (is('replay-case-variant', 'challenge-case-mismatch'))) rec = store.get(challenge.toLowerCase());
  if (!rec && !is('rsa-python-only')) {
    const p = plainIndex.get(challenge);
    if (p) { rec = p; mode = 'plain'; }
  }
  if (is('validate-key-unchecked') && rec) key = rec.owner;
  if (!key) return refuseKey(res, 'validate');

  if (key) quotaUsed.set(key, (quotaUsed.get(key) || 0) + 1);

  if (!rec) return refuseVerdict(res, unknownCode(), key);
  if (rec.owner !== key && !is('cross-key-challenge')) {
    if (is('foreign-consumes')) markUsed(rec, form, challenge);
    return refuseVerdict(res, unknownCode(), key);
  }
  if (isUsed(rec, form, challenge)) {
    return refuseVerdict(res, is('replay-wrong-code') ? 'invalid_signature' : 'replayed_challenge', key);
  }
  const now = Date.now();
  let expiresAt = rec.expiresAt;
  if (is('expiry-early')) expiresAt = rec.created + (rec.expiresAt - rec.created) / 2;
  if (is('expiry-late')) expiresAt = rec.expiresAt + 5000;
  if (!is('no-expiry') && now >= expiresAt) {
    if (is('expired-wrong-code')) {
      store.delete(rec.issued);
      return refuseVerdict(res, 'invalid_signature', key);
    }
    return refuseVerdict(res, 'expired_challenge', key);
  }

  const ok = checkResponse(rec, mode, key, response, decrypted);

  if (is('race-check-then-use')) await sleep(50); // simulated storage round trip between check and use

  if (ok || !is('keep-on-failure')) markUsed(rec, form, challenge);
  if (!ok) return refuseVerdict(res, 'invalid_signature', key);

  // Success.
  const out = { valid: validObj(true) };
  if (!is('no-signature')) {
    let sig;
    if (is('signature-constant')) sig = 'a3f1c2e4b5d6978899aabbccddeeff00112233445566778899aabbccddeeff00';
    else if (is('signature-apikey')) sig = hmacHex(key, `valid:${challenge}`);
    else {
      const raw = crypto.createHmac('sha256', SERVER_SECRET)
        .update(JSON.stringify({ c: challenge, k: hmacHex(SERVER_SECRET, key), v: true, t: now })).digest();
      sig = raw.toString(is('signature-base64') ? 'base64' : 'hex');
    }
    out.signature = sig;
  }
  const q = quotaFor(key);
  if (q) out.quota = q;
  if (is('success-with-error')) out.error = 'invalid_signature';
  sendJson(res, is('success-status-400') ? 400 : 200, out);
}

// ---------------------------------------------------------------------------
// HTTP plumbing
// ---------------------------------------------------------------------------
// Methods this server recognises (RFC 9110 + PATCH); methods-501 answers 501 for any other.
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH']);
const ROUTES = { '/api/challenge/create': 'create', '/api/challenge/validate': 'validate' };

const server = http.createServer((req, res) => {
  const path = (req.url || '').split('?')[0];
  const endpoint = ROUTES[path];
  if (!endpoint) {
    if (process.env.KC_LOG) process.stderr.write(`${req.method} ${req.url} (no route)\n`);
    req.resume();
    return sendJson(res, 404, { error: 'not_found' });
  }
  if (req.method !== 'POST') {
    if (process.env.KC_LOG) process.stderr.write(`${req.method} ${req.url} (method)\n`);
    req.resume();
    if (is('methods-404')) return sendJson(res, 404, { error: 'not_found' });
    if (is('methods-501') && !KNOWN_METHODS.has(req.method)) return sendJson(res, 501, { error: 'not_implemented' });
    return sendJson(res, 405, { error: 'method_not_allowed' }, { Allow: 'POST' });
  }
  if (is('require-json-content-type')) {
    const ct = String(req.headers['content-type'] || '').split(';')[0].trim().toLowerCase();
    if (ct !== 'application/json') { req.resume(); return sendJson(res, 415, { error: 'unsupported_media_type' }); }
  }
  const chunks = [];
  let size = 0;
  let tooBig = false;
  req.on('data', (c) => {
    if (tooBig) return;
    size += c.length;
    if (size > BODY_LIMIT) { tooBig = true; chunks.length = 0; return; }
    chunks.push(c);
  });
  req.on('error', () => {});
  req.on('end', () => {
    if (process.env.KC_LOG) process.stderr.write(`${(Date.now() % 100000) / 1000} ${req.method} ${req.url} auth=${req.headers.authorization ? 'bearer' : '-'} ct=${req.headers['content-type'] || '-'} body=${Buffer.concat(chunks).toString('utf8').slice(0, 4000).replace(/kc_[A-Za-z0-9_]+/g, 'kc_***').replace(/"([A-Za-z0-9+/=_-]{16})[A-Za-z0-9+/=_-]{8,}"/g, '"$1…"')}\n`);
    if (tooBig) return sendJson(res, 413, { error: 'payload_too_large' }, { Connection: 'close' });
    const text = Buffer.concat(chunks).toString('utf8');
    let body;
    if (text.trim() === '') body = {};
    else {
      try { body = JSON.parse(text); } catch (e) { return badRequest(res, endpoint); }
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) return badRequest(res, endpoint);
    Promise.resolve()
      .then(() => (endpoint === 'create' ? handleCreate(req, res, body) : handleValidate(req, res, body)))
      .catch((e) => {
        process.stderr.write(`internal error: ${e && e.message}\n`);
        if (!res.headersSent) sendJson(res, 500, { error: 'internal_error' });
      });
  });
});
server.keepAliveTimeout = 5000;
server.on('clientError', (err, socket) => {
  if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
  else socket.destroy();
});

function stop() { process.exit(0); }
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

const lastColon = opts.listen.lastIndexOf(':');
if (lastColon < 0) die('--listen must be HOST:PORT');
let host = opts.listen.slice(0, lastColon);
const port = Number(opts.listen.slice(lastColon + 1));
if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
server.listen(port, host, () => {
  const addr = server.address();
  const shownHost = addr.family === 'IPv6' || addr.family === 6 ? `[${addr.address}]` : addr.address;
  process.stdout.write(`listening on http://${shownHost}:${addr.port}\n`);
  process.stderr.write(`keyclaim node server: variant ${V}, ${KEYS.size} key(s), rate limit ${opts.rateLimit}/s\n`);
});
server.on('error', (e) => die(`listen failed: ${e.message}`));
