//! The plan loader end to end: a realistic plan into the exact model, every class of
//! mistake into a placed error (rendered text pinned for the ones people see most), and
//! fuzzing that no input makes it panic.

#[path = "../../fuzz/plan_check.rs"]
mod plan_check;

use std::path::{Path, PathBuf};
use std::time::Duration;

use keyclaim_harness::plan::model::*;
use keyclaim_harness::plan::{PlanError, load, load_all, load_str};
use proptest::prelude::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/plans")
        .join(name)
}

fn valid_text() -> String {
    std::fs::read_to_string(fixture("valid.toml")).expect("fixture is readable")
}

/// The error for `text`, loaded as `plan.toml`.
fn error(text: &str) -> PlanError {
    match load_str(Path::new("plan.toml"), text) {
        Ok(plan) => panic!("expected an error, got {plan:#?}"),
        Err(e) => e,
    }
}

/// The rendered error for `text`.
fn rendered(text: &str) -> String {
    error(text).to_string()
}

/// One scenario named `s` holding `steps` (TOML for `[[scenario.step]]` tables).
fn with_steps(steps: &str) -> String {
    format!("[[scenario]]\nname = \"s\"\n\n{steps}")
}

// ---------------------------------------------------------------------------------
// The valid plan

#[test]
fn valid_plan_loads_into_the_model() {
    let plan = load(&fixture("valid.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.name, "KeyClaim conformance (fixture)");
    assert_eq!(plan.path, fixture("valid.toml"));
    let names: Vec<&str> = plan.scenarios.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "create-basic",
            "replay",
            "rsa.roundtrip",
            "rate-limit",
            "malformed"
        ]
    );

    let basic = &plan.scenarios[0];
    assert_eq!(basic.line, 8);
    assert_eq!(basic.id.as_deref(), Some("KC-2.1"));
    assert_eq!(
        basic.requirement.as_deref(),
        Some("a create MUST answer 200 with a fresh hex challenge")
    );
    assert_eq!(basic.tags, ["conformance", "create"]);
    assert!(!basic.exclusive);
    assert!(basic.needs.is_empty());
    // `[plan] timeout` is the default for scenarios that give none.
    assert_eq!(basic.timeout, Duration::from_secs(45));
    assert_eq!(
        basic.steps[0],
        Step {
            line: 15,
            action: Action::Create(CreateStep {
                key: KeyChoice::Primary,
                auth: AuthForm::Body,
                ttl: Some(30),
                encrypted: None,
                save: Some("c".into()),
                repeat: 1,
            }),
            expect: Expect {
                status: Some(StatusExpect::Codes(vec![200])),
                // In the order written, not toml's sorted order.
                fields: vec![
                    FieldExpect {
                        field: "challenge".into(),
                        shape: Shape::HexAtLeast(32),
                    },
                    FieldExpect {
                        field: "expires_in".into(),
                        shape: Shape::EqualsTtl,
                    },
                    FieldExpect {
                        field: "quota".into(),
                        shape: Shape::Quota,
                    },
                ],
                recommended: Some(Box::new(Expect {
                    fields: vec![FieldExpect {
                        field: "expires_in".into(),
                        shape: Shape::AtMostTtl,
                    }],
                    ..Expect::default()
                })),
                ..Expect::default()
            },
        }
    );
    assert_eq!(basic.steps[1].line, 19);
    assert_eq!(
        basic.steps[1].expect,
        Expect {
            status: Some(StatusExpect::Class(2)),
            valid: Some(ValidExpect::True),
            error: Some(ErrorExpect::Absent),
            ..Expect::default()
        }
    );

    let replay = &plan.scenarios[1];
    assert_eq!(replay.timeout, Duration::from_secs(30));
    assert!(replay.steps[0].expect.distinct);
    assert_eq!(
        replay.steps[0].expect.fields[1],
        FieldExpect {
            field: "used".into(),
            shape: Shape::Bool(false),
        }
    );
    assert_eq!(
        replay.steps[1].action,
        Action::Validate(ValidateStep {
            key: KeyChoice::Primary,
            auth: AuthForm::Bearer,
            challenge: ChallengeRef::Saved("c".into()),
            response: ResponseForm::Hmac,
            decrypted_challenge: DecryptedField::Absent,
            hmac_key: None,
        })
    );
    assert_eq!(
        replay.steps[2],
        Step {
            line: 37,
            action: Action::Concurrent(ConcurrentStep {
                count: 16,
                validate: ValidateStep {
                    key: KeyChoice::Primary,
                    auth: AuthForm::Body,
                    challenge: ChallengeRef::Saved("c".into()),
                    response: ResponseForm::Hmac,
                    decrypted_challenge: DecryptedField::Absent,
                    hmac_key: None,
                },
            }),
            expect: Expect {
                valid_count: Some(0),
                error: Some(ErrorExpect::OneOf(vec!["replayed_challenge".into()])),
                valid: Some(ValidExpect::NotTrue),
                ..Expect::default()
            },
        }
    );

    let rsa = &plan.scenarios[2];
    assert_eq!(rsa.line, 41);
    // Inferred from `key = "rsa"` and `key = "secondary"`, in the fixed order.
    assert_eq!(rsa.needs, [Need::Rsa, Need::SecondKey]);
    assert_eq!(rsa.timeout, Duration::from_secs(45));
    assert_eq!(
        rsa.steps[1].action,
        Action::Validate(ValidateStep {
            key: KeyChoice::Rsa,
            auth: AuthForm::Both,
            challenge: ChallengeRef::SavedDecrypted("enc".into()),
            response: ResponseForm::HmacDecrypted,
            decrypted_challenge: DecryptedField::Decrypted,
            hmac_key: None,
        })
    );
    assert_eq!(
        rsa.steps[1].expect.status,
        Some(StatusExpect::AnyOf(vec![
            StatusExpect::Codes(vec![200]),
            StatusExpect::Class(2),
        ]))
    );
    assert_eq!(
        rsa.steps[2].action,
        Action::Validate(ValidateStep {
            key: KeyChoice::Secondary,
            auth: AuthForm::Body,
            challenge: ChallengeRef::Literal("00ff".into()),
            response: ResponseForm::Literal("nope".into()),
            decrypted_challenge: DecryptedField::Wrong,
            hmac_key: None,
        })
    );
    assert_eq!(
        rsa.steps[2].expect.error,
        Some(ErrorExpect::OneOf(vec![
            "invalid_key".into(),
            "invalid_signature".into()
        ]))
    );
    let waits: Vec<&Action> = rsa.steps[3..6].iter().map(|s| &s.action).collect();
    assert_eq!(
        waits,
        [
            &Action::Wait(WaitStep::Expiry {
                saved: "enc".into(),
                margin: Duration::from_secs(1),
                at_most: None,
            }),
            &Action::Wait(WaitStep::Expiry {
                saved: "enc".into(),
                margin: Duration::from_millis(250),
                at_most: None,
            }),
            &Action::Wait(WaitStep::For(Duration::from_secs(2))),
        ]
    );
    assert_eq!(rsa.steps[3].expect, Expect::default());
    assert_eq!(
        rsa.steps[6].action,
        Action::Validate(ValidateStep {
            key: KeyChoice::Absent,
            auth: AuthForm::Body,
            challenge: ChallengeRef::Random,
            response: ResponseForm::Tampered,
            decrypted_challenge: DecryptedField::Absent,
            hmac_key: None,
        })
    );
    assert_eq!(rsa.steps[6].expect.error, Some(ErrorExpect::Documented));

    let rate = &plan.scenarios[3];
    assert!(rate.exclusive);
    assert_eq!(rate.needs, [Need::SecondKey]);
    assert_eq!(
        rate.steps[0],
        Step {
            line: 75,
            action: Action::Burst(BurstStep {
                endpoint: Endpoint::Validate,
                key: KeyChoice::Unknown,
                max_requests: 2000,
                concurrency: 64,
                probe_validations: 0,
            }),
            expect: Expect {
                rate_limited: true,
                status: Some(StatusExpect::Codes(vec![403, 429])),
                error: Some(ErrorExpect::OneOf(vec!["rate_limited".into()])),
                recommended: Some(Box::new(Expect {
                    status: Some(StatusExpect::Codes(vec![429])),
                    retry_after: true,
                    ..Expect::default()
                })),
                ..Expect::default()
            },
        }
    );
    // Every burst default.
    assert_eq!(
        rate.steps[1].action,
        Action::Burst(BurstStep {
            endpoint: Endpoint::Create,
            key: KeyChoice::Primary,
            max_requests: 1000,
            concurrency: 32,
            probe_validations: 0,
        })
    );

    let malformed = &plan.scenarios[4];
    assert_eq!(
        malformed.steps[0].action,
        Action::Raw(RawStep {
            method: "POST".into(),
            path: "/api/challenge/create".into(),
            body: "{not json".into(),
            content_type: Some("text/plain".into()),
            bearer: true,
        })
    );
    assert_eq!(
        malformed.steps[0].expect.recommended.as_deref(),
        Some(&Expect {
            json_body: true,
            ..Expect::default()
        })
    );
    // Every raw default.
    assert_eq!(
        malformed.steps[1].action,
        Action::Raw(RawStep {
            method: "POST".into(),
            path: "/api/challenge/validate".into(),
            body: String::new(),
            content_type: None,
            bearer: false,
        })
    );
    assert_eq!(
        malformed.steps[1].expect.status,
        Some(StatusExpect::AnyOf(vec![
            StatusExpect::Codes(vec![400]),
            StatusExpect::Class(4),
            StatusExpect::Codes(vec![422]),
        ]))
    );
}

