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

#[cfg(test)]
mod tests {
    use super::*;

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
