//! Runtime spec files: reading the YAML an artifact's layer will carry.
//!
//! The layer is the file's bytes exactly as written; this module only looks at them to
//! check them (UTF-8, a YAML mapping, the fields eigenpub needs) and to read the spec's own
//! `version`. A UTF-8 byte-order mark and CRLF line endings are accepted for parsing and
//! left in the bytes that are pushed.

use serde_json::Value;

use crate::diagnostic::codes;
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

    /// The document as kept after validation: only `version`, which is all that is read
    /// later (the whole parsed tree of thousands of specs would stay alive for nothing).
    pub fn slim(self) -> SpecDocument {
        let mut kept = serde_json::Map::new();
        if let Value::Object(mut map) = self.value
            && let Some(version) = map.remove("version")
        {
            kept.insert("version".into(), version);
        }
        SpecDocument {
            value: Value::Object(kept),
        }
    }
}

/// Checks that a spec file's bytes are text and returns them as a source for diagnostics.
pub fn source(name: &str, bytes: &[u8]) -> Result<SourceFile, Problem> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(SourceFile::new(name, text)),
        Err(e) => {
            // Show the file as far as it is text, and point just past the last good byte.
            let at = e.valid_up_to();
            let shown = SourceFile::new(name, String::from_utf8_lossy(&bytes[..at]).into_owned());
            let line = shown.text.matches('\n').count() + 1;
            Err(Problem::error(
                codes::SPEC_ENCODING,
                format!("{name}: not UTF-8 text (invalid byte at offset {at}, line {line})"),
            )
            .at(
                &shown,
                at.saturating_sub(1)..at,
                "the next byte is not UTF-8",
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
        return Err(Problem::error(codes::SPEC_EMPTY, "the spec file is empty")
            .in_file(file)
            .help("a spec needs at least apiVersion, kind, name, version and spec"));
    }
    if let Some(at) =
        crate::project::yaml::flow_depth_beyond(text, crate::project::yaml::FLOW_DEPTH_LIMIT)
    {
        let at = bom + at;
        let (line, _) = file.line_col(at);
        return Err(Problem::error(
            codes::SPEC_YAML,
            format!("{} (line {line}): it is nested too deeply", file.name),
        )
        .at(file, at..at + 1, "nested too deeply")
        .help("a spec nests a few levels; flatten the structure"));
    }
    // Parsed as serde_yaml's own value first: it refuses duplicate keys (as Go's yaml.v3,
    // and so devkit, does) where a direct parse into JSON would keep the last one.
    let yaml: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
        let mut span = e
            .location()
            .map(|l| {
                let at = bom + l.index();
                at..at
            })
            .unwrap_or(0..0);
        // serde_yaml places a duplicate key at its mapping; find the second key itself.
        if e.to_string().contains("duplicate entry")
            && let Some((line, col, key)) = crate::project::yaml::duplicate_key(text)
        {
            let at = bom + SourceFile::new("", text).offset_of(line, col);
            span = at..at + key.len();
        }
        let message = e.to_string();
        let (line, _) = file.line_col(span.start);
        let (what, label, help) = if message.contains("repetition limit exceeded") {
            (
                "its aliases expand to too many nodes (an alias bomb?)".to_string(),
                "aliases expand too much".to_string(),
                "write the values out, or use fewer nested aliases",
            )
        } else if message.contains("recursion limit exceeded") {
            (
                "it is nested too deeply".to_string(),
                "nested too deeply".to_string(),
                "a spec nests a few levels; flatten the structure",
            )
        } else if message.contains("duplicate entry") {
            (
                format!("invalid YAML: {message}"),
                "a mapping with a key written twice".to_string(),
                "remove one of the two entries: which one wins differs between tools",
            )
        } else {
            (
                format!("invalid YAML: {message}"),
                first_clause(&message),
                "fix the YAML at the marked place",
            )
        };
        Problem::error(
            codes::SPEC_YAML,
            format!("{} (line {line}): {what}", file.name),
        )
        .at(file, span, label)
        .help(help)
    })?;
    let value = to_json(yaml);
    if !value.is_object() {
        return Err(Problem::error(
            codes::SPEC_NOT_A_MAPPING,
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

/// YAML to JSON: scalar keys become strings (as Go's map[string]any does), tags are dropped.
fn to_json(value: serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Value::Null, Value::Number)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(to_json).collect()),
        Y::Mapping(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let key = match to_json(k) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(tagged) => to_json(tagged.value),
    }
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
    fn a_slim_document_keeps_only_the_version() {
        let doc = parse_text("version: 0.3.1\nspec:\n  a: [1, 2, 3]\n").unwrap();
        let slim = doc.slim();
        assert_eq!(slim.version().as_deref(), Some("0.3.1"));
        assert_eq!(slim.value, serde_json::json!({"version": "0.3.1"}));
        let none = parse_text("spec: {}\n").unwrap().slim();
        assert_eq!(none.version(), None);
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
