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
pub mod progress;
pub mod xml_chars;

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::redact::Redactor;
use crate::results::RunReport;

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
    #[error(transparent)]
    Histogram(#[from] hdr::HistogramError),
}

/// Creates `dir` (and parents) and writes `report.json`, `junit.xml` and `report.html`
/// into it, all redacted with `redactor`, and for each load scenario its `.hgrm` and
/// `.hlog` (see [`hdr`]). The directory then holds this run's reports only: those three
/// are replaced, and every `.hgrm`/`.hlog` an earlier run left (a scenario since renamed
/// or not selected) is removed first; files of other kinds are never touched. Those come last, so a histogram that does not decode costs only
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
    remove_previous_histograms(dir)?;
    let mut paths = ReportPaths {
        json: dir.join(JSON_FILE),
        junit: dir.join(JUNIT_FILE),
        html: dir.join(HTML_FILE),
        hdr: Vec::new(),
    };
    write(&paths.json, &json::render(report, redactor)?)?;
    write(&paths.junit, &junit::render(report, redactor)?)?;
    write(&paths.html, html::render(report, redactor))?;
    for file in hdr::files(&report.redacted(redactor), redactor) {
        let file = file?;
        let path = dir.join(file.name);
        write(&path, file.contents)?;
        paths.hdr.push(path);
    }
    Ok(paths)
}

/// Creates `dir` and checks a file can be written in it, before a run spends its
/// time: a read-only or foreign-owned volume is found at the start, not after the load.
pub fn check_writable(dir: &Path) -> Result<(), ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    // Unique per call, so runs sharing a process and a directory do not collide.
    static CHECKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let probe = dir.join(format!(
        ".keyclaim-write-check-{}-{}",
        std::process::id(),
        CHECKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    write(&probe, b"")?;
    std::fs::remove_file(&probe).map_err(|source| ReportError::Write {
        path: probe.clone(),
        source,
    })
}

/// Removes the histogram files (`.hgrm`, `.hlog`) in `dir`, an earlier run's.
fn remove_previous_histograms(dir: &Path) -> Result<(), ReportError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ReportError::Write {
        path: dir.to_owned(),
        source,
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        let is_histogram = path
            .extension()
            .is_some_and(|ext| ext == hdr::HGRM_EXTENSION || ext == hdr::HLOG_EXTENSION);
        if is_histogram && entry.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::remove_file(&path).map_err(|source| ReportError::Write { path, source })?;
        }
    }
    Ok(())
}

fn write(path: &Path, text: impl AsRef<[u8]>) -> Result<(), ReportError> {
    std::fs::write(path, text).map_err(|source| ReportError::Write {
        path: path.to_owned(),
        source,
    })
}
