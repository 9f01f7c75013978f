//! One sanitiser for every string that came from outside eigenpub, before it is shown or
//! written.
//!
//! Registry bodies and headers, credential-helper output, URLs in connection errors and
//! snippets of project files are not eigenpub's words: a hostile registry (or a proxy in
//! front of it) can echo the `Authorization` header back, a signed upload URL carries its
//! signature in the query, and a body or a spec can carry terminal escape sequences. So:
//!
//! - the run's known secrets (passwords and tokens as they were found, registered here
//!   when credentials are resolved) are redacted in every form they travel in: plain,
//!   base64 (standard and URL-safe, also at any alignment inside a longer base64 stream),
//!   percent-encoded (either case, `+` for a space), JSON-escaped (`\u0026` as Go writes
//!   it, `\u00e4`, `\/`), HTML references, and `user:password` with its base64; a secret
//!   shorter than 8 characters only where it stands alone (see [`secrets`]); so are the
//!   values after `Basic `/`Bearer ` and after keys named like `token`, `password` or
//!   `secret`;
//! - URLs lose their userinfo and query string;
//! - control characters (other than newline and tab), escape sequences and bidirectional
//!   overrides are shown escaped (`\x1b`, `\u{202e}`);
//! - nothing can start a GitHub Actions workflow command when the text reaches a job log:
//!   `::` at the start of a line (after leading whitespace, which the runner trims) is shown
//!   as `\x3a:`, and `##[` (the legacy form, which the runner finds anywhere in a line) as
//!   `\x23#[` (see [`workflow`], which also guards the output streams themselves);
//! - registry text is cut to [`REGISTRY_TEXT_LIMIT`] characters, on one line.
//!
//! [`Untrusted`] is the way a renderer shows one outside value (a repository, a folder
//! name, a spec path) on a line: its `Display` is the sanitised text with line breaks
//! escaped, so that a value can neither start a line nor carry an escape sequence.
//!
//! The secrets live in one process-wide list because every output path (diagnostics,
//! per-artifact errors, JSON documents) must consult them, and they are found deep in the
//! registry code long after the renderers were chosen. [`Sanitizer`] is the pure core.

use std::sync::RwLock;

use crate::diagnostic::{Label, Problem, SourceFile};
use patterns::{redact_credential_values, scrub_urls};
use secrets::Secret;

mod patterns;
mod secrets;
mod untrusted;
pub mod workflow;

pub use untrusted::{Untrusted, toml_string};

/// What a redacted secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// How many characters of text from a registry are kept in a message.
pub const REGISTRY_TEXT_LIMIT: usize = 1000;

static SECRETS: RwLock<Vec<Secret>> = RwLock::new(Vec::new());

/// Remembers one secret string (a token, a password) for the rest of the run.
pub fn register(secret: &str) {
    let Some(secret) = Secret::new(secret) else {
        return;
    };
    let mut secrets = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if !secrets.contains(&secret) {
        secrets.push(secret);
    }
    // Longest first, so that `user:password` is replaced whole rather than around its part.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.plain.len()));
}

/// The sanitiser with the run's secrets.
pub fn current() -> Sanitizer {
    Sanitizer {
        secrets: SECRETS.read().unwrap_or_else(|e| e.into_inner()).clone(),
    }
}

/// Sanitises outside text with the run's secrets (see the module documentation).
pub fn text(s: &str) -> String {
    current().text(s)
}

/// A JSON document with every string (keys included) sanitised: for documents built from
/// what a registry or a file holds (serde_json escapes only C0 controls).
pub fn json(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(text(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(json).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (text(&k), json(v))).collect())
        }
        other => other,
    }
}

/// Sanitises text a registry sent (a body, a header, an error built from them) and cuts it
/// to [`REGISTRY_TEXT_LIMIT`] characters.
pub fn registry_text(s: &str) -> String {
    // Cut (generously) before sanitising too, so that a huge body costs no more than a
    // bounded one; then cut to the limit what is shown.
    let head: String = s.chars().take(REGISTRY_TEXT_LIMIT * 4).collect();
    // On one line: a registry's text cannot add lines of its own to a log (fake results,
    // fake errors) wherever eigenpub prints it.
    truncate(&one_line(&text(&head)), REGISTRY_TEXT_LIMIT)
}

