//! Runtime spec files: reading the YAML an artifact's layer will carry.
//!
//! The layer is the file's bytes exactly as written; this module only looks at them to
//! check them (UTF-8, a YAML mapping, the fields eigenpub needs) and to read the spec's own
//! `version`. A UTF-8 byte-order mark and CRLF line endings are accepted for parsing and
//! left in the bytes that are pushed.

use serde_json::Value;

use crate::diagnostic::{Problem, SourceFile};

/// A parsed spec: the YAML as a JSON value (what schemas validate) and its version.
#[derive(Debug, Clone)]
pub struct SpecDocument {
    pub value: Value,
}

impl SpecDocument {
    /// The spec's own `version` field as text (`0.3.1`, `3`), when it has one.
    pub fn version(&self) -> Option<String> {
        match self.value.get("version")? {
            Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// Checks that a spec file's bytes are text and returns them as a source for diagnostics.
pub fn source(name: &str, bytes: &[u8]) -> Result<SourceFile, Problem> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(SourceFile::new(name, text)),
        Err(e) => {
            let valid = &bytes[..e.valid_up_to()];
            let text = String::from_utf8_lossy(valid).into_owned();
            let line = text.matches('\n').count() + 1;
            Err(Problem::error(
                "eigenpub::spec::encoding",
                format!(
                    "{name}: not UTF-8 text (invalid byte at offset {}, line {line})",
                    e.valid_up_to()
                ),
            )
            .help("save the spec as UTF-8"))
        }
    }
}

/// Parses a spec file's text.
pub fn parse(file: &SourceFile) -> Result<SpecDocument, Problem> {
    let text = file.text.strip_prefix('\u{feff}').unwrap_or(&file.text);
    let bom = file.text.len() - text.len();
    if text.trim().is_empty() {
        return Err(Problem::error(
            "eigenpub::spec::empty",
            format!("{}: the spec file is empty", file.name),
        )
        .in_file(file)
        .help("a spec needs at least apiVersion, kind, name, version and spec"));
    }
    let value: Value = serde_yaml::from_str(text).map_err(|e| {
        let span = e
            .location()
            .map(|l| {
                let at = bom + l.index();
                at..at
            })
            .unwrap_or(0..0);
        let message = e.to_string();
        let (line, _) = file.line_col(span.start);
        Problem::error(
            "eigenpub::spec::yaml",
            format!("{} (line {line}): invalid YAML: {message}", file.name),
        )
        .at(file, span, first_clause(&message))
        .help("fix the YAML at the marked place")
    })?;
    if !value.is_object() {
        return Err(Problem::error(
            "eigenpub::spec::not-a-mapping",
            format!(
                "{}: a spec must be a YAML mapping (apiVersion, kind, name, version, spec), found {}",
                file.name,
                kind_of(&value)
            ),
        )
        .at(file, bom..file.text.len().min(bom + 1), "here")
        .help("write the spec as `key: value` lines at the top level"));
    }
    Ok(SpecDocument { value })
}

fn first_clause(message: &str) -> String {
    message
        .split(" at line ")
        .next()
        .unwrap_or(message)
        .to_string()
}

/// A word for a JSON value's type, for messages.
pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<SpecDocument, Problem> {
        parse(&SourceFile::new("s.yaml", text))
    }

    #[test]
    fn reads_version_as_text() {
        assert_eq!(
            parse_text("version: 0.3.1\n").unwrap().version().as_deref(),
            Some("0.3.1")
        );
        assert_eq!(
            parse_text("version: 3\n").unwrap().version().as_deref(),
            Some("3")
        );
        assert_eq!(parse_text("name: x\n").unwrap().version(), None);
    }

    #[test]
    fn bom_and_crlf_are_accepted() {
        let doc = parse_text("\u{feff}name: x\r\nversion: 2\r\n").unwrap();
        assert_eq!(doc.version().as_deref(), Some("2"));
    }

    #[test]
    fn rejects_empty_non_mapping_and_bad_yaml() {
        assert_eq!(
            parse_text("  \n").unwrap_err().code,
            "eigenpub::spec::empty"
        );
        assert_eq!(
            parse_text("- a\n- b\n").unwrap_err().code,
            "eigenpub::spec::not-a-mapping"
        );
        let bad = parse_text("name: x\nspec: [\n").unwrap_err();
        assert_eq!(bad.code, "eigenpub::spec::yaml");
        assert!(bad.message.contains("line"), "{}", bad.message);
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        let mut prev = 'a';
        for name in ['b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'] {
            text.push_str(&format!(
                "{name}: &{name} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
            ));
            prev = name;
        }
        let err = parse_text(&text).unwrap_err();
        assert_eq!(err.code, "eigenpub::spec::yaml");
    }

    #[test]
    fn non_utf8_is_an_error() {
        let err = source("s.yaml", b"name: \xff\n").unwrap_err();
        assert_eq!(err.code, "eigenpub::spec::encoding");
    }
}
