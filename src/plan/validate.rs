//! From the raw layer to the model, for a plan and its scenarios (their steps are in
//! `steps`): defaults filled in, names checked, needs inferred.
//!
//! Every check stops at the first problem and reports it at the value's span: one
//! precise error is more use than ten guesses that follow from it.

use std::collections::HashMap;
use std::time::Duration;

use toml::Spanned;

use super::error::{PlanError, Source};
use super::load;
use super::model::{Plan, Scenario};
use super::raw::{RawFile, RawScenario};
use super::steps::{Needs, step};
use super::values::{is_name, timeout, unknown_word};

/// Scenario names seen so far in this run, with where each was first defined
/// (`path:line:col`), so duplicates across files can point at the first one.
pub type Seen = HashMap<String, String>;

/// Whole-scenario deadline when neither the scenario nor `[plan]` gives one.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

const NEEDS: &[&str] = &["rsa", "second-key"];

/// The validated plan for one file.
pub fn plan(source: &Source<'_>, raw: RawFile, seen: &mut Seen) -> Result<Plan, PlanError> {
    let table = raw.plan.as_ref().map(|p| p.get_ref());
    let name = match table.and_then(|t| t.name.as_ref()) {
        Some(name) if name.get_ref().trim().is_empty() => {
            return Err(source.error(name.span(), "the plan name is empty"));
        }
        Some(name) => name.get_ref().clone(),
        None => source
            .path
            .file_stem()
            .map_or_else(|| "plan".to_string(), |s| s.to_string_lossy().into_owned()),
    };
    let timeout = match table.and_then(|t| t.timeout.as_ref()) {
        Some(t) => timeout(source, t)?,
        None => DEFAULT_TIMEOUT,
    };
    if raw.scenario.is_empty() {
        let error = match &raw.plan {
            Some(plan) => source.error(plan.span(), "the plan has no scenarios"),
            // Nothing to point at: an excerpt of line 1 (often a comment) would mislead.
            None => source
                .error(0..0, "the plan has no scenarios")
                .without_excerpt(),
        };
        return Err(error
            .with_help("add a `[[scenario]]` with a `name` and at least one `[[scenario.step]]`"));
    }
    let mut scenarios = Vec::with_capacity(raw.scenario.len());
    for s in &raw.scenario {
        scenarios.push(scenario(source, s, timeout, seen)?);
    }
    let cacert = match table.and_then(|t| t.cacert.as_ref()) {
        Some(path) if path.get_ref().trim().is_empty() => {
            return Err(source.error(path.span(), "`cacert` is empty").with_help(
                "give the path of a PEM file of CA certificates, relative to the plan",
            ));
        }
        Some(path) => Some(
            source
                .path
                .parent()
                .unwrap_or(std::path::Path::new(""))
                .join(path.get_ref()),
        ),
        None => None,
    };
    Ok(Plan {
        path: source.path.to_path_buf(),
        name,
        scenarios,
        cacert,
        http2: table.and_then(|t| t.http2).unwrap_or(false),
    })
}

fn scenario(
    source: &Source<'_>,
    raw: &Spanned<RawScenario>,
    default_timeout: Duration,
    seen: &mut Seen,
) -> Result<Scenario, PlanError> {
    // The span of a `[[scenario]]` table is its header (toml 1.x), so `line` is the
    // header's line, as the model asks.
    let header = raw.span();
    let s = raw.get_ref();
    let Some(name_at) = &s.name else {
        return Err(source
            .error(header, "a scenario needs a `name`")
            .with_help("add `name = \"...\"` (letters, digits, `.`, `_` and `-`)"));
    };
    let name = name_at.get_ref();
    if !is_name(name, true) {
        return Err(source
            .error(name_at.span(), format!("invalid scenario name `{name}`"))
            .with_help("use only letters, digits, `.`, `_` and `-`"));
    }
    if let Some(first) = seen.get(name) {
        return Err(source
            .error(name_at.span(), format!("duplicate scenario name `{name}`"))
            .with_note(format!("the first `{name}` is at {first}"))
            .with_help("scenario names must be unique across all plan files of a run"));
    }
    seen.insert(name.clone(), source.place(name_at.span()));

    let mut needs = Needs::default();
    for need in s.needs.iter().flatten() {
        match need.get_ref().as_str() {
            "rsa" => needs.rsa = true,
            "second-key" => needs.second_key = true,
            other => return Err(unknown_word(source, need.span(), other, "needs", NEEDS)),
        }
    }
    let mut tags = Vec::new();
    for tag in s.tags.iter().flatten() {
        if tag.get_ref().trim().is_empty() {
            return Err(source.error(tag.span(), "a tag cannot be empty"));
        }
        tags.push(tag.get_ref().clone());
    }
    let timeout = match &s.timeout {
        Some(t) => timeout(source, t)?,
        None => default_timeout,
    };
    if s.step.is_empty() {
        return Err(source
            .error(header, format!("scenario `{name}` has no steps"))
            .with_help("add a `[[scenario.step]]` with one action"));
    }
    let load = match &s.load {
        Some(l) => Some(load::spec(source, l)?),
        None => None,
    };

    // Names saved so far, in step order: a step may only use what an earlier one saved.
    let mut saved: Vec<String> = Vec::new();
    let mut steps = Vec::with_capacity(s.step.len());
    for st in &s.step {
        steps.push(step(source, st, load.is_some(), &mut saved, &mut needs)?);
    }
    Ok(Scenario {
        name: name.clone(),
        id: s.id.as_ref().map(|v| v.get_ref().clone()),
        requirement: s.requirement.as_ref().map(|v| v.get_ref().clone()),
        recommendation: s.recommendation.as_ref().map(|v| v.get_ref().clone()),
        description: s.description.as_ref().map(|v| v.get_ref().clone()),
        tags,
        // Load scenarios always run alone: they would disturb anything beside them, and
        // anything beside them would skew their numbers.
        exclusive: s.exclusive.unwrap_or(false) || load.is_some(),
        needs: needs.into_vec(),
        timeout,
        steps,
        load,
        line: source.line_of(header),
    })
}
