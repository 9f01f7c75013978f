//! Progress while planning and applying: at a terminal, a bar from the first moment (0/N)
//! that says what is happening ("checking 500 tags on ghcr.io", "pushing 42 artifacts to
//! ghcr.io") and, while applying, a spinner per artifact in flight with its name; elsewhere
//! (CI logs) one plain line per finished artifact; nothing with `-q`. One printer decides,
//! so bars and log lines never interleave: with bars drawn, whatever is printed meanwhile
//! (a failure, every line with `-v`, the interrupt notice: [`Notices`]) goes through
//! indicatif's `MultiProgress::println`, above the bars, where a redraw cannot erase it.
//! At a terminal the bar replaces the per-artifact lines (the summary line says what was
//! pushed), unless standard output is not the terminal (`apply > log`), which gets them.
//! Every bar and spinner fits the terminal's width: the text is cut, never wrapped.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};

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
    /// Bars on standard error; above them, failures (every finished line with `-v`); or,
    /// when standard output is not the terminal, every line there.
    Bars {
        bars: Bars,
        style: Style,
        lines: Shown,
    },
}

/// Which finished lines are printed while bars are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// Failures only, above the bars (the summary follows).
    Failures,
    /// Every line, above the bars (`-v`).
    Every,
    /// Every line on standard output, which is not the terminal (a file, a pipe).
    ToStdout,
}

/// What the run says while bars may be drawn (the interrupt notice): printed above the
/// bars, so that no redraw erases it; plainly on standard error when there are none.
#[derive(Clone)]
pub struct Notices(Option<MultiProgress>);

impl Notices {
    pub fn say(&self, text: &str) {
        match &self.0 {
            Some(multi) => {
                let _ = multi.println(text);
            }
            None => eprintln!("{text}"),
        }
    }

    /// Removes the bars for good (the process exits next) and says `text`: no stale bar
    /// is left on the screen.
    pub fn last_words(&self, text: &str) {
        if let Some(multi) = &self.0 {
            let _ = multi.clear();
            multi.set_draw_target(ProgressDrawTarget::hidden());
        }
        eprintln!("{text}");
    }
}

impl Printer {
    /// `places` names where the artifacts go (registry hosts, layout folders), for the
    /// phase text.
    /// `terminal`: standard error is one; `stdout_terminal`: standard output is one.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        quiet: bool,
        verbose: bool,
        lines: bool,
        terminal: bool,
        stdout_terminal: bool,
        total: usize,
        places: &[String],
        style: Style,
    ) -> Printer {
        if quiet || !lines {
            return Printer::Quiet;
        }
        if terminal && total > 0 {
            let lines = if !stdout_terminal {
                Shown::ToStdout
            } else if verbose {
                Shown::Every
            } else {
                Shown::Failures
            };
            let multi = MultiProgress::with_draw_target(stderr());
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
                lines,
            };
        }
        Printer::Lines { style }
    }

    /// Where notices go while this printer runs.
    pub fn notices(&self) -> Notices {
        match self {
            Printer::Bars { bars, .. } => Notices(Some(bars.multi.clone())),
            _ => Notices(None),
        }
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
                .with_style(spinner_style())
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
            Printer::Bars { bars, style, lines } => {
                if let Some(spinner) = bars
                    .active
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&change.publication.reference())
                {
                    spinner.finish_and_clear();
                    bars.multi.remove(&spinner);
                }
                let line = || text::outcome_line(change, outcome, *style);
                match lines {
                    Shown::ToStdout => crate::report::out::line(&line()),
                    Shown::Every => {
                        let _ = bars.multi.println(line());
                    }
                    Shown::Failures => {
                        if matches!(outcome, Outcome::Failed(_) | Outcome::Interrupted) {
                            let _ = bars.multi.println(line());
                        }
                    }
                }
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
            bar.set_draw_target(stderr());
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
        // The message takes what the terminal's width leaves, cut (never wrapped) when
        // longer: an 80-column terminal fits "pushing 300 artifacts to ghcr.io [===] …".
        ProgressStyle::with_template("{wide_msg} [{bar:20}] {pos}/{len}, {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(phase);
    bar
}

/// Columns left free at the right edge. A line that reaches the edge leaves the cursor
/// waiting to wrap, and the `^C` the terminal echoes when Ctrl-C is pressed then starts a
/// line the bars do not know of: their next redraw leaves a stale bar above.
const MARGIN: u16 = 3;

/// Standard error, as a terminal [`MARGIN`] columns narrower than it is.
fn stderr() -> ProgressDrawTarget {
    ProgressDrawTarget::term_like(Box::new(Narrower(console::Term::stderr())))
}

#[derive(Debug)]
struct Narrower(console::Term);

impl TermLike for Narrower {
    fn width(&self) -> u16 {
        self.0.size().1.saturating_sub(MARGIN).max(20)
    }
    fn height(&self) -> u16 {
        self.0.size().0
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_up(n)
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_down(n)
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_right(n)
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_left(n)
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.0.write_line(s)
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.0.write_str(s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        self.0.clear_line()
    }
    fn flush(&self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// A spinner per artifact in flight, its name cut to the terminal's width.
fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("  {spinner} {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
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
    use std::sync::Arc;

    /// A terminal of a given width that keeps every line drawn on it.
    #[derive(Debug, Clone)]
    struct Screen {
        width: u16,
        drawn: Arc<Mutex<Vec<String>>>,
    }

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            self.width
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.drawn.lock().unwrap().push(s.to_string());
            Ok(())
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.write_line(s)
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn bars_and_spinners_fit_an_80_column_terminal() {
        let screen = Screen {
            width: 80,
            drawn: Arc::default(),
        };
        let target = || ProgressDrawTarget::term_like(Box::new(screen.clone()));
        let bar = phase_bar(
            300,
            "pushing 300 artifacts to registry.example.com:5000 and ghcr.io".into(),
        );
        bar.set_draw_target(target());
        bar.inc(7);
        bar.tick();
        let spinner = ProgressBar::new_spinner()
            .with_style(spinner_style())
            .with_message(format!(
                "registry.example.com:5000/acme/{}:opset-0-v1",
                "a".repeat(90)
            ));
        spinner.set_draw_target(target());
        spinner.tick();
        let drawn = screen.drawn.lock().unwrap().clone();
        assert!(drawn.iter().any(|l| l.contains("7/300")), "{drawn:?}");
        assert!(
            drawn
                .iter()
                .any(|l| l.contains("registry.example.com:5000/acme/")),
            "{drawn:?}"
        );
        for line in &drawn {
            assert!(
                line.chars().count() <= 80,
                "{} columns: {line}",
                line.chars().count()
            );
        }
    }

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
