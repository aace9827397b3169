#!/usr/bin/env node
// Self-check of server.js variants, independent of the harness: starts each
// variant, runs targeted probes (each a documented statement, a vendor-client
// reliance or a security property), and reports which probes fail.
// Correct variants must fail none; each broken variant must fail the probe(s)
// listed for it in EXPECT.
//   node probe.js [--jobs N] [--quick] [VARIANT ...]
// --quick skips the 31-second "ttl missing" probe.
'use strict';
const http = require('http');
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn, execFileSync } = require('child_process');

const SERVER = path.join(__dirname, 'server.js');
const P = 'kc_primary_aaaa1111';
const S = 'kc_second_bbbb2222';
const R = 'kc_rsa_cccc3333';
const T = 'kc_rate_dddd4444';
const U = 'kc_other_eeee5555';

// The probe each broken variant must fail (at least one of them).
const EXPECT = {
  'bearer-unchecked': ['bearer_invalid_key'],
  'key-startswith': ['key_prefix_refused'],
  'bearer-ignored': ['create_bearer', 'hmac_ok_bearer'],
  'bearer-validate-ignored': ['hmac_ok_bearer'],
  'validate-key-unchecked': ['validate_invalid_key_real_challenge'],
  'invalid-key-wrong-code': ['create_invalid_key'],
  'cross-key-challenge': ['foreign_refused'],
  'foreign-consumes': ['foreign_not_consumed'],
  'any-response': ['wrong_response'],
  'prefix-compare': ['prefix_response'],
  'startswith-compare': ['empty_response'],
  'echo-accepted': ['echo_response'],
  'hmac-swapped-only': ['hmac_ok_body'],
  'uppercase-only': ['hmac_ok_body'],
  'hmac-over-bytes': ['hmac_ok_body'],
  'challenge-case-mismatch': ['hmac_ok_body'],
  'no-single-use': ['replay'],
  'replay-after-delay': ['replay_after_4s'],
  'replay-wrong-code': ['replay'],
  'race-check-then-use': ['concurrent_single_use'],
  'replay-per-auth-form': ['replay_other_form'],
  'replay-case-variant': ['replay_uppercase'],
  'no-expiry': ['expiry'],
  'expiry-early': ['expiry'],
  'expiry-late': ['expiry'],
  'ttl-ignored': ['expiry'],
  'expires-in-default-lie': ['create_ttl_echo'],
  'expired-wrong-code': ['expiry'],
  'ttl-milliseconds': ['hmac_ok_body'],
  'ttl-missing-never-expires': ['ttl_missing_default'],
  'ttl-cap-silent': ['ttl_15_alive_at_11s'],
  'expires-in-string': ['create_body'],
  'expires-in-ms': ['create_body'],
  'encrypted-missing': ['rsa_create'],
  'encrypted-on-plain': ['create_body'],
  'challenge-not-hex': ['create_body'],
  'challenge-counter': ['challenge_unpredictable'],
  'challenge-time-seeded': ['challenge_unique'],
  'challenge-short': ['create_body'],
  'valid-string': ['hmac_ok_body'],
  'valid-number': ['hmac_ok_body'],
  'valid-true-with-error': ['wrong_response'],
  'dup-valid-last-true': ['wrong_response'],
  'dup-valid-first-true': ['wrong_response'],
  'error-in-message-only': ['wrong_response'],
  'error-nested': ['wrong_response'],
  'success-with-error': ['hmac_ok_body'],
  'success-status-400': ['hmac_ok_body'],
  'quota-string-numbers': ['hmac_ok_body'],
  'signature-constant': ['signature_unique'],
  'signature-base64': ['hmac_ok_body'],
  'rsa-echo-decrypted': ['rsa_wrong_decrypted'],
  'rsa-hmac-ciphertext': ['rsa_hmac_ciphertext_refused'],
  'rsa-not-encrypted': ['rsa_create'],
  'rsa-pkcs1v15': ['rsa_create'],
  'rsa-oaep-sha1': ['rsa_create'],
  'rsa-base64url': ['rsa_create'],
  'rsa-hmac-only': ['rsa_python_reading'],
  'rsa-bearer-plain': ['rsa_create_bearer'],
  'rsa-plaintext-leak': ['rsa_create'],
  'rsa-fixed-plaintext': ['rsa_plaintexts_unique'],
  'malformed-json-500': ['malformed_json'],
  'nonstring-key-crash': ['nonstring_key'],
  'ratelimit-none': ['rate_limited'],
  'ratelimit-global': ['rate_limit_per_key'],
  'ratelimit-stuck': ['rate_limit_recovers'],
  'ratelimit-bad-body': ['rate_limited'],
  'ratelimit-consumes-challenge': ['rate_limited_validate_not_consumed'],
  'ratelimit-too-strict': ['rate_limit_allows_n'],
};

