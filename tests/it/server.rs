//! The reference server over real HTTP on loopback: every documented guarantee, both
//! auth forms, the RSA flow, and each class of bad input.

use crate::common;

use std::time::Duration;

use base64::Engine;
use common::{HANG, Harness, KEY_A, KEY_B, http_check, memory, start, two_keys};
use hmac::{Hmac, KeyInit, Mac};
use keyclaim_harness::crypto::{RsaPrivateKey, generate_key_pair, hmac_response};
use keyclaim_harness::protocol::{CREATE_PATH, VALIDATE_PATH};
use keyclaim_harness::server::keys::{KeySpec, Tier};
use keyclaim_harness::server::{PauseSchedule, Server, ServerConfig};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

fn is_lower_hex_64(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The verdict signature as SPEC.md §6 words it, computed here rather than by the
/// code under test: lowercase hex HMAC-SHA256, keyed with the key's secret, of
/// "keyclaim-verdict:v1:" + challenge + ":true".
fn spec_signature(secret: &str, challenge: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("keyclaim-verdict:v1:{challenge}:true").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[test]
fn spec_signature_matches_known_answers() {
    // From Python's hmac module: hmac.new(secret, message, hashlib.sha256).hexdigest().
    let challenge = "ab".repeat(32);
    assert_eq!(
        spec_signature(KEY_A, &challenge),
        "5a867406cd0408a69c262c80dd0701b022831a612b7033fbc7566fbb43364636"
    );
    assert_eq!(
        spec_signature("shared-secret", &challenge),
        "ad95f2356f1b58acadcaf8a8a51c671a7f1122b55bec78789f8755ef06f840a5"
    );
}

#[tokio::test]
async fn create_answers_unique_lowercase_hex_challenges_with_the_ttl() {
    let h = start(two_keys()).await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..50 {
        let answer = h.create(KEY_A, 45).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.body["expires_in"], 45);
        assert!(answer.body.get("encrypted").is_none(), "{answer:?}");
        let challenge = answer.challenge();
        assert!(is_lower_hex_64(&challenge), "{challenge}");
        assert!(seen.insert(challenge), "a challenge repeated");
    }
    let default_ttl = h.post(CREATE_PATH, json!({ "key": KEY_A }), None).await;
    assert_eq!(default_ttl.body["expires_in"], 30, "{default_ttl:?}");
}

#[tokio::test]
async fn a_correct_hmac_validates_once_with_a_verifiable_signature_and_quota() {
    let h = start(two_keys()).await;
    let (challenge, answer) = h.round_trip(KEY_A).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.valid(), Some(true), "{answer:?}");
    assert_eq!(answer.body["signature"], spec_signature(KEY_A, &challenge));
    assert_eq!(
        answer.body["quota"],
        json!({ "used": 1, "remaining": -1, "quota": "unlimited" })
    );
}

#[tokio::test]
async fn the_bearer_form_works_without_a_body_key() {
    let h = start(two_keys()).await;
    let created = h.post(CREATE_PATH, json!({ "ttl": 30 }), Some(KEY_A)).await;
    assert_eq!(created.status, 200, "{created:?}");
    let challenge = created.challenge();
    let body = json!({ "challenge": challenge, "response": hmac_response(KEY_A, &challenge) });
    let answer = h.post(VALIDATE_PATH, body, Some(KEY_A)).await;
    assert_eq!(answer.valid(), Some(true), "{answer:?}");
    // The Python guide's class sends both; they agree, so that works too.
    let both = h
        .post(CREATE_PATH, json!({ "key": KEY_A }), Some(KEY_A))
        .await;
    assert_eq!(both.status, 200, "{both:?}");
    // An empty body with a Bearer key is a create with the default TTL.
    let empty = h.post_raw_bearer_empty(KEY_A).await;
    assert_eq!(empty.status, 200, "{empty:?}");
    assert_eq!(empty.body["expires_in"], 30, "{empty:?}");
    assert!(is_lower_hex_64(&empty.challenge()), "{empty:?}");
}

/// One request on its own in-memory connection; the answer's status and JSON body.
async fn in_memory(server: &Server, request: &[u8]) -> (u16, Value) {
    let mut connection = memory::connect(server);
    assert!(connection.send(request).await);
    let answer = connection.answer().await;
    (answer.status, answer.json.unwrap_or(Value::Null))
}

