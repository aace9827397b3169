//! The raw layer: the TOML file as serde reads it, before any meaning is checked.
//!
//! Every struct denies unknown fields, so a typo is an error rather than a silently
//! ignored key, and every value that a later check may complain about is `Spanned`, so
//! that complaint can name its line and column. Values that take several forms (a
//! `status` that is a number, a class or a list) are kept as [`RawValue`] and given
//! meaning in `validate`. Serde's own errors are turned into plan errors here, in the
//! same voice as the rest of the loader.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::{PlanError, Source, did_you_mean};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    pub plan: Option<Spanned<RawPlanTable>>,
    #[serde(default)]
    pub scenario: Vec<Spanned<RawScenario>>,
}

/// `[plan]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlanTable {
    pub name: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    /// `--cacert` for runs of this plan, relative to the plan file.
    pub cacert: Option<Spanned<String>>,
    /// `--http2` for runs of this plan.
    pub http2: Option<bool>,
}

/// One `[[scenario]]`. The span of a `Spanned<RawScenario>` is its header.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScenario {
    // Optional here so that a missing name is reported by `validate`, at the header,
    // in our words rather than serde's.
    pub name: Option<Spanned<String>>,
    pub id: Option<Spanned<String>>,
    pub requirement: Option<Spanned<String>>,
    pub recommendation: Option<Spanned<String>>,
    pub description: Option<Spanned<String>>,
    pub tags: Option<Vec<Spanned<String>>>,
    pub exclusive: Option<bool>,
    pub needs: Option<Vec<Spanned<String>>>,
    pub timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub step: Vec<Spanned<RawStep>>,
    /// `[scenario.load]`: makes the scenario a load scenario.
    pub load: Option<Spanned<RawLoad>>,
}

/// `[scenario.load]`. Which executor keys may go together is checked in `load`, so the
/// message can say why (`think_time` means nothing to an open model).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLoad {
    pub users: Option<Spanned<i64>>,
    // Rates are f64: serde reads a TOML integer (`rate = 1000`) into one as well.
    pub rate: Option<Spanned<f64>>,
    pub stages: Option<Spanned<Vec<Spanned<RawStage>>>>,
    pub start_rate: Option<Spanned<f64>>,
    pub max_in_flight: Option<Spanned<i64>>,
    pub pre_allocated: Option<Spanned<i64>>,
    pub duration: Option<Spanned<String>>,
    pub iterations: Option<Spanned<i64>>,
    pub think_time: Option<Spanned<String>>,
    /// Each string is one threshold, like `"p99 < 50ms"`; its span places its errors.
    pub thresholds: Option<Vec<Spanned<String>>>,
    /// Each string is one regression tolerance for `compare`, like `"p99 +10%"`.
    pub regression: Option<Vec<Spanned<String>>>,
}

/// One element of `stages`: `{ duration = "10s", target = 500 }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStage {
    pub duration: Option<Spanned<String>>,
    pub target: Option<Spanned<f64>>,
}

/// One `[[scenario.step]]`: exactly one action key (checked in `validate`) and an
/// optional `expect`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub create: Option<Spanned<RawCreate>>,
    pub validate: Option<Spanned<RawValidate>>,
    /// `"2s"`, `{ expiry_of = "c", margin = "1s" }` or `{ expiry_of = "c", before = "1s" }`.
    pub wait: Option<Spanned<RawValue>>,
    pub concurrent: Option<Spanned<RawConcurrent>>,
    pub burst: Option<Spanned<RawBurst>>,
    pub raw: Option<Spanned<RawRaw>>,
    pub expect: Option<Spanned<RawExpect>>,
}

