//! The plans that travel with the binary: the conformance suite as this build knows it,
//! so a command needs no checkout to run it.

use std::path::Path;

use super::{Plan, PlanError, load_str};

/// `scenarios/conformance.toml`, as built in.
pub const CONFORMANCE: &str = include_str!("../../scenarios/conformance.toml");

/// The built-in conformance plan, loaded (its path in messages is the source tree's).
pub fn conformance() -> Result<Plan, PlanError> {
    load_str(Path::new("scenarios/conformance.toml"), CONFORMANCE)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_built_in_suite_loads() {
        let plan = super::conformance().unwrap();
        assert!(plan.scenarios.len() >= 20, "{}", plan.scenarios.len());
    }
}