fn post(path: &str, bearer: Option<&str>, body: &Value) -> Vec<u8> {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let auth = bearer.map_or(String::new(), |key| {
        format!("Authorization: Bearer {key}\r\n")
    });
    format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A create without `ttl`, in either form, gets the 30 s default: `expires_in` says
/// 30, and the challenge still validates just before 30 s and has expired at 30 s.
/// Under the paused clock those 30 s pass at once, and exactly.
#[tokio::test(start_paused = true)]
async fn a_create_without_a_ttl_lives_for_the_30_s_default() {
    let server = Server::new(&two_keys()).unwrap();
    let created = Instant::now();
    let mut challenges = Vec::new();
    for request in [
        post(CREATE_PATH, None, &json!({ "key": KEY_A })),
        post(CREATE_PATH, Some(KEY_A), &Value::Null),
    ] {
        let (status, body) = in_memory(&server, &request).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["expires_in"], 30, "{body}");
        challenges.push(body["challenge"].as_str().expect("a challenge").to_owned());
    }
    let validate = |challenge: &str| {
        post(
            VALIDATE_PATH,
            None,
            &json!({ "key": KEY_A, "challenge": challenge, "response": hmac_response(KEY_A, challenge) }),
        )
    };
    tokio::time::sleep_until(created + Duration::from_millis(29_900)).await;
    let (_, early) = in_memory(&server, &validate(&challenges[0])).await;
    assert_eq!(early["valid"], true, "at 29.9 s: {early}");
    tokio::time::sleep_until(created + Duration::from_secs(30)).await;
    let (_, late) = in_memory(&server, &validate(&challenges[1])).await;
    assert_eq!(
        (&late["valid"], &late["error"]),
        (&json!(false), &json!("expired_challenge")),
        "at 30 s: {late}"
    );
}

trait EmptyBody {
    async fn post_raw_bearer_empty(&self, key: &str) -> common::Answer;
}

impl EmptyBody for Harness {
    async fn post_raw_bearer_empty(&self, key: &str) -> common::Answer {
        let response = self
            .http
            .post(format!("{}{CREATE_PATH}", self.base))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or_default();
        common::Answer {
            status,
            body,
            retry_after: None,
        }
    }
}

#[tokio::test]
async fn conflicting_body_and_bearer_keys_are_refused() {
    let h = start(two_keys()).await;
    let answer = h
        .post(CREATE_PATH, json!({ "key": KEY_A }), Some(KEY_B))
        .await;
    assert_eq!(answer.status, 401, "{answer:?}");
    assert_eq!(answer.error(), Some("invalid_key"));
}

#[tokio::test]
async fn a_replay_answers_replayed_challenge() {
    let h = start(two_keys()).await;
    let (challenge, first) = h.round_trip(KEY_A).await;
    assert_eq!(first.valid(), Some(true));
    let again = h
        .validate(KEY_A, &challenge, &hmac_response(KEY_A, &challenge))
        .await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.valid(), Some(false), "{again:?}");
    assert_eq!(again.error(), Some("replayed_challenge"), "{again:?}");
    assert!(again.body.get("signature").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_32_concurrent_validations_exactly_one_succeeds() {
    let h = start(two_keys()).await;
    for _ in 0..5 {
        let challenge = h.create(KEY_A, 30).await.challenge();
        let response = hmac_response(KEY_A, &challenge);
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(32));
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (http, base) = (h.http.clone(), h.base.clone());
                let body = json!({ "key": KEY_A, "challenge": challenge, "response": response });
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    let answer = http
                        .post(format!("{base}{VALIDATE_PATH}"))
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    answer.json::<serde_json::Value>().await.unwrap()
                })
            })
            .collect();
        let mut valid = 0;
        for task in tasks {
            let body = task.await.unwrap();
            if body["valid"] == true {
                valid += 1;
            } else {
                assert_eq!(body["error"], "replayed_challenge", "{body}");
            }
        }
        assert_eq!(valid, 1);
    }
}

