//! `expect` and `recommended` tables: the expectation vocabulary, and which
//! expectations fit which action (a `valid_count` on a create step is a mistake in the
//! plan, not a check that quietly never runs).

use std::ops::Range;

use toml::Spanned;

use super::error::{PlanError, Source, one_of, suggest};
use super::model::{Action, ErrorExpect, Expect, FieldExpect, Shape, StatusExpect, ValidExpect};
use super::raw::{RawExpect, RawValue};
use super::values::int_in;

const CLASSES: &[&str] = &["2xx", "3xx", "4xx", "5xx"];
const SHAPES: &[&str] = &[
    "hex",
    "hex64",
    "base64",
    "ttl",
    "ttl-or-less",
    "present",
    "absent",
    "quota",
    "hex?",
    "hex64?",
    "base64?",
    "quota?",
    "true?",
    "false?",
];
const STATUS_HELP: &str = "write a code like 200, a class like \"4xx\", or a list like [403, 429]";

/// The expectations in `raw` for a step doing `action`. `nested` is true inside
/// `recommended`, which may not hold another `recommended`.
pub fn expect(
    source: &Source<'_>,
    raw: &RawExpect,
    action: &Action,
    nested: bool,
) -> Result<Expect, PlanError> {
    let mut out = Expect::default();
    if let Some(s) = &raw.status {
        out.status = Some(status(source, s)?);
    }
    if let Some(e) = &raw.error {
        out.error = Some(error(source, e)?);
    }
    if let Some(v) = &raw.valid {
        out.valid = Some(valid(source, v)?);
    }
    if let Some(f) = &raw.fields {
        out.fields = fields(source, f, action)?;
    }
    out.retry_after = flag(raw.retry_after.as_ref());
    out.json_body = flag(raw.json_body.as_ref());

    if let Some(n) = &raw.valid_count {
        let Action::Concurrent(c) = action else {
            return Err(misfit(
                source,
                n.span(),
                "valid_count",
                action,
                "`valid_count` counts the `valid: true` answers of a concurrent step",
            ));
        };
        out.valid_count = Some(int_in(source, Some(n), "valid_count", 0..=c.count, 0)?);
    }
    if let Some(r) = &raw.rate_limited {
        if !matches!(action, Action::Burst(_)) {
            return Err(misfit(
                source,
                r.span(),
                "rate_limited",
                action,
                "`rate_limited` asks a burst step to meet a `rate_limited` answer",
            ));
        }
        out.rate_limited = *r.get_ref();
    }
    if let Some(r) = &raw.random {
        match action {
            Action::Create(c) if c.repeat > 1 => out.random = *r.get_ref(),
            Action::Create(_) => {
                return Err(source
                    .error(r.span(), "`random` needs a create step with `repeat` above 1")
                    .with_help("`random` compares the challenges of repeated creates; add e.g. `repeat = 20`"));
            }
            _ => {
                return Err(misfit(
                    source,
                    r.span(),
                    "random",
                    action,
                    "`random` judges the challenges of a create step with `repeat` above 1",
                ));
            }
        }
    }
    if let Some(d) = &raw.distinct {
        match action {
            Action::Create(c) if c.repeat > 1 => out.distinct = *d.get_ref(),
            Action::Create(_) => {
                return Err(source
                    .error(d.span(), "`distinct` needs a create step with `repeat` above 1")
                    .with_help("`distinct` compares the challenges of repeated creates; add e.g. `repeat = 20`"));
            }
            _ => {
                return Err(misfit(
                    source,
                    d.span(),
                    "distinct",
                    action,
                    "`distinct` compares the challenges of a create step with `repeat` above 1",
                ));
            }
        }
    }
    if let Some(r) = &raw.recommended {
        if nested {
            return Err(source
                .error(r.span(), "`recommended` cannot hold another `recommended`")
                .with_help("put all of a step's SHOULDs in one `recommended` table"));
        }
        out.recommended = Some(Box::new(expect(source, r.get_ref(), action, true)?));
    }
    Ok(out)
}

fn flag(at: Option<&Spanned<bool>>) -> bool {
    at.is_some_and(|b| *b.get_ref())
}

fn action_name(action: &Action) -> &'static str {
    match action {
        Action::Create(_) => "a create step",
        Action::Validate(_) => "a validate step",
        Action::Wait(_) => "a wait step",
        Action::Concurrent(_) => "a concurrent step",
        Action::Burst(_) => "a burst step",
        Action::Raw(_) => "a raw step",
    }
}

/// An expectation that cannot apply to this kind of step.
fn misfit(
    source: &Source<'_>,
    span: Range<usize>,
    key: &str,
    action: &Action,
    why: &str,
) -> PlanError {
    source
        .error(
            span,
            format!("`{key}` does not fit {}", action_name(action)),
        )
        .with_help(why)
}

