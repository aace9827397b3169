//! Expectations against answers: pure functions that say which expectations an answer
//! leaves unmet, in words a failure message can quote (`syntax` holds the rules every
//! KeyClaim answer must keep). No IO.

mod randomness;
mod syntax;

pub use randomness::{MIN_RANDOM_BITS, random_bits};
pub use syntax::{is_hex, malformed, quota_shape_ok};

use base64::Engine;
use serde_json::Value;

use crate::client::Answer;
use crate::plan::model::{ErrorExpect, Expect, FieldExpect, Shape, StatusExpect, ValidExpect};
use crate::protocol::ErrorCode;

/// Every per-answer expectation of `expect` that `answer` does not meet, described.
/// `ttl` is what the create step asked for, for the TTL shapes. Step-level
/// expectations (`valid_count`, `rate_limited`, `distinct`) are judged by the engine.
pub fn unmet(expect: &Expect, answer: &Answer, ttl: Option<u64>) -> Vec<String> {
    let mut unmet = Vec::new();
    if let Some(status) = &expect.status
        && !status_matches(status, answer.status)
    {
        unmet.push(format!("status {}", describe_status(status)));
    }
    if let Some(error) = &expect.error {
        let code = answer.error_code();
        let ok = match error {
            ErrorExpect::OneOf(codes) => code.is_some_and(|c| codes.iter().any(|e| e == c)),
            ErrorExpect::Documented => code
                .and_then(ErrorCode::parse)
                .is_some_and(|c| ErrorCode::DOCUMENTED.contains(&c)),
            ErrorExpect::Absent => code.is_none(),
        };
        if !ok {
            unmet.push(match error {
                ErrorExpect::OneOf(codes) => format!("error {}", codes.join(" or ")),
                ErrorExpect::Documented => "a documented error code".to_owned(),
                ErrorExpect::Absent => "no error code".to_owned(),
            });
        }
    }
    if let Some(valid) = expect.valid {
        let got = answer.valid();
        let ok = match valid {
            ValidExpect::True => got == Some(true),
            ValidExpect::False => got == Some(false),
            // A refusal is still a KeyClaim answer: a JSON object, just not valid=true.
            ValidExpect::NotTrue => {
                got != Some(true) && answer.json.as_ref().is_some_and(Value::is_object)
            }
        };
        if !ok {
            unmet.push(match valid {
                ValidExpect::True => "valid=true".to_owned(),
                ValidExpect::False => "valid=false".to_owned(),
                ValidExpect::NotTrue => "a JSON refusal (not valid=true)".to_owned(),
            });
        }
    }
    for field in &expect.fields {
        if let Some(problem) = field_problem(field, answer, ttl) {
            unmet.push(problem);
        }
    }
    if expect.retry_after && answer.retry_after().is_none() {
        unmet.push("a Retry-After header (seconds or an HTTP date)".to_owned());
    }
    if expect.json_body && !answer.json.as_ref().is_some_and(Value::is_object) {
        unmet.push("a JSON object body".to_owned());
    }
    unmet
}

pub fn status_matches(expect: &StatusExpect, status: u16) -> bool {
    match expect {
        StatusExpect::Codes(codes) => codes.contains(&status),
        StatusExpect::Class(class) => status / 100 == u16::from(*class),
        StatusExpect::AnyOf(any) => any.iter().any(|e| status_matches(e, status)),
    }
}

pub fn describe_status(expect: &StatusExpect) -> String {
    match expect {
        StatusExpect::Codes(codes) => codes
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(" or "),
        StatusExpect::Class(class) => format!("{class}xx"),
        StatusExpect::AnyOf(any) => any
            .iter()
            .map(describe_status)
            .collect::<Vec<_>>()
            .join(" or "),
    }
}

