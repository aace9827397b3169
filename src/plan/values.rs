//! Values shared by every part of the plan language: bounded integers and durations,
//! each with the message that says how to write them. A leaf: the validators of steps,
//! expectations and load specs all call it.

use std::ops::{Range, RangeInclusive};
use std::time::Duration;

use toml::Spanned;

use super::error::{PlanError, Source, did_you_mean};

pub const DURATION_HELP: &str =
    "write a number and a unit, like \"500ms\", \"2s\", \"1m\" or \"1h 30m\"";

/// `at` (or `default` when absent), checked against `range`.
pub fn int_in(
    source: &Source<'_>,
    at: Option<&Spanned<i64>>,
    field: &str,
    range: RangeInclusive<u32>,
    default: u32,
) -> Result<u32, PlanError> {
    let Some(at) = at else {
        return Ok(default);
    };
    match u32::try_from(*at.get_ref()) {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(source.error(
            at.span(),
            format!(
                "`{field}` must be from {} to {}, found {}",
                range.start(),
                range.end(),
                at.get_ref()
            ),
        )),
    }
}

pub fn timeout(source: &Source<'_>, at: &Spanned<String>) -> Result<Duration, PlanError> {
    let d = duration(source, at.span(), at.get_ref(), "timeout")?;
    if d.is_zero() {
        return Err(source
            .error(at.span(), "`timeout` must be more than zero")
            .with_help(DURATION_HELP));
    }
    Ok(d)
}

pub fn duration(
    source: &Source<'_>,
    span: Range<usize>,
    text: &str,
    field: &str,
) -> Result<Duration, PlanError> {
    use humantime::DurationError as E;
    humantime::parse_duration(text).map_err(|e| {
        let why = match e {
            E::UnknownUnit { unit, .. } if unit.is_empty() => "it has no unit".to_string(),
            E::UnknownUnit { unit, .. } => format!("unknown unit `{unit}`"),
            E::Empty => "it is empty".to_string(),
            E::NumberOverflow => "it is too large".to_string(),
            E::InvalidCharacter(_) | E::NumberExpected(_) => "it is not a duration".to_string(),
        };
        source
            .error(
                span,
                format!("invalid duration `{text}` for `{field}`: {why}"),
            )
            .with_help(DURATION_HELP)
    })
}

/// A word that is not one of `allowed`, with did-you-mean.
pub fn unknown_word(
    source: &Source<'_>,
    span: Range<usize>,
    word: &str,
    field: &str,
    allowed: &[&str],
) -> PlanError {
    source
        .error(span, format!("unknown value `{word}` for `{field}`"))
        .with_help(did_you_mean(word, allowed))
}

/// Scenario names may hold dots (`kc-4.2`); saved names may not, since `c.decrypted`
/// names the plaintext of `c`.
pub fn is_name(name: &str, allow_dot: bool) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || (allow_dot && c == '.'))
}
