//! From the raw layer to the model, for one step: words turned into enums, ranges
//! checked, saved challenges resolved in step order, the keys it needs noted.
//!
//! Every check stops at the first problem and reports it at the value's span: one
//! precise error is more use than ten guesses that follow from it.

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::error::{PlanError, Source, did_you_mean, one_of, suggest};
use super::expect::expect;
use super::model::{
    Action, AuthForm, BurstStep, ChallengeRef, ConcurrentStep, CreateStep, DecryptedField,
    Endpoint, Expect, KeyChoice, Need, RawStep, ResponseForm, Step, ValidateStep, WaitStep,
};
use super::raw::{
    RawBurst, RawConcurrent, RawCreate, RawRaw, RawStep as RawStepTable, RawValidate, RawValue,
};
use super::values::{DURATION_HELP, duration, int_in, is_name, unknown_word};

/// Slack after a challenge's expiry before a `wait = { expiry_of }` step ends, so the
/// next request lands after the server's clock says "expired", not on the edge.
const DEFAULT_MARGIN: Duration = Duration::from_secs(1);
const KEYS: &[&str] = &[
    "primary",
    "secondary",
    "rsa",
    "unknown",
    "primary-truncated",
    "primary-extended",
    "none",
];
const AUTHS: &[&str] = &["body", "bearer", "both"];
const RESPONSES: &[&str] = &[
    "hmac",
    "hmac-other-secret",
    "tampered",
    "tampered-middle",
    "tampered-last",
    "truncated",
    "extended",
    "empty",
    "uppercase",
    "echo",
    "hash",
    "custom",
    "decrypted",
    "hmac-decrypted",
    "wrong-decryption",
];
const DECRYPTED: &[&str] = &["decrypted", "wrong", "response"];
/// Keys whose secret can compute a response (`hmac_key`): the run's own keys.
const SECRET_KEYS: &[&str] = &["primary", "secondary", "rsa"];
const ENDPOINTS: &[&str] = &["create", "validate"];
const ACTIONS: &[&str] = &["create", "validate", "wait", "concurrent", "burst", "raw"];

/// Needs found while reading a scenario; turned into `Vec<Need>` in a fixed order so
/// the model does not depend on where a key first appeared.
#[derive(Default)]
pub struct Needs {
    pub rsa: bool,
    pub second_key: bool,
}

impl Needs {
    pub fn into_vec(self) -> Vec<Need> {
        let mut needs = Vec::new();
        if self.rsa {
            needs.push(Need::Rsa);
        }
        if self.second_key {
            needs.push(Need::SecondKey);
        }
        needs
    }
}

/// One step; `in_load` when it is part of a load scenario's flow.
pub fn step(
    source: &Source<'_>,
    raw: &Spanned<RawStepTable>,
    in_load: bool,
    saved: &mut Vec<String>,
    needs: &mut Needs,
) -> Result<Step, PlanError> {
    let s = raw.get_ref();
    let present: Vec<(&str, Range<usize>)> = [
        ("create", s.create.as_ref().map(Spanned::span)),
        ("validate", s.validate.as_ref().map(Spanned::span)),
        ("wait", s.wait.as_ref().map(Spanned::span)),
        ("concurrent", s.concurrent.as_ref().map(Spanned::span)),
        ("burst", s.burst.as_ref().map(Spanned::span)),
        ("raw", s.raw.as_ref().map(Spanned::span)),
    ]
    .into_iter()
    .filter_map(|(name, span)| span.map(|span| (name, span)))
    .collect();
    // Two or more: point at whichever of the first two comes later in the file.
    if let [a, b, ..] = present.as_slice() {
        let later = if a.1.start > b.1.start { a } else { b };
        return Err(source
            .error(
                later.1.clone(),
                format!("a step has two actions, `{}` and `{}`", a.0, b.0),
            )
            .with_help("give each action its own `[[scenario.step]]`"));
    }
    if in_load
        && let Some((name, span)) = present
            .iter()
            .find(|(name, _)| matches!(*name, "concurrent" | "burst"))
    {
        return Err(source
            .error(
                span.clone(),
                format!("a load scenario cannot have a {name} step"),
            )
            .with_help(
                "concurrent and burst steps are conformance checks: move this one to a \
                 scenario without `[scenario.load]`; a load flow may use create, validate, \
                 wait and raw steps",
            ));
    }

    let action = if let Some(c) = &s.create {
        Action::Create(create(source, c.get_ref(), needs)?)
    } else if let Some(v) = &s.validate {
        Action::Validate(validate(source, v, saved, needs)?)
    } else if let Some(w) = &s.wait {
        Action::Wait(wait(source, w, saved)?)
    } else if let Some(c) = &s.concurrent {
        Action::Concurrent(concurrent(source, c, saved, needs)?)
    } else if let Some(b) = &s.burst {
        Action::Burst(burst(source, b.get_ref(), needs)?)
    } else if let Some(r) = &s.raw {
        Action::Raw(raw_step(source, r)?)
    } else {
        return Err(source
            .error(raw.span(), "a step needs an action")
            .with_help(format!("add {}", one_of(ACTIONS))));
    };

    let expect = match (&action, &s.expect) {
        (_, None) => Expect::default(),
        (Action::Wait(_), Some(e)) => {
            return Err(source
                .error(e.span(), "a wait step takes no `expect`")
                .with_help("waiting cannot fail; put the expectation on the next step"));
        }
        (action, Some(e)) => expect(source, e.get_ref(), action, false)?,
    };
    // Saved only now, so a step cannot name its own challenge.
    if let Action::Create(CreateStep {
        save: Some(name), ..
    }) = &action
    {
        saved.push(name.clone());
    }
    Ok(Step {
        // Like scenarios, a step's span is its `[[scenario.step]]` header.
        line: source.line_of(raw.span()),
        action,
        expect,
    })
}

