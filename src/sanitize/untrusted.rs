//! [`Untrusted`]: how a renderer shows one value that came from outside eigenpub.
//!
//! A repository (an `oci:` folder name is any text a pull request writes), a spec path, an
//! AVS name or a registry's provenance note is shown inside a line eigenpub writes. Wrapped
//! in [`Untrusted`], it is displayed through the sanitiser ([`super::line`]): secrets
//! redacted, control characters and escape sequences escaped, line breaks shown as `\n`
//! (so it cannot start a line, nor a workflow command), `::` and `##[` escaped. The
//! renderers (`report::text`, `report::markdown`, `report::progress`) take every outside
//! value through it; Markdown adds its own escaping on top (see `report::markdown`).

use std::fmt;

/// An outside value, displayed sanitised on one line.
#[derive(Debug, Clone, Copy)]
pub struct Untrusted<'a>(pub &'a str);

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&super::line(self.0))
    }
}

/// An outside value written into a TOML file eigenpub writes (`init`'s project file, the
/// lock): a basic string on one line with its value kept exactly, but line breaks, control
/// characters, bidirectional overrides and the legacy workflow command start `##[` written
/// as `\uXXXX` escapes, so that printing the file (`cat eigenruntime.lock` in a job)
/// shows nothing raw.
pub fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if super::is_hostile_char(c) => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out.replace("##[", "#\\u0023[")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_toml_string_keeps_its_value_on_one_line() {
        let hostile = "x\u{1b}]0;t\u{7}\u{202e}\u{85}\n::error::y ##[error]z\\\"q.yaml";
        let line = toml_string(hostile);
        assert!(
            !line.contains(['\n', '\u{1b}', '\u{7}', '\u{202e}', '\u{85}'])
                && !line.contains("##["),
            "{line}"
        );
        let parsed: toml::Value = toml::from_str(&format!("k = {line}")).unwrap();
        assert_eq!(parsed["k"].as_str(), Some(hostile));
        assert_eq!(toml_string("a/b.yaml"), "\"a/b.yaml\"");
    }

    #[test]
    fn an_outside_value_stays_on_its_line_without_escapes() {
        let hostile = "oci:out/x\u{1b}]0;title\u{7}\n::error::pwned\r\n##[add-mask]y\tz";
        let shown = format!("+ create {}", Untrusted(hostile));
        assert!(
            !shown.contains(['\n', '\r', '\t', '\u{1b}', '\u{7}']),
            "{shown}"
        );
        assert!(!shown.contains("##["), "{shown}");
        assert_eq!(
            shown,
            "+ create oci:out/x\\x1b]0;title\\x07\\n\\x3a:error::pwned\\x0d\\n\\x23#[add-mask]y\\tz"
        );
    }
}