#[test]
fn defaults_fill_in_a_minimal_plan() {
    let text = "[[scenario]]\nname = \"m\"\n[[scenario.step]]\ncreate = {}\n";
    let plan = load_str(Path::new("dir/minimal.toml"), text).unwrap();
    // No `[plan] name`: the file stem.
    assert_eq!(plan.name, "minimal");
    let s = &plan.scenarios[0];
    assert_eq!(s.timeout, Duration::from_secs(60));
    assert_eq!((s.line, s.steps[0].line), (1, 3));
    assert_eq!(
        s.steps[0].action,
        Action::Create(CreateStep {
            key: KeyChoice::Primary,
            auth: AuthForm::Body,
            ttl: None,
            encrypted: None,
            save: None,
            repeat: 1,
        })
    );
}

#[test]
fn needs_are_explicit_or_inferred_without_duplicates() {
    let text = "[[scenario]]\nname = \"n\"\nneeds = [\"second-key\", \"rsa\", \"rsa\"]\n\
                [[scenario.step]]\ncreate = { key = \"rsa\" }\n\
                [[scenario.step]]\nburst = { key = \"secondary\" }\n";
    let plan = load_str(Path::new("p.toml"), text).unwrap();
    assert_eq!(plan.scenarios[0].needs, [Need::Rsa, Need::SecondKey]);
}

// ---------------------------------------------------------------------------------
// Rendered errors, pinned

