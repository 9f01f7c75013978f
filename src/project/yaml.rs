//! Where things are in a YAML file, for diagnostics: the line and column of every node by
//! JSON pointer (so a schema error points at its line), and the first key written twice in
//! one mapping (which serde_yaml would silently resolve). Both read yaml-rust2's marked
//! events; serde_yaml parses the values.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use crate::diagnostic::SourceFile;

/// Escapes one JSON-pointer segment (`~` and `/`).
pub(crate) fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Where each node of a YAML document starts, by JSON pointer.
pub(crate) struct Positions {
    file: SourceFile,
    starts: HashMap<String, (usize, usize)>,
    keys: HashMap<String, (usize, usize)>,
}

impl Positions {
    pub(crate) fn of(file: &SourceFile) -> Positions {
        let mut collector = Collector::default();
        let mut parser = Parser::new_from_str(&file.text);
        // A document that serde_yaml accepted parses here too; on the off chance it does
        // not, problems still point at the top of the file.
        let _ = parser.load(&mut collector, false);
        Positions {
            file: file.clone(),
            starts: collector.starts,
            keys: collector.keys,
        }
    }

    /// The span to label for a pointer: its node, or the nearest ancestor that exists
    /// (a missing field is labelled at its parent).
    /// The span to label for a pointer: its value; for a pointer that does not exist (a
    /// missing field) the key of the nearest ancestor that does, so the label sits on the
    /// line that names the parent (`aggregator:`). The flag says whether it was missing.
    pub(crate) fn span_of(&self, pointer: &str) -> (std::ops::Range<usize>, bool) {
        let line_span = |&(line, col): &(usize, usize)| {
            let start = self.file.offset_of(line, col);
            let end = self.file.text[start..]
                .find(['\n', '\r'])
                .map_or(self.file.text.len(), |e| start + e);
            start..end.max(start)
        };
        if let Some(at) = self.starts.get(pointer) {
            return (line_span(at), false);
        }
        let mut p = pointer.to_string();
        while let Some(i) = p.rfind('/') {
            p.truncate(i);
            if let Some(at) = self.keys.get(&p).or_else(|| self.starts.get(&p)) {
                return (line_span(at), true);
            }
        }
        (0..0, true)
    }
}

#[derive(Default)]
struct Collector {
    starts: HashMap<String, (usize, usize)>,
    /// Where the key naming each mapping entry is, by the entry's pointer.
    keys: HashMap<String, (usize, usize)>,
    /// Open containers: for a mapping, the pending key; for a sequence, the next index.
    stack: Vec<Frame>,
    path: Vec<String>,
}

enum Frame {
    Mapping {
        key: Option<String>,
        expect_key: bool,
        /// A mapping no key names (the document, a list item): it is placed at its first key.
        unplaced: Option<String>,
    },
    Sequence {
        next: usize,
    },
}

impl Collector {
    /// Called when a node starts: returns its pointer segment, and advances the parent.
    fn enter(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Sequence { next }) => {
                let s = next.to_string();
                *next += 1;
                Some(s)
            }
            Some(Frame::Mapping {
                key, expect_key, ..
            }) => {
                if *expect_key {
                    None // this node is a key
                } else {
                    *expect_key = true;
                    key.take()
                }
            }
        }
    }

    fn pointer(&self, segment: &str) -> String {
        let mut p = String::new();
        for s in self.path.iter().skip(1) {
            p.push('/');
            p.push_str(&escape(s));
        }
        if !segment.is_empty() || !self.path.is_empty() {
            p.push('/');
            p.push_str(&escape(segment));
        }
        p
    }
}