fn field_problem(expect: &FieldExpect, answer: &Answer, ttl: Option<u64>) -> Option<String> {
    let name = &expect.field;
    let value = answer.field(name);
    let (shape, optional) = match &expect.shape {
        Shape::Optional(inner) => (inner.as_ref(), true),
        shape => (shape, false),
    };
    let ok = match (shape, value) {
        (Shape::Absent, value) => value.is_none(),
        (_, None) => optional,
        (shape, Some(v)) => shape_holds(shape, v, ttl),
    };
    (!ok).then(|| {
        let wanted = describe_shape(shape, name, ttl);
        if optional {
            format!("{wanted} when present")
        } else {
            wanted
        }
    })
}

/// Whether a present field's value has `shape`.
fn shape_holds(shape: &Shape, v: &Value, ttl: Option<u64>) -> bool {
    match shape {
        Shape::Absent => false,
        Shape::Present => true,
        Shape::HexAtLeast(min) => v
            .as_str()
            .is_some_and(|s| s.len() >= *min && s.bytes().all(|b| b.is_ascii_hexdigit())),
        Shape::LowerHex(len) => v.as_str().is_some_and(|s| {
            s.len() == *len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }),
        Shape::Base64 => v.as_str().is_some_and(|s| {
            !s.is_empty() && base64::engine::general_purpose::STANDARD.decode(s).is_ok()
        }),
        Shape::EqualsTtl => ttl.is_some_and(|ttl| v.as_u64() == Some(ttl)),
        Shape::AtMostTtl => v
            .as_u64()
            .is_some_and(|n| n >= 1 && ttl.is_none_or(|ttl| n <= ttl)),
        Shape::Bool(expected) => v.as_bool() == Some(*expected),
        Shape::Quota => quota_shape_ok(v),
        Shape::Optional(inner) => shape_holds(inner, v, ttl),
    }
}

fn describe_shape(shape: &Shape, name: &str, ttl: Option<u64>) -> String {
    match shape {
        Shape::Absent => format!("no `{name}` field"),
        Shape::Present => format!("a `{name}` field"),
        Shape::HexAtLeast(min) => format!("`{name}` as hex of at least {min} characters"),
        Shape::LowerHex(len) => format!("`{name}` as {len} lowercase hex characters"),
        Shape::Base64 => format!("`{name}` as standard base64"),
        Shape::EqualsTtl => format!("`{name}` equal to the requested ttl ({})", fmt_ttl(ttl)),
        Shape::AtMostTtl => format!("`{name}` from 1 to the requested ttl ({})", fmt_ttl(ttl)),
        Shape::Bool(b) => format!("`{name}` = {b}"),
        Shape::Quota => format!("`{name}` as {{used, remaining, quota: number or \"unlimited\"}}"),
        Shape::Optional(inner) => describe_shape(inner, name, ttl),
    }
}