function hmac(k, m) { return crypto.createHmac('sha256', k).update(m).digest('hex'); }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const isHex = (s) => typeof s === 'string' && /^[0-9a-fA-F]+$/.test(s);

function request(port, method, p, body, headers = {}) {
  return new Promise((resolve) => {
    const data = body === undefined ? '' : (typeof body === 'string' ? body : JSON.stringify(body));
    const h = Object.assign({ 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) }, headers);
    const req = http.request({ host: '127.0.0.1', port, method, path: p, headers: h, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let json = null;
        try { json = JSON.parse(text); } catch (e) { /* not json */ }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
    });
    req.on('error', (e) => resolve({ status: 0, error: e.message, text: '', json: null }));
    req.setTimeout(10000, () => req.destroy(new Error('timeout')));
    req.end(data);
  });
}

class Fail extends Error {}
function must(cond, msg) { if (!cond) throw new Fail(msg); }
function dupKeys(text) { return (text.match(/"valid"\s*:/g) || []).length > 1 || (text.match(/"error"\s*:/g) || []).length > 1; }
function show(r) { return `${r.status} ${r.text.slice(0, 160)}`; }

function mustValid(r) {
  must(r.status >= 200 && r.status < 300, `success not 2xx: ${show(r)}`);
  must(r.json && r.json.valid === true, `valid !== true: ${show(r)}`);
  must(!dupKeys(r.text), `duplicate keys: ${show(r)}`);
  must(r.json.error === undefined || r.json.error === null, `success carries error: ${show(r)}`);
  if (r.json.signature !== undefined) must(isHex(r.json.signature), `signature not hex: ${show(r)}`);
  if (r.json.quota !== undefined) {
    const q = r.json.quota;
    must(q && typeof q.used === 'number' && typeof q.remaining === 'number' &&
      (typeof q.quota === 'number' || q.quota === 'unlimited'), `bad quota: ${show(r)}`);
  }
}
function mustRefuse(r, codes) {
  must(r.status !== 0, `no answer: ${r.error}`);
  must(r.status < 500, `5xx refusal: ${show(r)}`);
  must(r.json && typeof r.json === 'object', `refusal not JSON: ${show(r)}`);
  must(!dupKeys(r.text), `duplicate keys: ${show(r)}`);
  must(r.json.valid !== true && r.json.valid !== 'true' && r.json.valid !== 1, `refusal says valid: ${show(r)}`);
  must(r.json.valid === undefined || r.json.valid === false, `valid not boolean: ${show(r)}`);
  must(typeof r.json.error === 'string', `no string error: ${show(r)}`);
  if (codes) must(codes.includes(r.json.error), `error ${r.json.error} not in ${codes}: ${show(r)}`);
}

function startServer(variant, rate, keyDir) {
  return new Promise((resolve, reject) => {
    const args = [SERVER, '--listen', '127.0.0.1:0', '--api-key', P, '--api-key', S, '--api-key', T, '--api-key', U,
      '--rsa-api-key', R, '--public-key', path.join(keyDir, 'public.pem'), '--rate-limit', String(rate), '--variant', variant];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'ignore'] });
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      const m = /^listening on http:\/\/127\.0\.0\.1:(\d+)\n/.exec(buf);
      if (m) resolve({ child, port: Number(m[1]) });
    });
    child.on('exit', () => reject(new Error('server exited')));
  });
}