fn create(source: &Source<'_>, c: &RawCreate, needs: &mut Needs) -> Result<CreateStep, PlanError> {
    let ttl = match &c.ttl {
        // Any non-negative TTL is allowed, so plans can send ones a server must refuse.
        Some(ttl) => Some(u64::try_from(*ttl.get_ref()).map_err(|_| {
            source.error(
                ttl.span(),
                format!("`ttl` must be 0 or more, found {}", ttl.get_ref()),
            )
        })?),
        None => None,
    };
    let save = match &c.save {
        Some(save) => {
            let name = save.get_ref();
            if name == "random" {
                return Err(source
                    .error(save.span(), "`random` cannot be a saved name")
                    .with_help("`challenge = \"random\"` means a challenge no server issued; pick another name"));
            }
            if !is_name(name, false) {
                return Err(source
                    .error(save.span(), format!("invalid saved name `{name}`"))
                    .with_help("use only letters, digits, `_` and `-`"));
            }
            Some(name.clone())
        }
        None => None,
    };
    Ok(CreateStep {
        key: key(source, c.key.as_ref(), needs)?,
        auth: auth(source, c.auth.as_ref())?,
        ttl,
        encrypted: c.encrypted,
        save,
        repeat: int_in(source, c.repeat.as_ref(), "repeat", 1..=10_000, 1)?,
    })
}

fn validate(
    source: &Source<'_>,
    raw: &Spanned<RawValidate>,
    saved: &[String],
    needs: &mut Needs,
) -> Result<ValidateStep, PlanError> {
    let v = raw.get_ref();
    let Some(challenge_at) = &v.challenge else {
        return Err(source
            .error(raw.span(), "a validate step needs `challenge`")
            .with_help(
                "name a challenge saved by an earlier step (`challenge = \"c\"`), \
                 or use \"random\" or { literal = \"...\" }",
            ));
    };
    let response = match &v.response {
        None => ResponseForm::Hmac,
        Some(r) => response(source, r)?,
    };
    let decrypted_challenge = match &v.decrypted_challenge {
        None => DecryptedField::Absent,
        Some(d) => match d.get_ref().as_str() {
            "decrypted" => DecryptedField::Decrypted,
            "wrong" => DecryptedField::Wrong,
            "response" => DecryptedField::SameAsResponse,
            other => {
                return Err(unknown_word(
                    source,
                    d.span(),
                    other,
                    "decrypted_challenge",
                    DECRYPTED,
                ));
            }
        },
    };
    let hmac_key = match &v.hmac_key {
        None => None,
        Some(at) if !SECRET_KEYS.contains(&at.get_ref().as_str()) => {
            return Err(
                unknown_word(source, at.span(), at.get_ref(), "hmac_key", SECRET_KEYS)
                    .with_note("only the run's own keys have a secret to compute a response with"),
            );
        }
        Some(at) => Some(key(source, Some(at), needs)?),
    };
    Ok(ValidateStep {
        key: key(source, v.key.as_ref(), needs)?,
        auth: auth(source, v.auth.as_ref())?,
        challenge: challenge(source, challenge_at, saved)?,
        response,
        decrypted_challenge,
        hmac_key,
    })
}

