//! Progress while applying: bars at a terminal, one plain line per finished artifact
//! elsewhere (CI logs), nothing with `-q`. One printer decides, so bars and log lines never
//! interleave: lines are printed through the bar (`ProgressBar::println`) when one is drawn.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::apply::{Outcome, Progress};
use crate::plan::Change;
use crate::report::text::{self, Style};

/// How progress is shown.
pub enum Printer {
    /// Nothing (`-q`, or a machine-readable format on standard output).
    Quiet,
    /// A line per finished artifact on standard output.
    Lines { style: Style },
    /// An overall bar on standard error, finished lines printed above it.
    Bar { bar: ProgressBar, style: Style },
}

impl Printer {
    pub fn new(quiet: bool, lines: bool, terminal: bool, total: usize, style: Style) -> Printer {
        if quiet || !lines {
            return Printer::Quiet;
        }
        if terminal && total > 0 {
            let bar =
                ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            return Printer::Bar { bar, style };
        }
        Printer::Lines { style }
    }

    pub fn finish(&self) {
        if let Printer::Bar { bar, .. } = self {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Printer {
    fn started(&self, change: &Change) {
        if let Printer::Bar { bar, .. } = self {
            bar.set_message(change.publication.reference());
        }
    }

    fn finished(&self, change: &Change, outcome: &Outcome) {
        match self {
            Printer::Quiet => {}
            Printer::Lines { style } => println!("{}", text::outcome_line(change, outcome, *style)),
            Printer::Bar { bar, style } => {
                bar.println(text::outcome_line(change, outcome, *style));
                bar.inc(1);
            }
        }
    }
}
