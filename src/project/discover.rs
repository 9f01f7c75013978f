//! `[[discover]]`: many AVSs at once. A pattern such as `fleet/{avs}/opset-{opset}.yaml`
//! finds spec files and reads the AVS name and operator set from each path.
//!
//! [`Pattern`] is pure (parse, match one path); [`Pattern::find`] walks only the folder
//! the pattern's literal prefix names, no deeper than the pattern reaches, and returns
//! matches sorted by path so that runs are stable.

use std::path::{Path, PathBuf};

/// One piece of a discover pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(String),
    Avs,
    OperatorSet,
}

/// A parsed `specs = "…"` pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    tokens: Vec<Token>,
}

/// A file a pattern found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Path relative to the project folder, with `/` separators.
    pub relative: String,
    pub path: PathBuf,
    pub avs: String,
    pub operator_set: u32,
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, String> {
        if text.starts_with('/') || text.split('/').any(|c| c == "..") {
            return Err(format!(
                "pattern `{text}` must stay inside the project folder: no leading `/`, no `..`"
            ));
        }
        let mut tokens = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                tokens.push(Token::Literal(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("pattern `{text}` has a `{{` with no `}}`"))?;
            tokens.push(match &after[..close] {
                "avs" => Token::Avs,
                "opset" => Token::OperatorSet,
                other => {
                    return Err(format!(
                        "pattern `{text}` uses `{{{other}}}`; a discover pattern reads {{avs}} and {{opset}} from the path ({{version}} comes from the spec's `version` field)"
                    ));
                }
            });
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            tokens.push(Token::Literal(rest.to_string()));
        }
        for pair in tokens.windows(2) {
            if !matches!(pair[0], Token::Literal(_)) && !matches!(pair[1], Token::Literal(_)) {
                return Err(format!(
                    "pattern `{text}` has two placeholders side by side; put a separator between them"
                ));
            }
        }
        if !tokens.contains(&Token::Avs) || !tokens.contains(&Token::OperatorSet) {
            return Err(format!(
                "pattern `{text}` must contain both {{avs}} and {{opset}}"
            ));
        }
        Ok(Pattern {
            text: text.to_string(),
            tokens,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Matches a relative path (with `/` separators): `(avs, operator set)`.
    pub fn matches(&self, path: &str) -> Option<(String, u32)> {
        let mut avs = None;
        let mut opset = None;
        if match_tokens(&self.tokens, path, &mut avs, &mut opset) {
            Some((avs?, opset?))
        } else {
            None
        }
    }

    /// The folder (relative) that holds every match: the literal prefix up to its last `/`.
    fn base(&self) -> &str {
        let literal = match self.tokens.first() {
            Some(Token::Literal(l)) => l.as_str(),
            _ => "",
        };
        match literal.rfind('/') {
            Some(i) => &literal[..i],
            None => "",
        }
    }

    /// Finds the matching files under `root`, sorted by relative path.
    pub fn find(&self, root: &Path) -> std::io::Result<Vec<Found>> {
        let base = self.base();
        let depth = self.text.matches('/').count()
            - base.matches('/').count()
            - usize::from(!base.is_empty());
        let mut found = Vec::new();
        let start = if base.is_empty() {
            root.to_path_buf()
        } else {
            root.join(base)
        };
        if !start.is_dir() {
            return Ok(found);
        }
        // Folders linked out of the project are not listed: names found there would be
        // refused when read, but shown in the refusal.
        let inside = root.canonicalize()?;
        self.walk(&inside, &start, base.to_string(), depth, &mut found)?;
        found.sort_by(|a, b| a.relative.cmp(&b.relative));
        Ok(found)
    }

    fn walk(
        &self,
        inside: &Path,
        dir: &Path,
        relative: String,
        depth: usize,
        found: &mut Vec<Found>,
    ) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let rel = if relative.is_empty() {
                name
            } else {
                format!("{relative}/{name}")
            };
            let kind = entry.file_type()?;
            let is_dir = kind.is_dir()
                || (kind.is_symlink()
                    && entry
                        .path()
                        .canonicalize()
                        .is_ok_and(|p| p.is_dir() && p.starts_with(inside)));
            if is_dir {
                if depth > 0 {
                    self.walk(inside, &entry.path(), rel, depth - 1, found)?;
                }
            } else if depth == 0
                && let Some((avs, operator_set)) = self.matches(&rel)
            {
                found.push(Found {
                    path: entry.path(),
                    relative: rel,
                    avs,
                    operator_set,
                });
            }
        }
        Ok(())
    }
}

