//! SPEC.md and the suite say the same: its table of clauses lists every scenario of
//! `scenarios/conformance.toml` with its MUST and SHOULD word for word, its fault and
//! style tables list what the server has and where the self-test catches each fault,
//! and a scenario quotes a SHOULD exactly when it checks one.

use std::path::Path;

use keyclaim_harness::plan::load;
use keyclaim_harness::server::faults::Fault;
use keyclaim_harness::server::style::Style;

fn spec() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("SPEC.md")).unwrap()
}

/// The rows of the Markdown table under `heading`, as cells without the header row.
fn table(spec: &str, heading: &str) -> Vec<Vec<String>> {
    let start = spec
        .find(heading)
        .unwrap_or_else(|| panic!("SPEC.md has no {heading:?}"));
    spec[start..]
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2)
        .map(|line| {
            line.trim_matches('|')
                .split(" | ")
                .map(|cell| cell.trim().trim_matches('`').to_owned())
                .collect()
        })
        .collect()
}

#[test]
fn the_table_of_clauses_is_the_suite_line_for_line() {
    let plan =
        load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/conformance.toml")).unwrap();
    let rows = table(&spec(), "### 10.1 The clauses the suite checks");
    let expected: Vec<Vec<String>> = plan
        .scenarios
        .iter()
        .map(|s| {
            vec![
                s.id.clone()
                    .expect("every conformance scenario names its clause"),
                s.name.clone(),
                s.requirement.clone().expect("and quotes its MUST"),
                s.recommendation.clone().unwrap_or_else(|| "—".into()),
            ]
        })
        .collect();
    assert!(expected.len() >= 25, "{}", expected.len());
    assert_eq!(rows, expected);
}

#[test]
fn a_scenario_quotes_a_should_exactly_when_it_checks_one() {
    let plan =
        load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/conformance.toml")).unwrap();
    for scenario in &plan.scenarios {
        let checks_one = scenario
            .steps
            .iter()
            .any(|step| step.expect.recommended.is_some());
        assert_eq!(
            scenario.recommendation.is_some(),
            checks_one,
            "{}: a `recommendation` text is quoted when, and only when, a step has `recommended`",
            scenario.name
        );
        let requirement = scenario.requirement.as_deref().unwrap_or_default();
        assert!(
            requirement.contains("MUST"),
            "{}: {requirement}",
            scenario.name
        );
        if let Some(should) = &scenario.recommendation {
            assert!(
                should.contains("SHOULD") && !should.contains("MUST"),
                "{}: {should}",
                scenario.name
            );
        }
    }
}

#[test]
fn the_fault_and_style_tables_are_what_the_server_has() {
    let spec = spec();
    let faults: Vec<(String, String, String)> = table(&spec, "### 10.2 Faults")
        .into_iter()
        .map(|row| (row[0].clone(), row[1].clone(), row[2].clone()))
        .collect();
    let expected: Vec<(String, String, String)> = Fault::ALL
        .iter()
        .map(|f| {
            (
                f.name().to_owned(),
                f.clause().to_owned(),
                f.breaks().to_owned(),
            )
        })
        .collect();
    assert_eq!(faults, expected);
    // The "caught by" column says what the pinned self-test matrix says: the first check
    // that catches each fault, and how many more do.
    let matrix = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/selftest-matrix.txt"),
    )
    .unwrap();
    for row in table(&spec, "### 10.2 Faults") {
        let line = matrix
            .lines()
            .find_map(|line| line.strip_prefix(&format!("fault {}: ", row[0])))
            .unwrap_or_else(|| panic!("{} is not in the self-test matrix", row[0]));
        let checks: Vec<&str> = line.split("; ").collect();
        let summary = match checks.len() {
            1 => checks[0].to_owned(),
            n => format!("{} and {} more", checks[0], n - 1),
        };
        assert_eq!(row[3], summary, "SPEC.md §10.2, fault {}", row[0]);
    }
    let styles: Vec<(String, String)> = table(&spec, "### 10.3 Styles")
        .into_iter()
        .map(|row| (row[0].clone(), row[1].clone()))
        .collect();
    let expected: Vec<(String, String)> = Style::ALL
        .iter()
        .map(|s| (s.name().to_owned(), s.describe().to_owned()))
        .collect();
    assert_eq!(styles, expected);
}