#[tokio::test]
async fn bad_responses_are_refused_and_do_not_consume_the_challenge() {
    let h = start(two_keys()).await;
    let challenge = h.create(KEY_A, 30).await.challenge();
    let good = hmac_response(KEY_A, &challenge);
    let mut tampered = good.clone().into_bytes();
    tampered[10] = if tampered[10] == b'0' { b'1' } else { b'0' };
    let tampered = String::from_utf8(tampered).unwrap();
    let hash_form = {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(format!("{challenge}{KEY_A}")))
    };
    for bad in [
        tampered.as_str(),
        &hmac_response("kc_some_other_secret", &challenge),
        &challenge, // the SDKs' "echo"
        &hash_form, // the SDKs' "hash"
        "",
        "not hex at all",
        &good[..32],
    ] {
        let answer = h.validate(KEY_A, &challenge, bad).await;
        assert_eq!(answer.status, 200, "{bad}: {answer:?}");
        assert_eq!(answer.valid(), Some(false), "{bad}: {answer:?}");
        assert_eq!(
            answer.error(),
            Some("invalid_signature"),
            "{bad}: {answer:?}"
        );
    }
    let answer = h.validate(KEY_A, &challenge, &good.to_uppercase()).await;
    assert_eq!(
        answer.valid(),
        Some(true),
        "uppercase hex is the same MAC: {answer:?}"
    );
}

#[tokio::test]
async fn a_separate_hmac_secret_is_the_one_that_counts() {
    let mut spec = KeySpec::new(KEY_A, Tier::Pro);
    spec.secret = Some("shared-secret".into());
    let h = start(ServerConfig::new(vec![spec])).await;
    let challenge = h.create(KEY_A, 30).await.challenge();
    let by_key = h
        .validate(KEY_A, &challenge, &hmac_response(KEY_A, &challenge))
        .await;
    assert_eq!(by_key.error(), Some("invalid_signature"), "{by_key:?}");
    let by_secret = h
        .validate(
            KEY_A,
            &challenge,
            &hmac_response("shared-secret", &challenge),
        )
        .await;
    assert_eq!(by_secret.valid(), Some(true), "{by_secret:?}");
    assert_eq!(
        by_secret.body["signature"],
        spec_signature("shared-secret", &challenge)
    );
}

#[tokio::test]
async fn unknown_and_missing_keys_get_401_invalid_key() {
    let h = start(two_keys()).await;
    let unknown = h.create("kc_not_a_real_key", 30).await;
    assert_eq!(
        (unknown.status, unknown.error()),
        (401, Some("invalid_key")),
        "{unknown:?}"
    );
    let missing = h.post(CREATE_PATH, json!({ "ttl": 30 }), None).await;
    assert_eq!(
        (missing.status, missing.error()),
        (401, Some("invalid_key")),
        "{missing:?}"
    );
    let challenge = h.create(KEY_A, 30).await.challenge();
    let validate = h.validate("kc_not_a_real_key", &challenge, "00").await;
    assert_eq!(
        (validate.status, validate.error()),
        (401, Some("invalid_key")),
        "{validate:?}"
    );
    assert!(
        validate.body.get("valid").is_none(),
        "not a verdict: {validate:?}"
    );
    assert!(!validate.body.to_string().contains("kc_not_a_real_key"));
}

#[tokio::test]
async fn an_expired_challenge_answers_expired_challenge_even_with_a_good_response() {
    let h = start(two_keys()).await;
    let challenge = h.create(KEY_A, 1).await.challenge();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let answer = h
        .validate(KEY_A, &challenge, &hmac_response(KEY_A, &challenge))
        .await;
    assert_eq!(answer.valid(), Some(false), "{answer:?}");
    assert_eq!(answer.error(), Some("expired_challenge"), "{answer:?}");
    let bad = h.validate(KEY_A, &challenge, "00").await;
    assert_eq!(bad.error(), Some("expired_challenge"), "{bad:?}");
}

#[tokio::test]
async fn one_keys_challenge_is_refused_for_another_and_stays_valid_for_its_own() {
    let h = start(two_keys()).await;
    let challenge = h.create(KEY_A, 30).await.challenge();
    for response in [
        hmac_response(KEY_B, &challenge),
        hmac_response(KEY_A, &challenge),
    ] {
        let answer = h.validate(KEY_B, &challenge, &response).await;
        assert_eq!(answer.valid(), Some(false), "{answer:?}");
        assert_eq!(answer.error(), Some("invalid_signature"), "{answer:?}");
    }
    let own = h
        .validate(KEY_A, &challenge, &hmac_response(KEY_A, &challenge))
        .await;
    assert_eq!(own.valid(), Some(true), "{own:?}");
}