async function runVariant(variant, keyDir, privateKey, quick) {
  const fast = await startServer(variant, 100000, keyDir);
  const slow = await startServer(variant, 10, keyDir);
  const port = fast.port;
  const post = (p, body, headers) => request(port, 'POST', p, body, headers);
  const create = (key, ttl = 30, bearer = false) => bearer
    ? post('/api/challenge/create', ttl === 'none' ? {} : { ttl }, { Authorization: `Bearer ${key}` })
    : post('/api/challenge/create', ttl === 'none' ? { key } : { key, ttl });
  const validate = (key, challenge, response, extra = {}, bearer = false) => bearer
    ? post('/api/challenge/validate', Object.assign({ challenge, response }, extra), { Authorization: `Bearer ${key}` })
    : post('/api/challenge/validate', Object.assign({ key, challenge, response }, extra));
  const newCh = async (key = P, ttl = 30) => {
    const r = await create(key, ttl);
    must(r.json && typeof r.json.challenge === 'string', `create failed: ${show(r)}`);
    return r.json.challenge;
  };
  const decrypt = (ct) => crypto.privateDecrypt({ key: privateKey, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
    Buffer.from(ct, 'base64')).toString('utf8');

  const checks = {
    async create_body() {
      const r = await create(P, 30);
      must(r.status >= 200 && r.status < 300, `status ${show(r)}`);
      must(isHex(r.json.challenge) && r.json.challenge.length >= 32, `challenge not >=128-bit hex: ${show(r)}`);
      must(r.json.expires_in === 30, `expires_in !== 30: ${show(r)}`);
      must(r.json.encrypted === undefined || r.json.encrypted === false, `encrypted on plain: ${show(r)}`);
    },
    async create_ttl_echo() {
      const r = await create(P, 7);
      must(r.json && (r.json.expires_in === 7), `expires_in for ttl 7: ${show(r)}`);
    },
    async create_bearer() {
      const r = await create(P, 30, true);
      must(r.status >= 200 && r.status < 300 && r.json && isHex(r.json.challenge), `bearer create: ${show(r)}`);
    },
    async hmac_ok_body() {
      const c = await newCh();
      mustValid(await validate(P, c, hmac(P, c)));
    },
    async hmac_ok_bearer() {
      const r = await create(P, 30, true);
      must(r.json && r.json.challenge, `bearer create: ${show(r)}`);
      mustValid(await validate(P, r.json.challenge, hmac(P, r.json.challenge), {}, true));
    },
    async wrong_response() {
      const c = await newCh();
      mustRefuse(await validate(P, c, hmac(P, c + 'x')), ['invalid_signature']);
    },
    async prefix_response() {
      const c = await newCh();
      const good = hmac(P, c);
      mustRefuse(await validate(P, c, good.slice(0, 8) + hmac('x', c).slice(8)), ['invalid_signature']);
    },
    async empty_response() {
      const c = await newCh();
      mustRefuse(await validate(P, c, ''));
    },
    async echo_response() {
      const c = await newCh();
      mustRefuse(await validate(P, c, c));
    },
    async replay() {
      const c = await newCh();
      mustValid(await validate(P, c, hmac(P, c)));
      mustRefuse(await validate(P, c, hmac(P, c)), ['replayed_challenge']);
    },
    async replay_other_form() {
      const c = await newCh();
      mustValid(await validate(P, c, hmac(P, c)));
      mustRefuse(await validate(P, c, hmac(P, c), {}, true), ['replayed_challenge']);
    },
    async replay_after_4s() {
      const c = await newCh();
      mustValid(await validate(P, c, hmac(P, c)));
      await sleep(4000);
      mustRefuse(await validate(P, c, hmac(P, c)), ['replayed_challenge']);
    },
    async replay_uppercase() {
      const c = await newCh();
      mustValid(await validate(P, c, hmac(P, c)));
      const alt = c === c.toUpperCase() ? c.toLowerCase() : c.toUpperCase();
      mustRefuse(await validate(P, alt, hmac(P, c)));
    },
    async concurrent_single_use() {
      const c = await newCh();
      const rs = await Promise.all(Array.from({ length: 6 }, () => validate(P, c, hmac(P, c))));
      const ok = rs.filter((r) => r.json && r.json.valid === true).length;
      must(ok === 1, `${ok} of 6 concurrent validations succeeded`);
    },
    async unknown_challenge() {
      mustRefuse(await validate(P, crypto.randomBytes(32).toString('hex'), 'ab'.repeat(32)));
    },
    async foreign_refused() {
      const c = await newCh(P);
      mustRefuse(await validate(S, c, hmac(S, c)));
    },
    async foreign_not_consumed() {
      const c = await newCh(P);
      await validate(S, c, hmac(S, c));
      mustValid(await validate(P, c, hmac(P, c)));
    },
    async create_invalid_key() {
      const r = await create('kc_nope_zzzz9999');
      must(r.status >= 400 && r.status < 500, `status ${show(r)}`);
      must(r.json && r.json.error === 'invalid_key', `error: ${show(r)}`);
    },
    async validate_invalid_key() {
      const c = await newCh();
      mustRefuse(await validate('kc_nope_zzzz9999', c, hmac('kc_nope_zzzz9999', c)), ['invalid_key']);
    },
    async validate_invalid_key_real_challenge() {
      const c = await newCh();
      mustRefuse(await validate('kc_nope_zzzz9999', c, hmac(P, c)), ['invalid_key']);
    },
    async key_prefix_refused() {
      for (const k of ['kc_', 'kc_primary']) {
        const r = await create(k);
        must(r.json && r.json.error === 'invalid_key', `key ${k}: ${show(r)}`);
      }
    },
    async bearer_invalid_key() {
      const r = await create('kc_nope_zzzz9999', 30, true);
      must(r.json && r.json.error === 'invalid_key' && r.status >= 400, `bearer invalid: ${show(r)}`);
    },
    async expiry() {
      const c1 = await newCh(P, 4);
      const c2 = await newCh(P, 4);
      await sleep(2600);
      mustValid(await validate(P, c1, hmac(P, c1)));
      await sleep(2000);
      mustRefuse(await validate(P, c2, hmac(P, c2)), ['expired_challenge']);
    },
    async ttl_15_alive_at_11s() {
      const c = await newCh(P, 15);
      await sleep(11000);
      mustValid(await validate(P, c, hmac(P, c)));
    },
    async ttl_missing_default() {
      if (quick) return;
      const r = await create(P, 'none');
      must(r.json && r.json.expires_in === 30, `default expires_in: ${show(r)}`);
      const c = r.json.challenge;
      await sleep(31000);
      mustRefuse(await validate(P, c, hmac(P, c)), ['expired_challenge']);
    },
    async challenge_unique() {
      const cs = await Promise.all(Array.from({ length: 20 }, () => newCh(S)));
      must(new Set(cs).size === 20, 'duplicate challenges among 20');
    },
    async challenge_unpredictable() {
      const a = Buffer.from(await newCh(S), 'hex');
      const b = Buffer.from(await newCh(S), 'hex');
      let diff = 0;
      for (let i = 0; i < Math.min(a.length, b.length); i++) { let x = a[i] ^ b[i]; while (x) { diff += x & 1; x >>= 1; } }
      must(diff >= 32, `consecutive challenges differ in only ${diff} bits`);
    },
    async signature_unique() {
      const sigs = [];
      for (let i = 0; i < 2; i++) {
        const c = await newCh(S);
        const r = await validate(S, c, hmac(S, c));
        mustValid(r);
        sigs.push(r.json.signature);
      }
      if (sigs[0] !== undefined) must(sigs[0] !== sigs[1], 'same signature for two verdicts');
    },
    async malformed_json() {
      const r = await post('/api/challenge/validate', '{"key": "kc_', {});
      must(r.status >= 400 && r.status < 500, `malformed: ${show(r)}`);
      const r2 = await post('/api/challenge/create', '[1,2]', {});
      must(r2.status >= 400 && r2.status < 500, `array body: ${show(r2)}`);
    },
    async nonstring_key() {
      const r = await post('/api/challenge/create', { key: 12345, ttl: 30 });
      must(r.status >= 400 && r.status < 500, `key 12345: ${show(r)}`);
      await sleep(300);
      const r2 = await create(P);
      must(r2.status >= 200 && r2.status < 300, `server dead after non-string key: ${show(r2)}`);
    },
    async methods() {
      const r = await request(port, 'GET', '/api/challenge/create');
      must([404, 405, 501].includes(r.status), `GET create: ${r.status}`);
      const r2 = await post('/api/nothing', { key: P });
      must(r2.status === 404, `unknown path: ${r2.status}`);
    },
    async rsa_create() {
      const r = await create(R);
      must(r.json && r.json.encrypted === true, `encrypted flag: ${show(r)}`);
      must(/^[A-Za-z0-9+/]+={0,2}$/.test(r.json.challenge) && r.json.challenge.length % 4 === 0, `not standard base64: ${show(r)}`);
      let plain;
      try { plain = decrypt(r.json.challenge); } catch (e) { throw new Fail(`cannot decrypt OAEP-SHA256: ${e.message}`); }
      for (const [k, v] of Object.entries(r.json)) must(!(typeof v === 'string' && v.includes(plain)), `field ${k} leaks plaintext`);
      must(!r.json.challenge.includes(plain), 'challenge contains plaintext');
    },
    async rsa_create_bearer() {
      const r = await create(R, 30, true);
      must(r.json && r.json.encrypted === true, `bearer RSA create not encrypted: ${show(r)}`);
      decrypt(r.json.challenge);
    },
    async rsa_python_reading() {
      const c = await newCh(R);
      const p = decrypt(c);
      mustValid(await validate(R, c, p, { decryptedChallenge: p }));
    },
    async rsa_hmac_ciphertext_refused() {
      const c = await newCh(R);
      mustRefuse(await validate(R, c, hmac(R, c)));
    },
    async rsa_wrong_decrypted() {
      const c = await newCh(R);
      const fake = crypto.randomBytes(32).toString('hex');
      mustRefuse(await validate(R, c, fake, { decryptedChallenge: fake }));
    },
    async rsa_plaintexts_unique() {
      const a = decrypt(await newCh(R));
      const b = decrypt(await newCh(R));
      must(a !== b, 'two RSA challenges share the plaintext');
    },
    async rsa_hmac_reading_optional() {
      // Informational: the API page reading (challenge = plaintext, response = HMAC).
      const c = await newCh(R);
      const p = decrypt(c);
      const r = await validate(R, p, hmac(R, p));
      if (!(r.json && r.json.valid === true)) mustRefuse(r);
    },
    // ---- rate limit (second server, --rate-limit 10) ----
    async rate_limited() { /* filled below */ },
  };

  // Rate-limit probes run in sequence on the slow server.
  const rateResults = {};
  async function rateProbes() {
    const sp = slow.port;
    const spost = (p, body, headers) => request(sp, 'POST', p, body, headers);
    const run = async (name, fn) => { try { await fn(); rateResults[name] = null; } catch (e) { rateResults[name] = e instanceof Fail ? e.message : `error: ${e.message}`; } };
    await run('rate_limited', async () => {
      const rs = await Promise.all(Array.from({ length: 40 }, () => spost('/api/challenge/create', { key: T, ttl: 30 })));
      const limited = rs.filter((r) => r.status !== 200 && r.status !== 201);
      must(limited.length > 0, 'no request limited in a burst of 40 at --rate-limit 10');
      for (const r of limited) {
        must((r.status === 429 || r.status === 403) && r.json && r.json.error === 'rate_limited', `limited answer: ${show(r)}`);
      }
      rateResults._allowed = rs.length - limited.length;
    });
    await run('rate_limit_per_key', async () => {
      const r = await spost('/api/challenge/create', { key: U, ttl: 30 });
      must(r.status >= 200 && r.status < 300, `other key limited: ${show(r)}`);
    });
    await run('rate_limited_validate_not_consumed', async () => {
      await sleep(1500);
      const cs = [];
      for (let i = 0; i < 3; i++) {
        const r = await spost('/api/challenge/create', { key: T, ttl: 30 });
        must(r.json && r.json.challenge, `create: ${show(r)}`);
        cs.push(r.json.challenge);
      }
      const burst = Array.from({ length: 20 }, () => spost('/api/challenge/create', { key: T, ttl: 30 }));
      const vs = cs.map((c) => spost('/api/challenge/validate', { key: T, challenge: c, response: hmac(T, c) }));
      await Promise.all(burst);
      const answers = await Promise.all(vs);
      const limited = cs.filter((c, i) => answers[i].json && answers[i].json.error === 'rate_limited');
      must(limited.length > 0, `no validate limited in a burst (inconclusive): ${answers.map(show).join(' | ')}`);
      await sleep(1500);
      for (const c of limited) mustValid(await spost('/api/challenge/validate', { key: T, challenge: c, response: hmac(T, c) }));
    });
    await run('rate_limit_recovers', async () => {
      await Promise.all(Array.from({ length: 30 }, () => spost('/api/challenge/create', { key: T, ttl: 30 })));
      await sleep(2000);
      const r = await spost('/api/challenge/create', { key: T, ttl: 30 });
      must(r.status >= 200 && r.status < 300, `still limited 2 s after a burst: ${show(r)}`);
    });
    await run('rate_limit_allows_n', async () => {
      await sleep(1500);
      const rs = await Promise.all(Array.from({ length: 8 }, () => spost('/api/challenge/create', { key: S, ttl: 30 })));
      const ok = rs.filter((r) => r.status >= 200 && r.status < 300).length;
      must(ok === 8, `only ${ok} of 8 allowed at --rate-limit 10`);
    });
  }

  const results = {};
  const names = Object.keys(checks).filter((n) => n !== 'rate_limited');
  // nonstring_key may kill the server: run it last.
  const ordered = names.filter((n) => n !== 'nonstring_key');
  await Promise.all([
    rateProbes(),
    ...ordered.map(async (n) => {
      try { await checks[n](); results[n] = null; } catch (e) { results[n] = e instanceof Fail ? e.message : `error: ${e.message}`; }
    }),
  ]);
  try { await checks.nonstring_key(); results.nonstring_key = null; } catch (e) { results.nonstring_key = e.message; }
  Object.assign(results, rateResults);
  delete results._allowed;
  fast.child.kill('SIGTERM');
  slow.child.kill('SIGTERM');
  return results;
}

async function main() {
  const args = process.argv.slice(2);
  let jobs = 8;
  let quick = false;
  const wanted = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--jobs') jobs = Number(args[++i]);
    else if (args[i] === '--quick') quick = true;
    else wanted.push(args[i]);
  }
  const list = execFileSync(process.execPath, [SERVER, '--list-variants']).toString().trim().split('\n').map((l) => l.split('\t'));
  const todo = list.filter(([n]) => wanted.length === 0 || wanted.includes(n));
  const keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kc-probe-'));
  const { publicKey, privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  fs.writeFileSync(path.join(keyDir, 'public.pem'), publicKey.export({ type: 'spki', format: 'pem' }));
  let bad = 0;
  let idx = 0;
  const out = [];
  async function worker() {
    while (idx < todo.length) {
      const [name, kind] = todo[idx++];
      const res = await runVariant(name, keyDir, privateKey, quick);
      const failed = Object.entries(res).filter(([, v]) => v);
      let verdict;
      if (kind === 'correct') verdict = failed.length === 0 ? 'OK' : 'WRONG (correct variant fails probes)';
      else {
        const exp = EXPECT[name] || [];
        const hit = exp.filter((e) => res[e]);
        verdict = hit.length ? 'OK' : `WRONG (expected failure of ${exp.join('|') || '?'})`;
      }
      if (!verdict.startsWith('OK')) bad++;
      const line = `${name}\t${kind}\t${verdict}\tfailed: ${failed.map(([k]) => k).join(',') || '-'}` +
        (process.env.VERBOSE ? '\n' + failed.map(([k, v]) => `    ${k}: ${v}`).join('\n') : '');
      out.push(line);
      process.stdout.write(line + '\n');
    }
  }
  await Promise.all(Array.from({ length: jobs }, worker));
  fs.rmSync(keyDir, { recursive: true, force: true });
  process.stdout.write(`${bad === 0 ? 'ALL OK' : bad + ' variant(s) not as described'}\n`);
  process.exit(bad === 0 ? 0 : 1);
}
main();
