//! The project file's keys are written down in four places: the serde structs (what is
//! accepted), `KNOWN_KEYS` (what "did you mean" suggests), `schemas/eigenruntime-toml.json`
//! (what editors complete) and `eigenruntime.toml.example` (what users read). These tests
//! tie them together: a key added to one and not the others fails here.

use std::collections::BTreeSet;

use serde::de::{self, Deserializer, Visitor};
use serde_json::Value;

use super::*;

/// A deserializer that only records the field names a struct asks for.
struct Capture<'a>(&'a mut Vec<&'static str>);

impl<'de> Deserializer<'de> for Capture<'_> {
    type Error = de::value::Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.extend_from_slice(fields);
        Err(de::Error::custom("fields captured"))
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

fn fields_of<T: for<'de> Deserialize<'de>>() -> Vec<&'static str> {
    let mut fields = Vec::new();
    let _ = T::deserialize(Capture(&mut fields));
    assert!(!fields.is_empty(), "no fields captured");
    fields
}

/// Every key the serde structs accept.
fn serde_keys() -> BTreeSet<&'static str> {
    [
        fields_of::<ProjectFile>(),
        fields_of::<Defaults>(),
        fields_of::<RegistrySettings>(),
        fields_of::<AvsEntry>(),
        fields_of::<DiscoverEntry>(),
    ]
    .concat()
    .into_iter()
    .collect()
}

/// Every property name in the JSON schema (user-named map keys are `additionalProperties`,
/// so they do not appear).
fn schema_keys() -> BTreeSet<String> {
    fn walk(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    if k == "properties"
                        && let Value::Object(props) = child
                    {
                        out.extend(props.keys().cloned());
                    }
                    walk(child, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let text = include_str!("../../../schemas/eigenruntime-toml.json");
    let schema: Value = serde_json::from_str(text).expect("the project-file schema is JSON");
    let mut out = BTreeSet::new();
    walk(&schema, &mut out);
    out
}

#[test]
fn serde_structs_and_known_keys_agree() {
    let known: BTreeSet<&str> = KNOWN_KEYS.iter().copied().collect();
    assert_eq!(serde_keys(), known);
}

#[test]
fn serde_structs_and_the_json_schema_agree() {
    let serde: BTreeSet<String> = serde_keys().into_iter().map(String::from).collect();
    assert_eq!(schema_keys(), serde);
}

#[test]
fn the_example_shows_every_key() {
    let example = include_str!("../../../eigenruntime.toml.example");
    let missing: Vec<&str> = serde_keys()
        .into_iter()
        .filter(|key| {
            // Set (`key =`), possibly commented out, or part of a table header (`[key]`,
            // `[[key]]`, `[avs.key]`).
            !example.lines().any(|line| {
                let line = line.trim_start_matches(['#', ' ']);
                let assigned = line
                    .strip_prefix(key)
                    .is_some_and(|rest| rest.trim_start().starts_with('='));
                let in_header = line.starts_with('[')
                    && line
                        .trim_matches(['[', ']'])
                        .split('.')
                        .any(|segment| segment.trim() == *key);
                assigned || in_header
            })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "eigenruntime.toml.example never shows {missing:?}"
    );
}

#[test]
fn the_example_parses() {
    let text = include_str!("../../../eigenruntime.toml.example");
    let file = crate::diagnostic::SourceFile::new("eigenruntime.toml.example", text);
    parse(&file).expect("the example is a valid project file");
}