#[tokio::test]
async fn a_never_issued_challenge_is_refused() {
    let h = start(two_keys()).await;
    let made_up = "ab".repeat(32);
    let answer = h
        .validate(KEY_A, &made_up, &hmac_response(KEY_A, &made_up))
        .await;
    assert_eq!(answer.valid(), Some(false), "{answer:?}");
    assert_eq!(answer.error(), Some("invalid_signature"), "{answer:?}");
}

const RSA_KEY: &str = "kc_test_rsa_key_000111";

async fn rsa_server() -> (Harness, RsaPrivateKey) {
    let pair = generate_key_pair(2048).unwrap();
    let mut spec = KeySpec::new(RSA_KEY, Tier::Pro);
    spec.public_key_pem = Some(pair.public_spki_pem.clone());
    let mut config = two_keys();
    config.keys.push(spec);
    let h = start(config).await;
    (h, RsaPrivateKey::from_pem(&pair.private_pkcs8_pem).unwrap())
}

/// Creates an RSA challenge; returns (ciphertext as sent, decrypted challenge).
async fn rsa_challenge(h: &Harness, private: &RsaPrivateKey) -> (String, String) {
    let answer = h.create(RSA_KEY, 30).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["encrypted"], true, "{answer:?}");
    let ciphertext = answer.challenge();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&ciphertext)
        .unwrap();
    assert_eq!(bytes.len(), 256);
    let plain = private
        .decrypt_oaep_sha256(&bytes)
        .expect("opens under OAEP-SHA256");
    let plain = String::from_utf8(plain.to_vec()).unwrap();
    assert!(is_lower_hex_64(&plain), "{plain}");
    (ciphertext, plain)
}

#[tokio::test]
async fn rsa_flow_as_the_python_guide_sends_it() {
    let (h, private) = rsa_server().await;
    let (ciphertext, plain) = rsa_challenge(&h, &private).await;
    let body = json!({ "key": RSA_KEY, "challenge": ciphertext, "response": plain, "decryptedChallenge": plain });
    let answer = h.post(VALIDATE_PATH, body.clone(), None).await;
    assert_eq!(answer.valid(), Some(true), "{answer:?}");
    let replay = h.post(VALIDATE_PATH, body, None).await;
    assert_eq!(replay.error(), Some("replayed_challenge"), "{replay:?}");
    // The same challenge named by its plaintext is the same, used, challenge.
    let by_plain = h
        .validate(RSA_KEY, &plain, &hmac_response(RSA_KEY, &plain))
        .await;
    assert_eq!(by_plain.error(), Some("replayed_challenge"), "{by_plain:?}");
}

#[tokio::test]
async fn rsa_flow_as_the_api_page_reads_it_and_hmac_of_the_decrypted_challenge() {
    let (h, private) = rsa_server().await;
    let (_, plain) = rsa_challenge(&h, &private).await;
    let answer = h
        .validate(RSA_KEY, &plain, &hmac_response(RSA_KEY, &plain))
        .await;
    assert_eq!(answer.valid(), Some(true), "{answer:?}");
    let (ciphertext, plain) = rsa_challenge(&h, &private).await;
    let answer = h
        .validate(RSA_KEY, &ciphertext, &hmac_response(RSA_KEY, &plain))
        .await;
    assert_eq!(answer.valid(), Some(true), "{answer:?}");
}

#[tokio::test]
async fn rsa_wrong_decryptions_are_refused() {
    let (h, private) = rsa_server().await;
    let (ciphertext, plain) = rsa_challenge(&h, &private).await;
    let wrong = "0".repeat(64);
    for body in [
        json!({ "key": RSA_KEY, "challenge": ciphertext, "response": wrong, "decryptedChallenge": wrong }),
        json!({ "key": RSA_KEY, "challenge": ciphertext, "response": plain, "decryptedChallenge": wrong }),
        json!({ "key": RSA_KEY, "challenge": ciphertext, "response": ciphertext }),
        // Naming it by plaintext, the plaintext itself is no proof: that is an echo.
        json!({ "key": RSA_KEY, "challenge": plain, "response": plain }),
    ] {
        let answer = h.post(VALIDATE_PATH, body.clone(), None).await;
        assert_eq!(
            answer.error(),
            Some("invalid_signature"),
            "{body}: {answer:?}"
        );
    }
    let right = json!({ "key": RSA_KEY, "challenge": ciphertext, "response": plain });
    assert_eq!(h.post(VALIDATE_PATH, right, None).await.valid(), Some(true));
}