fn challenge(
    source: &Source<'_>,
    at: &Spanned<RawValue>,
    saved: &[String],
) -> Result<ChallengeRef, PlanError> {
    match at.get_ref() {
        RawValue::Str(s) if s == "random" => Ok(ChallengeRef::Random),
        RawValue::Str(s) => {
            let (name, form): (&str, fn(String) -> ChallengeRef) =
                if let Some(name) = s.strip_suffix(".decrypted") {
                    (name, ChallengeRef::SavedDecrypted)
                } else if let Some(name) = s.strip_suffix(".uppercase") {
                    (name, ChallengeRef::SavedUppercase)
                } else {
                    (s.as_str(), ChallengeRef::Saved)
                };
            if !is_name(name, false) {
                return Err(source
                    .error(at.span(), format!("invalid challenge reference `{s}`"))
                    .with_help(
                        "name a saved challenge (`c`, `c.decrypted` for its plaintext, \
                         `c.uppercase` for it in uppercase), or use \"random\" or { literal = \"...\" }",
                    ));
            }
            Ok(form(saved_name(source, at.span(), name, saved)?))
        }
        RawValue::Table(entries) => Ok(ChallengeRef::Literal(literal(
            source,
            at.span(),
            entries,
            "challenge",
        )?)),
        other => Err(source.error(
            at.span(),
            format!(
                "wrong type for `challenge`: expected a string or {{ literal = \"...\" }}, found {}",
                other.kind()
            ),
        )),
    }
}

/// `name`, if an earlier step of this scenario saved it.
fn saved_name(
    source: &Source<'_>,
    span: Range<usize>,
    name: &str,
    saved: &[String],
) -> Result<String, PlanError> {
    if saved.iter().any(|s| s == name) {
        return Ok(name.to_string());
    }
    let candidates: Vec<&str> = saved.iter().map(String::as_str).collect();
    let help = match suggest(name, &candidates) {
        Some(close) => format!("did you mean `{close}`?"),
        None if saved.is_empty() => format!(
            "save it first: `create = {{ save = \"{name}\" }}` in an earlier step of this scenario"
        ),
        None => format!("saved so far in this scenario: {}", one_of(&candidates)),
    };
    Err(source
        .error(
            span,
            format!("no earlier step saves a challenge named `{name}`"),
        )
        .with_help(help))
}

fn response(source: &Source<'_>, at: &Spanned<RawValue>) -> Result<ResponseForm, PlanError> {
    let word = match at.get_ref() {
        RawValue::Str(word) => word.as_str(),
        RawValue::Table(entries) => {
            return Ok(ResponseForm::Literal(literal(
                source,
                at.span(),
                entries,
                "response",
            )?));
        }
        other => {
            return Err(source.error(
                at.span(),
                format!(
                    "wrong type for `response`: expected a string or {{ literal = \"...\" }}, found {}",
                    other.kind()
                ),
            ));
        }
    };
    Ok(match word {
        "hmac" => ResponseForm::Hmac,
        "hmac-other-secret" => ResponseForm::HmacOtherSecret,
        "tampered" => ResponseForm::Tampered,
        "tampered-middle" => ResponseForm::TamperedMiddle,
        "tampered-last" => ResponseForm::TamperedLast,
        "truncated" => ResponseForm::Truncated,
        "extended" => ResponseForm::Extended,
        "empty" => ResponseForm::Empty,
        "uppercase" => ResponseForm::Uppercase,
        "echo" => ResponseForm::Echo,
        "hash" => ResponseForm::Hash,
        "custom" => ResponseForm::Custom,
        "decrypted" => ResponseForm::Decrypted,
        "hmac-decrypted" => ResponseForm::HmacDecrypted,
        "wrong-decryption" => ResponseForm::WrongDecryption,
        other => {
            return Err(unknown_word(
                source,
                at.span(),
                other,
                "response",
                RESPONSES,
            ));
        }
    })
}