impl MarkedEventReceiver for Collector {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let at = (mark.line(), mark.col() + 1);
        match ev {
            Event::Scalar(value, ..) => {
                if let Some(Frame::Mapping {
                    key,
                    expect_key,
                    unplaced,
                }) = self.stack.last_mut()
                    && *expect_key
                {
                    *key = Some(value.clone());
                    *expect_key = false;
                    if let Some(p) = unplaced.take() {
                        self.starts.insert(p, at);
                    }
                    let p = self.pointer(&value);
                    self.keys.entry(p).or_insert(at);
                    return;
                }
                if let Some(seg) = self.enter() {
                    let p = self.pointer(&seg);
                    self.starts.entry(p).or_insert(at);
                }
            }
            Event::Alias(_) => {
                if let Some(Frame::Mapping { expect_key, .. }) = self.stack.last_mut()
                    && *expect_key
                {
                    *expect_key = false;
                    return;
                }
                self.enter();
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(ev, Event::MappingStart(..));
                let seg = self.enter().unwrap_or_default();
                let p = if self.stack.is_empty() {
                    String::new()
                } else {
                    self.pointer(&seg)
                };
                // A block container's own mark lands on its first value; the line of the
                // key that names it (`aggregator:`) is where a reader looks.
                let named = self.keys.get(&p).copied();
                self.starts.entry(p.clone()).or_insert(named.unwrap_or(at));
                self.path.push(seg);
                self.stack.push(if is_map {
                    Frame::Mapping {
                        key: None,
                        expect_key: true,
                        unplaced: named.is_none().then_some(p),
                    }
                } else {
                    Frame::Sequence { next: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.path.pop();
            }
            _ => {}
        }
    }
}

/// Finds the first key written twice in one mapping: its line and column (1-based).
pub fn duplicate_key(text: &str) -> Option<(usize, usize, String)> {
    #[derive(Default)]
    struct Finder {
        /// Per open container: the keys seen (mappings), and whether the next scalar is a key.
        stack: Vec<(std::collections::HashSet<String>, bool, bool)>,
        found: Option<(usize, usize, String)>,
    }
    impl Finder {
        fn value_done(&mut self) {
            if let Some((_, is_map, expect_key)) = self.stack.last_mut()
                && *is_map
            {
                *expect_key = true;
            }
        }
    }
    impl MarkedEventReceiver for Finder {
        fn on_event(&mut self, ev: Event, mark: Marker) {
            if self.found.is_some() {
                return;
            }
            match ev {
                Event::Scalar(value, ..) => {
                    if let Some((keys, true, expect_key)) = self.stack.last_mut()
                        && *expect_key
                    {
                        *expect_key = false;
                        if !keys.insert(value.clone()) {
                            self.found = Some((mark.line(), mark.col() + 1, value));
                        }
                        return;
                    }
                    self.value_done();
                }
                Event::Alias(_) => {
                    if let Some((_, true, expect_key)) = self.stack.last_mut()
                        && *expect_key
                    {
                        *expect_key = false;
                        return;
                    }
                    self.value_done();
                }
                Event::MappingStart(..) => self.stack.push((Default::default(), true, true)),
                Event::SequenceStart(..) => self.stack.push((Default::default(), false, false)),
                Event::MappingEnd | Event::SequenceEnd => {
                    self.stack.pop();
                    self.value_done();
                }
                _ => {}
            }
        }
    }
    let mut finder = Finder::default();
    let _ = Parser::new_from_str(text).load(&mut finder, false);
    finder.found
}

/// How deep flow collections (`{…}`, `[…]`) may nest: serde_yaml's own recursion limit.
pub(crate) const FLOW_DEPTH_LIMIT: usize = 128;

/// The byte offset where flow collections first nest deeper than `limit`, found in one
/// linear pass (quoted scalars and comments skipped). libyaml's scanner, under serde_yaml,
/// takes time quadratic in flow depth before its recursion limit applies, so a deeply
/// nested spec is refused here first.
pub(crate) fn flow_depth_beyond(text: &str, limit: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return Some(i);
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b'#' if i == 0 || bytes[i - 1].is_ascii_whitespace() => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'\'' if i == 0 || !bytes[i - 1].is_ascii_alphanumeric() => {
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == b'\'' {
                        if bytes.get(i + 1) == Some(&b'\'') {
                            i += 1;
                        } else {
                            break;
                        }
                    }
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_second_of_two_equal_keys() {
        let text = "a: 1\nb:\n  c: 2\n  d: [x, y]\n  c: 3\n";
        assert_eq!(duplicate_key(text), Some((5, 3, "c".into())));
        assert_eq!(duplicate_key("a: 1\nb: {c: 1}\nc: 2\n"), None);
    }

    #[test]
    fn flow_depth_is_measured_outside_strings_and_comments() {
        let deep = format!("spec: {}1{}\n", "{a: ".repeat(200), "}".repeat(200));
        assert_eq!(flow_depth_beyond(&deep, 128), Some(6 + 128 * 4));
        let shallow = format!("spec: {}1{}\n", "[".repeat(128), "]".repeat(128));
        assert_eq!(flow_depth_beyond(&shallow, 128), None);
        let quoted = format!(
            "a: \"{}\"\nb: '{}'\n# {}\n",
            "{".repeat(300),
            "[".repeat(300),
            "{".repeat(300)
        );
        assert_eq!(flow_depth_beyond(&quoted, 128), None);
        assert_eq!(flow_depth_beyond("a: {b: [1, 2]}\n", 1), Some(7));
    }
}
