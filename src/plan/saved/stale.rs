//! Comparing a saved plan with the plan made again: every difference that makes it stale
//! (see the parent module for what a saved plan records).

use std::collections::{BTreeMap, BTreeSet};

use super::{PlanDocument, PlannedArtifact};

/// Why a saved plan can no longer be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stale {
    /// The file does not match its `plan_hash` (or has none): it was edited.
    Edited,
    /// An artifact's wanted digest changed (a spec or a setting changed).
    Input {
        reference: String,
        saved: Option<String>,
        now: Option<String>,
    },
    /// The inputs hash differs but no artifact changed: the project file, or the saved
    /// plan's options, changed.
    ProjectFile,
    /// An artifact is in only one of the two plans.
    Artifact { reference: String, in_saved: bool },
    /// The same artifact, another action (e.g. `refused` then, `update` now).
    Action {
        reference: String,
        saved: String,
        now: String,
    },
    /// The same artifact with another field (AVS, operator set, spec, mutability).
    Field {
        reference: String,
        field: &'static str,
        saved: String,
        now: String,
    },
    /// The registry's tag moved since the plan was made.
    Tag {
        reference: String,
        saved: Option<String>,
        now: Option<String>,
    },
}

impl std::fmt::Display for Stale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A saved plan is outside text (a pull-request job's artifact, which anyone can
        // write): its values are shown on one line, as every outside value is.
        let l = |x: &str| crate::sanitize::line(x);
        let d = |x: &Option<String>| x.as_deref().map_or_else(|| "absent".into(), l);
        match self {
            Stale::Edited => write!(
                f,
                "the file was changed after `eigenpub plan --out` wrote it (its plan_hash does not match its contents)"
            ),
            Stale::Input {
                reference,
                saved,
                now,
            } => write!(
                f,
                "{}: the inputs changed since the plan was made (planned {}, now {})",
                l(reference),
                d(saved),
                d(now)
            ),
            Stale::ProjectFile => write!(
                f,
                "the project file, or the saved plan's options (allow_overwrite, select, exclude), changed since the plan was made"
            ),
            Stale::Artifact {
                reference,
                in_saved: true,
            } => write!(
                f,
                "{} is in the saved plan but not in the plan made now",
                l(reference)
            ),
            Stale::Artifact {
                reference,
                in_saved: false,
            } => write!(
                f,
                "{} is not in the saved plan: it was not reviewed",
                l(reference)
            ),
            Stale::Action {
                reference,
                saved,
                now,
            } => write!(
                f,
                "{}: the saved plan says `{}`, now it is `{}`",
                l(reference),
                l(saved),
                l(now)
            ),
            Stale::Field {
                reference,
                field,
                saved,
                now,
            } => write!(
                f,
                "{}: {field} is `{}` in the saved plan, `{}` now",
                l(reference),
                l(saved),
                l(now)
            ),
            Stale::Tag {
                reference,
                saved,
                now,
            } => write!(
                f,
                "{}: the registry changed since the plan was made (the tag held {} then, {} now)",
                l(reference),
                d(saved),
                d(now)
            ),
        }
    }
}

/// Compares a saved plan with the plan made now from the same project and the saved
/// options; empty when the saved plan still holds, else every difference.
pub fn check(saved: &PlanDocument, now: &PlanDocument) -> Vec<Stale> {
    let mut stale = Vec::new();
    if saved.plan_hash.as_deref() != Some(saved.content_hash().as_str()) {
        stale.push(Stale::Edited);
    }
    let key = |a: &PlannedArtifact| format!("{}:{}", a.repository, a.tag);
    let saved_map: BTreeMap<String, &PlannedArtifact> =
        saved.artifacts.iter().map(|a| (key(a), a)).collect();
    let now_map: BTreeMap<String, &PlannedArtifact> =
        now.artifacts.iter().map(|a| (key(a), a)).collect();
    let references: BTreeSet<&String> = saved_map.keys().chain(now_map.keys()).collect();
    let mut inputs_changed = false;
    for reference in &references {
        let (s, n) = (saved_map.get(*reference), now_map.get(*reference));
        let (Some(s), Some(n)) = (s, n) else {
            stale.push(Stale::Artifact {
                reference: reference.to_string(),
                in_saved: s.is_some(),
            });
            continue;
        };
        if s.digest != n.digest {
            inputs_changed = true;
            stale.push(Stale::Input {
                reference: reference.to_string(),
                saved: Some(s.digest.clone()),
                now: Some(n.digest.clone()),
            });
            continue;
        }
        // A tag that could not be read, when the plan was made or now, is not compared:
        // it is not pushed (`apply` keeps a saved `unreadable` so), the rest goes ahead.
        let unread = [&s.action, &n.action]
            .iter()
            .any(|a| a.as_str() == crate::plan::Action::UNREADABLE);
        let fields = [
            ("the AVS", s.avs.clone(), n.avs.clone()),
            (
                "the operator set",
                s.operator_set.to_string(),
                n.operator_set.to_string(),
            ),
            ("the spec", s.spec.clone(), n.spec.clone()),
            ("mutable", s.mutable.to_string(), n.mutable.to_string()),
            (
                "equivalent",
                s.equivalent.clone().unwrap_or_default(),
                n.equivalent.clone().unwrap_or_default(),
            ),
        ];
        for (field, saved_value, now_value) in fields {
            if saved_value != now_value && !(unread && field == "equivalent") {
                stale.push(Stale::Field {
                    reference: reference.to_string(),
                    field,
                    saved: saved_value,
                    now: now_value,
                });
            }
        }
        // A tag that now holds exactly what was planned is not stale: an earlier apply of
        // this plan got that far (the re-run it suggests after a partial failure).
        let done = n.observed_digest.as_deref() == Some(s.digest.as_str());
        if unread {
            continue;
        }
        if s.observed_digest != n.observed_digest && !done {
            stale.push(Stale::Tag {
                reference: reference.to_string(),
                saved: s.observed_digest.clone(),
                now: n.observed_digest.clone(),
            });
        } else if s.action != n.action
            && !(done && n.action == "unchanged")
            && !same_outcome(&s.action, &n.action)
        {
            stale.push(Stale::Action {
                reference: reference.to_string(),
                saved: s.action.clone(),
                now: n.action.clone(),
            });
        }
    }
    if saved.inputs_hash != now.inputs_hash && !inputs_changed {
        stale.push(Stale::ProjectFile);
    }
    stale
}

/// The tags a saved plan moves to other content (`update` or `retag` there) that the plan
/// made now refuses (`refused`): the saved plan was made with `--allow-overwrite`, this run
/// was not given it. A saved plan's `allow_overwrite` grants nothing: the permission to move
/// an immutable tag comes only from the command line of the run that pushes.
pub fn overwrites_not_allowed(saved: &PlanDocument, now: &PlanDocument) -> Vec<String> {
    let key = |a: &PlannedArtifact| format!("{}:{}", a.repository, a.tag);
    let saved_actions: BTreeMap<String, &str> = saved
        .artifacts
        .iter()
        .map(|a| (key(a), a.action.as_str()))
        .collect();
    now.artifacts
        .iter()
        .filter(|n| n.action == "refused")
        .map(key)
        .filter(|reference| {
            matches!(
                saved_actions.get(reference),
                Some(&"update") | Some(&"retag")
            )
        })
        .collect()
}

/// `update` and `retag` both point the tag at the planned manifest; which one it is depends
/// on whether the registry already holds that manifest, which may change in between.
fn same_outcome(a: &str, b: &str) -> bool {
    matches!((a, b), ("update", "retag") | ("retag", "update"))
}
