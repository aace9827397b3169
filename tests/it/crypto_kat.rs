//! Known-answer tests for the crypto hot paths: HMAC responses against RFC 4231 and
//! OpenSSL, and RSA-OAEP against ciphertexts and keys made by the `openssl` CLI
//! (tests/fixtures/crypto, TEST-ONLY keys). Every RSA test runs on every backend built.

use std::path::PathBuf;

use keyclaim_harness::crypto::{
    CryptoError, RESPONSE_HEX_LEN, ResponseKey, RsaBackend, RsaPrivateKey, RsaPublicKey,
    generate_key_pair_with, hmac_response,
};

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/crypto")
        .join(name)
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap_or_else(|err| panic!("{name}: {err}"))
}

fn fixture_text(name: &str) -> String {
    String::from_utf8(fixture(name)).unwrap()
}

const PRIVATE_PEMS: [&str; 2] = [
    "test-only-rsa2048-private-pkcs8.pem",
    "test-only-rsa2048-private-pkcs1.pem",
];
const PUBLIC_PEMS: [&str; 2] = [
    "test-only-rsa2048-public-spki.pem",
    "test-only-rsa2048-public-pkcs1.pem",
];

/// Asserts every path to the response gives `expected` for (`key`, `message`).
fn assert_response(key: &[u8], message: &[u8], expected: &str) {
    let response_key = ResponseKey::new(key);
    let mut out = [0u8; RESPONSE_HEX_LEN];
    assert_eq!(response_key.response_hex_into(message, &mut out), expected);
    assert_eq!(hex_of(&response_key.mac(message)), expected);
    assert!(response_key.verify_hex(message, expected));
    assert!(response_key.verify_hex(message, &expected.to_uppercase()));
    if let (Ok(key), Ok(message)) = (std::str::from_utf8(key), std::str::from_utf8(message)) {
        assert_eq!(response_key.response_hex(message), expected);
        assert_eq!(hmac_response(key, message), expected);
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn hmac_matches_rfc4231() {
    let cases: [(Vec<u8>, Vec<u8>, &str); 6] = [
        (
            vec![0x0b; 20],
            b"Hi There".to_vec(),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        ),
        (
            b"Jefe".to_vec(),
            b"what do ya want for nothing?".to_vec(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (
            vec![0xaa; 20],
            vec![0xdd; 50],
            "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
        ),
        (
            (1..=25).collect(),
            vec![0xcd; 50],
            "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
        ),
        // Case 6: a key longer than the block is hashed first.
        (
            vec![0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        ),
        (
            vec![0xaa; 131],
            b"This is a test using a larger than block-size key and a larger than block-size \
data. The key needs to be hashed before being used by the HMAC algorithm."
                .to_vec(),
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
        ),
    ];
    for (key, message, expected) in cases {
        assert_response(&key, &message, expected);
    }
}

#[test]
fn hmac_matches_openssl_on_keyclaim_challenges() {
    // Expected values from `openssl dgst -sha256 -mac HMAC -macopt key:kc_test_only_secret`
    // (printed by tests/fixtures/crypto/regenerate.sh).
    let key = b"kc_test_only_secret";
    assert_response(
        key,
        &fixture("challenge.txt"),
        "e78253a6510fa68904a1afa7e96af5ee6293c4a6c992bebbccfb1f4809f1dbed",
    );
    assert_response(
        key,
        b"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "92fed2382c2f99581b31838ef716635a0a06635fc1980e3fa1e188b58a813c00",
    );
}

#[test]
fn openssl_ciphertext_decrypts_on_every_backend_from_pkcs8_and_pkcs1() {
    let challenge = fixture("challenge.txt");
    let ciphertext = fixture("challenge.oaep-sha256.bin");
    for &backend in RsaBackend::ALL {
        for name in PRIVATE_PEMS {
            let key = RsaPrivateKey::from_pem_with(&fixture_text(name), backend).unwrap();
            assert_eq!(key.backend(), backend);
            assert_eq!(key.bits(), 2048, "{backend} {name}");
            let plaintext = key.decrypt_oaep_sha256(&ciphertext).unwrap();
            assert_eq!(&**plaintext, &challenge[..], "{backend} {name}");
        }
    }
}

#[test]
fn openssl_oaep_sha1_ciphertext_is_refused_on_every_backend() {
    let ciphertext = fixture("challenge.oaep-sha1.bin");
    for &backend in RsaBackend::ALL {
        let key = RsaPrivateKey::from_pem_with(&fixture_text(PRIVATE_PEMS[0]), backend).unwrap();
        assert!(
            matches!(
                key.decrypt_oaep_sha256(&ciphertext),
                Err(CryptoError::Decrypt)
            ),
            "{backend}"
        );
    }
}

#[test]
fn each_backend_encrypts_what_every_backend_decrypts() {
    let challenge = fixture("challenge.txt");
    let private: Vec<RsaPrivateKey> = RsaBackend::ALL
        .iter()
        .map(|&backend| RsaPrivateKey::from_pem_with(&fixture_text(PRIVATE_PEMS[0]), backend))
        .collect::<Result<_, _>>()
        .unwrap();
    for &backend in RsaBackend::ALL {
        for name in PUBLIC_PEMS {
            let public = RsaPublicKey::from_pem_with(&fixture_text(name), backend).unwrap();
            assert_eq!((public.backend(), public.bits()), (backend, 2048));
            let first = public.encrypt_oaep_sha256(&challenge).unwrap();
            let second = public.encrypt_oaep_sha256(&challenge).unwrap();
            assert_eq!(first.len(), 256);
            assert_ne!(first, second, "{backend}: OAEP must be randomised");
            let sha1 = public.encrypt_oaep_sha1(&challenge).unwrap();
            for key in &private {
                let plaintext = key.decrypt_oaep_sha256(&first).unwrap();
                assert_eq!(
                    &**plaintext,
                    &challenge[..],
                    "{backend} {name} -> {}",
                    key.backend()
                );
                assert!(key.decrypt_oaep_sha256(&sha1).is_err(), "{backend} sha1");
            }
        }
    }
}

#[test]
fn oversized_plaintext_is_an_error_not_a_panic() {
    for &backend in RsaBackend::ALL {
        let public = RsaPublicKey::from_pem_with(&fixture_text(PUBLIC_PEMS[0]), backend).unwrap();
        // 2048-bit OAEP-SHA-256 carries at most 256 - 2*32 - 2 = 190 bytes.
        assert!(public.encrypt_oaep_sha256(&[0u8; 190]).is_ok(), "{backend}");
        assert!(matches!(
            public.encrypt_oaep_sha256(&[0u8; 191]),
            Err(CryptoError::Encrypt)
        ));
        let private =
            RsaPrivateKey::from_pem_with(&fixture_text(PRIVATE_PEMS[0]), backend).unwrap();
        assert!(
            private.decrypt_oaep_sha256(&[1u8; 10]).is_err(),
            "{backend}"
        );
        assert!(
            private.decrypt_oaep_sha256(&[0xffu8; 256]).is_err(),
            "{backend}"
        );
    }
}

#[test]
fn bad_pem_is_refused_without_quoting_key_material() {
    let private_pem = fixture_text(PRIVATE_PEMS[0]);
    let public_pem = fixture_text(PUBLIC_PEMS[0]);
    // A private key with one base64 character changed in the middle of its body.
    let mut corrupted = private_pem.clone().into_bytes();
    let middle = corrupted.len() / 2;
    corrupted[middle] = if corrupted[middle] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let corrupted = String::from_utf8(corrupted).unwrap();
    let body_lines: Vec<&str> = private_pem
        .lines()
        .chain(public_pem.lines())
        .filter(|line| !line.starts_with("-----"))
        .collect();
    for &backend in RsaBackend::ALL {
        let errors = [
            RsaPublicKey::from_pem_with(&private_pem, backend).unwrap_err(),
            RsaPrivateKey::from_pem_with(&public_pem, backend).unwrap_err(),
            RsaPrivateKey::from_pem_with(&corrupted, backend).unwrap_err(),
            RsaPrivateKey::from_pem_with(&private_pem[..private_pem.len() / 2], backend)
                .unwrap_err(),
            RsaPrivateKey::from_pem_with("", backend).unwrap_err(),
        ];
        for err in errors {
            let message = format!("{err} {err:?}");
            for line in &body_lines {
                // Any 12-character run of the body would be a leak.
                for chunk in line.as_bytes().chunks(12).filter(|c| c.len() == 12) {
                    let chunk = std::str::from_utf8(chunk).unwrap();
                    assert!(!message.contains(chunk), "{backend}: {message}");
                }
            }
        }
        let key = RsaPrivateKey::from_pem_with(&private_pem, backend).unwrap();
        assert_eq!(
            format!("{key:?}"),
            format!("RsaPrivateKey {{ backend: {backend:?}, bits: 2048, .. }}")
        );
    }
}

#[test]
fn pem_with_crlf_line_endings_loads() {
    let pem = fixture_text(PRIVATE_PEMS[0]).replace('\n', "\r\n");
    for &backend in RsaBackend::ALL {
        RsaPrivateKey::from_pem_with(&pem, backend).unwrap();
    }
}

#[test]
fn generated_pairs_work_across_backends() {
    for &generator in RsaBackend::ALL {
        let pair = generate_key_pair_with(2048, generator).unwrap();
        assert!(
            pair.private_pkcs8_pem
                .starts_with("-----BEGIN PRIVATE KEY-----\n")
        );
        assert!(
            pair.public_spki_pem
                .starts_with("-----BEGIN PUBLIC KEY-----\n")
        );
        for &encrypter in RsaBackend::ALL {
            let public = RsaPublicKey::from_pem_with(&pair.public_spki_pem, encrypter).unwrap();
            let ciphertext = public.encrypt_oaep_sha256(b"challenge").unwrap();
            for &decrypter in RsaBackend::ALL {
                let private =
                    RsaPrivateKey::from_pem_with(&pair.private_pkcs8_pem, decrypter).unwrap();
                assert_eq!(
                    &**private.decrypt_oaep_sha256(&ciphertext).unwrap(),
                    b"challenge",
                    "generated by {generator}, encrypted by {encrypter}, decrypted by {decrypter}"
                );
            }
        }
    }
}