#[tokio::test]
async fn encrypted_create_for_a_key_without_a_public_key_is_a_400() {
    let h = start(two_keys()).await;
    let answer = h
        .post(
            CREATE_PATH,
            json!({ "key": KEY_A, "encrypted": true }),
            None,
        )
        .await;
    assert_eq!(
        (answer.status, answer.error()),
        (400, Some("bad_request")),
        "{answer:?}"
    );
}

#[tokio::test]
async fn rate_limiting_answers_429_rate_limited_with_retry_after() {
    let mut config = two_keys();
    config.rate_limit = 5;
    let h = start(config).await;
    let mut limited = None;
    for _ in 0..20 {
        let answer = h.create(KEY_A, 30).await;
        if answer.status != 200 {
            limited = Some(answer);
            break;
        }
    }
    let limited = limited.expect("20 creates at once cross a limit of 5/s");
    assert_eq!(
        (limited.status, limited.error()),
        (429, Some("rate_limited")),
        "{limited:?}"
    );
    let retry_after: u64 = limited
        .retry_after
        .as_deref()
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(retry_after >= 1, "{retry_after}");
    // Limits are per key: the other key is untouched.
    assert_eq!(h.create(KEY_B, 30).await.status, 200);
}

#[tokio::test]
async fn a_key_over_its_quota_is_refused_and_free_keys_get_no_signature() {
    let mut spec = KeySpec::new(KEY_A, Tier::Free);
    spec.quota = Some(2);
    let h = start(ServerConfig::new(vec![spec])).await;
    let (_, first) = h.round_trip(KEY_A).await;
    assert_eq!(first.valid(), Some(true), "{first:?}");
    assert!(
        first.body.get("signature").is_none(),
        "free tier: {first:?}"
    );
    assert_eq!(
        first.body["quota"],
        json!({ "used": 1, "remaining": 1, "quota": 2 })
    );
    let (_, second) = h.round_trip(KEY_A).await;
    assert_eq!(second.body["quota"]["remaining"], 0, "{second:?}");
    let (_, third) = h.round_trip(KEY_A).await;
    assert_eq!(
        (third.status, third.error()),
        (403, Some("rate_limited")),
        "{third:?}"
    );
}

#[tokio::test]
async fn outstanding_challenges_per_key_are_capped() {
    let mut config = two_keys();
    config.max_outstanding = Some(3);
    let h = start(config).await;
    let mut challenges = Vec::new();
    for _ in 0..3 {
        challenges.push(h.create(KEY_A, 30).await.challenge());
    }
    let refused = h.create(KEY_A, 30).await;
    assert_eq!(
        (refused.status, refused.error()),
        (429, Some("rate_limited")),
        "{refused:?}"
    );
    assert!(refused.retry_after.is_some());
    let used = &challenges[0];
    assert_eq!(
        h.validate(KEY_A, used, &hmac_response(KEY_A, used))
            .await
            .valid(),
        Some(true)
    );
    assert_eq!(
        h.create(KEY_A, 30).await.status,
        200,
        "a used challenge frees its slot"
    );
    assert_eq!(h.create(KEY_B, 30).await.status, 200, "the cap is per key");
}

