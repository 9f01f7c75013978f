//! Release records: `apply --release-json FILE` hands the on-chain publishing step exactly
//! the shape devkit's release step produces,
//! `{"<avs>": {"<operator set>": {"digest", "registry", "runtimeSpec"}}}`, for every
//! artifact in scope that the registry now holds (pushed or already there).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::apply::Outcome;
use crate::plan::Plan;

/// The release record of an apply (pure).
pub fn record(plan: &Plan, outcomes: &[Outcome]) -> Value {
    let mut by_avs: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for (change, outcome) in plan.changes.iter().zip(outcomes) {
        if !matches!(outcome, Outcome::Pushed { .. } | Outcome::Unchanged) {
            continue;
        }
        let p = &change.publication;
        by_avs.entry(p.avs.clone()).or_default().insert(
            p.operator_set.to_string(),
            json!({
                "digest": p.artifact.digest(),
                "registry": p.repository.to_string(),
                "runtimeSpec": String::from_utf8_lossy(&p.input.spec),
            }),
        );
    }
    json!(by_avs)
}

#[cfg(test)]
mod tests {
    use super::*;
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
            false,
        );
        let outcomes = vec![
            Outcome::Pushed { digest: da.clone() },
            Outcome::Unchanged,
            Outcome::NotStarted,
        ];
        let r = record(&plan, &outcomes);
        assert_eq!(r["a"]["0"]["digest"], da);
        assert_eq!(r["a"]["0"]["registry"], "r.example/a");
        assert_eq!(r["a"]["0"]["runtimeSpec"], "x: 1\n");
        assert_eq!(r["b"]["0"]["digest"], db);
        assert!(r.get("c").is_none());
    }
}
