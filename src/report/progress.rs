//! Progress while planning and applying: at a terminal, a bar from the first moment (0/N)
//! that says what is happening ("checking 500 tags on ghcr.io", "pushing 42 artifacts to
//! ghcr.io") and, while applying, a spinner per artifact in flight with its name; elsewhere
//! (CI logs) one plain line per finished artifact; nothing with `-q`. One printer decides,
//! so bars and log lines never interleave: with bars drawn, finished lines are printed
//! through indicatif's `MultiProgress::println`, above the bars.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::apply::{Outcome, Progress};
use crate::plan::Change;
use crate::report::text::{self, Style};
use crate::sanitize::Untrusted;

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
    /// `places` names where the artifacts go (registry hosts, layout folders), for the
    /// phase text.
    pub fn new(
        quiet: bool,
        lines: bool,
        terminal: bool,
        total: usize,
        places: &[String],
        style: Style,
    ) -> Printer {
        if quiet || !lines {
            return Printer::Quiet;
        }
        if terminal && total > 0 {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let overall = multi.add(phase_bar(
                total,
                format!(
                    "pushing {total} artifact{} to {}",
                    plural(total),
                    list(places)
                ),
            ));
            draw_from_now(&overall);
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
            // Named before it is added, so it is never drawn without its artifact.
            let spinner = ProgressBar::new_spinner()
                .with_style(
                    ProgressStyle::with_template("  {spinner} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                )
                // The project's text: sanitised on one line at the terminal.
                .with_message(Untrusted(&reference).to_string());
            let spinner = bars.multi.add(spinner);
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

/// A bar while a plan reads its tags, at a terminal: "checking N tags on HOST", from 0/N.
pub struct ObserveBar(Option<ProgressBar>);

impl ObserveBar {
    /// `places` names where the tags are (registry hosts, layout folders).
    pub fn new(total: usize, places: &[String], at_terminal: bool) -> ObserveBar {
        ObserveBar((at_terminal && total > 0).then(|| {
            let bar = phase_bar(
                total,
                format!("checking {total} tag{} on {}", plural(total), list(places)),
            );
            bar.set_draw_target(ProgressDrawTarget::stderr());
            draw_from_now(&bar);
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

/// An overall bar that says what the run is doing, drawn from 0/N on.
fn phase_bar(total: usize, phase: String) -> ProgressBar {
    let bar = ProgressBar::hidden();
    bar.set_length(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len}, {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(phase);
    bar
}

/// Draws a bar's first frame (0/N) now, then keeps it fresh (elapsed time) while nothing
/// finishes. A manual tick is ignored once the steady one runs, hence this order.
fn draw_from_now(bar: &ProgressBar) {
    bar.tick();
    bar.enable_steady_tick(Duration::from_millis(200));
}

/// "ghcr.io", "ghcr.io and localhost:5000", "3 registries".
fn list(places: &[String]) -> String {
    match places {
        [] => "nowhere".to_string(),
        [one] => Untrusted(one).to_string(),
        [a, b] => format!("{} and {}", Untrusted(a), Untrusted(b)),
        more => format!("{} places", more.len()),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_named_briefly() {
        assert_eq!(list(&["ghcr.io".into()]), "ghcr.io");
        assert_eq!(list(&["a".into(), "b".into()]), "a and b");
        assert_eq!(list(&["a".into(), "b".into(), "c".into()]), "3 places");
    }

    #[test]
    fn the_phase_bar_starts_at_zero_with_its_phase() {
        let bar = phase_bar(42, "pushing 42 artifacts to ghcr.io".into());
        assert_eq!(bar.position(), 0);
        assert_eq!(bar.length(), Some(42));
        assert_eq!(bar.message(), "pushing 42 artifacts to ghcr.io");
    }
}