/// Sanitises an outside value shown on one line (a name, a path, a reference): as
/// [`text`], with line breaks and tabs shown escaped.
pub fn line(s: &str) -> String {
    one_line(&text(s))
}

/// Line breaks and tabs of sanitised text shown escaped (`\n`, `\t`).
fn one_line(s: &str) -> String {
    if !s.contains(['\n', '\r', '\t']) {
        return s.to_string();
    }
    s.replace("\r\n", "\\n")
        .replace('\n', "\\n")
        .replace('\r', "\\x0d")
        .replace('\t', "\\t")
}

/// The last line of defence of every output stream and written document (standard output,
/// the diagnostics printer, saved plans, release records), applied to the whole text
/// whatever its origin: workflow command starts escaped ([`workflow::guard`]); every
/// control character but newline, tab and `\r\n`, every escape sequence but a colour
/// (SGR, `ESC [ digits ; m`, conceal excepted), and the characters that reorder or hide
/// text (bidirectional overrides, C1 controls, DEL) written as `\uXXXX`. Those escapes are
/// also JSON's, where they stand for the same characters (serde_json writes the non-C0
/// ones raw), so a JSON document keeps its values.
pub fn guard(s: &str) -> std::borrow::Cow<'_, str> {
    let guarded = workflow::guard(s);
    let allowed = |c: char| matches!(c, '\n' | '\t' | '\r' | '\x1b') || !is_hostile_char(c);
    if guarded.chars().all(allowed) && !guarded.contains('\x1b') && !lone_cr(&guarded) {
        return guarded;
    }
    let mut out = String::with_capacity(guarded.len() + 16);
    let mut i = 0;
    while i < guarded.len() {
        let rest = &guarded[i..];
        let c = rest.chars().next().expect("i is below the length");
        if c == '\x1b'
            && let Some(len) = colour_len(rest)
        {
            out.push_str(&rest[..len]);
            i += len;
            continue;
        }
        let keep = matches!(c, '\n' | '\t')
            || (c == '\r' && rest[1..].starts_with('\n'))
            || (c != '\r' && c != '\x1b' && !is_hostile_char(c));
        if keep {
            out.push(c);
        } else {
            out.push_str(&format!("\\u{:04x}", c as u32));
        }
        i += c.len_utf8();
    }
    std::borrow::Cow::Owned(out)
}

/// The length of a colour sequence (SGR: `ESC [`, digits and `;`, `m`) at the start of
/// `s`, unless it conceals text (parameter 8).
fn colour_len(s: &str) -> Option<usize> {
    let params = s.strip_prefix("\x1b[")?;
    let end = params.find(|c: char| !(c.is_ascii_digit() || c == ';'))?;
    if !params[end..].starts_with('m') || end > 32 {
        return None;
    }
    let conceals = params[..end]
        .split(';')
        .any(|p| p.trim_start_matches('0') == "8");
    (!conceals).then_some(2 + end + 1)
}

/// Sanitises every string of a problem (message, help, labels, the snippet's text).
pub fn problem(p: &Problem) -> Problem {
    current().problem(p)
}

/// Cuts text to `max` characters, saying how much was left out.
pub fn truncate(s: &str, max: usize) -> String {
    let count = s.chars().count();
    if count <= max {
        return s.to_string();
    }
    let kept: String = s.chars().take(max).collect();
    format!("{kept}… ({} more characters)", count - max)
}

/// The pure sanitiser: the run's secrets, longest first.
#[derive(Debug, Clone, Default)]
pub struct Sanitizer {
    secrets: Vec<Secret>,
}

/// Where a piece of input was replaced in the output, so that spans can follow.
#[derive(Debug, Clone, Copy)]
struct Replaced {
    input: usize,
    input_len: usize,
    output: usize,
    output_len: usize,
}

/// Maps byte offsets of a text to offsets in its sanitised form.
#[derive(Debug, Clone, Default)]
pub struct OffsetMap {
    replaced: Vec<Replaced>,
}

impl OffsetMap {
    pub fn map(&self, offset: usize) -> usize {
        let i = self.replaced.partition_point(|r| r.input <= offset);
        if i == 0 {
            return offset;
        }
        let r = self.replaced[i - 1];
        if offset < r.input + r.input_len {
            r.output
        } else {
            r.output + r.output_len + (offset - r.input - r.input_len)
        }
    }
}