fn match_tokens(
    tokens: &[Token],
    input: &str,
    avs: &mut Option<String>,
    opset: &mut Option<u32>,
) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        return input.is_empty();
    };
    match first {
        Token::Literal(l) => input
            .strip_prefix(l.as_str())
            .is_some_and(|tail| match_tokens(rest, tail, avs, opset)),
        placeholder => {
            // A placeholder takes one or more characters within one path component.
            let limit = input.find('/').unwrap_or(input.len());
            for end in (1..=limit).rev() {
                if !input.is_char_boundary(end) {
                    continue;
                }
                let value = &input[..end];
                let ok = match placeholder {
                    Token::Avs => true,
                    _ => value.bytes().all(|b| b.is_ascii_digit()) && value.parse::<u32>().is_ok(),
                };
                if ok && match_tokens(rest, &input[end..], avs, opset) {
                    match placeholder {
                        Token::Avs => *avs = Some(value.to_string()),
                        _ => *opset = value.parse().ok(),
                    }
                    return true;
                }
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_avs_and_operator_set_from_the_path() {
        let p = Pattern::parse("fleet/{avs}/opset-{opset}.yaml").unwrap();
        assert_eq!(
            p.matches("fleet/weather-feed/opset-1.yaml"),
            Some(("weather-feed".into(), 1))
        );
        assert_eq!(p.matches("fleet/a/b/opset-1.yaml"), None);
        assert_eq!(p.matches("fleet/a/opset-x.yaml"), None);
        assert_eq!(p.matches("fleet/a/opset-1.yml"), None);
        let q = Pattern::parse("{avs}-{opset}.yaml").unwrap();
        assert_eq!(q.matches("my-avs-12.yaml"), Some(("my-avs".into(), 12)));
    }

    #[test]
    fn rejects_bad_patterns() {
        assert!(Pattern::parse("fleet/{name}/{opset}.yaml").is_err());
        assert!(Pattern::parse("fleet/{avs}.yaml").is_err());
        assert!(Pattern::parse("../{avs}/{opset}.yaml").is_err());
        assert!(Pattern::parse("{avs}{opset}.yaml").is_err());
        assert!(Pattern::parse("fleet/{avs/{opset}").is_err());
    }

    #[test]
    fn finds_files_sorted() {
        let dir = tempfile::tempdir().unwrap();
        for rel in [
            "fleet/b/opset-0.yaml",
            "fleet/a/opset-1.yaml",
            "fleet/a/opset-0.yaml",
            "fleet/a/notes.md",
            "fleet/a/deep/opset-0.yaml",
        ] {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "x").unwrap();
        }
        let p = Pattern::parse("fleet/{avs}/opset-{opset}.yaml").unwrap();
        let found: Vec<_> = p
            .find(dir.path())
            .unwrap()
            .into_iter()
            .map(|f| f.relative)
            .collect();
        assert_eq!(
            found,
            [
                "fleet/a/opset-0.yaml",
                "fleet/a/opset-1.yaml",
                "fleet/b/opset-0.yaml"
            ]
        );
    }

    #[cfg(unix)]
    #[test]
    fn folders_linked_out_of_the_project_are_not_listed() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("project");
        for rel in ["project/fleet/a/opset-0.yaml", "elsewhere/opset-0.yaml"] {
            let path = outer.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "x").unwrap();
        }
        std::os::unix::fs::symlink(outer.path().join("elsewhere"), root.join("fleet/out")).unwrap();
        std::os::unix::fs::symlink("a", root.join("fleet/in")).unwrap();
        let p = Pattern::parse("fleet/{avs}/opset-{opset}.yaml").unwrap();
        let found: Vec<_> = p
            .find(&root)
            .unwrap()
            .into_iter()
            .map(|f| f.relative)
            .collect();
        assert_eq!(found, ["fleet/a/opset-0.yaml", "fleet/in/opset-0.yaml"]);
    }
}
