//! Saved plans: `plan --out FILE` writes the plan a reviewer approved; `apply FILE` applies
//! exactly that plan, and refuses (pushing nothing) when it has gone stale.
//!
//! A saved plan records a hash of every input (the project file's text, and for every
//! artifact its spec path, repository, tag, digest and mutability, which between them cover
//! the specs' bytes and every resolved setting), the selection and overwrite flag it was
//! made with, and the digest each tag held when it was planned. [`check`] is pure: it
//! compares a saved plan with a fresh one and names every difference.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::plan::{Change, Plan, Summary};
use crate::project::Publication;

/// The version of the JSON documents eigenpub writes (plans, apply results, diagnostics);
/// a saved plan of another version is refused.
pub const FORMAT_VERSION: u32 = 1;

/// The saved form of one artifact of a plan (also the JSON plan's artifact entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedArtifact {
    pub avs: String,
    pub operator_set: u32,
    pub spec: String,
    pub repository: String,
    pub tag: String,
    pub action: String,
    pub digest: String,
    pub observed_digest: Option<String>,
    pub mutable: bool,
    /// For a tag adopted as it is (it holds equivalent content): who published it, e.g.
    /// `published 2025-06-01 by devkit v0.0.9`; its digest is `observed_digest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equivalent: Option<String>,
}

impl PlannedArtifact {
    /// How a change appears in plan documents.
    pub fn of(c: &Change) -> PlannedArtifact {
        let p = &c.publication;
        PlannedArtifact {
            avs: p.avs.clone(),
            operator_set: p.operator_set,
            spec: p.spec.clone(),
            repository: p.repository.to_string(),
            tag: p.tag.clone(),
            action: c.action.name().to_string(),
            digest: p.artifact.digest().to_string(),
            observed_digest: c.observed.clone(),
            mutable: p.mutable,
            equivalent: c.equivalent.as_ref().map(ToString::to_string),
        }
    }
}

/// A plan document: what `plan --format json` prints and `plan --out` saves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanDocument {
    pub format_version: u32,
    /// sha256 of every input; see the module docs.
    pub inputs_hash: String,
    pub allow_overwrite: bool,
    #[serde(default)]
    pub select: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    pub artifacts: Vec<PlannedArtifact>,
    pub summary: Summary,
}

impl PlanDocument {
    pub fn new(
        plan: &Plan,
        inputs_hash: &str,
        allow_overwrite: bool,
        select: &[String],
        exclude: &[String],
    ) -> Self {
        PlanDocument {
            format_version: FORMAT_VERSION,
            inputs_hash: inputs_hash.to_string(),
            allow_overwrite,
            select: select.to_vec(),
            exclude: exclude.to_vec(),
            artifacts: plan.changes.iter().map(PlannedArtifact::of).collect(),
            summary: plan.summary(),
        }
    }
}

/// The hash of every input of a plan.
pub fn inputs_hash(project_text: &str, publications: &[Publication]) -> String {
    let mut h = Sha256::new();
    h.update(b"eigenpub-inputs-v1\0");
    h.update((project_text.len() as u64).to_le_bytes());
    h.update(project_text.as_bytes());
    for p in publications {
        for field in [
            p.spec.as_str(),
            &p.repository.to_string(),
            p.tag.as_str(),
            p.artifact.digest(),
            if p.mutable { "mutable" } else { "immutable" },
        ] {
            h.update((field.len() as u64).to_le_bytes());
            h.update(field.as_bytes());
        }
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// Why a saved plan can no longer be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stale {
    /// An artifact's wanted digest changed (a spec or a setting changed).
    Input {
        reference: String,
        saved: Option<String>,
        now: Option<String>,
    },
    /// The inputs hash differs but no artifact changed (e.g. the project file was edited).
    ProjectFile,
    /// The registry's tag moved since the plan was made.
    Tag {
        reference: String,
        saved: Option<String>,
        now: Option<String>,
    },
}

impl std::fmt::Display for Stale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = |x: &Option<String>| x.clone().unwrap_or_else(|| "absent".into());
        match self {
            Stale::Input {
                reference,
                saved,
                now,
            } => write!(
                f,
                "{reference}: the inputs changed since the plan was made (planned {}, now {})",
                d(saved),
                d(now)
            ),
            Stale::ProjectFile => write!(f, "the project file changed since the plan was made"),
            Stale::Tag {
                reference,
                saved,
                now,
            } => write!(
                f,
                "{reference}: the registry changed since the plan was made (the tag held {} then, {} now)",
                d(saved),
                d(now)
            ),
        }
    }
}