fn status(source: &Source<'_>, at: &Spanned<RawValue>) -> Result<StatusExpect, PlanError> {
    let RawValue::Array(items) = at.get_ref() else {
        return status_one(source, at);
    };
    if items.is_empty() {
        return Err(source
            .error(at.span(), "the `status` list is empty")
            .with_help(STATUS_HELP));
    }
    let parts = items
        .iter()
        .map(|item| status_one(source, item))
        .collect::<Result<Vec<_>, _>>()?;
    // All plain codes: one `Codes`, the common `[403, 429]`. Any class: keep each part.
    if parts.iter().all(|p| matches!(p, StatusExpect::Codes(_))) {
        let codes = parts
            .into_iter()
            .flat_map(|p| match p {
                StatusExpect::Codes(codes) => codes,
                _ => Vec::new(),
            })
            .collect();
        Ok(StatusExpect::Codes(codes))
    } else {
        Ok(StatusExpect::AnyOf(parts))
    }
}

fn status_one(source: &Source<'_>, at: &Spanned<RawValue>) -> Result<StatusExpect, PlanError> {
    match at.get_ref() {
        RawValue::Int(n) => match u16::try_from(*n) {
            Ok(code) if (100..=599).contains(&code) => Ok(StatusExpect::Codes(vec![code])),
            _ => Err(source.error(
                at.span(),
                format!("status {n} is out of range: expected 100 to 599"),
            )),
        },
        RawValue::Str(s) => {
            if CLASSES.contains(&s.as_str()) {
                // "4xx" -> 4; CLASSES holds only ASCII digits first.
                let class = s.as_bytes()[0] - b'0';
                return Ok(StatusExpect::Class(class));
            }
            let help = if s.parse::<u16>().is_ok() {
                format!("remove the quotes: {s}")
            } else {
                match suggest(s, CLASSES) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None => STATUS_HELP.to_string(),
                }
            };
            Err(source
                .error(at.span(), format!("invalid status `{s}`"))
                .with_help(help))
        }
        RawValue::Array(_) => Err(source
            .error(at.span(), "a `status` list cannot hold another list")
            .with_help(STATUS_HELP)),
        other => Err(source
            .error(
                at.span(),
                format!(
                    "wrong type for `status`: expected a code, a class or a list, found {}",
                    other.kind()
                ),
            )
            .with_help(STATUS_HELP)),
    }
}

fn error(source: &Source<'_>, at: &Spanned<RawValue>) -> Result<ErrorExpect, PlanError> {
    match at.get_ref() {
        RawValue::Str(s) if s == "documented" => Ok(ErrorExpect::Documented),
        RawValue::Str(s) if s == "none" => Ok(ErrorExpect::Absent),
        RawValue::Str(s) => Ok(ErrorExpect::OneOf(vec![code(source, at.span(), s)?])),
        RawValue::Array(items) if items.is_empty() => Err(source
            .error(at.span(), "the `error` list is empty")
            .with_help("list one or more codes, like [\"rate_limited\", \"invalid_key\"]")),
        RawValue::Array(items) => {
            let mut codes = Vec::with_capacity(items.len());
            for item in items {
                match item.get_ref() {
                    RawValue::Str(s) if s == "documented" || s == "none" => {
                        return Err(source
                            .error(item.span(), format!("`{s}` cannot be part of a list"))
                            .with_help(format!("write `error = \"{s}\"` on its own")));
                    }
                    RawValue::Str(s) => codes.push(code(source, item.span(), s)?),
                    other => {
                        return Err(source.error(
                            item.span(),
                            format!(
                                "wrong type for an element of `error`: expected a string, found {}",
                                other.kind()
                            ),
                        ));
                    }
                }
            }
            Ok(ErrorExpect::OneOf(codes))
        }
        other => Err(source
            .error(
                at.span(),
                format!(
                    "wrong type for `error`: expected a code or a list of codes, found {}",
                    other.kind()
                ),
            )
            .with_help("e.g. `error = \"replayed_challenge\"`, `\"documented\"` or `\"none\"`")),
    }
}

/// An error code: free (servers may add their own), but shaped like the documented ones.
fn code(source: &Source<'_>, span: Range<usize>, s: &str) -> Result<String, PlanError> {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
        return Ok(s.to_string());
    }
    Err(source
        .error(span, format!("invalid error code `{s}`"))
        .with_help("codes are lower-case letters and `_`, like `replayed_challenge`"))
}

