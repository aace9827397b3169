//! The first deliberate faults break their guarantee at the HTTP level: the same probe
//! passes against a correct server and fails against the faulty one. Every fault, these
//! included, is pinned to the exact conformance checks that catch it (and shown to leave
//! the others passing) by `selftest.rs`, which is where a new fault is proven.

use crate::common;

use std::time::Duration;

use base64::Engine;
use common::{Harness, KEY_A, KEY_B, start, two_keys};
use keyclaim_harness::crypto::{RsaPrivateKey, generate_key_pair, hmac_response};
use keyclaim_harness::protocol::VALIDATE_PATH;
use keyclaim_harness::server::ServerConfig;
use keyclaim_harness::server::faults::{Fault, FaultSet};
use keyclaim_harness::server::keys::{KeySpec, Tier};
use serde_json::json;

const RSA_KEY: &str = "kc_fault_rsa_key_42";

struct Setup {
    config: ServerConfig,
    private: RsaPrivateKey,
}

fn setup(pair: &keyclaim_harness::crypto::GeneratedKeyPair, faults: &[Fault]) -> Setup {
    let mut config = two_keys();
    let mut rsa = KeySpec::new(RSA_KEY, Tier::Pro);
    rsa.public_key_pem = Some(pair.public_spki_pem.clone());
    config.keys.push(rsa);
    // Only KEY_B is rate-limited, so the other probes never meet the limit.
    config.keys[1].rate_limit = Some(5);
    config.faults = FaultSet::new(faults.iter().copied());
    Setup {
        config,
        private: RsaPrivateKey::from_pem(&pair.private_pkcs8_pem).unwrap(),
    }
}

/// Runs the probe for `fault`'s guarantee; true when the guarantee is broken.
async fn guarantee_broken(fault: Fault, h: &Harness, private: &RsaPrivateKey) -> bool {
    match fault {
        Fault::AcceptReplay => {
            let (challenge, _) = h.round_trip(KEY_A).await;
            let again = h
                .validate(KEY_A, &challenge, &hmac_response(KEY_A, &challenge))
                .await;
            again.valid() == Some(true)
        }
        Fault::IgnoreTtl => {
            let challenge = h.create(KEY_A, 1).await.challenge();
            tokio::time::sleep(Duration::from_millis(1_200)).await;
            let late = h
                .validate(KEY_A, &challenge, &hmac_response(KEY_A, &challenge))
                .await;
            late.valid() == Some(true)
        }
        Fault::AcceptAnyResponse => {
            let challenge = h.create(KEY_A, 30).await.challenge();
            h.validate(KEY_A, &challenge, "00").await.valid() == Some(true)
        }
        Fault::NeverRateLimit => {
            let mut all_ok = true;
            for _ in 0..20 {
                all_ok &= h.create(KEY_B, 30).await.status == 200;
            }
            all_ok
        }
        Fault::WrongErrorCode => {
            let (challenge, _) = h.round_trip(KEY_A).await;
            let again = h
                .validate(KEY_A, &challenge, &hmac_response(KEY_A, &challenge))
                .await;
            again.error() != Some("replayed_challenge")
        }
        Fault::ReplayRace => {
            let challenge = h.create(KEY_A, 30).await.challenge();
            let body = json!({ "key": KEY_A, "challenge": challenge, "response": hmac_response(KEY_A, &challenge) });
            let answers = futures::future::join_all(
                (0..16).map(|_| h.post(VALIDATE_PATH, body.clone(), None)),
            )
            .await;
            answers.iter().filter(|a| a.valid() == Some(true)).count() > 1
        }
        Fault::AcceptUnknownKey => h.create("kc_nobody_issued_this", 30).await.status == 200,
        Fault::PlaintextRsa => {
            let answer = h.create(RSA_KEY, 30).await;
            answer.body.get("encrypted") != Some(&json!(true))
        }
        Fault::RsaOaepSha1 => {
            let challenge = h.create(RSA_KEY, 30).await.challenge();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(challenge)
                .unwrap_or_default();
            private.decrypt_oaep_sha256(&bytes).is_err()
        }
        Fault::CrossKey => {
            let challenge = h.create(KEY_A, 30).await.challenge();
            h.validate(KEY_B, &challenge, &hmac_response(KEY_B, &challenge))
                .await
                .valid()
                == Some(true)
        }
        Fault::BadInput500 => {
            let answer = h.post_raw(VALIDATE_PATH, "{oops").await;
            !(400..500).contains(&answer.status)
        }
        other => panic!("no direct probe for {other}: selftest.rs pins it to its checks"),
    }
}

async fn check(fault: Fault) {
    let pair = generate_key_pair(2048).unwrap();
    let correct = setup(&pair, &[]);
    let h = start(correct.config).await;
    assert!(
        !guarantee_broken(fault, &h, &correct.private).await,
        "probe for {fault} fails against a correct server"
    );
    let faulty = setup(&pair, &[fault]);
    let h = start(faulty.config).await;
    assert!(
        guarantee_broken(fault, &h, &faulty.private).await,
        "fault {fault} did not break its guarantee"
    );
}

macro_rules! fault_tests {
    ($($test:ident => $fault:expr),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                check($fault).await;
            }
        )*

    };
}

fault_tests! {
    accept_replay_breaks_single_use => Fault::AcceptReplay,
    ignore_ttl_breaks_expiry => Fault::IgnoreTtl,
    accept_any_response_breaks_response_checks => Fault::AcceptAnyResponse,
    never_rate_limit_breaks_rate_limiting => Fault::NeverRateLimit,
    wrong_error_code_breaks_the_replay_code => Fault::WrongErrorCode,
    replay_race_breaks_atomic_single_use => Fault::ReplayRace,
    accept_unknown_key_breaks_key_checks => Fault::AcceptUnknownKey,
    plaintext_rsa_breaks_encryption => Fault::PlaintextRsa,
    rsa_oaep_sha1_breaks_the_padding => Fault::RsaOaepSha1,
    cross_key_breaks_key_isolation => Fault::CrossKey,
    bad_input_500_breaks_bad_input_handling => Fault::BadInput500,
}