/// The string in `{ literal = "..." }`.
fn literal(
    source: &Source<'_>,
    at: Range<usize>,
    entries: &[(Spanned<String>, Spanned<RawValue>)],
    field: &str,
) -> Result<String, PlanError> {
    let mut literal = None;
    for (key, value) in entries {
        if key.get_ref() != "literal" {
            return Err(source
                .error(
                    key.span(),
                    format!("unknown field `{}` in a `{field}` table", key.get_ref()),
                )
                .with_help(did_you_mean(key.get_ref(), &["literal"])));
        }
        match value.get_ref() {
            RawValue::Str(s) => literal = Some(s.clone()),
            other => {
                return Err(source.error(
                    value.span(),
                    format!(
                        "wrong type for `literal`: expected a string, found {}",
                        other.kind()
                    ),
                ));
            }
        }
    }
    literal.ok_or_else(|| {
        source
            .error(at, format!("a `{field}` table needs `literal`"))
            .with_help(format!("write `{field} = {{ literal = \"...\" }}`"))
    })
}

fn wait(
    source: &Source<'_>,
    at: &Spanned<RawValue>,
    saved: &[String],
) -> Result<WaitStep, PlanError> {
    match at.get_ref() {
        RawValue::Str(s) => Ok(WaitStep::For(duration(source, at.span(), s, "wait")?)),
        RawValue::Table(entries) => {
            let mut saved_as = None;
            let mut margin = None;
            let mut before = None;
            let mut at_most = None;
            for (key, value) in entries {
                let RawValue::Str(s) = value.get_ref() else {
                    return Err(source.error(
                        value.span(),
                        format!(
                            "wrong type for `{}`: expected a string, found {}",
                            key.get_ref(),
                            value.get_ref().kind()
                        ),
                    ));
                };
                match key.get_ref().as_str() {
                    "expiry_of" => saved_as = Some(saved_name(source, value.span(), s, saved)?),
                    "margin" => {
                        margin = Some((key.span(), duration(source, value.span(), s, "margin")?))
                    }
                    "at_most" => at_most = Some(duration(source, value.span(), s, "at_most")?),
                    "before" => {
                        let ahead = duration(source, value.span(), s, "before")?;
                        if ahead.is_zero() {
                            return Err(source
                                .error(value.span(), "`before` must be more than zero")
                                .with_help("`before = \"1s\"` ends the wait 1 s ahead of the advertised expiry"));
                        }
                        before = Some((key.span(), ahead));
                    }
                    other => {
                        return Err(source
                            .error(key.span(), format!("unknown field `{other}` in a wait step"))
                            .with_help(did_you_mean(
                                other,
                                &["expiry_of", "margin", "before", "at_most"],
                            )));
                    }
                }
            }
            if let (Some((margin_at, _)), Some((before_at, _))) = (&margin, &before) {
                let later = if margin_at.start > before_at.start {
                    margin_at
                } else {
                    before_at
                };
                return Err(source
                    .error(later.clone(), "a wait has both `margin` and `before`")
                    .with_help(
                        "`margin` waits past the expiry, `before` stops ahead of it: keep one",
                    ));
            }
            let Some(saved) = saved_as else {
                return Err(source
                    .error(at.span(), "a wait table needs `expiry_of`")
                    .with_help("write `wait = { expiry_of = \"c\" }`, or a duration like `wait = \"2s\"`"));
            };
            Ok(match before {
                Some((_, before)) => WaitStep::BeforeExpiry { saved, before },
                None => WaitStep::Expiry {
                    saved,
                    margin: margin.map_or(DEFAULT_MARGIN, |(_, margin)| margin),
                    at_most,
                },
            })
        }
        other => Err(source
            .error(
                at.span(),
                format!(
                    "wrong type for `wait`: expected a duration or {{ expiry_of = \"...\" }}, found {}",
                    other.kind()
                ),
            )
            .with_help(DURATION_HELP)),
    }
}

fn concurrent(
    source: &Source<'_>,
    at: &Spanned<RawConcurrent>,
    saved: &[String],
    needs: &mut Needs,
) -> Result<ConcurrentStep, PlanError> {
    let c = at.get_ref();
    let Some(count) = &c.count else {
        return Err(source
            .error(at.span(), "a concurrent step needs `count`")
            .with_help("how many copies to send at once, from 2 to 1024, e.g. `count = 16`"));
    };
    let Some(v) = &c.validate else {
        return Err(source
            .error(at.span(), "a concurrent step needs `validate`")
            .with_help("the validation to send, e.g. `validate = { challenge = \"c\" }`"));
    };
    Ok(ConcurrentStep {
        count: int_in(source, Some(count), "count", 2..=1024, 2)?,
        validate: validate(source, v, saved, needs)?,
    })
}