// Integers are read as i64 (what TOML holds) and range-checked in `validate`, so an
// out-of-range number gets "must be from 2 to 1024" instead of serde's "expected u32".

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCreate {
    pub key: Option<Spanned<String>>,
    pub auth: Option<Spanned<String>>,
    pub ttl: Option<Spanned<i64>>,
    pub encrypted: Option<bool>,
    pub save: Option<Spanned<String>>,
    pub repeat: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawValidate {
    pub key: Option<Spanned<String>>,
    pub auth: Option<Spanned<String>>,
    /// `"name"`, `"name.decrypted"`, `"random"` or `{ literal = "..." }`.
    pub challenge: Option<Spanned<RawValue>>,
    /// A response word or `{ literal = "..." }`.
    pub response: Option<Spanned<RawValue>>,
    pub decrypted_challenge: Option<Spanned<String>>,
    pub hmac_key: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConcurrent {
    pub count: Option<Spanned<i64>>,
    pub validate: Option<Spanned<RawValidate>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBurst {
    pub endpoint: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    pub max_requests: Option<Spanned<i64>>,
    pub concurrency: Option<Spanned<i64>>,
    pub probe_validations: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRaw {
    pub method: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub body: Option<String>,
    pub content_type: Option<Spanned<String>>,
    pub bearer: Option<bool>,
}

/// `expect`, and `recommended` inside it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpect {
    pub status: Option<Spanned<RawValue>>,
    pub error: Option<Spanned<RawValue>>,
    pub valid: Option<Spanned<RawValue>>,
    pub fields: Option<Spanned<RawValue>>,
    pub retry_after: Option<Spanned<bool>>,
    pub json_body: Option<Spanned<bool>>,
    pub rate_limited: Option<Spanned<bool>>,
    pub distinct: Option<Spanned<bool>>,
    pub random: Option<Spanned<bool>>,
    pub valid_count: Option<Spanned<i64>>,
    pub recommended: Option<Spanned<Box<RawExpect>>>,
}

/// Any TOML value, with spans all the way down (table keys included), for keys that
/// take several forms. Tables keep their keys in source order.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Array(Vec<Spanned<RawValue>>),
    Table(Vec<(Spanned<String>, Spanned<RawValue>)>),
}

impl RawValue {
    /// "a string", "an integer", ... for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self {
            RawValue::Str(_) => "a string",
            RawValue::Int(_) => "an integer",
            RawValue::Float(_) => "a float",
            RawValue::Bool(_) => "a boolean",
            RawValue::Array(_) => "an array",
            RawValue::Table(_) => "a table",
        }
    }
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawValue;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string, number, boolean, array or table")
            }
            fn visit_bool<E>(self, v: bool) -> Result<RawValue, E> {
                Ok(RawValue::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<RawValue, E> {
                Ok(RawValue::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawValue, E> {
                i64::try_from(v)
                    .map(RawValue::Int)
                    .map_err(|_| E::custom("integer too large"))
            }
            fn visit_f64<E>(self, v: f64) -> Result<RawValue, E> {
                Ok(RawValue::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<RawValue, E> {
                Ok(RawValue::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<RawValue, E> {
                Ok(RawValue::Str(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RawValue, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(RawValue::Array(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawValue, A::Error> {
                let mut entries: Vec<(Spanned<String>, Spanned<RawValue>)> = Vec::new();
                while let Some(key) = map.next_key()? {
                    entries.push((key, map.next_value()?));
                }
                // toml hands table entries over sorted by key; `fields` is reported in
                // the order the user wrote it.
                entries.sort_by_key(|(key, _)| key.span().start);
                Ok(RawValue::Table(entries))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Parse `text` into the raw layer. Syntax errors and shape errors (unknown keys, wrong
/// types) come back as plan errors with their place.
pub fn parse(source: &Source<'_>) -> Result<RawFile, PlanError> {
    let doc = DeTable::parse(source.text).map_err(|e| syntax_error(source, &e))?;
    RawFile::deserialize(toml::Deserializer::from(doc)).map_err(|e| shape_error(source, &e))
}

fn syntax_error(source: &Source<'_>, e: &toml::de::Error) -> PlanError {
    let span = e.span().unwrap_or(0..0);
    let message = e.message().trim();
    if message == "duplicate key" {
        let key = source.text.get(span.clone()).unwrap_or("").trim();
        return source
            .error(span, format!("duplicate key `{key}`"))
            .with_help("a key may appear only once in a table");
    }
    let error = source.error(span.clone(), format!("invalid TOML: {message}"));
    match unclosed_before(source.text, span.start) {
        Some((line, bracket)) => error.with_note(format!(
            "line {line} opens `{bracket}` that is not closed on it, and the parser only \
             noticed here: {}",
            if bracket == '{' {
                "an inline table must close on the line it opens"
            } else {
                "an array's elements are separated by `,` and it ends with `]`"
            }
        )),
        None => error,
    }
}

/// When a syntax error is found at the start of a line, the cause is often an inline
/// table or array left open on the last line before it: its number and the bracket.
fn unclosed_before(text: &str, at: usize) -> Option<(usize, char)> {
    let before = text.get(..at)?;
    // Only when nothing but blanks precedes the error on its line.
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    if !before[line_start..].trim().is_empty() {
        return None;
    }
    let (index, line) = before[..line_start]
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .last()?;
    let mut open = Vec::new();
    let mut in_string = None;
    for c in line.chars() {
        match (in_string, c) {
            (Some(quote), c) if c == quote => in_string = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => in_string = Some(c),
            (None, '#') => break,
            (None, '{' | '[') => open.push(c),
            (None, '}' | ']') => {
                open.pop();
            }
            _ => {}
        }
    }
    // A table header (`[x]`) balances; what is left open is the culprit.
    open.last().map(|&bracket| (index + 1, bracket))
}

/// Where a serde error points, found by walking the parsed document: the key path of
/// the innermost value at the span, and whether the span is a key (unknown fields) or
/// a value (wrong types).
#[derive(Debug, Default)]
struct Place {
    /// Path of the table holding the key at the span, when the span is a key.
    key_in: Option<Vec<Seg>>,
    /// Path to the innermost value containing the span, its length, and its kind.
    value: Option<(Vec<Seg>, usize, &'static str)>,
}

#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Index,
}

fn find_place(text: &str, span: &Range<usize>) -> Place {
    let mut place = Place::default();
    if let Ok(doc) = DeTable::parse(text) {
        walk_table(doc.get_ref(), &mut Vec::new(), span, &mut place);
    }
    place
}

fn walk_table(table: &DeTable<'_>, path: &mut Vec<Seg>, span: &Range<usize>, place: &mut Place) {
    for (key, value) in table {
        if key.span() == *span {
            place.key_in = Some(path.clone());
        }
        path.push(Seg::Key(key.get_ref().to_string()));
        walk_value(value, path, span, place);
        path.pop();
    }
}

fn walk_value(
    value: &Spanned<DeValue<'_>>,
    path: &mut Vec<Seg>,
    span: &Range<usize>,
    place: &mut Place,
) {
    let at = value.span();
    if at.start <= span.start && span.end <= at.end {
        let len = at.end - at.start;
        if place.value.as_ref().is_none_or(|(_, best, _)| len <= *best) {
            place.value = Some((path.clone(), len, kind(value.get_ref())));
        }
    }
    match value.get_ref() {
        DeValue::Table(table) => walk_table(table, path, span, place),
        DeValue::Array(array) => {
            for item in array {
                path.push(Seg::Index);
                walk_value(item, path, span, place);
                path.pop();
            }
        }
        _ => {}
    }
}

fn kind(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// What a table at `path` is called in messages ("a validate step").
fn table_name(path: &[Seg]) -> String {
    let last = path.iter().rev().find_map(|seg| match seg {
        Seg::Key(k) => Some(k.as_str()),
        Seg::Index => None,
    });
    match last {
        None => "the top level of the plan".to_string(),
        Some("plan") => "the [plan] table".to_string(),
        Some("scenario") => "a scenario".to_string(),
        Some("step") => "a step".to_string(),
        Some(action @ ("create" | "validate" | "wait" | "concurrent" | "burst" | "raw")) => {
            format!("a {action} step")
        }
        Some("expect") => "an expect table".to_string(),
        Some("recommended") => "a recommended table".to_string(),
        Some("load") => "the [scenario.load] table".to_string(),
        Some("stages") => "a stage".to_string(),
        Some(other) => format!("`{other}`"),
    }
}

/// "`count`", or "an element of `tags`" when the value sits in an array.
fn value_name(path: &[Seg]) -> String {
    let key = path.iter().rev().find_map(|seg| match seg {
        Seg::Key(k) => Some(k.as_str()),
        Seg::Index => None,
    });
    match (path.last(), key) {
        (_, None) => "the plan".to_string(),
        (Some(Seg::Index), Some(key)) => format!("an element of `{key}`"),
        (_, Some(key)) => format!("`{key}`"),
    }
}

/// Serde's words for what it wanted, in ours.
fn expected_words(expected: &str) -> Option<String> {
    let words = match expected {
        "i64" | "u64" | "i32" | "u32" => "an integer",
        "f64" => "a number",
        "a boolean" => "a boolean (true or false)",
        "a string" => "a string",
        "a sequence" => "an array",
        e if e.starts_with("struct ") || e == "a map" => "a table",
        // RawValue takes anything; when it is reached with a date-time, "expected
        // anything" would only confuse.
        _ => return None,
    };
    Some(words.to_string())
}

fn shape_error(source: &Source<'_>, e: &toml::de::Error) -> PlanError {
    let span = e.span().unwrap_or(0..0);
    let message = e.message().trim();
    let place = find_place(source.text, &span);

    if let Some(rest) = message.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or_default();
        // Serde lists the allowed keys after "expected": "`a` or `b`", "one of `a`, ...".
        let allowed: Vec<&str> = rest
            .split_once(", expected ")
            .map(|(_, list)| list.split('`').skip(1).step_by(2).collect())
            .unwrap_or_default();
        let within = table_name(place.key_in.as_deref().unwrap_or(&[]));
        let help = if allowed.is_empty() {
            "this table takes no keys".to_string()
        } else {
            did_you_mean(field, &allowed)
        };
        return source
            .error(span, format!("unknown field `{field}` in {within}"))
            .with_help(help);
    }

    let (path, found) = match &place.value {
        Some((path, _, found)) => (path.as_slice(), *found),
        None => (&[][..], "something else"),
    };
    let name = value_name(path);

    // Checked before "invalid type": toml reports an integer beyond i64 as an invalid
    // type ("integer `N` as i128"), but to the user it is a number out of range.
    if message.contains("as i128") || message.contains("too large") {
        return source.error(
            span,
            format!("{name} is out of range: it does not fit in a 64-bit integer"),
        );
    }

    if let Some(rest) = message.strip_prefix("invalid type: ") {
        let expected = rest
            .rsplit_once(", expected ")
            .map(|(_, e)| e)
            .unwrap_or("");
        let message = match expected_words(expected) {
            Some(expected) => {
                format!("wrong type for {name}: expected {expected}, found {found}")
            }
            None => format!("{name} cannot be {found}"),
        };
        let mut error = source.error(span.clone(), message);
        // `count = "16"`: the quotes are the mistake.
        let quoted = source.text.get(span).unwrap_or("");
        let unquoted = quoted.trim_matches(|c| c == '"' || c == '\'');
        let number = match expected {
            "f64" => unquoted.parse::<f64>().is_ok_and(f64::is_finite),
            e => e.contains("64") && unquoted.parse::<i64>().is_ok(),
        };
        if found == "a string" && number {
            error = error.with_help(format!("remove the quotes: {unquoted}"));
        } else if found == "a string" && expected == "a boolean" {
            error = error.with_help("write true or false, without quotes");
        } else if expected == "a string"
            && matches!(
                name.as_str(),
                "`timeout`" | "`margin`" | "`duration`" | "`think_time`"
            )
        {
            error = error.with_help("durations are strings, like \"500ms\", \"2s\" or \"1m\"");
        } else if expected == "a sequence" && name == "`thresholds`" {
            error = error.with_help("write a list: `thresholds = [\"p99 < 50ms\"]`");
        } else if expected == "a sequence" && matches!(name.as_str(), "`scenario`" | "`step`") {
            // `[scenario]`, or a `[[scenario.step]]` before any `[[scenario]]`.
            error = error.with_help(
                "scenarios are `[[scenario]]` tables (double brackets), \
                 each followed by its `[[scenario.step]]` tables",
            );
        }
        return error;
    }

    // A struct given an array: `[[scenario.step.expect]]` where `expect` is one table.
    if message.starts_with("invalid length") && message.contains("expected struct") {
        let key = path.iter().rev().find_map(|seg| match seg {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index => None,
        });
        return source
            .error(
                span,
                format!(
                    "wrong type for `{}`: expected a table, found an array",
                    key.unwrap_or("plan")
                ),
            )
            .with_help("`[[...]]` makes an array of tables; use `[...]` or `{ ... }`");
    }

    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or_default();
        return source.error(span, format!("missing `{field}` in {}", table_name(path)));
    }

    source.error(span, format!("invalid value for {name}: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn err(text: &str) -> PlanError {
        parse(&Source::new(Path::new("p.toml"), text)).unwrap_err()
    }

    #[test]
    fn raw_value_keeps_spans_and_source_order() {
        let text = "[[scenario]]\n[[scenario.step]]\nexpect = { fields = { zeta = \"hex\", alpha = true } }\n";
        let raw = parse(&Source::new(Path::new("p.toml"), text)).unwrap();
        let fields = raw.scenario[0].get_ref().step[0]
            .get_ref()
            .expect
            .as_ref()
            .unwrap()
            .get_ref()
            .fields
            .as_ref()
            .unwrap();
        let RawValue::Table(entries) = fields.get_ref() else {
            panic!("not a table: {fields:?}");
        };
        let keys: Vec<&str> = entries.iter().map(|(k, _)| k.get_ref().as_str()).collect();
        assert_eq!(keys, ["zeta", "alpha"]);
        assert_eq!(&text[entries[1].1.span()], "true");
    }

    #[test]
    fn unknown_field_names_its_table() {
        let e = err("[[scenario]]\n[[scenario.step]]\nvalidate = { respnse = \"hmac\" }\n");
        assert_eq!(e.message, "unknown field `respnse` in a validate step");
        assert_eq!(e.help.as_deref(), Some("did you mean `response`?"));
        assert_eq!((e.line, e.column), (3, 14));
        let e = err("nmae = 1\n");
        assert_eq!(
            e.message,
            "unknown field `nmae` in the top level of the plan"
        );
        assert_eq!(e.help.as_deref(), Some("expected `plan` or `scenario`"));
    }

    #[test]
    fn wrong_types_say_what_was_expected() {
        let e = err("[[scenario]]\n[[scenario.step]]\nconcurrent = { count = \"16\" }\n");
        assert_eq!(
            e.message,
            "wrong type for `count`: expected an integer, found a string"
        );
        assert_eq!(e.help.as_deref(), Some("remove the quotes: 16"));
        let e = err("[[scenario]]\ntags = [\"a\", 2]\n");
        assert_eq!(
            e.message,
            "wrong type for an element of `tags`: expected a string, found an integer"
        );
        let e = err("[[scenario]]\nname = 1979-05-27\n");
        assert_eq!(
            e.message,
            "wrong type for `name`: expected a string, found a date-time"
        );
        let e = err("[[scenario]]\n[[scenario.step]]\nwait = 1979-05-27\n");
        assert_eq!(e.message, "`wait` cannot be a date-time");
        let e = err("scenario = 3\n");
        assert_eq!(
            e.message,
            "wrong type for `scenario`: expected an array, found an integer"
        );
    }

    #[test]
    fn syntax_errors_keep_their_place() {
        let e = err("[[scenario]]\nname = \"a\nx = 1\n");
        assert!(e.message.starts_with("invalid TOML: "), "{}", e.message);
        assert_eq!(e.line, 2);
        let e = err("[[scenario]]\nname = \"a\"\nname = \"b\"\n");
        assert_eq!(e.message, "duplicate key `name`");
        assert_eq!((e.line, e.column), (3, 1));
    }

    #[test]
    fn an_inline_table_left_open_is_named_where_it_opens() {
        // The parser notices on line 8; the mistake is on line 6.
        let e = err(
            "[plan]\nname = \"x\"\n\n[[scenario]]\nname = \"a\"\ncreate = { ttl = 30 \n\n[[scenario.step]]\ncreate = {}\n",
        );
        assert_eq!(e.line, 8);
        let note = e.note.as_deref().unwrap_or("");
        assert!(note.starts_with("line 6 opens `{`"), "{note}");
        // Balanced lines, and brackets inside strings, are not blamed.
        assert_eq!(unclosed_before("a = [\"{\"]\n\nb", 12), None);
        assert_eq!(unclosed_before("[x]\n\n", 5), None);
        assert_eq!(unclosed_before("a = [1,\n", 8), Some((1, '[')));
    }
}