fn fmt_ttl(ttl: Option<u64>) -> String {
    ttl.map_or_else(|| "default".to_owned(), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer(status: u16, body: Value, retry_after: Option<&str>) -> Answer {
        Answer {
            status,
            retry_after: retry_after.map(str::to_owned),
            text: body.to_string(),
            truncated: false,
            json: Some(body),
            duplicate_key: None,
        }
    }

    #[test]
    fn a_matching_answer_leaves_nothing_unmet() {
        let expect = Expect {
            status: Some(StatusExpect::AnyOf(vec![
                StatusExpect::Codes(vec![200]),
                StatusExpect::Class(4),
            ])),
            error: Some(ErrorExpect::OneOf(vec!["replayed_challenge".into()])),
            valid: Some(ValidExpect::False),
            ..Expect::default()
        };
        let got = answer(
            409,
            json!({"valid": false, "error": "replayed_challenge"}),
            None,
        );
        assert!(unmet(&expect, &got, None).is_empty());
    }

    #[test]
    fn each_unmet_expectation_is_named() {
        let expect = Expect {
            status: Some(StatusExpect::Class(4)),
            error: Some(ErrorExpect::OneOf(vec!["replayed_challenge".into()])),
            valid: Some(ValidExpect::NotTrue),
            retry_after: true,
            ..Expect::default()
        };
        let got = answer(200, json!({"valid": true}), None);
        let unmet = unmet(&expect, &got, None);
        assert_eq!(
            unmet,
            vec![
                "status 4xx",
                "error replayed_challenge",
                "a JSON refusal (not valid=true)",
                "a Retry-After header (seconds or an HTTP date)"
            ]
        );
    }

    #[test]
    fn retry_after_is_read_in_both_forms_rfc_9110_allows() {
        let expect = Expect {
            retry_after: true,
            ..Expect::default()
        };
        let limited = |value: &str| answer(429, json!({"error": "rate_limited"}), Some(value));
        let in_a_minute = httpdate::fmt_http_date(
            std::time::SystemTime::now() + std::time::Duration::from_secs(60),
        );
        for value in ["7", in_a_minute.as_str(), "Wed, 21 Oct 2015 07:28:00 GMT"] {
            assert!(unmet(&expect, &limited(value), None).is_empty(), "{value}");
        }
        assert_eq!(
            limited("7").retry_after(),
            Some(std::time::Duration::from_secs(7))
        );
        let wait = limited(&in_a_minute).retry_after().unwrap();
        assert!(
            wait > std::time::Duration::from_secs(50) && wait <= std::time::Duration::from_secs(60)
        );
        // A date already past means now.
        assert_eq!(
            limited("Wed, 21 Oct 2015 07:28:00 GMT").retry_after(),
            Some(std::time::Duration::ZERO)
        );
        for value in ["soon", "-1", "1.5", ""] {
            assert!(
                !unmet(&expect, &limited(value), None).is_empty(),
                "{value:?}"
            );
        }
    }

    #[test]
    fn field_shapes() {
        let hex64 = "a".repeat(64);
        let got = answer(
            200,
            json!({"challenge": hex64, "expires_in": 30, "quota": {"used": 1, "remaining": -1, "quota": "unlimited"}}),
            None,
        );
        let shape = |field: &str, shape| Expect {
            fields: vec![FieldExpect {
                field: field.into(),
                shape,
            }],
            ..Expect::default()
        };
        assert!(unmet(&shape("challenge", Shape::LowerHex(64)), &got, None).is_empty());
        assert!(unmet(&shape("challenge", Shape::HexAtLeast(32)), &got, None).is_empty());
        assert!(
            !unmet(
                &shape("challenge", Shape::Base64),
                &answer(200, json!({"challenge": "!!"}), None),
                None
            )
            .is_empty()
        );
        assert!(unmet(&shape("expires_in", Shape::EqualsTtl), &got, Some(30)).is_empty());
        assert!(!unmet(&shape("expires_in", Shape::EqualsTtl), &got, Some(20)).is_empty());
        assert!(unmet(&shape("expires_in", Shape::AtMostTtl), &got, Some(60)).is_empty());
        assert!(!unmet(&shape("expires_in", Shape::AtMostTtl), &got, Some(10)).is_empty());
        assert!(unmet(&shape("quota", Shape::Quota), &got, None).is_empty());
        assert!(unmet(&shape("signature", Shape::Absent), &got, None).is_empty());
        assert!(!unmet(&shape("signature", Shape::Present), &got, None).is_empty());
    }

    #[test]
    fn documented_codes_and_non_json_bodies() {
        let expect = Expect {
            error: Some(ErrorExpect::Documented),
            json_body: true,
            ..Expect::default()
        };
        let html = Answer {
            status: 500,
            retry_after: None,
            text: "<html>".into(),
            truncated: false,
            json: None,
            duplicate_key: None,
        };
        assert_eq!(unmet(&expect, &html, None).len(), 2);
        let ok = answer(401, json!({"error": "invalid_key"}), None);
        assert!(unmet(&expect, &ok, None).is_empty());
        let own = answer(400, json!({"error": "bad_request"}), None);
        assert_eq!(unmet(&expect, &own, None), vec!["a documented error code"]);
    }
}