fn burst(source: &Source<'_>, b: &RawBurst, needs: &mut Needs) -> Result<BurstStep, PlanError> {
    let endpoint = match &b.endpoint {
        None => Endpoint::Create,
        Some(e) => match e.get_ref().as_str() {
            "create" => Endpoint::Create,
            "validate" => Endpoint::Validate,
            other => return Err(unknown_word(source, e.span(), other, "endpoint", ENDPOINTS)),
        },
    };
    Ok(BurstStep {
        endpoint,
        key: key(source, b.key.as_ref(), needs)?,
        max_requests: int_in(
            source,
            b.max_requests.as_ref(),
            "max_requests",
            1..=1_000_000,
            1000,
        )?,
        concurrency: int_in(source, b.concurrency.as_ref(), "concurrency", 1..=1024, 32)?,
        probe_validations: int_in(
            source,
            b.probe_validations.as_ref(),
            "probe_validations",
            0..=100,
            0,
        )?,
    })
}

fn raw_step(source: &Source<'_>, at: &Spanned<RawRaw>) -> Result<RawStep, PlanError> {
    let r = at.get_ref();
    let method = match &r.method {
        None => "POST".to_string(),
        Some(m) => {
            let method = m.get_ref();
            // RFC 9110 token characters; upper case because methods are case-sensitive
            // and every real one is upper case.
            let token = !method.is_empty()
                && method
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c));
            if !token || method.chars().any(|c| c.is_ascii_lowercase()) {
                let upper = method.to_ascii_uppercase();
                let help = if token {
                    format!("did you mean `{upper}`?")
                } else {
                    "write an upper-case HTTP method, like `POST` or `GET`".to_string()
                };
                return Err(source
                    .error(m.span(), format!("invalid HTTP method `{method}`"))
                    .with_help(help));
            }
            method.clone()
        }
    };
    let Some(path) = &r.path else {
        return Err(source
            .error(at.span(), "a raw step needs `path`")
            .with_help("e.g. `path = \"/api/challenge/create\"`"));
    };
    if !path.get_ref().starts_with('/')
        || path
            .get_ref()
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(source
            .error(
                path.span(),
                format!("invalid request path `{}`", path.get_ref()),
            )
            .with_help("a path starts with `/` and has no spaces (write them as %20)"));
    }
    let content_type = match &r.content_type {
        Some(ct) if ct.get_ref().chars().any(char::is_control) => {
            return Err(source.error(
                ct.span(),
                "`content_type` cannot hold control characters (it is sent as a header)",
            ));
        }
        Some(ct) => Some(ct.get_ref().clone()),
        None => None,
    };
    Ok(RawStep {
        method,
        path: path.get_ref().clone(),
        body: r.body.clone().unwrap_or_default(),
        content_type,
        bearer: r.bearer.unwrap_or(false),
    })
}

fn key(
    source: &Source<'_>,
    at: Option<&Spanned<String>>,
    needs: &mut Needs,
) -> Result<KeyChoice, PlanError> {
    let Some(at) = at else {
        return Ok(KeyChoice::Primary);
    };
    Ok(match at.get_ref().as_str() {
        "primary" => KeyChoice::Primary,
        "secondary" => {
            needs.second_key = true;
            KeyChoice::Secondary
        }
        "rsa" => {
            needs.rsa = true;
            KeyChoice::Rsa
        }
        "unknown" => KeyChoice::Unknown,
        "primary-truncated" => KeyChoice::PrimaryTruncated,
        "primary-extended" => KeyChoice::PrimaryExtended,
        "none" => KeyChoice::Absent,
        other => return Err(unknown_word(source, at.span(), other, "key", KEYS)),
    })
}

fn auth(source: &Source<'_>, at: Option<&Spanned<String>>) -> Result<AuthForm, PlanError> {
    let Some(at) = at else {
        return Ok(AuthForm::Body);
    };
    Ok(match at.get_ref().as_str() {
        "body" => AuthForm::Body,
        "bearer" => AuthForm::Bearer,
        "both" => AuthForm::Both,
        other => return Err(unknown_word(source, at.span(), other, "auth", AUTHS)),
    })
}