impl Sanitizer {
    /// A sanitiser that knows these secret strings (each in every form it travels in).
    #[cfg(test)]
    pub fn with_secrets(secrets: &[&str]) -> Sanitizer {
        let mut all: Vec<Secret> = secrets.iter().filter_map(|s| Secret::new(s)).collect();
        all.sort_by_key(|s| std::cmp::Reverse(s.plain.len()));
        Sanitizer { secrets: all }
    }

    /// Outside text for a message: secrets, credentials after known keys, URL queries and
    /// userinfo removed; control characters escaped.
    pub fn text(&self, s: &str) -> String {
        let s = self.secrets_and_controls(s, false).0;
        let s = redact_credential_values(&s);
        scrub_urls(&s)
    }

    /// File contents for a snippet: secrets redacted and control characters escaped, with
    /// a map from the old offsets to the new ones (for the labels). `\r\n` is kept.
    pub fn source(&self, s: &str) -> (String, OffsetMap) {
        self.secrets_and_controls(s, true)
    }

    /// Sanitises every string of a problem. The message is kept on one line: it names
    /// outside values (a project file's key, tag or path, a saved plan's fields), and a
    /// line break in one of them would otherwise add lines of its own to the report.
    pub fn problem(&self, p: &Problem) -> Problem {
        let (source, labels) = match &p.source {
            Some(file) => {
                let (text, map) = self.source(&file.text);
                let labels = p
                    .labels
                    .iter()
                    .map(|l| Label {
                        span: map.map(l.span.start)..map.map(l.span.end),
                        text: self.text(&l.text),
                    })
                    .collect();
                (Some(SourceFile::new(self.text(&file.name), text)), labels)
            }
            None => (None, p.labels.clone()),
        };
        Problem {
            severity: p.severity,
            code: p.code,
            message: one_line(&self.text(&p.message)),
            source,
            labels,
            help: p.help.as_deref().map(|h| self.text(h)),
        }
    }

    fn secrets_and_controls(&self, s: &str, keep_crlf: bool) -> (String, OffsetMap) {
        // The common case, fast: nothing to replace (a large spec is quoted per problem).
        let needs_work = s
            .chars()
            .any(|c| !matches!(c, '\n' | '\t' | '\r') && is_hostile_char(c))
            || workflow::has_command(s)
            || if keep_crlf {
                lone_cr(s)
            } else {
                s.contains('\r')
            }
            || self.secrets.iter().any(|secret| secret.may_be_in(s));
        if !needs_work {
            return (s.to_string(), OffsetMap::default());
        }
        let mut out = String::with_capacity(s.len());
        let mut map = OffsetMap::default();
        let mut i = 0;
        // Only whitespace since the start of the text or of a line: where the runner looks
        // for `::` (the text may be printed at the start of a line).
        let mut line_start = true;
        'scan: while i < s.len() {
            let rest = &s[i..];
            for secret in &self.secrets {
                if let Some(len) = secret.matches_at(s, i) {
                    map.replaced.push(Replaced {
                        input: i,
                        input_len: len,
                        output: out.len(),
                        output_len: REDACTED.len(),
                    });
                    out.push_str(REDACTED);
                    i += len;
                    line_start = false;
                    continue 'scan;
                }
            }
            let c = rest.chars().next().expect("i is below the length");
            let keep =
                c == '\n' || c == '\t' || (keep_crlf && c == '\r' && rest[1..].starts_with('\n'));
            let command = workflow::starts_command(rest, line_start);
            if command || (!keep && is_hostile_char(c)) {
                let escaped = if (c as u32) < 0x80 {
                    format!("\\x{:02x}", c as u32)
                } else {
                    format!("\\u{{{:x}}}", c as u32)
                };
                map.replaced.push(Replaced {
                    input: i,
                    input_len: c.len_utf8(),
                    output: out.len(),
                    output_len: escaped.len(),
                });
                out.push_str(&escaped);
                line_start = false;
            } else {
                out.push(c);
                line_start = c == '\n' || (line_start && c.is_whitespace());
            }
            i += c.len_utf8();
        }
        (out, map)
    }
}

/// True when a `\r` is not followed by `\n`.
fn lone_cr(s: &str) -> bool {
    s.match_indices('\r')
        .any(|(i, _)| !s[i + 1..].starts_with('\n'))
}

