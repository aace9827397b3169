//! `report.json`: the run report as pretty JSON, for machines (dashboards, diffing runs).
//! The field names are the contract documented on [`RunReport`].

use crate::redact::Redactor;
use crate::results::RunReport;

/// Pretty JSON of `report`, redacted.
pub fn render(report: &RunReport, redactor: &Redactor) -> Result<String, serde_json::Error> {
    let report = report.redacted(redactor);
    let mut text = serde_json::to_string_pretty(&report)?;
    text.push('\n');
    Ok(redactor.redact(&text).into_owned())
}
