//! Run reports: the model every format reads, one module per output format (as hurl
//! does), and [`write_all`] to write the files a run leaves behind.
//!
//! Every format redacts twice: the report's strings before rendering (so a secret is
//! caught before JSON/XML/HTML escaping or console truncation changes its shape), and the
//! final text after (a last net for anything the rendering itself put together).

pub mod console;
pub mod hdr;
pub mod html;
pub mod json;
pub mod junit;
pub mod model;
pub mod svg;

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::redact::Redactor;
use model::RunReport;

/// File names inside the report directory; fixed so CI configs can point at them.
pub const JSON_FILE: &str = "report.json";
pub const JUNIT_FILE: &str = "junit.xml";
pub const HTML_FILE: &str = "report.html";

/// Where [`write_all`] put each report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportPaths {
    pub json: PathBuf,
    pub junit: PathBuf,
    pub html: PathBuf,
    /// `NAME.hgrm` and `NAME.hlog` of each load scenario, in scenario order (see [`hdr`]).
    pub hdr: Vec<PathBuf>,
}

#[derive(Debug, Error)]
pub enum ReportError {
    #[error("cannot create report directory {}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot serialize the JSON report")]
    Json(#[from] serde_json::Error),
    #[error("cannot serialize the JUnit report")]
    Junit(#[from] quick_junit::SerializeError),
    #[error("scenario {scenario}: bad latency histogram")]
    Histogram {
        scenario: String,
        #[source]
        source: crate::metrics::codec::CodecError,
    },
}

/// Creates `dir` (and parents) and writes `report.json`, `junit.xml` and `report.html`
/// into it, all redacted with `redactor`, and for each load scenario its `.hgrm` and
/// `.hlog` (see [`hdr`]). Those come last, so a histogram that does not decode costs only
/// them.
pub fn write_all(
    report: &RunReport,
    dir: &Path,
    redactor: &Redactor,
) -> Result<ReportPaths, ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    let mut paths = ReportPaths {
        json: dir.join(JSON_FILE),
        junit: dir.join(JUNIT_FILE),
        html: dir.join(HTML_FILE),
        hdr: Vec::new(),
    };
    write(&paths.json, &json::render(report, redactor)?)?;
    write(&paths.junit, &junit::render(report, redactor)?)?;
    write(&paths.html, &html::render(report, redactor))?;
    paths.hdr = hdr::write_files(&redacted(report, redactor), dir, redactor)?;
    Ok(paths)
}

fn write(path: &Path, text: &str) -> Result<(), ReportError> {
    std::fs::write(path, text).map_err(|source| ReportError::Write {
        path: path.to_owned(),
        source,
    })
}

/// A copy of `report` with every string field passed through `redactor`.
pub fn redacted(report: &RunReport, redactor: &Redactor) -> RunReport {
    let mut report = report.clone();
    if redactor.is_empty() {
        return report;
    }
    let fix = |s: &mut String| {
        if let std::borrow::Cow::Owned(clean) = redactor.redact(s) {
            *s = clean;
        }
    };
    report.plans.iter_mut().for_each(&fix);
    fix(&mut report.target);
    fix(&mut report.started_at);
    for scenario in &mut report.scenarios {
        fix(&mut scenario.name);
        scenario.id.iter_mut().for_each(&fix);
        scenario.tags.iter_mut().for_each(&fix);
        scenario.description.iter_mut().for_each(&fix);
        scenario.warnings.iter_mut().for_each(&fix);
        for check in &mut scenario.checks {
            fix(&mut check.name);
            fix(&mut check.message);
            if let Some(evidence) = &mut check.evidence {
                fix(&mut evidence.request);
                fix(&mut evidence.response);
            }
        }
        // Status and error codes are whatever the server sent. Histograms are left alone:
        // they are numbers, and rewriting an encoding could only corrupt it.
        if let Some(load) = &mut scenario.load {
            fix(&mut load.model);
            fix(&mut load.executor);
            let fix_keys = |counts: &mut std::collections::BTreeMap<String, u64>| {
                *counts = std::mem::take(counts).into_iter().fold(
                    std::collections::BTreeMap::new(),
                    |mut clean, (key, n)| {
                        *clean.entry(redactor.redact(&key).into_owned()).or_insert(0) += n;
                        clean
                    },
                );
            };
            fix_keys(&mut load.status_counts);
            fix_keys(&mut load.error_codes);
            for step in &mut load.steps {
                fix(&mut step.name);
            }
        }
    }
    report
}

/// Whether a check makes its scenario fail: a failure, or non-strict under `--strict`.
pub(crate) fn counts_as_failure(outcome: model::Outcome, strict: bool) -> bool {
    match outcome {
        model::Outcome::Fail => true,
        model::Outcome::NonStrict => strict,
        model::Outcome::Pass | model::Outcome::Skipped => false,
    }
}
