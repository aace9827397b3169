//! Live progress on a terminal: an indicatif bar fed only by engine events (a scenario
//! finished). Hidden when the caller says there is no terminal to draw on.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::metrics::units;
use crate::results::{LoadTick, ScenarioReport, Status};

pub struct ScenarioProgress {
    bar: ProgressBar,
}

impl ScenarioProgress {
    /// `visible` is false for --quiet, CI, or when stderr is not a terminal.
    pub fn new(visible: bool) -> Self {
        let bar = ProgressBar::with_draw_target(
            Some(0),
            if visible {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            },
        );
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} scenarios {msg}",
            )
            .expect("static template is valid"),
        );
        Self { bar }
    }

    pub fn start(&self, scenarios: usize) {
        self.bar.set_length(scenarios as u64);
        self.bar
            .enable_steady_tick(std::time::Duration::from_millis(120));
    }

    pub fn scenario_done(&self, report: &ScenarioReport) {
        let mark = match report.status() {
            Status::Skipped => "skipped",
            Status::Passed => "ok",
            Status::Failed => "FAILED",
        };
        self.bar.set_message(format!("{} {mark}", report.name));
        self.bar.inc(1);
    }

    /// A load scenario's live figures: elapsed of planned time, requests, current rate,
    /// failures, p99.
    pub fn load_tick(&self, scenario: &str, tick: &LoadTick) {
        let planned = tick
            .planned
            .map(|planned| format!("/{:.0}s", planned.as_secs_f64()))
            .unwrap_or_default();
        self.bar.set_message(format!(
            "{scenario}: {:.0}s{planned}, {} requests, {:.0}/s, {} failed, p99 {}ms",
            tick.elapsed.as_secs_f64(),
            tick.requests,
            tick.rate,
            tick.failed,
            units::ms_fixed(tick.p99_us, 1)
        ));
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