#[tokio::test]
async fn bad_input_gets_a_4xx_json_error_and_the_server_keeps_serving() {
    let h = start(two_keys()).await;
    let cases: Vec<(&str, reqwest::Body, u16)> = vec![
        (CREATE_PATH, "{not json".into(), 400),
        (CREATE_PATH, r#"{"key": 5}"#.into(), 400),
        (
            CREATE_PATH,
            format!(r#"{{"key":"{KEY_A}","ttl":"30"}}"#).into(),
            400,
        ),
        (
            CREATE_PATH,
            format!(r#"{{"key":"{KEY_A}","ttl":-1}}"#).into(),
            400,
        ),
        (
            CREATE_PATH,
            format!(r#"{{"key":"{KEY_A}","ttl":0}}"#).into(),
            400,
        ),
        (
            CREATE_PATH,
            format!(r#"{{"key":"{KEY_A}","ttl":100000}}"#).into(),
            400,
        ),
        (CREATE_PATH, "[]".into(), 400),
        (
            VALIDATE_PATH,
            format!(r#"{{"key":"{KEY_A}","challenge":"ab"}}"#).into(),
            400,
        ),
        (
            VALIDATE_PATH,
            format!(r#"{{"key":"{KEY_A}","challenge":1,"response":"x"}}"#).into(),
            400,
        ),
        (VALIDATE_PATH, vec![0xff_u8, 0xfe, 0x00].into(), 400),
        (
            CREATE_PATH,
            format!(r#"{{"key":"{KEY_A}","pad":"{}"}}"#, "x".repeat(64 * 1024)).into(),
            413,
        ),
    ];
    for (path, body, status) in cases {
        let answer = h.post_raw(path, body).await;
        assert_eq!(answer.status, status, "{path}: {answer:?}");
        assert!(answer.error().is_some(), "JSON error body: {answer:?}");
        assert!(
            answer.body["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let not_found = h.post_raw("/api/nope", "{}").await;
    assert_eq!(
        (not_found.status, not_found.error()),
        (404, Some("not_found"))
    );
    let get = h
        .http
        .get(format!("{}{CREATE_PATH}", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    let body: serde_json::Value = get.json().await.unwrap();
    assert_eq!(body["error"], "method_not_allowed");
    let (_, still) = h.round_trip(KEY_A).await;
    assert_eq!(
        still.valid(),
        Some(true),
        "the server keeps serving: {still:?}"
    );
}

/// A create that arrives `into` the stall answers when the stall ends; outside one,
/// at once; none is dropped. Exact under the paused clock.
#[tokio::test(start_paused = true)]
async fn pause_injection_stalls_answers_without_dropping_them() {
    let mut config = two_keys();
    let schedule = PauseSchedule {
        every: Duration::from_millis(600),
        pause_for: Duration::from_millis(400),
    };
    config.pause = Some(schedule);
    let server = Server::new(&config).unwrap();
    let started = Instant::now();
    // (sent at, expected wait): before the first stall, 100 ms into the first (it
    // ends at 1 s), between stalls, and at the start of the second.
    for (at_ms, wait_ms) in [(300, 0), (700, 300), (1_100, 0), (1_200, 400)] {
        tokio::time::sleep_until(started + Duration::from_millis(at_ms)).await;
        let sent = Instant::now();
        let (status, body) =
            in_memory(&server, &post(CREATE_PATH, None, &json!({ "key": KEY_A }))).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            sent.elapsed(),
            Duration::from_millis(wait_ms),
            "a create sent at {at_ms} ms"
        );
    }
}

/// Graceful shutdown (SPEC.md §9): from the moment it begins new connections are
/// refused; a request already in its handler still gets its whole answer, then its
/// connection closes; and shutdown returns only once that request is done.
#[tokio::test]
async fn shutdown_is_graceful() {
    let mut config = two_keys();
    // The held-back body must not time out while the test looks at the shutdown.
    config.body_timeout = Duration::from_secs(600);
    let h = start(config).await;
    let addr = h.server.addr;
    let (mut busy, body) = common::create_in_its_handler(addr).await;
    let shutdown = tokio::spawn(h.server.shutdown());
    common::until_refused(addr).await;
    assert!(
        !shutdown.is_finished(),
        "shutdown ended with a request still in its handler"
    );
    busy.write_all(body.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(HANG, busy.read_to_end(&mut out))
        .await
        .expect("the connection closes after its answer")
        .unwrap();
    let answers = http_check::check_answers(&out, false).unwrap();
    assert_eq!(answers.len(), 1, "{}", String::from_utf8_lossy(&out));
    assert_eq!(answers[0].status, 200, "{}", String::from_utf8_lossy(&out));
    let challenge = answers[0].json.as_ref().expect("JSON")["challenge"]
        .as_str()
        .expect("a challenge");
    assert!(is_lower_hex_64(challenge), "{challenge}");
    tokio::time::timeout(HANG, shutdown)
        .await
        .expect("shutdown ends once the request is done")
        .unwrap()
        .expect("clean shutdown");
    let after = tokio::net::TcpStream::connect(addr).await;
    assert!(
        after
            .as_ref()
            .is_err_and(|err| err.kind() == std::io::ErrorKind::ConnectionRefused),
        "{after:?}"
    );
}