/// Compares a saved plan with the plan made now from the same project; empty when the
/// saved plan still holds.
pub fn check(saved: &PlanDocument, now: &PlanDocument) -> Vec<Stale> {
    let mut stale = Vec::new();
    let key = |a: &PlannedArtifact| format!("{}:{}", a.repository, a.tag);
    let saved_map: BTreeMap<String, &PlannedArtifact> =
        saved.artifacts.iter().map(|a| (key(a), a)).collect();
    let now_map: BTreeMap<String, &PlannedArtifact> =
        now.artifacts.iter().map(|a| (key(a), a)).collect();
    if saved.inputs_hash != now.inputs_hash {
        for reference in saved_map
            .keys()
            .chain(now_map.keys())
            .collect::<std::collections::BTreeSet<_>>()
        {
            let s = saved_map.get(reference).map(|a| a.digest.clone());
            let n = now_map.get(reference).map(|a| a.digest.clone());
            if s != n {
                stale.push(Stale::Input {
                    reference: reference.clone(),
                    saved: s,
                    now: n,
                });
            }
        }
        if stale.is_empty() {
            stale.push(Stale::ProjectFile);
        }
    }
    for (reference, s) in &saved_map {
        // A tag that now holds exactly what was planned is not stale: an earlier apply of
        // this plan got that far (the re-run it suggests after a partial failure).
        if let Some(n) = now_map.get(reference)
            && s.observed_digest != n.observed_digest
            && n.observed_digest.as_deref() != Some(s.digest.as_str())
        {
            stale.push(Stale::Tag {
                reference: reference.clone(),
                saved: s.observed_digest.clone(),
                now: n.observed_digest.clone(),
            });
        }
    }
    stale
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Overwrite;
    use crate::plan::{Observation, diff, tests::publication};

    fn doc(specs: &[&str], observed: &[Option<&str>], project: &str) -> PlanDocument {
        let ps: Vec<_> = specs
            .iter()
            .enumerate()
            .map(|(i, s)| publication(&format!("avs{i}"), "t", s, false))
            .collect();
        let hash = inputs_hash(project, &ps);
        let obs = observed.iter().map(|o| Observation::tag(*o)).collect();
        PlanDocument::new(&diff(ps, obs, Overwrite::Refuse), &hash, false, &[], &[])
    }

    #[test]
    fn an_unchanged_world_is_not_stale() {
        let a = doc(&["x: 1", "x: 2"], &[None, None], "p");
        let b = doc(&["x: 1", "x: 2"], &[None, None], "p");
        assert!(check(&a, &b).is_empty());
    }

    #[test]
    fn a_changed_spec_names_its_tag() {
        let a = doc(&["x: 1", "x: 2"], &[None, None], "p");
        let b = doc(&["x: 1", "x: 3"], &[None, None], "p");
        let stale = check(&a, &b);
        assert_eq!(stale.len(), 1);
        assert!(
            matches!(&stale[0], Stale::Input { reference, .. } if reference == "r.example/avs1:t")
        );
    }

    #[test]
    fn a_project_file_edit_is_stale() {
        let a = doc(&["x: 1"], &[None], "p");
        let b = doc(&["x: 1"], &[None], "p # edited");
        assert_eq!(check(&a, &b), [Stale::ProjectFile]);
    }

    #[test]
    fn a_tag_that_now_holds_the_planned_digest_is_not_stale() {
        let a = doc(&["x: 1", "x: 2"], &[None, None], "p");
        let planned = a.artifacts[0].digest.clone();
        let b = doc(&["x: 1", "x: 2"], &[Some(&planned), None], "p");
        assert!(check(&a, &b).is_empty());
    }

    #[test]
    fn a_moved_tag_names_the_tag() {
        let a = doc(&["x: 1", "x: 2"], &[None, None], "p");
        let b = doc(&["x: 1", "x: 2"], &[Some("sha256:other"), None], "p");
        let stale = check(&a, &b);
        assert_eq!(
            stale,
            [Stale::Tag {
                reference: "r.example/avs0:t".into(),
                saved: None,
                now: Some("sha256:other".into())
            }]
        );
    }
}
