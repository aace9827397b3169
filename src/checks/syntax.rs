//! What every KeyClaim answer must look like, whatever the step asked: the types the
//! vendor's clients parse (the Go SDK's `json.Unmarshal` fails on a string where it reads
//! a number; Python's `if result['valid']` takes the string "false" as true) and a body
//! that means one thing to every parser. A broken rule is a failed MUST of the step
//! whose answer broke it.

use serde_json::Value;

use crate::client::Answer;
use crate::protocol::MAX_CHALLENGE_BYTES;

/// Every rule `answer` breaks, described as what was expected.
pub fn malformed(answer: &Answer) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(name) = &answer.duplicate_key {
        problems.push(format!(
            "a JSON body without duplicate names (`{name}` appears twice; parsers disagree on which counts)"
        ));
    }
    let Some(Value::Object(body)) = &answer.json else {
        return problems;
    };
    let mut expect = |field: &str, ok: fn(&Value) -> bool, shape: &str| {
        if body.get(field).is_some_and(|value| !ok(value)) {
            problems.push(format!("`{field}` as {shape}"));
        }
    };
    expect("valid", Value::is_boolean, "a JSON boolean (true or false)");
    expect("error", Value::is_string, "a string code");
    expect("message", Value::is_string, "a string");
    expect(
        "challenge",
        |v| v.as_str().is_some_and(|s| !s.is_empty()),
        "a non-empty string",
    );
    let carried = format!("a string of at most {MAX_CHALLENGE_BYTES} bytes");
    expect(
        "challenge",
        |v| v.as_str().is_none_or(|s| s.len() <= MAX_CHALLENGE_BYTES),
        &carried,
    );
    expect(
        "expires_in",
        |v| v.as_u64().is_some_and(|n| n >= 1),
        "a whole number of seconds, at least 1",
    );
    expect("encrypted", Value::is_boolean, "a JSON boolean");
    expect("signature", is_hex, "a hex string");
    expect(
        "quota",
        quota_shape_ok,
        "{used, remaining, quota: number or \"unlimited\"}",
    );
    // The SDKs read a refusal from `error` whatever else the body says.
    if body.get("valid") == Some(&Value::Bool(true)) && body.contains_key("error") {
        problems.push("no `error` on a valid verdict (the SDKs read it as a refusal)".to_owned());
    }
    problems
}

/// A non-empty string of hex digits (either case).
pub fn is_hex(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The SDKs' `quota` object: `used` and `remaining` numbers, `quota` a number or
/// `"unlimited"`.
pub fn quota_shape_ok(value: &Value) -> bool {
    let number = |key: &str| value.get(key).is_some_and(Value::is_number);
    let limit_ok = value
        .get("quota")
        .is_some_and(|q| q.is_u64() || q.as_str() == Some("unlimited"));
    number("used") && number("remaining") && limit_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &str) -> Answer {
        Answer {
            status: 200,
            retry_after: None,
            text: text.to_owned(),
            truncated: false,
            json: serde_json::from_str(text).ok(),
            duplicate_key: crate::client::first_duplicate_key(text.as_bytes()),
        }
    }

    #[test]
    fn well_formed_answers_break_no_rule() {
        for text in [
            r#"{"challenge":"ab12","expires_in":30}"#,
            r#"{"valid":true,"signature":"ABCdef01","quota":{"used":1,"remaining":-1,"quota":"unlimited"}}"#,
            r#"{"valid":false,"error":"replayed_challenge","message":"used"}"#,
            r#"{"error":"invalid_key"}"#,
            "not json at all",
        ] {
            assert_eq!(malformed(&answer(text)), Vec::<String>::new(), "{text}");
        }
    }

    #[test]
    fn each_rule_names_what_it_expected() {
        let cases = [
            (
                r#"{"valid":"false"}"#,
                "`valid` as a JSON boolean (true or false)",
            ),
            (
                r#"{"valid":0}"#,
                "`valid` as a JSON boolean (true or false)",
            ),
            (r#"{"error":401}"#, "`error` as a string code"),
            (
                r#"{"expires_in":"30"}"#,
                "`expires_in` as a whole number of seconds, at least 1",
            ),
            (
                r#"{"expires_in":30.5}"#,
                "`expires_in` as a whole number of seconds, at least 1",
            ),
            (r#"{"challenge":""}"#, "`challenge` as a non-empty string"),
            (
                r#"{"valid":true,"signature":"xyz"}"#,
                "`signature` as a hex string",
            ),
            (
                r#"{"quota":{"used":"1"}}"#,
                "`quota` as {used, remaining, quota: number or \"unlimited\"}",
            ),
        ];
        let huge = format!(
            r#"{{"challenge":"{}"}}"#,
            "a".repeat(MAX_CHALLENGE_BYTES + 1)
        );
        let cases = cases
            .into_iter()
            .map(|(t, e)| (t.to_owned(), e))
            .chain([(huge, "`challenge` as a string of at most 4096 bytes")]);
        for (text, expected) in cases {
            let text = text.as_str();
            assert_eq!(
                malformed(&answer(text)),
                vec![expected.to_owned()],
                "{text}"
            );
        }
        assert_eq!(
            malformed(&answer(r#"{"valid":true,"error":"invalid_signature"}"#)),
            vec!["no `error` on a valid verdict (the SDKs read it as a refusal)".to_owned()]
        );
        let twice = malformed(&answer(r#"{"valid":true,"valid":false}"#));
        assert_eq!(twice.len(), 1);
        assert!(twice[0].contains("`valid` appears twice"), "{twice:?}");
    }
}
