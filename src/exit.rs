//! The exit codes every command uses, their numbers, and the words that explain them:
//! `--help` and the README's table are written from [`ExitCode::meaning`].

/// How a command ended, as its process exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Every check and threshold passed (non-strict and skipped outcomes allowed unless
    /// `--strict`); for `serve`, a clean shutdown.
    Ok,
    /// A check or threshold failed, or the work itself could not be done (a server that
    /// could not run, reports that could not be written).
    Failed,
    /// The arguments, a plan, a keys file or the reports given to merge are invalid.
    Usage,
    /// `run`: the target could not be reached at all.
    Unreachable,
    /// `run --rendezvous`: this worker took no part in the scaled-out run, or its
    /// report is not in the coordinator's merge.
    Excluded,
    /// Stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it).
    Interrupted,
}

impl ExitCode {
    pub const ALL: [ExitCode; 6] = [
        ExitCode::Ok,
        ExitCode::Failed,
        ExitCode::Usage,
        ExitCode::Unreachable,
        ExitCode::Excluded,
        ExitCode::Interrupted,
    ];

    pub const fn code(self) -> u8 {
        match self {
            ExitCode::Ok => 0,
            ExitCode::Failed => 1,
            ExitCode::Usage => 2,
            ExitCode::Unreachable => 3,
            ExitCode::Excluded => 4,
            ExitCode::Interrupted => 130,
        }
    }

    /// What the code means, as `--help` and the README say it.
    pub const fn meaning(self) -> &'static str {
        match self {
            ExitCode::Ok => {
                "every check passed (non-strict and skipped allowed unless --strict); for serve, a clean shutdown"
            }
            ExitCode::Failed => {
                "a check or threshold failed, compare found a regression, or the work could not be done (a server that could not run, reports that could not be written)"
            }
            ExitCode::Usage => {
                "invalid arguments, plan, keys file, merge inputs, or compare inputs of different plans (the message names the file, line and column)"
            }
            ExitCode::Unreachable => {
                "the target could not be reached at all (the reports list every scenario as failed for that reason)"
            }
            ExitCode::Excluded => {
                "run --rendezvous: this worker is not in the coordinator's merge (it came after the start, the run was called off, the coordinator could not be reached, or it counted the worker as lost)"
            }
            ExitCode::Interrupted => {
                "interrupted by Ctrl-C or SIGTERM; the reports hold what ran, marked interrupted"
            }
        }
    }

    /// The `Exit codes:` paragraph of a command's `--help`, for the codes it uses.
    pub fn help(codes: &[ExitCode]) -> String {
        let lines: Vec<String> = codes
            .iter()
            .map(|code| format!("  {:>3}  {}", code.code(), code.meaning()))
            .collect();
        format!("Exit codes:\n{}", lines.join("\n"))
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_each_code_with_its_meaning() {
        let help = ExitCode::help(&[ExitCode::Ok, ExitCode::Interrupted]);
        assert_eq!(
            help.lines().collect::<Vec<_>>(),
            [
                "Exit codes:",
                &format!("    0  {}", ExitCode::Ok.meaning()),
                &format!("  130  {}", ExitCode::Interrupted.meaning()),
            ]
        );
    }

    #[test]
    fn the_readme_table_says_what_help_says() {
        let readme = include_str!("../README.md");
        for code in ExitCode::ALL {
            let row = format!("| {} | {} |", code.code(), code.meaning());
            assert!(readme.contains(&row), "README.md lacks the row {row}");
        }
    }
}
