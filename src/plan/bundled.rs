//! The plans that travel with the binary: `scenarios/*.toml` as they were when it was
//! built, so an installed `keyclaim-harness` runs the conformance suite from any folder
//! (`run conformance`, `run builtin:conformance`), and `plans --out DIR` writes them out
//! for editing.

use std::path::Path;

/// Name and text of each bundled plan, as `scenarios/NAME.toml` holds it.
pub const PLANS: &[(&str, &str)] = &[
    (
        "conformance",
        include_str!("../../scenarios/conformance.toml"),
    ),
    ("load", include_str!("../../scenarios/load.toml")),
    ("soak", include_str!("../../scenarios/soak.toml")),
];

/// The prefix that always means a bundled plan, whatever files exist.
pub const PREFIX: &str = "builtin:";

/// The bundled plan `path` names when no such file exists: `builtin:NAME`, a bare
/// `NAME`, or `scenarios/NAME.toml` run outside a checkout. Returns its name and text.
pub fn named_by(path: &Path) -> Option<(&'static str, &'static str)> {
    let text = path.to_str()?;
    let name = match text.strip_prefix(PREFIX) {
        Some(name) => name,
        None if path.exists() => return None,
        None => text
            .strip_prefix("scenarios/")
            .and_then(|file| file.strip_suffix(".toml"))
            .unwrap_or(text),
    };
    PLANS.iter().copied().find(|(bundled, _)| *bundled == name)
}

/// The names, for messages.
pub fn names() -> Vec<&'static str> {
    PLANS.iter().map(|(name, _)| *name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_find_the_bundled_plans_and_files_win() {
        assert_eq!(
            named_by(Path::new("builtin:conformance")).map(|p| p.0),
            Some("conformance")
        );
        assert_eq!(named_by(Path::new("load")).map(|p| p.0), Some("load"));
        assert_eq!(named_by(Path::new("builtin:nope")), None);
        assert_eq!(named_by(Path::new("no-such-plan.toml")), None);
        // Tests run in the checkout, where the file exists: the file is read.
        assert_eq!(named_by(Path::new("scenarios/conformance.toml")), None);
        assert_eq!(
            named_by(Path::new("builtin:soak")).map(|p| p.0),
            Some("soak")
        );
    }

    #[test]
    fn every_bundled_plan_loads() {
        for (name, text) in PLANS {
            let path = format!("{PREFIX}{name}");
            crate::plan::load_str(Path::new(&path), text)
                .unwrap_or_else(|err| panic!("{name}: {err}"));
        }
    }
}
