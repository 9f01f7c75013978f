//! Progress while applying: bars at a terminal, one plain line per finished artifact
//! elsewhere (CI logs), nothing with `-q`. One printer decides, so bars and log lines never
//! interleave: with bars drawn, finished lines are printed through indicatif's
//! `MultiProgress::println`, above the bars.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::apply::{Outcome, Progress};
use crate::plan::Change;
use crate::report::text::{self, Style};

/// Bars: the overall one, and a spinner per artifact in flight.
pub struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    active: Mutex<HashMap<String, ProgressBar>>,
}

/// How progress is shown.
pub enum Printer {
    /// Nothing (`-q`, or a machine-readable format on standard output).
    Quiet,
    /// A line per finished artifact on standard output.
    Lines { style: Style },
    /// Bars on standard error, finished lines printed above them.
    Bars { bars: Bars, style: Style },
}

impl Printer {
    pub fn new(quiet: bool, lines: bool, terminal: bool, total: usize, style: Style) -> Printer {
        if quiet || !lines {
            return Printer::Quiet;
        }
        if terminal && total > 0 {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let overall = multi.add(ProgressBar::new(total as u64));
            overall.set_style(
                ProgressStyle::with_template("[{bar:30}] {pos}/{len} artifacts pushed, {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            return Printer::Bars {
                bars: Bars {
                    multi,
                    overall,
                    active: Mutex::new(HashMap::new()),
                },
                style,
            };
        }
        Printer::Lines { style }
    }

    pub fn finish(&self) {
        if let Printer::Bars { bars, .. } = self {
            for (_, bar) in bars
                .active
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain()
            {
                bar.finish_and_clear();
            }
            bars.overall.finish_and_clear();
        }
    }
}

impl Progress for Printer {
    fn started(&self, change: &Change) {
        if let Printer::Bars { bars, .. } = self {
            let reference = change.publication.reference();
            let spinner = bars.multi.add(ProgressBar::new_spinner());
            spinner.set_style(
                ProgressStyle::with_template("  {spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            spinner.set_message(reference.clone());
            spinner.enable_steady_tick(Duration::from_millis(120));
            bars.active
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(reference, spinner);
        }
    }

    fn finished(&self, change: &Change, outcome: &Outcome) {
        match self {
            Printer::Quiet => {}
            Printer::Lines { style } => {
                crate::report::out::line(&text::outcome_line(change, outcome, *style))
            }
            Printer::Bars { bars, style } => {
                if let Some(spinner) = bars
                    .active
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&change.publication.reference())
                {
                    spinner.finish_and_clear();
                    bars.multi.remove(&spinner);
                }
                let _ = bars
                    .multi
                    .println(text::outcome_line(change, outcome, *style));
                bars.overall.inc(1);
            }
        }
    }
}

/// A bar while a plan reads its tags: drawn only for many artifacts at a terminal.
pub struct ObserveBar(Option<ProgressBar>);

impl ObserveBar {
    pub fn new(total: usize, at_terminal: bool) -> ObserveBar {
        ObserveBar((at_terminal && total >= 50).then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("[{bar:30}] {pos}/{len} tags read")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar
        }))
    }

    pub fn inc(&self) {
        if let Some(bar) = &self.0 {
            bar.inc(1);
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