/// Control characters and the invisible characters that reorder or hide text.
fn is_hostile_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn sanitizer() -> Sanitizer {
        Sanitizer::with_secrets(&["hunter2-pass", "alice:hunter2-pass"])
    }

    #[test]
    fn known_secrets_are_redacted_in_every_form() {
        let s = sanitizer();
        let b64 = base64::engine::general_purpose::STANDARD.encode("alice:hunter2-pass");
        let b64_pass = base64::engine::general_purpose::STANDARD.encode("hunter2-pass");
        for input in [
            "x hunter2-pass y".to_string(),
            format!("Authorization: Basic {b64}"),
            format!("echo {b64_pass}"),
            "alice:hunter2-pass".to_string(),
            "p=hunter2%2Dpass".replace("%2D", "-"),
        ] {
            let out = s.text(&input);
            assert!(!out.contains("hunter2"), "{input} -> {out}");
            assert!(!out.contains(&b64), "{input} -> {out}");
            assert!(!out.contains(&b64_pass), "{input} -> {out}");
            assert!(out.contains(REDACTED), "{input} -> {out}");
        }
        let encoded = Sanitizer::with_secrets(&["a b&c"]);
        assert_eq!(encoded.text("q a%20b%26c"), format!("q {REDACTED}"));
    }

    #[test]
    fn controls_and_escape_sequences_are_shown_escaped() {
        let s = Sanitizer::default();
        assert_eq!(
            s.text("a\x1b[31mred\x1b]0;title\x07\r\u{202e}b\nc\td"),
            "a\\x1b[31mred\\x1b]0;title\\x07\\x0d\\u{202e}b\nc\td"
        );
        assert_eq!(s.text("\u{9b}31m"), "\\u{9b}31m");
    }

    #[test]
    fn outside_text_cannot_start_a_workflow_command() {
        let s = Sanitizer::default();
        for hostile in [
            "::error::pwned",
            "registry said:\n::add-mask::x",
            "a\n \u{a0}\u{3000}::warning::trimmed whitespace",
            "a\r\n::stop-commands::t",
            "mid-line ##[error]legacy form",
            "###[error]x ##[##[x",
        ] {
            let out = s.text(hostile);
            assert!(
                !workflow::tests::runner_sees_a_command(&out),
                "{hostile:?} -> {out:?}"
            );
            let (snippet, _) = s.source(hostile);
            assert!(
                !workflow::tests::runner_sees_a_command(&snippet),
                "{hostile:?} -> {snippet:?}"
            );
        }
        assert_eq!(s.text("a\n::error::x"), "a\n\\x3a:error::x");
        assert_eq!(s.text("a ##[e]"), "a \\x23#[e]");
        // `::` inside a line is left alone.
        assert_eq!(s.text("see [::1]:5000 and a::b"), "see [::1]:5000 and a::b");
        // Registry text stays on one line.
        assert_eq!(registry_text("x\n::error::y"), "x\\n\\x3a:error::y");
    }

    #[test]
    fn source_offsets_follow_the_replacements() {
        let s = Sanitizer::with_secrets(&["hunter2-pass"]);
        let text = "a: \x1b[1m\nb: hunter2-pass\nc: 1\r\n";
        let (out, map) = s.source(text);
        assert_eq!(out, format!("a: \\x1b[1m\nb: {REDACTED}\nc: 1\r\n"));
        let c = text.find("c:").unwrap();
        assert_eq!(&out[map.map(c)..map.map(c) + 2], "c:");
        let b = text.find("hunter2").unwrap();
        assert_eq!(map.map(b), out.find(REDACTED).unwrap());
        assert_eq!(map.map(0), 0);
    }

    #[test]
    fn problems_are_sanitised_whole() {
        let s = Sanitizer::with_secrets(&["hunter2-pass"]);
        let file = SourceFile::new("spec.yaml", "x: hunter2-pass\x1b[2J\ny: 2\n");
        let p = Problem::error("c", "bad \x1b[2J hunter2-pass")
            .at(&file, 17..21, "label \x07")
            .help("see https://a.example/?sig=1");
        let clean = s.problem(&p);
        assert_eq!(clean.message, format!("bad \\x1b[2J {REDACTED}"));
        assert_eq!(
            clean.help.as_deref(),
            Some("see https://a.example/?[query-removed]")
        );
        assert_eq!(clean.labels[0].text, "label \\x07");
        let text = &clean.source.as_ref().unwrap().text;
        assert!(!text.contains("hunter2") && !text.contains('\x1b'));
    }

    #[test]
    fn the_stream_guard_keeps_json_values_and_colours() {
        let doc = serde_json::json!({"spec": "a\u{1b}\u{202e}b\u{85}##[error]x\n::error::y"});
        let text = serde_json::to_string_pretty(&doc).unwrap();
        let guarded = guard(&text);
        assert!(!guarded.contains(['\u{202e}', '\u{85}']), "{guarded}");
        assert!(
            !workflow::tests::runner_sees_a_command(&guarded),
            "{guarded}"
        );
        let back: serde_json::Value = serde_json::from_str(&guarded).unwrap();
        assert_eq!(back, doc);
        let coloured = "\u{1b}[32m+ create\u{1b}[0m r.example/a:t\r\n\u{1b}[38;5;12mx\u{1b}[0m\n";
        assert_eq!(guard(coloured), coloured);
        assert_eq!(guard("x\u{202e}y"), "x\\u202ey");
        // Any other escape sequence, a concealing colour, a bell or a lone \r is escaped.
        assert_eq!(
            guard("a\u{1b}]0;title\u{7}b\u{1b}[2Jc\u{1b}[8md\re"),
            "a\\u001b]0;title\\u0007b\\u001b[2Jc\\u001b[8md\\u000de"
        );
    }

    #[test]
    fn truncation_says_how_much_was_cut() {
        assert_eq!(truncate("abcdef", 3), "abc… (3 more characters)");
        assert_eq!(truncate("abc", 3), "abc");
    }

    #[test]
    fn json_documents_are_sanitised_in_keys_and_values() {
        let doc = serde_json::json!({"a\u{1b}[2J": ["x\u{202e}y", {"k": "https://u:p@h/x?sig=1"}], "n": 1});
        let clean = json(doc).to_string();
        assert!(
            !clean.contains('\u{1b}') && !clean.contains('\u{202e}'),
            "{clean}"
        );
        assert!(
            !clean.contains("sig=1") && !clean.contains("u:p@"),
            "{clean}"
        );
        assert!(clean.contains("\"n\":1"), "{clean}");
    }
}