#[test]
fn unknown_key_suggests_the_close_one() {
    let text = with_steps(
        "[[scenario.step]]\ncreate = { save = \"c\" }\n\n[[scenario.step]]\nvalidate = { challenge = \"c\", respnse = \"hmac\" }\n",
    );
    assert_eq!(
        rendered(&text),
        "\
error: unknown field `respnse` in a validate step
 --> plan.toml:8:31
  |
8 | validate = { challenge = \"c\", respnse = \"hmac\" }
  |                               ^^^^^^^
  = help: did you mean `response`?"
    );
}

#[test]
fn unknown_key_far_from_any_lists_the_allowed_ones() {
    let e = error("[plan]\nauthor = \"me\"\n[[scenario]]\nname = \"s\"\n");
    assert_eq!(e.message, "unknown field `author` in the [plan] table");
    assert_eq!(
        e.help.as_deref(),
        Some("expected one of `name`, `timeout`, `cacert`, `http2`")
    );
    assert_eq!((e.line, e.column), (2, 1));
}

#[test]
fn wrong_type_says_expected_and_found() {
    let text = with_steps(
        "[[scenario.step]]\ncreate = { save = \"c\" }\n[[scenario.step]]\nconcurrent = { count = \"16\", validate = { challenge = \"c\" } }\n",
    );
    assert_eq!(
        rendered(&text),
        "\
error: wrong type for `count`: expected an integer, found a string
 --> plan.toml:7:24
  |
7 | concurrent = { count = \"16\", validate = { challenge = \"c\" } }
  |                        ^^^^
  = help: remove the quotes: 16"
    );
}

#[test]
fn unknown_word_suggests_the_close_one() {
    let text = with_steps(
        "[[scenario.step]]\nvalidate = { challenge = \"random\", response = \"hmca\" }\n",
    );
    assert_eq!(
        rendered(&text),
        "\
error: unknown value `hmca` for `response`
 --> plan.toml:5:47
  |
5 | validate = { challenge = \"random\", response = \"hmca\" }
  |                                               ^^^^^^
  = help: did you mean `hmac`?"
    );
}

#[test]
fn undefined_saved_name_points_at_the_reference() {
    let text = with_steps(
        "[[scenario.step]]\ncreate = { save = \"first\" }\n[[scenario.step]]\nvalidate = { challenge = \"frist\" }\n",
    );
    assert_eq!(
        rendered(&text),
        "\
error: no earlier step saves a challenge named `frist`
 --> plan.toml:7:26
  |
7 | validate = { challenge = \"frist\" }
  |                          ^^^^^^^
  = help: did you mean `first`?"
    );
}

#[test]
fn duplicate_scenario_says_where_the_first_is() {
    let text = "[[scenario]]\nname = \"replay\"\n[[scenario.step]]\nwait = \"1s\"\n\n\
                [[scenario]]\nname = \"replay\"\n[[scenario.step]]\nwait = \"1s\"\n";
    assert_eq!(
        rendered(text),
        "\
error: duplicate scenario name `replay`
 --> plan.toml:7:8
  |
7 | name = \"replay\"
  |        ^^^^^^^^
  = note: the first `replay` is at plan.toml:2:8
  = help: scenario names must be unique across all plan files of a run"
    );
}

#[test]
fn duplicate_scenario_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.toml");
    let b = dir.path().join("b.toml");
    std::fs::write(
        &a,
        "[[scenario]]\nname = \"x\"\n[[scenario.step]]\nwait = \"1s\"\n",
    )
    .unwrap();
    std::fs::write(
        &b,
        "[[scenario]]\nname = \"y\"\n[[scenario.step]]\nwait = \"1s\"\n\
         [[scenario]]\nname = \"x\"\n[[scenario.step]]\nwait = \"1s\"\n",
    )
    .unwrap();
    let e = load_all(&[a.clone(), b.clone()]).unwrap_err();
    assert_eq!(e.path, b);
    assert_eq!((e.line, e.column), (6, 8));
    assert_eq!(
        e.note,
        Some(format!("the first `x` is at {}:2:8", a.display()))
    );
    // Each file alone is fine, and so are the two in one run without the clash.
    assert!(load(&a).is_ok() && load(&b).is_ok());
    assert_eq!(load_all(&[a, fixture("valid.toml")]).unwrap().len(), 2);
}

#[test]
fn empty_plan() {
    assert_eq!(
        rendered("# nothing yet\n"),
        "\
error: the plan has no scenarios
 --> plan.toml:1:1
  = help: add a `[[scenario]]` with a `name` and at least one `[[scenario.step]]`"
    );
    // With a [plan] table, the error points at it.
    let e = error("\n[plan]\nname = \"x\"\n");
    assert_eq!((e.line, e.column), (2, 1));
    assert_eq!(error("").line, 1);
}

#[test]
fn syntax_error() {
    assert_eq!(
        rendered("[[scenario]]\nname = \"a\" \"b\"\n"),
        "\
error: invalid TOML: unexpected key or value, expected newline, `#`
 --> plan.toml:2:12
  |
2 | name = \"a\" \"b\"
  |            ^"
    );
}

#[test]
fn missing_file() {
    let e = load(Path::new("no/such/plan.toml")).unwrap_err();
    assert_eq!((e.line, e.column), (0, 0));
    assert_eq!(
        e.to_string(),
        "error: cannot read plan: No such file or directory\n --> no/such/plan.toml\n  \
         = help: give a plan file's path, or a plan built into this binary: conformance, load, soak"
    );
}

#[test]
fn long_lines_are_clipped_around_the_column() {
    let padding = "x".repeat(120);
    let text = with_steps(&format!(
        "[[scenario.step]]\nraw = {{ path = \"/p\", body = \"{padding}\", bearr = true, content_type = \"text/plain; charset=utf-8\" }}\n"
    ));
    assert_eq!(
        rendered(&text),
        "\
error: unknown field `bearr` in a raw step
 --> plan.toml:5:153
  |
5 | …xxxxxxxxxxxxxxxxxxxxxxxxxxx\", bearr = true, content_type = \"text/plain; charset=…
  |                                ^^^^^
  = help: did you mean `bearer`?"
    );
}

#[test]
fn bad_duration_shows_the_formats() {
    let text = "[[scenario]]\nname = \"s\"\ntimeout = \"2 parsecs\"\n";
    assert_eq!(
        rendered(text),
        "\
error: invalid duration `2 parsecs` for `timeout`: unknown unit `parsecs`
 --> plan.toml:3:11
  |
3 | timeout = \"2 parsecs\"
  |           ^^^^^^^^^^^
  = help: write a number and a unit, like \"500ms\", \"2s\", \"1m\" or \"1h 30m\""
    );
}

// ---------------------------------------------------------------------------------
// Every other class of mistake: the message and the place

/// Asserts the error for `text` has `message` at `line:column`.
#[track_caller]
fn assert_error(text: &str, message: &str, line: usize, column: usize) {
    let e = error(text);
    assert_eq!(
        (e.message.as_str(), e.line, e.column),
        (message, line, column),
        "\n{e}"
    );
    // Every placed error renders with its excerpt.
    assert!(e.to_string().contains(&format!("{line} | ")), "\n{e}");
}

#[test]
fn step_actions_must_be_exactly_one() {
    assert_error(
        &with_steps("[[scenario.step]]\nexpect = { status = 200 }\n"),
        "a step needs an action",
        4,
        1,
    );
    assert_error(
        &with_steps("[[scenario.step]]\ncreate = {}\nwait = \"1s\"\n"),
        "a step has two actions, `create` and `wait`",
        6,
        8,
    );
    assert_error(
        "[[scenario]]\nname = \"s\"\n",
        "scenario `s` has no steps",
        1,
        1,
    );
    assert_error(
        "[[scenario]]\n[[scenario.step]]\ncreate = {}\n",
        "a scenario needs a `name`",
        1,
        1,
    );
}

#[test]
fn saved_names_must_come_from_earlier_steps() {
    // Saved by a later step: still an error, at the reference.
    assert_error(
        &with_steps(
            "[[scenario.step]]\nwait = { expiry_of = \"c\" }\n[[scenario.step]]\ncreate = { save = \"c\" }\n",
        ),
        "no earlier step saves a challenge named `c`",
        5,
        22,
    );
    // Saved in another scenario: not visible.
    let text = "[[scenario]]\nname = \"a\"\n[[scenario.step]]\ncreate = { save = \"c\" }\n\
                [[scenario]]\nname = \"b\"\n[[scenario.step]]\nvalidate = { challenge = \"c.decrypted\" }\n";
    assert_error(text, "no earlier step saves a challenge named `c`", 8, 26);
    assert_error(
        &with_steps("[[scenario.step]]\ncreate = { save = \"random\" }\n"),
        "`random` cannot be a saved name",
        5,
        19,
    );
    assert_error(
        &with_steps("[[scenario.step]]\ncreate = { save = \"a.b\" }\n"),
        "invalid saved name `a.b`",
        5,
        19,
    );
}

#[test]
fn expectations_must_fit_the_action() {
    let create = "[[scenario.step]]\ncreate = { save = \"c\" }\n";
    assert_error(
        &with_steps(&format!("{create}expect = {{ valid_count = 1 }}\n")),
        "`valid_count` does not fit a create step",
        6,
        26,
    );
    assert_error(
        &with_steps(&format!(
            "{create}[[scenario.step]]\nvalidate = {{ challenge = \"c\" }}\nexpect = {{ rate_limited = true }}\n"
        )),
        "`rate_limited` does not fit a validate step",
        8,
        27,
    );
    assert_error(
        &with_steps(&format!("{create}expect = {{ distinct = true }}\n")),
        "`distinct` needs a create step with `repeat` above 1",
        6,
        23,
    );
    assert_error(
        &with_steps("[[scenario.step]]\nburst = {}\nexpect = { distinct = true }\n"),
        "`distinct` does not fit a burst step",
        6,
        23,
    );
    assert_error(
        &with_steps(&format!(
            "{create}[[scenario.step]]\nvalidate = {{ challenge = \"c\" }}\nexpect = {{ fields = {{ expires_in = \"ttl\" }} }}\n"
        )),
        "shape `ttl` does not fit a validate step",
        8,
        36,
    );
    assert_error(
        &with_steps(
            "[[scenario.step]]\ncreate = {}\nexpect = { fields = { expires_in = \"ttl\" } }\n",
        ),
        "shape `ttl` needs the create step to send a `ttl`",
        6,
        36,
    );
    assert_error(
        &with_steps("[[scenario.step]]\nwait = \"1s\"\nexpect = { status = 200 }\n"),
        "a wait step takes no `expect`",
        6,
        10,
    );
    assert_error(
        &with_steps(
            "[[scenario.step]]\nburst = {}\nexpect = { recommended = { recommended = {} } }\n",
        ),
        "`recommended` cannot hold another `recommended`",
        6,
        42,
    );
    // `recommended` obeys the same fit rules as `expect`.
    assert_error(
        &with_steps(
            "[[scenario.step]]\nburst = {}\nexpect = { recommended = { valid_count = 1 } }\n",
        ),
        "`valid_count` does not fit a burst step",
        6,
        42,
    );
}

#[test]
fn numbers_out_of_range() {
    let cases = [
        (
            "create = { repeat = 0 }",
            "`repeat` must be from 1 to 10000, found 0",
            21,
        ),
        (
            "create = { ttl = -5 }",
            "`ttl` must be 0 or more, found -5",
            18,
        ),
        (
            "concurrent = { count = 1, validate = { challenge = \"random\" } }",
            "`count` must be from 2 to 1024, found 1",
            24,
        ),
        (
            "burst = { max_requests = 99999999999 }",
            "`max_requests` must be from 1 to 1000000, found 99999999999",
            26,
        ),
        (
            "burst = { concurrency = 2000 }",
            "`concurrency` must be from 1 to 1024, found 2000",
            25,
        ),
        (
            "burst = {}\nexpect = { status = 600 }",
            "status 600 is out of range: expected 100 to 599",
            0,
        ),
        (
            "create = { ttl = 99999999999999999999 }",
            "`ttl` is out of range: it does not fit in a 64-bit integer",
            18,
        ),
    ];
    for (step, message, column) in cases {
        let e = error(&with_steps(&format!("[[scenario.step]]\n{step}\n")));
        assert_eq!(e.message, message, "\n{e}");
        if column > 0 {
            assert_eq!((e.line, e.column), (5, column), "\n{e}");
        }
    }
    let e = error(&with_steps(
        "[[scenario.step]]\ncreate = { save = \"c\" }\n[[scenario.step]]\n\
         concurrent = { count = 4, validate = { challenge = \"c\" } }\nexpect = { valid_count = 5 }\n",
    ));
    assert_eq!(e.message, "`valid_count` must be from 0 to 4, found 5");
}

#[test]
fn words_and_values_are_checked() {
    let cases = [
        (
            "create = { key = \"primray\" }",
            "unknown value `primray` for `key`",
            "did you mean `primary`?",
        ),
        (
            "create = { auth = \"cookie\" }",
            "unknown value `cookie` for `auth`",
            "expected one of `body`, `bearer`, `both`",
        ),
        (
            "burst = { endpoint = \"crate\" }",
            "unknown value `crate` for `endpoint`",
            "did you mean `create`?",
        ),
        (
            "raw = { method = \"post\", path = \"/\" }",
            "invalid HTTP method `post`",
            "did you mean `POST`?",
        ),
        (
            "raw = { path = \"api/x\" }",
            "invalid request path `api/x`",
            "a path starts with `/` and has no spaces (write them as %20)",
        ),
        (
            "burst = {}\nexpect = { status = \"4XX\" }",
            "invalid status `4XX`",
            "did you mean `4xx`?",
        ),
        (
            "burst = {}\nexpect = { status = \"429\" }",
            "invalid status `429`",
            "remove the quotes: 429",
        ),
        (
            "burst = {}\nexpect = { valid = \"yes\" }",
            "unknown value `yes` for `valid`",
            "expected true, false or \"not-true\"",
        ),
        (
            "burst = {}\nexpect = { error = \"Rate-Limited\" }",
            "invalid error code `Rate-Limited`",
            "codes are lower-case letters and `_`, like `replayed_challenge`",
        ),
        (
            "create = {}\nexpect = { fields = { challenge = \"hexx\" } }",
            "unknown shape `hexx` for field `challenge`",
            "did you mean `hex`?",
        ),
        (
            "wait = \"soon\"",
            "invalid duration `soon` for `wait`: it is not a duration",
            "write a number and a unit, like \"500ms\", \"2s\", \"1m\" or \"1h 30m\"",
        ),
        (
            "wait = \"30\"",
            "invalid duration `30` for `wait`: it has no unit",
            "write a number and a unit, like \"500ms\", \"2s\", \"1m\" or \"1h 30m\"",
        ),
        (
            "validate = { challenge = { literl = \"x\" } }",
            "unknown field `literl` in a `challenge` table",
            "did you mean `literal`?",
        ),
        (
            "validate = { response = \"hmac\" }",
            "a validate step needs `challenge`",
            "name a challenge saved by an earlier step (`challenge = \"c\"`), or use \"random\" or { literal = \"...\" }",
        ),
        (
            "create = { encrypted = \"true\" }",
            "wrong type for `encrypted`: expected a boolean (true or false), found a string",
            "write true or false, without quotes",
        ),
    ];
    for (step, message, help) in cases {
        let e = error(&with_steps(&format!("[[scenario.step]]\n{step}\n")));
        assert_eq!(
            (e.message.as_str(), e.help.as_deref()),
            (message, Some(help)),
            "\n{e}"
        );
    }
    let e = error(
        "[[scenario]]\nname = \"s\"\nneeds = [\"second_key\"]\n[[scenario.step]]\ncreate = {}\n",
    );
    assert_eq!(e.message, "unknown value `second_key` for `needs`");
    assert_eq!(e.help.as_deref(), Some("did you mean `second-key`?"));
    let e = error("[[scenario]]\nname = \"has space\"\n[[scenario.step]]\ncreate = {}\n");
    assert_eq!(e.message, "invalid scenario name `has space`");
    let e = error("[[scenario.step]]\ncreate = {}\n");
    assert_eq!(
        e.message,
        "wrong type for `scenario`: expected an array, found a table"
    );
    assert!(e.help.unwrap().contains("double brackets"));
    let e = error(&with_steps(
        "[[scenario.step]]\ncreate = {}\n[[scenario.step.expect]]\n",
    ));
    assert_eq!(
        e.message,
        "wrong type for `expect`: expected a table, found an array"
    );
    let e = error("[[scenario]]\nname = \"s\"\ntimeout = 30\n");
    assert_eq!(
        e.message,
        "wrong type for `timeout`: expected a string, found an integer"
    );
}

// ---------------------------------------------------------------------------------
// Fuzzing: nothing panics, every error renders and is placed

// The property is `fuzz/plan_check.rs`, shared with the cargo-fuzz target
// `fuzz/fuzz_targets/plan_loader.rs`.

/// Found by `cargo fuzz run plan_loader`: an error toml places on a line's ending (an
/// unterminated string) counted the `\r` of a CRLF, and any stray `\r` before it, in its
/// column, while the excerpt leaves them out: `-->` named a column past the end of the
/// line shown. Now it points just past the text shown, as with `\n` endings.
#[test]
fn an_error_at_a_crlf_points_just_past_the_line_shown() {
    for ending in ["\n", "\r\n", "\r\r\r\n"] {
        let text = format!("[[scenario]]\nname = \"abc{ending}");
        plan_check::check_plan_text(&text);
        assert_eq!(
            rendered(&text),
            "\
error: invalid TOML: invalid basic string, expected `\"`
 --> plan.toml:2:12
  |
2 | name = \"abc
  |            ^",
            "ending {ending:?}"
        );
    }
}

/// A mutation of a text, applied line-wise or byte-wise.
#[derive(Debug, Clone)]
enum Mutation {
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    TruncateAt(usize),
    DeleteByte(usize),
    InsertChar(usize, char),
    ReplaceChar(usize, char),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Characters that matter to TOML, plus some that matter to our columns.
    let interesting = prop::sample::select(vec![
        '"', '\'', '[', ']', '{', '}', '=', ',', '.', '#', '\n', ' ', '\t', '0', '9', '-', 'x',
        'é', '…', '\u{0}', '\r',
    ]);
    prop_oneof![
        any::<usize>().prop_map(Mutation::DeleteLine),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        any::<usize>().prop_map(Mutation::TruncateAt),
        any::<usize>().prop_map(Mutation::DeleteByte),
        (any::<usize>(), interesting.clone()).prop_map(|(i, c)| Mutation::InsertChar(i, c)),
        (any::<usize>(), interesting).prop_map(|(i, c)| Mutation::ReplaceChar(i, c)),
    ]
}

/// `text` after each mutation in turn.
fn apply_all(text: String, mutations: &[Mutation]) -> String {
    mutations.iter().fold(text, |text, m| apply(&text, m))
}

fn apply(text: &str, m: &Mutation) -> String {
    let mut lines: Vec<&str> = text.split('\n').collect();
    let n = lines.len();
    // Byte edits snap to char boundaries: the loader takes `&str`, so invalid UTF-8
    // cannot reach it (`load` reports it as a read error).
    let at = |i: usize| {
        let mut i = i % (text.len() + 1);
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    match *m {
        Mutation::DeleteLine(i) => {
            lines.remove(i % n);
            lines.join("\n")
        }
        Mutation::DuplicateLine(i) => {
            lines.insert(i % n, lines[i % n]);
            lines.join("\n")
        }
        Mutation::SwapLines(a, b) => {
            lines.swap(a % n, b % n);
            lines.join("\n")
        }
        Mutation::TruncateAt(i) => text[..at(i)].to_string(),
        Mutation::DeleteByte(i) => {
            let i = at(i);
            let mut s = text.to_string();
            if i < s.len() {
                s.remove(i);
            }
            s
        }
        Mutation::InsertChar(i, c) => {
            let mut s = text.to_string();
            s.insert(at(i), c);
            s
        }
        Mutation::ReplaceChar(i, c) => {
            let i = at(i);
            let mut s = text.to_string();
            if i < s.len() {
                s.remove(i);
            }
            s.insert(i, c);
            s
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        plan_check::check_plan_text(&text);
    }

    #[test]
    fn toml_like_text_never_panics(text in "[\\[\\]{}=\"a-z0-9_., \n#-]{0,200}") {
        plan_check::check_plan_text(&text);
    }

    #[test]
    fn mutated_valid_plan_never_panics(mutations in prop::collection::vec(mutation(), 1..6)) {
        plan_check::check_plan_text(&apply_all(valid_text(), &mutations));
    }
}

#[test]
fn shipped_plans_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("scenarios/ exists")
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no plans in {}", dir.display());
    // Together, as `run scenarios/*.toml` would: names must be unique across them.
    if let Err(e) = load_all(&paths) {
        panic!("a shipped plan is invalid:\n{e}");
    }
}

#[test]
fn readme_examples_load() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/README.md"))
            .expect("scenarios/README.md exists");
    // Whole plans only: the ```toml blocks with a scenario in them.
    let plans: Vec<&str> = readme
        .split("```toml\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .filter(|block| block.contains("[[scenario]]"))
        .collect();
    assert!(plans.len() >= 3, "found {} example plans", plans.len());
    for plan in plans {
        if let Err(e) = load_str(Path::new("README.md"), plan) {
            panic!("README example does not load:\n{e}\n\n{plan}");
        }
    }
}

// ---------------------------------------------------------------------------------
// Load scenarios

/// `pre_allocated`: the open model's connections opened and warmed before its clock.
#[test]
fn pre_allocated_sizes_the_open_models_first_connections() {
    let text = with_load(
        "rate = 2000\nmax_in_flight = 300\npre_allocated = 120\nduration = \"5s\"",
        "",
    );
    let plan = load_str(Path::new("p.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        plan.scenarios[0].load.as_ref().unwrap().executor,
        Executor::Open {
            rate: RateSchedule::Constant(2000.0),
            max_in_flight: 300,
            pre_allocated: Some(120),
        }
    );
}

fn load_text() -> String {
    std::fs::read_to_string(fixture("load.toml")).expect("fixture is readable")
}

/// One load scenario with `load` as its `[scenario.load]` body, then `steps` (a create
/// step when empty).
fn with_load(load: &str, steps: &str) -> String {
    let steps = if steps.is_empty() {
        "[[scenario.step]]\ncreate = {}\n"
    } else {
        steps
    };
    format!("[[scenario]]\nname = \"l\"\n\n[scenario.load]\n{load}\n\n{steps}")
}

fn threshold(source: &str, metric: Metric, op: Comparison, value: f64) -> Threshold {
    Threshold {
        metric,
        op,
        value,
        source: source.into(),
    }
}

#[test]
fn load_plan_of_each_executor_loads_into_the_model() {
    let plan = load(&fixture("load.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.name, "load (fixture)");
    let [closed, constant, ramping] = plan.scenarios.as_slice() else {
        panic!("expected three scenarios, got {:#?}", plan.scenarios);
    };

    assert_eq!(
        *closed,
        Scenario {
            name: "closed".into(),
            id: None,
            requirement: None,
            recommendation: None,
            description: None,
            tags: vec!["load".into()],
            // Implied by `[scenario.load]`.
            exclusive: true,
            needs: vec![],
            timeout: Duration::from_secs(60),
            steps: vec![
                Step {
                    line: 18,
                    action: Action::Create(CreateStep {
                        key: KeyChoice::Primary,
                        auth: AuthForm::Body,
                        ttl: Some(30),
                        encrypted: None,
                        save: Some("c".into()),
                        repeat: 1,
                    }),
                    // Expectations are allowed in a load flow.
                    expect: Expect {
                        status: Some(StatusExpect::Codes(vec![200])),
                        ..Expect::default()
                    },
                },
                Step {
                    line: 22,
                    action: Action::Validate(ValidateStep {
                        key: KeyChoice::Primary,
                        auth: AuthForm::Body,
                        challenge: ChallengeRef::Saved("c".into()),
                        response: ResponseForm::Hmac,
                        decrypted_challenge: DecryptedField::Absent,
                        hmac_key: None,
                    }),
                    expect: Expect {
                        valid: Some(ValidExpect::True),
                        ..Expect::default()
                    },
                },
            ],
            load: Some(LoadSpec {
                executor: Executor::Closed { users: 50 },
                duration: Some(Duration::from_secs(30)),
                iterations: Some(100_000),
                think_time: Duration::from_millis(100),
                regression: Vec::new(),
                thresholds: vec![
                    threshold(
                        "p99 < 50ms",
                        Metric::Percentile(99.0),
                        Comparison::Lt,
                        50_000.0
                    ),
                    threshold(
                        "error_rate < 0.1%",
                        Metric::ErrorRate,
                        Comparison::Lt,
                        0.001
                    ),
                    threshold("rps > 1000", Metric::Rps, Comparison::Gt, 1000.0),
                ],
            }),
            line: 7,
        }
    );

    assert_eq!(constant.line, 26);
    // `exclusive = false` is overridden: load scenarios always run alone.
    assert!(constant.exclusive);
    assert_eq!(constant.needs, [Need::SecondKey]);
    assert_eq!(constant.steps.len(), 1);
    assert_eq!(
        constant.load,
        Some(LoadSpec {
            executor: Executor::Open {
                rate: RateSchedule::Constant(1000.0),
                max_in_flight: 500,
                pre_allocated: None,
            },
            duration: None,
            iterations: Some(5000),
            think_time: Duration::ZERO,
            regression: Vec::new(),
            thresholds: vec![
                threshold(
                    "p999 <= 1.5s",
                    Metric::Percentile(99.9),
                    Comparison::Le,
                    1_500_000.0
                ),
                // Kept as written, trimmed.
                threshold(
                    "p(99.99)<250µs",
                    Metric::Percentile(99.99),
                    Comparison::Lt,
                    250.0
                ),
                threshold("mean < 10ms", Metric::Mean, Comparison::Lt, 10_000.0),
                threshold("avg < 1m", Metric::Mean, Comparison::Lt, 60_000_000.0),
                threshold("max >= 200us", Metric::Max, Comparison::Ge, 200.0),
                threshold(
                    "dropped_rate < 1%",
                    Metric::DroppedRate,
                    Comparison::Lt,
                    0.01
                ),
                threshold("requests >= 5000", Metric::Requests, Comparison::Ge, 5000.0),
            ],
        })
    );

    assert_eq!(ramping.line, 47);
    assert!(ramping.exclusive);
    assert_eq!(
        ramping.load,
        Some(LoadSpec {
            executor: Executor::Open {
                rate: RateSchedule::Ramping {
                    start: 10.0,
                    stages: vec![
                        Stage {
                            duration: Duration::from_secs(10),
                            target: 500.0,
                        },
                        Stage {
                            duration: Duration::from_secs(20),
                            target: 1000.5,
                        },
                    ],
                },
                // The default.
                max_in_flight: 10_000,
                pre_allocated: None,
            },
            // No `duration`: the stages' sum.
            duration: Some(Duration::from_secs(30)),
            iterations: None,
            think_time: Duration::ZERO,
            thresholds: vec![],
            regression: Vec::new(),
        })
    );
    let lines: Vec<usize> = ramping.steps.iter().map(|s| s.line).collect();
    assert_eq!(lines, [54, 57, 60]);
    assert_eq!(
        ramping.steps[1].action,
        Action::Wait(WaitStep::For(Duration::from_millis(10)))
    );
    assert_eq!(ramping.steps[2].expect.status, Some(StatusExpect::Class(4)));
}

#[test]
fn load_defaults_and_inline_form() {
    // An inline `load` table; a ramp from 0 with its own duration; iterations alone.
    let text = "[[scenario]]\nname = \"a\"\nload = { stages = [{ duration = \"1m\", target = 10 }], duration = \"90s\" }\n\
                [[scenario.step]]\ncreate = {}\n\
                [[scenario]]\nname = \"b\"\n[scenario.load]\nusers = 1\niterations = 1\n\
                [[scenario.step]]\ncreate = {}\n\
                [[scenario]]\nname = \"c\"\n[[scenario.step]]\ncreate = {}\n";
    let plan = load_str(Path::new("p.toml"), text).unwrap_or_else(|e| panic!("{e}"));
    let a = plan.scenarios[0].load.as_ref().unwrap();
    assert_eq!(
        a.executor,
        Executor::Open {
            rate: RateSchedule::Ramping {
                start: 0.0,
                stages: vec![Stage {
                    duration: Duration::from_secs(60),
                    target: 10.0,
                }],
            },
            max_in_flight: 10_000,
            pre_allocated: None,
        }
    );
    assert_eq!(a.duration, Some(Duration::from_secs(90)));
    assert_eq!(
        plan.scenarios[1].load,
        Some(LoadSpec {
            executor: Executor::Closed { users: 1 },
            duration: None,
            iterations: Some(1),
            think_time: Duration::ZERO,
            thresholds: vec![],
            regression: Vec::new(),
        })
    );
    // Not a load scenario: no load, not exclusive.
    assert_eq!(plan.scenarios[2].load, None);
    assert!(!plan.scenarios[2].exclusive);
}

#[test]
fn load_unknown_metric_suggests_a_percentile() {
    let text = with_load(
        "users = 10\nduration = \"10s\"\nthresholds = [\"p99 < 50ms\", \"p99.9 < 1s\"]",
        "",
    );
    assert_eq!(
        rendered(&text),
        "\
error: invalid threshold `p99.9 < 1s`: unknown metric `p99.9`
 --> plan.toml:7:29
  |
7 | thresholds = [\"p99 < 50ms\", \"p99.9 < 1s\"]
  |                             ^^^^^^^^^^^^
  = help: did you mean `p999` or `p(99.9)`?"
    );
}

#[test]
fn load_unknown_metric_lists_the_metrics() {
    let text = with_load(
        "users = 10\nduration = \"10s\"\nthresholds = [\"latency < 5ms\"]",
        "",
    );
    assert_eq!(
        rendered(&text),
        "\
error: invalid threshold `latency < 5ms`: unknown metric `latency`
 --> plan.toml:7:15
  |
7 | thresholds = [\"latency < 5ms\"]
  |               ^^^^^^^^^^^^^^^
  = help: expected one of `p50`, `p90`, `p95`, `p99`, `p999`, `p(N)`, `mean`, `avg`, `max`, `error_rate`, `rps`, `requests`, `dropped_rate`"
    );
}

#[test]
fn load_latency_without_a_unit() {
    let text = with_load(
        "rate = 100\nduration = \"10s\"\nthresholds = [ \"p95 <= 50\" ]",
        "",
    );
    assert_eq!(
        rendered(&text),
        "\
error: invalid threshold `p95 <= 50`: `50` has no unit
 --> plan.toml:7:16
  |
7 | thresholds = [ \"p95 <= 50\" ]
  |                ^^^^^^^^^^^
  = help: a latency needs a unit, like `50ms`, `50us` or `50s`"
    );
}

#[test]
fn load_with_users_and_rate() {
    let text = with_load("users = 10\nrate = 100\nduration = \"10s\"", "");
    assert_eq!(
        rendered(&text),
        "\
error: a load cannot have both `users` and `rate`
 --> plan.toml:6:8
  |
6 | rate = 100
  |        ^^^
  = help: `users = N` runs a closed model (N users loop the flow); `rate = N` (arrivals per second) or `stages` run an open model: keep one"
    );
}

#[test]
fn load_without_duration_or_iterations() {
    let text = with_load("users = 10\nthink_time = \"1s\"", "");
    assert_eq!(
        rendered(&text),
        "\
error: a load needs `duration` or `iterations`
 --> plan.toml:4:1
  |
4 | [scenario.load]
  | ^^^^^^^^^^^^^^^
  = help: say when to stop, like `duration = \"30s\"` or `iterations = 100000` (with both, whichever comes first)"
    );
}

#[test]
fn load_think_time_with_rate() {
    let text = with_load("rate = 100\niterations = 1000\nthink_time = \"1s\"", "");
    assert_eq!(
        rendered(&text),
        "\
error: `think_time` only applies to a closed model (`users`)
 --> plan.toml:7:14
  |
7 | think_time = \"1s\"
  |              ^^^^
  = help: an open model starts iterations on a schedule, so there is no pause between them; lower `rate` to send less"
    );
}

#[test]
fn load_with_a_burst_step() {
    let text = with_load(
        "users = 10\nduration = \"10s\"",
        "[[scenario.step]]\ncreate = {}\n\n[[scenario.step]]\nburst = { max_requests = 10 }\nexpect = { rate_limited = true }\n",
    );
    assert_eq!(
        rendered(&text),
        "\
error: a load scenario cannot have a burst step
  --> plan.toml:12:9
   |
12 | burst = { max_requests = 10 }
   |         ^^^^^^^^^^^^^^^^^^^^^
   = help: concurrent and burst steps are conformance checks: move this one to a scenario without `[scenario.load]`; a load flow may use create, validate, wait and raw steps"
    );
}

#[test]
fn load_mistakes_are_placed() {
    // (load table, message, line, column); the table starts on line 5.
    let cases = [
        (
            "user = 10\nduration = \"1s\"",
            "unknown field `user` in the [scenario.load] table",
            5,
            1,
        ),
        (
            "duration = \"1s\"",
            "a load needs `users`, `rate` or `stages`",
            4,
            1,
        ),
        (
            "stages = [{ duration = \"1s\", target = 5 }]\nrate = 10",
            "a load cannot have both `rate` and `stages`",
            6,
            8,
        ),
        (
            "users = 0\nduration = \"1s\"",
            "`users` must be from 1 to 100000, found 0",
            5,
            9,
        ),
        (
            "rate = 0\nduration = \"1s\"",
            "`rate` must be above 0 and at most 10000000 arrivals per second, found 0",
            5,
            8,
        ),
        (
            "rate = 2e7\nduration = \"1s\"",
            "`rate` must be above 0 and at most 10000000 arrivals per second, found 20000000",
            5,
            8,
        ),
        (
            "rate = nan\nduration = \"1s\"",
            "`rate` must be above 0 and at most 10000000 arrivals per second, found NaN",
            5,
            8,
        ),
        (
            "users = 5\nmax_in_flight = 10\nduration = \"1s\"",
            "`max_in_flight` only applies to an open model (`rate` or `stages`)",
            6,
            17,
        ),
        (
            "rate = 5\nmax_in_flight = 0\nduration = \"1s\"",
            "`max_in_flight` must be from 1 to 1000000, found 0",
            6,
            17,
        ),
        (
            "users = 5\npre_allocated = 10\nduration = \"1s\"",
            "`pre_allocated` only applies to an open model (`rate` or `stages`)",
            6,
            17,
        ),
        (
            "rate = 5\nmax_in_flight = 50\npre_allocated = 51\nduration = \"1s\"",
            "`pre_allocated` must be from 1 to 50, found 51",
            7,
            17,
        ),
        (
            "rate = 5\npre_allocated = 0\nduration = \"1s\"",
            "`pre_allocated` must be from 1 to 10000, found 0",
            6,
            17,
        ),
        (
            "rate = 5\nstart_rate = 1\nduration = \"1s\"",
            "`start_rate` only applies to `stages`",
            6,
            14,
        ),
        ("stages = []", "`stages` is empty", 5, 10),
        (
            "stages = [{ duration = \"1s\" }]",
            "a stage needs `target`",
            5,
            11,
        ),
        (
            "stages = [{ target = 1, duration = \"0s\" }]",
            "a stage's `duration` must be more than zero",
            5,
            36,
        ),
        (
            "stages = [{ target = -1, duration = \"1s\" }]",
            "a stage's `target` must be from 0 to 10000000 arrivals per second, found -1",
            5,
            22,
        ),
        (
            "stages = [{ target = 1, duration = \"1s\", hold = true }]",
            "unknown field `hold` in a stage",
            5,
            42,
        ),
        (
            "users = 1\nduration = \"0s\"",
            "`duration` must be more than zero",
            6,
            12,
        ),
        (
            "users = 1\nduration = \"30\"",
            "invalid duration `30` for `duration`: it has no unit",
            6,
            12,
        ),
        (
            "users = 1\niterations = 0",
            "`iterations` must be 1 or more, found 0",
            6,
            14,
        ),
        (
            "users = 1\niterations = 5\nthresholds = [\"rps > 1\", \"dropped_rate < 1%\"]",
            "`dropped_rate` does not fit a closed model",
            7,
            26,
        ),
        (
            "users = 1\niterations = 5\nthresholds = [\"rps > 1\", \" \"]",
            "a threshold cannot be empty",
            7,
            26,
        ),
        (
            "rate = \"1000\"\niterations = 5",
            "wrong type for `rate`: expected a number, found a string",
            5,
            8,
        ),
        (
            "users = 1\niterations = 5\nthresholds = \"p99 < 1s\"",
            "wrong type for `thresholds`: expected an array, found a string",
            7,
            14,
        ),
    ];
    for (load, message, line, column) in cases {
        assert_error(&with_load(load, ""), message, line, column);
    }
    let e = error(&with_load("user = 10\nduration = \"1s\"", ""));
    assert_eq!(e.help.as_deref(), Some("did you mean `users`?"));
    let e = error(&with_load("rate = \"1000\"\niterations = 5", ""));
    assert_eq!(e.help.as_deref(), Some("remove the quotes: 1000"));
    // A concurrent step, like a burst, is conformance-only; its place is its table.
    assert_error(
        &with_load(
            "users = 1\niterations = 1",
            "[[scenario.step]]\ncreate = { save = \"c\" }\n\
             [[scenario.step]]\nconcurrent = { count = 2, validate = { challenge = \"c\" } }\n",
        ),
        "a load scenario cannot have a concurrent step",
        11,
        14,
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn mutated_load_plan_never_panics(mutations in prop::collection::vec(mutation(), 1..6)) {
        plan_check::check_plan_text(&apply_all(load_text(), &mutations));
    }

    /// Any threshold text loads or is a placed error (TOML literal strings, so no
    /// escaping: the pattern leaves out `'` and newlines).
    #[test]
    fn threshold_text_never_panics(t in "[pP()0-9._ <>=!%a-zµμ-]{0,24}") {
        let text = with_load(&format!("rate = 1\niterations = 1\nthresholds = ['{t}']"), "");
        plan_check::check_plan_text(&text);
        if let Err(e) = load_str(Path::new("fuzz.toml"), &text) {
            prop_assert_eq!((e.line, e.column), (7, 15), "{}", e);
        }
    }
}

// ---------------------------------------------------------------------------------
// The words conformance needs: optional shapes, waits around expiry, near-miss keys,
// other responses, uppercase names, a second key's HMAC, randomness, probe validations

#[test]
fn conformance_words_load_into_the_model() {
    let text = with_steps(
        "[[scenario.step]]
create = { ttl = 4, save = \"c\", repeat = 3 }
expect = { random = true, distinct = true, fields = { signature = \"hex?\", encrypted = \"false?\" } }

[[scenario.step]]
wait = { expiry_of = \"c\", before = \"1500ms\" }

[[scenario.step]]
wait = { expiry_of = \"c\", margin = \"2s\", at_most = \"40s\" }

[[scenario.step]]
validate = { key = \"primary-truncated\", challenge = \"c.uppercase\", response = \"tampered-last\", hmac_key = \"secondary\", decrypted_challenge = \"response\" }

[[scenario.step]]
create = { key = \"primary-extended\" }

[[scenario.step]]
burst = { probe_validations = 10 }
",
    );
    let text = text.replacen(
        "name = \"s\"",
        "name = \"s\"\nrecommendation = \"it SHOULD do so\"",
        1,
    );
    let plan = load_str(Path::new("plan.toml"), &text).unwrap();
    let scenario = &plan.scenarios[0];
    assert_eq!(scenario.recommendation.as_deref(), Some("it SHOULD do so"));
    // `hmac_key = "secondary"` needs the second key as `key = "secondary"` would.
    assert_eq!(scenario.needs, vec![Need::SecondKey]);
    let steps: Vec<&Step> = scenario.steps.iter().collect();
    assert!(steps[0].expect.random && steps[0].expect.distinct);
    assert_eq!(
        steps[0].expect.fields,
        vec![
            FieldExpect {
                field: "signature".into(),
                shape: Shape::Optional(Box::new(Shape::HexAtLeast(32))),
            },
            FieldExpect {
                field: "encrypted".into(),
                shape: Shape::Optional(Box::new(Shape::Bool(false))),
            },
        ]
    );
    assert_eq!(
        steps[1].action,
        Action::Wait(WaitStep::BeforeExpiry {
            saved: "c".into(),
            before: Duration::from_millis(1500),
        })
    );
    assert_eq!(
        steps[2].action,
        Action::Wait(WaitStep::Expiry {
            saved: "c".into(),
            margin: Duration::from_secs(2),
            at_most: Some(Duration::from_secs(40)),
        })
    );
    assert_eq!(
        steps[3].action,
        Action::Validate(ValidateStep {
            key: KeyChoice::PrimaryTruncated,
            auth: AuthForm::Body,
            challenge: ChallengeRef::SavedUppercase("c".into()),
            response: ResponseForm::TamperedLast,
            decrypted_challenge: DecryptedField::SameAsResponse,
            hmac_key: Some(KeyChoice::Secondary),
        })
    );
    let Action::Create(create) = &steps[4].action else {
        panic!("{:?}", steps[4].action)
    };
    assert_eq!(create.key, KeyChoice::PrimaryExtended);
    let Action::Burst(burst) = &steps[5].action else {
        panic!("{:?}", steps[5].action)
    };
    assert_eq!(burst.probe_validations, 10);
    for (word, form) in [
        ("tampered-middle", ResponseForm::TamperedMiddle),
        ("truncated", ResponseForm::Truncated),
        ("extended", ResponseForm::Extended),
        ("empty", ResponseForm::Empty),
        ("uppercase", ResponseForm::Uppercase),
        ("custom", ResponseForm::Custom),
    ] {
        let text = with_steps(&format!(
            "[[scenario.step]]\nvalidate = {{ challenge = \"random\", response = \"{word}\" }}\n"
        ));
        let plan = load_str(Path::new("plan.toml"), &text).unwrap();
        let Action::Validate(validate) = &plan.scenarios[0].steps[0].action else {
            panic!()
        };
        assert_eq!(validate.response, form, "{word}");
    }
}

#[test]
fn conformance_word_mistakes_are_placed_and_explained() {
    let golden = [
        (
            "[[scenario.step]]\ncreate = { save = \"c\" }\n\n[[scenario.step]]\nwait = { expiry_of = \"c\", margin = \"1s\", before = \"1s\" }\n",
            "\
error: a wait has both `margin` and `before`
 --> plan.toml:8:42
  |
8 | wait = { expiry_of = \"c\", margin = \"1s\", before = \"1s\" }
  |                                          ^^^^^^
  = help: `margin` waits past the expiry, `before` stops ahead of it: keep one",
        ),
        (
            "[[scenario.step]]\ncreate = { save = \"c\" }\n\n[[scenario.step]]\nwait = { expiry_of = \"c\", before = \"0s\" }\n",
            "\
error: `before` must be more than zero
 --> plan.toml:8:36
  |
8 | wait = { expiry_of = \"c\", before = \"0s\" }
  |                                    ^^^^
  = help: `before = \"1s\"` ends the wait 1 s ahead of the advertised expiry",
        ),
        (
            "[[scenario.step]]\nvalidate = { challenge = \"random\", hmac_key = \"unknown\" }\n",
            "\
error: unknown value `unknown` for `hmac_key`
 --> plan.toml:5:47
  |
5 | validate = { challenge = \"random\", hmac_key = \"unknown\" }
  |                                               ^^^^^^^^^
  = note: only the run's own keys have a secret to compute a response with
  = help: expected one of `primary`, `secondary`, `rsa`",
        ),
        (
            "[[scenario.step]]\ncreate = { ttl = 30 }\nexpect = { random = true }\n",
            "\
error: `random` needs a create step with `repeat` above 1
 --> plan.toml:6:21
  |
6 | expect = { random = true }
  |                     ^^^^
  = help: `random` compares the challenges of repeated creates; add e.g. `repeat = 20`",
        ),
        (
            "[[scenario.step]]\ncreate = { ttl = 30 }\nexpect = { fields = { expires_in = \"ttl?\" } }\n",
            "\
error: shape `ttl?` cannot be optional
 --> plan.toml:6:36
  |
6 | expect = { fields = { expires_in = \"ttl?\" } }
  |                                    ^^^^^^
  = help: `ttl` is checked only when `expires_in` is there anyway if the create sends a ttl; drop the `?`",
        ),
        (
            "[[scenario.step]]\ncreate = { ttl = 30 }\nexpect = { fields = { challenge = \"hexx?\" } }\n",
            "\
error: unknown shape `hexx?` for field `challenge`
 --> plan.toml:6:35
  |
6 | expect = { fields = { challenge = \"hexx?\" } }
  |                                   ^^^^^^^
  = help: did you mean `hex?`?",
        ),
        (
            "[[scenario.step]]\nburst = { probe_validations = 500 }\n",
            "\
error: `probe_validations` must be from 0 to 100, found 500
 --> plan.toml:5:31
  |
5 | burst = { probe_validations = 500 }
  |                               ^^^",
        ),
        (
            "[[scenario.step]]\ncreate = { save = \"c\" }\n\n[[scenario.step]]\nvalidate = { challenge = \"c.upper\" }\n",
            "\
error: invalid challenge reference `c.upper`
 --> plan.toml:8:26
  |
8 | validate = { challenge = \"c.upper\" }
  |                          ^^^^^^^^^
  = help: name a saved challenge (`c`, `c.decrypted` for its plaintext, `c.uppercase` for it in uppercase), or use \"random\" or { literal = \"...\" }",
        ),
    ];
    for (steps, expected) in golden {
        assert_eq!(rendered(&with_steps(steps)), expected, "\n{steps}");
    }
}
