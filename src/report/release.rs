//! Release records: `apply --release-json FILE` hands the on-chain publishing step exactly
//! the shape devkit's release step produces,
//! `{"<avs>": {"<operator set>": {"digest", "registry", "runtimeSpec"}}}`, for every
//! artifact in scope that the registry now holds (pushed or already there). An adopted tag
//! (one holding equivalent content, e.g. published by devkit) is recorded with the digest it
//! holds, since that is the one consumers (and the chain) see.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::apply::{Applied, Outcome};

/// The release record of an apply (pure).
pub fn record(applied: &[Applied]) -> Value {
    let mut by_avs: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    let landed = |outcome: &Outcome| matches!(outcome, Outcome::Pushed { .. } | Outcome::Unchanged);
    // The mirrors that hold each primary's digest now (a mirror holds the primary's
    // digest or nothing new: see `plan::mirror`).
    let mut mirrors: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for Applied { change, outcome } in applied {
        let p = &change.publication;
        if p.is_mirror() && landed(outcome) {
            mirrors
                .entry(p.primary_reference())
                .or_default()
                .push(p.repository.to_string());
        }
    }
    for Applied { change, outcome } in applied {
        let p = &change.publication;
        if !landed(outcome) || p.is_mirror() {
            continue;
        }
        let mut entry = json!({
            "digest": change.digest(),
            "registry": p.repository.to_string(),
            "runtimeSpec": String::from_utf8_lossy(&p.artifact.layer.bytes),
        });
        if let Some(held) = mirrors.remove(&p.reference()) {
            entry["mirrors"] = json!(held);
        }
        by_avs
            .entry(p.avs.clone())
            .or_default()
            .insert(p.operator_set.to_string(), entry);
    }
    json!(by_avs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Overwrite;
    use crate::plan::{Observation, diff, tests::publication};

    #[test]
    fn pushed_and_unchanged_are_recorded_failed_are_not() {
        let a = publication("a", "t", "x: 1\n", false);
        let b = publication("b", "t", "x: 2\n", false);
        let c = publication("c", "t", "x: 3\n", false);
        let da = a.artifact.digest().to_string();
        let db = b.artifact.digest().to_string();
        let plan = diff(
            vec![a, b, c],
            vec![
                Observation::tag(None),
                Observation::tag(Some(&db)),
                Observation::tag(None),
            ],
            Overwrite::Refuse,
        );
        let outcomes = vec![
            Outcome::Pushed { digest: da.clone() },
            Outcome::Unchanged,
            Outcome::NotStarted,
        ];
        let applied: Vec<Applied> = plan
            .changes
            .into_iter()
            .zip(outcomes)
            .map(|(change, outcome)| Applied { change, outcome })
            .collect();
        let r = record(&applied);
        assert_eq!(r["a"]["0"]["digest"], da);
        assert_eq!(r["a"]["0"]["registry"], "r.example/a");
        assert_eq!(r["a"]["0"]["runtimeSpec"], "x: 1\n");
        assert_eq!(r["b"]["0"]["digest"], db);
        assert!(r.get("c").is_none());
    }

    #[test]
    fn an_adopted_tag_is_recorded_with_its_published_digest() {
        let a = publication("a", "t", "x: 1\n", false);
        let observed = Observation {
            tag: Some("sha256:published".into()),
            manifest_present: false,
            equivalent: Some(Default::default()),
        };
        let plan = diff(vec![a], vec![observed], Overwrite::Refuse);
        let applied: Vec<Applied> = plan
            .changes
            .into_iter()
            .map(|change| Applied {
                change,
                outcome: Outcome::Unchanged,
            })
            .collect();
        let r = record(&applied);
        assert_eq!(r["a"]["0"]["digest"], "sha256:published");
    }
}
