//! What the user sees while a run goes: a ramp bar, then one live line.
//!
//! indicatif draws only when stderr is a terminal, or when `--progress always`
//! asks for it; otherwise (CI, a pipe, a log file) the bars are hidden and only
//! one summary line per run is printed, so logs stay short.

use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// When to draw.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    /// When stderr is a terminal.
    Auto,
    Always,
    Never,
}

/// The display of one load-test session.
pub struct Live {
    enabled: bool,
}

impl Live {
    pub fn new(mode: ProgressMode) -> Live {
        let enabled = match mode {
            ProgressMode::Auto => std::io::stderr().is_terminal(),
            ProgressMode::Always => true,
            ProgressMode::Never => false,
        };
        Live { enabled }
    }

    /// A bar for the connection ramp.
    pub fn ramp(&self, label: &str, clients: u64) -> ProgressBar {
        if !self.enabled {
            return ProgressBar::hidden();
        }
        let pb = ProgressBar::new(clients);
        pb.set_style(
            ProgressStyle::with_template("{prefix} connecting [{bar:40}] {pos}/{len} {per_sec} {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        pb.set_prefix(label.to_string());
        pb.enable_steady_tick(Duration::from_millis(200));
        pb
    }

    /// A spinner line for the steady phase; its message is the live figures.
    pub fn steady(&self, label: &str) -> ProgressBar {
        if !self.enabled {
            return ProgressBar::hidden();
        }
        let pb = ProgressBar::new_spinner();
        pb.set_style(
            ProgressStyle::with_template("{prefix} {spinner} {elapsed} {msg}").expect("valid template"),
        );
        pb.set_prefix(label.to_string());
        pb.enable_steady_tick(Duration::from_millis(200));
        pb
    }

    /// A line that is always printed (one per run).
    pub fn say(&self, line: &str) {
        eprintln!("{line}");
    }
}
