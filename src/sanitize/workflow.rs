//! GitHub Actions workflow commands, which no outside text may start.
//!
//! The Actions runner reads every line a step prints and acts on two forms: `::name
//! props::data` when the line starts with `::` after leading whitespace (the runner trims
//! it: `message.TrimStart()`), and the legacy `##[name props]data`, which it finds
//! anywhere in a line. Both can add annotations (`error`), hide values (`add-mask`) or
//! switch command processing off for the rest of the step (`stop-commands`). eigenpub
//! prints project-file values and registry text into those logs, so:
//!
//! - the sanitiser ([`super::Sanitizer`]) escapes the first character of every such start
//!   in the outside text it is given (`\x3a:`, `\x23#[`), treating the start of the text as
//!   the start of a line;
//! - [`guard`] (through [`super::guard`]) is applied by the output streams themselves (`report::out`, the diagnostics
//!   printer) to everything they write, whatever its origin, as a last line of defence.
//!   It escapes as `\u003a:` and `\u0023#[`, which are also valid inside a JSON string
//!   (where they stand for the same characters), so it can guard JSON documents too.
//!
//! eigenpub's own words never start a workflow command; its `--format github` annotations
//! are written by the diagnostics printer without the guard, their data %-escaped.

use std::borrow::Cow;

/// True when `s` holds a workflow command start: `##[` anywhere, or `::` at the start of
/// a line after whitespace (the start of `s` counting as the start of a line).
pub(super) fn has_command(s: &str) -> bool {
    s.contains("##[")
        || s.split(['\n', '\r'])
            .any(|line| line.trim_start().starts_with("::"))
}

/// True when the text at `rest` starts a workflow command (`line_start`: only whitespace
/// precedes it on its line).
pub(super) fn starts_command(rest: &str, line_start: bool) -> bool {
    rest.starts_with("##[") || (line_start && rest.starts_with("::"))
}

/// Output as it may reach a job log: every workflow command start escaped (`::` at a
/// line's start as `\u003a:`, `##[` as `\u0023#[`), everything else unchanged (colours
/// included). Borrowed when there is nothing to escape, the common case.
pub fn guard(s: &str) -> Cow<'_, str> {
    if !has_command(s) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    let mut line_start = true;
    let mut i = 0;
    while i < s.len() {
        let rest = &s[i..];
        if rest.starts_with("##[") {
            out.push_str("\\u0023");
            line_start = false;
            i += 1;
            continue;
        }
        if line_start && rest.starts_with("::") {
            out.push_str("\\u003a");
            line_start = false;
            i += 1;
            continue;
        }
        let c = rest.chars().next().expect("i is below the length");
        out.push(c);
        line_start = matches!(c, '\n' | '\r') || (line_start && c.is_whitespace());
        i += c.len_utf8();
    }
    Cow::Owned(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// What the runner would take for a command: a line (split as .NET's `ReadLine` does)
    /// that starts with `::` after trimming, or holds `##[` anywhere.
    pub(crate) fn runner_sees_a_command(output: &str) -> bool {
        output
            .split(['\n', '\r'])
            .any(|line| line.trim_start().starts_with("::") || line.contains("##["))
    }

    #[test]
    fn guard_escapes_every_command_start_and_nothing_else() {
        for hostile in [
            "::error::pwned",
            "x\n::add-mask::secret",
            "x\r::stop-commands::t",
            "x\n   \t::warning::w",
            "x\n\u{a0}\u{2003}::error::nbsp and em space are trimmed too",
            "a ##[error]mid-line legacy form",
            "###[error]",
            "##[##[error]",
            "\u{1b}[31m::error::after a colour code the line does not start with ::",
        ] {
            let out = guard(hostile);
            assert!(!runner_sees_a_command(&out), "{hostile:?} -> {out:?}");
        }
        assert_eq!(guard("::e::x"), "\\u003a:e::x");
        assert_eq!(guard("a ##[e]"), "a \\u0023#[e]");
        let plain = "\u{1b}[32m+ create\u{1b}[0m r.example/a:t sha256:1 (a::b, #[x])\n";
        assert!(matches!(guard(plain), Cow::Borrowed(_)));
        // In a JSON document, the escapes stand for the same characters.
        let doc = serde_json::json!({"a": "##[error]x", "b": "x\n::error::y"}).to_string();
        let guarded = guard(&doc);
        assert!(!runner_sees_a_command(&guarded), "{guarded}");
        let back: serde_json::Value = serde_json::from_str(&guarded).unwrap();
        assert_eq!(back["a"], "##[error]x");
    }
}