fn valid(source: &Source<'_>, at: &Spanned<RawValue>) -> Result<ValidExpect, PlanError> {
    match at.get_ref() {
        RawValue::Bool(true) => Ok(ValidExpect::True),
        RawValue::Bool(false) => Ok(ValidExpect::False),
        RawValue::Str(s) if s == "not-true" => Ok(ValidExpect::NotTrue),
        RawValue::Str(s) if s == "true" || s == "false" => Err(source
            .error(at.span(), format!("invalid `valid`: \"{s}\" is a string"))
            .with_help(format!("remove the quotes: {s}"))),
        RawValue::Str(s) => Err(source
            .error(at.span(), format!("unknown value `{s}` for `valid`"))
            .with_help(match suggest(s, &["not-true"]) {
                Some(_) => "did you mean `not-true`?".to_string(),
                None => "expected true, false or \"not-true\"".to_string(),
            })),
        other => Err(source.error(
            at.span(),
            format!(
                "wrong type for `valid`: expected true, false or \"not-true\", found {}",
                other.kind()
            ),
        )),
    }
}

fn fields(
    source: &Source<'_>,
    at: &Spanned<RawValue>,
    action: &Action,
) -> Result<Vec<FieldExpect>, PlanError> {
    let RawValue::Table(entries) = at.get_ref() else {
        return Err(source
            .error(
                at.span(),
                format!(
                    "wrong type for `fields`: expected a table, found {}",
                    at.get_ref().kind()
                ),
            )
            .with_help("e.g. `fields = { challenge = \"hex\", expires_in = \"ttl\" }`"));
    };
    let mut out = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        let field = key.get_ref();
        if field.is_empty() {
            return Err(source.error(key.span(), "a field name cannot be empty"));
        }
        let shape = match value.get_ref() {
            RawValue::Bool(b) => Shape::Bool(*b),
            // `shape?`: the shape when the field is there; absent is fine too.
            RawValue::Str(word) if word.ends_with('?') => {
                let inner = &word[..word.len() - 1];
                match inner {
                    "hex" => Shape::Optional(Box::new(Shape::HexAtLeast(32))),
                    "hex64" => Shape::Optional(Box::new(Shape::LowerHex(64))),
                    "base64" => Shape::Optional(Box::new(Shape::Base64)),
                    "quota" => Shape::Optional(Box::new(Shape::Quota)),
                    "true" => Shape::Optional(Box::new(Shape::Bool(true))),
                    "false" => Shape::Optional(Box::new(Shape::Bool(false))),
                    "ttl" | "ttl-or-less" | "present" | "absent" => {
                        return Err(source
                            .error(value.span(), format!("shape `{word}` cannot be optional"))
                            .with_help(match inner {
                                "present" | "absent" => format!(
                                    "`{inner}` already says whether `{field}` is there; drop the `?`"
                                ),
                                _ => format!(
                                    "`{inner}` is checked only when `{field}` is there anyway if the create sends a ttl; drop the `?`"
                                ),
                            }));
                    }
                    other => {
                        let help = match suggest(word, SHAPES) {
                            Some(close) => format!("did you mean `{close}`?"),
                            None => format!("expected {}, true or false", one_of(SHAPES)),
                        };
                        return Err(source
                            .error(
                                value.span(),
                                format!("unknown shape `{other}?` for field `{field}`"),
                            )
                            .with_help(help));
                    }
                }
            }
            RawValue::Str(word) => match word.as_str() {
                "hex" => Shape::HexAtLeast(32),
                "hex64" => Shape::LowerHex(64),
                "base64" => Shape::Base64,
                "ttl" | "ttl-or-less" => {
                    if !matches!(action, Action::Create(_)) {
                        return Err(source
                            .error(
                                value.span(),
                                format!("shape `{word}` does not fit {}", action_name(action)),
                            )
                            .with_help(format!(
                                "`{word}` compares `{field}` with the TTL a create step asked for"
                            )));
                    }
                    if word == "ttl-or-less" {
                        Shape::AtMostTtl
                    } else if matches!(action, Action::Create(c) if c.ttl.is_none()) {
                        // With no TTL sent there is nothing to equal: the check could only
                        // fail. ("ttl-or-less" then accepts any positive number.)
                        return Err(source
                            .error(
                                value.span(),
                                "shape `ttl` needs the create step to send a `ttl`",
                            )
                            .with_help(
                                "add e.g. `ttl = 30` to the create, or use \"ttl-or-less\"",
                            ));
                    } else {
                        Shape::EqualsTtl
                    }
                }
                "present" => Shape::Present,
                "absent" => Shape::Absent,
                "quota" => Shape::Quota,
                other => {
                    let help = match suggest(other, SHAPES) {
                        Some(close) => format!("did you mean `{close}`?"),
                        None => format!("expected {}, true or false", one_of(SHAPES)),
                    };
                    return Err(source
                        .error(
                            value.span(),
                            format!("unknown shape `{other}` for field `{field}`"),
                        )
                        .with_help(help));
                }
            },
            other => {
                return Err(source
                    .error(
                        value.span(),
                        format!(
                            "wrong type for field `{field}`: expected a shape word or a boolean, found {}",
                            other.kind()
                        ),
                    )
                    .with_help(format!("shapes: {}", SHAPES.join(", "))));
            }
        };
        out.push(FieldExpect {
            field: field.clone(),
            shape,
        });
    }
    Ok(out)
}