#[cfg(test)]
mod echoed_secrets {
    use super::*;
    use base64::Engine as _;

    /// Each encoding a registry may echo a secret in; the list of those not redacted.
    fn leaks() -> Vec<&'static str> {
        let pw = "Tr0ub4dor & <3> hörse/battery";
        let s = Sanitizer::with_secrets(&[pw]);
        let std = base64::engine::general_purpose::STANDARD;
        let cases: Vec<(&'static str, String)> = vec![
            (
                "Go JSON \\u0026",
                "Tr0ub4dor \\u0026 \\u003c3\\u003e hörse/battery".into(),
            ),
            (
                "Python JSON \\u00f6 and \\/",
                "Tr0ub4dor \\u0026 <3> h\\u00f6rse\\/battery".into(),
            ),
            (
                "form encoding +",
                "Tr0ub4dor+%26+%3C3%3E+h%C3%B6rse%2Fbattery".into(),
            ),
            (
                "lower-case percent",
                "Tr0ub4dor%20%26%20%3c3%3e%20h%c3%b6rse%2fbattery".into(),
            ),
            ("base64 at offset 1", std.encode(format!("x{pw}\"}}"))),
            ("base64 at offset 2", std.encode(format!("xy{pw}\"}}"))),
        ];
        cases
            .into_iter()
            .filter(|(_, echo)| !s.text(&format!("said: {echo} end")).contains(REDACTED))
            .map(|(what, _)| what)
            .collect()
    }

    #[test]
    fn a_secret_echoed_in_any_encoding_is_redacted() {
        assert_eq!(leaks(), Vec::<&str>::new());
        // A short secret is not redacted inside words.
        let short = Sanitizer::with_secrets(&["p"]);
        assert_eq!(short.text("opset-0-v1"), "opset-0-v1");
        assert_eq!(
            short.text("password p refused"),
            format!("password {REDACTED} refused")
        );
    }
}
