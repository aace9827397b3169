//! What a run drives: the scenarios `--scenario` and `--tags` select from the plans, and
//! `--rate`/`--users`/`--duration` applied to them. Errors are the user's to fix, said
//! in words for the command line.

use std::time::Duration;

use super::model::{Action, Executor, LoadSpec, Plan, RateSchedule, Scenario};

/// Picks the scenarios `--scenario` and `--tags` select, in plan order.
pub fn select(
    plans: Vec<Plan>,
    names: &[String],
    tags: &[String],
) -> Result<Vec<Scenario>, String> {
    let all: Vec<Scenario> = plans.into_iter().flat_map(|plan| plan.scenarios).collect();
    for name in names {
        if !all.iter().any(|s| &s.name == name) {
            let known: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
            return Err(format!(
                "--scenario {name}: no such scenario (the plans have: {})",
                known.join(", ")
            ));
        }
    }
    let mut known_tags: Vec<&str> = all
        .iter()
        .flat_map(|s| s.tags.iter().map(String::as_str))
        .collect();
    known_tags.sort_unstable();
    known_tags.dedup();
    for tag in tags {
        if !known_tags.contains(&tag.as_str()) {
            let hint = super::error::suggest(tag, &known_tags)
                .map(|near| format!("did you mean `{near}`? "))
                .unwrap_or_default();
            return Err(format!(
                "--tags {tag}: no scenario has this tag ({hint}the plans' tags: {})",
                known_tags.join(", ")
            ));
        }
    }
    let selected: Vec<Scenario> = all
        .into_iter()
        .filter(|s| names.is_empty() || names.contains(&s.name))
        .filter(|s| tags.is_empty() || s.tags.iter().any(|t| tags.contains(t)))
        .collect();
    if selected.is_empty() {
        return Err(format!(
            "no scenario has any of the tags {}",
            tags.join(", ")
        ));
    }
    Ok(selected)
}

/// Open-model arrivals in flight at most when `--rate` makes a scenario a load one.
const OVERRIDE_MAX_IN_FLIGHT: u32 = 10_000;
/// How long `--rate`/`--users` run a scenario that has no duration of its own.
const OVERRIDE_DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// Applies `--rate`, `--users` and `--duration` to the selected scenarios: each becomes
/// (or stays) a load scenario with that executor and bound.
pub fn apply_load_overrides(
    scenarios: &mut [Scenario],
    rate: Option<f64>,
    users: Option<u32>,
    duration: Option<Duration>,
) -> Result<(), String> {
    let executor = match (rate, users) {
        (Some(_), Some(_)) => {
            return Err("--rate and --users exclude each other".into());
        }
        (Some(rate), None) if !(rate > 0.0 && rate.is_finite()) => {
            return Err(format!("--rate {rate}: must be above zero"));
        }
        (Some(rate), None) => Some(Executor::Open {
            rate: RateSchedule::Constant(rate),
            max_in_flight: OVERRIDE_MAX_IN_FLIGHT,
            pre_allocated: None,
        }),
        (None, Some(0)) => return Err("--users must be at least 1".into()),
        (None, Some(users)) => Some(Executor::Closed { users }),
        (None, None) => None,
    };
    if executor.is_none() && duration.is_none() {
        return Ok(());
    }
    for scenario in scenarios.iter_mut() {
        if scenario.load.is_none() && executor.is_none() {
            continue; // --duration alone only bounds load scenarios.
        }
        if let Some(step) = scenario
            .steps
            .iter()
            .find(|s| matches!(s.action, Action::Concurrent(_) | Action::Burst(_)))
        {
            return Err(format!(
                "scenario {} (line {}) has a concurrent or burst step (line {}), which a load run cannot repeat; select other scenarios with --scenario",
                scenario.name, scenario.line, step.line
            ));
        }
        let spec = scenario.load.get_or_insert_with(|| LoadSpec {
            executor: Executor::Closed { users: 1 },
            duration: Some(OVERRIDE_DEFAULT_DURATION),
            iterations: None,
            think_time: Duration::ZERO,
            thresholds: Vec::new(),
            regression: Vec::new(),
        });
        if let Some(executor) = &executor {
            if matches!(executor, Executor::Open { .. }) {
                spec.think_time = Duration::ZERO;
            }
            spec.executor = executor.clone();
        }
        if let Some(duration) = duration {
            spec.duration = Some(duration);
        }
        if spec.duration.is_none() && spec.iterations.is_none() {
            spec.duration = Some(OVERRIDE_DEFAULT_DURATION);
        }
        scenario.exclusive = true;
    }
    Ok(())
}
