//! Saved plans: `plan --out FILE` writes the plan a reviewer approved; `apply FILE` applies
//! exactly that plan, and refuses (pushing nothing) when it has gone stale.
//!
//! A saved plan records a hash of every input (the project file's text, for every artifact
//! its spec path, repository, tag, digest and mutability, which between them cover the
//! specs' bytes and every resolved setting, and the selection and overwrite flag it was
//! made with), every artifact with its action and digest, the digest each tag held when it
//! was planned, and a hash of the whole document (`plan_hash`), so that an edit to the file
//! is seen. `apply PLAN` makes the plan again with the saved selection and [`check`] (pure)
//! compares the two: every artifact, action, digest and option must be the same, or nothing
//! is pushed. The one allowed difference: a tag that already holds what the plan wanted
//! (an earlier apply of this plan got that far).
//!
//! Both hashes are unkeyed: whoever can write the file can recompute them. So the file
//! only ever narrows what `apply` does, never widens it: its selection is applied on top of
//! the project (and apply's own `--select`/`--exclude` narrow it further), and its
//! `allow_overwrite` grants nothing. The plan is made again with the overwrite permission of
//! apply's own command line, and a saved plan that moves an immutable tag that this run
//! may not move is refused ([`overwrites_not_allowed`]), naming the flag to add.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::plan::{Change, Plan, Summary};
use crate::project::Publication;

mod stale;
pub use stale::{Stale, check, overwrites_not_allowed};

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
    /// For a tag that could not be read (action `unreadable`): why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ArtifactError>,
    /// On a mirror's copy: the primary repository whose digest it must hold (`digest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_of: Option<String>,
}

/// Why an artifact could not be read or pushed, as JSON documents carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactError {
    pub code: String,
    pub message: String,
    pub help: String,
    /// Whether running again may succeed.
    pub transient: bool,
    /// The registry's HTTP status, when it answered.
    pub status: Option<u16>,
}

impl ArtifactError {
    pub fn of(e: &crate::registry::TargetError) -> ArtifactError {
        ArtifactError {
            code: e.code.to_string(),
            message: crate::sanitize::text(&e.message),
            help: crate::sanitize::text(&e.help),
            transient: e.transient,
            status: e.status,
        }
    }
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
            tag: p.tag.to_string(),
            action: c.action.name().to_string(),
            digest: p.artifact.digest().to_string(),
            observed_digest: c.observed.as_ref().map(ToString::to_string),
            mutable: p.mutable,
            equivalent: c.equivalent.as_ref().map(ToString::to_string),
            error: match &c.action {
                crate::plan::Action::Unreadable { reason } => Some(ArtifactError::of(reason)),
                _ => None,
            },
            mirror_of: p.mirror_of.as_ref().map(ToString::to_string),
        }
    }
}

/// A plan document: what `plan --format json` prints and `plan --out` saves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanDocument {
    pub format_version: u32,
    /// sha256 of every input, options included; see the module docs.
    pub inputs_hash: String,
    /// sha256 of this document without this field: an edited file no longer matches it.
    #[serde(default)]
    pub plan_hash: Option<String>,
    /// Whether the plan was made with `--allow-overwrite`: a record, not a permission
    /// (`apply` takes that only from its own command line).
    pub allow_overwrite: bool,
    #[serde(default)]
    pub select: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    pub artifacts: Vec<PlannedArtifact>,
    pub summary: Summary,
    /// With mirrors only: the summary of each target (a registry host, or `oci:<folder>`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub targets: BTreeMap<String, Summary>,
}

impl PlanDocument {
    pub fn new(
        plan: &Plan,
        inputs_hash: &str,
        allow_overwrite: bool,
        select: &[String],
        exclude: &[String],
    ) -> Self {
        let mut document = PlanDocument {
            format_version: FORMAT_VERSION,
            inputs_hash: with_options(inputs_hash, allow_overwrite, select, exclude),
            plan_hash: None,
            allow_overwrite,
            select: select.to_vec(),
            exclude: exclude.to_vec(),
            artifacts: plan.changes.iter().map(PlannedArtifact::of).collect(),
            summary: plan.summary(),
            targets: crate::plan::mirror::per_target(plan),
        };
        document.plan_hash = Some(document.content_hash());
        document
    }

    /// The hash of the document's contents (everything but `plan_hash`), in a canonical
    /// encoding: the same contents give the same hash however the file is formatted.
    /// Streamed into the hash (no copy of the document: plans of thousands of artifacts).
    pub fn content_hash(&self) -> String {
        /// Everything but `plan_hash`, borrowed.
        #[derive(Serialize)]
        struct Contents<'a> {
            format_version: u32,
            inputs_hash: &'a str,
            allow_overwrite: bool,
            select: &'a [String],
            exclude: &'a [String],
            artifacts: &'a [PlannedArtifact],
            summary: &'a Summary,
            #[serde(skip_serializing_if = "BTreeMap::is_empty")]
            targets: &'a BTreeMap<String, Summary>,
        }
        /// Feeds what serde_json writes into the hash.
        struct Hashing(Sha256);
        impl std::io::Write for Hashing {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.update(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        // Exhaustive: a field added to the document must be added to the hash, or not
        // compile.
        let PlanDocument {
            format_version,
            inputs_hash,
            plan_hash: _,
            allow_overwrite,
            select,
            exclude,
            artifacts,
            summary,
            targets,
        } = self;
        let mut h = Hashing(Sha256::new());
        h.0.update(b"eigenpub-plan-v2\0");
        serde_json::to_writer(
            &mut h,
            &Contents {
                format_version: *format_version,
                inputs_hash,
                allow_overwrite: *allow_overwrite,
                select,
                exclude,
                artifacts,
                summary,
                targets,
            },
        )
        .expect("plan documents serialize");
        format!("sha256:{}", hex::encode(h.0.finalize()))
    }
}

/// Mixes the options a plan was made with into its inputs hash, so that a saved plan whose
/// options were edited no longer matches the plan made again with them.
fn with_options(
    inputs_hash: &str,
    allow_overwrite: bool,
    select: &[String],
    exclude: &[String],
) -> String {
    let mut h = Sha256::new();
    h.update(b"eigenpub-options-v1\0");
    let overwrite = if allow_overwrite { "allow" } else { "refuse" };
    for field in [inputs_hash, overwrite] {
        h.update((field.len() as u64).to_le_bytes());
        h.update(field.as_bytes());
    }
    for list in [select, exclude] {
        h.update((list.len() as u64).to_le_bytes());
        for item in list {
            h.update((item.len() as u64).to_le_bytes());
            h.update(item.as_bytes());
        }
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// The hash of every input of a plan.
pub fn inputs_hash<'a>(
    project_text: &str,
    publications: impl IntoIterator<Item = &'a Publication>,
) -> String {
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

    /// `doc` edited by `edit`, with its plan_hash made to match again (a careful editor).
    fn edited(doc: &PlanDocument, edit: impl FnOnce(&mut PlanDocument)) -> PlanDocument {
        let mut d = doc.clone();
        edit(&mut d);
        d.plan_hash = Some(d.content_hash());
        d
    }

    #[test]
    fn an_edit_to_the_file_is_seen() {
        let a = doc(&["x: 1"], &[None], "p");
        let mut b = a.clone();
        b.summary.create = 7;
        assert_eq!(check(&b, &a), [Stale::Edited]);
        let mut c = a.clone();
        c.plan_hash = None;
        assert_eq!(check(&c, &a), [Stale::Edited]);
    }

    #[test]
    fn every_artifact_action_digest_and_option_must_match() {
        let refusing = {
            let p = publication("avs0", "t", "x: 1", false);
            let hash = inputs_hash("p", std::slice::from_ref(&p));
            let plan = diff(
                vec![p],
                vec![Observation::tag(Some("sha256:old"))],
                Overwrite::Refuse,
            );
            PlanDocument::new(&plan, &hash, false, &[], &[])
        };
        assert_eq!(refusing.artifacts[0].action, "refused");
        // The plan made again with an edited allow_overwrite: its hash and action differ.
        let overwriting = {
            let p = publication("avs0", "t", "x: 1", false);
            let hash = inputs_hash("p", std::slice::from_ref(&p));
            let plan = diff(
                vec![p],
                vec![Observation::tag(Some("sha256:old"))],
                Overwrite::Allow,
            );
            PlanDocument::new(&plan, &hash, true, &[], &[])
        };
        let flipped = edited(&refusing, |d| d.allow_overwrite = true);
        let stale = check(&flipped, &overwriting);
        assert!(stale.contains(&Stale::ProjectFile), "{stale:?}");
        assert!(
            stale.iter().any(|s| matches!(s, Stale::Action { saved, now, .. } if saved == "refused" && now == "update")),
            "{stale:?}"
        );

        let a = doc(&["x: 1", "x: 2"], &[None, None], "p");
        // An artifact removed from the file is still in the plan made now: not reviewed.
        let removed = edited(&a, |d| {
            d.artifacts.pop();
        });
        assert_eq!(
            check(&removed, &a),
            [Stale::Artifact {
                reference: "r.example/avs1:t".into(),
                in_saved: false
            }]
        );
        // An artifact's digest, action, spec or mutability edited in the file.
        let digest = edited(&a, |d| d.artifacts[0].digest = "sha256:0000".into());
        assert!(matches!(&check(&digest, &a)[..], [Stale::Input { .. }]));
        let action = edited(&a, |d| d.artifacts[0].action = "unchanged".into());
        assert!(matches!(&check(&action, &a)[..], [Stale::Action { .. }]));
        let mutable = edited(&a, |d| d.artifacts[0].mutable = true);
        assert!(matches!(
            &check(&mutable, &a)[..],
            [Stale::Field {
                field: "mutable",
                ..
            }]
        ));
        let spec = edited(&a, |d| d.artifacts[0].spec = "other.yaml".into());
        assert!(matches!(
            &check(&spec, &a)[..],
            [Stale::Field {
                field: "the spec",
                ..
            }]
        ));
        // A selection edited in the file: the plan made again with it differs in its
        // options hash even where it holds the same artifacts.
        let selected = edited(&a, |d| d.select = vec!["avs0".into()]);
        let now = {
            let ps = vec![publication("avs0", "t", "x: 1", false)];
            let hash = inputs_hash("p", &ps);
            let plan = diff(ps, vec![Observation::tag(None)], Overwrite::Refuse);
            PlanDocument::new(&plan, &hash, false, &["avs0".into()], &[])
        };
        let stale = check(&selected, &now);
        assert!(stale.contains(&Stale::ProjectFile), "{stale:?}");
    }

    #[test]
    fn a_saved_overwrite_is_not_granted_by_the_file() {
        let plan_with = |overwrite: Overwrite| {
            let p = publication("avs0", "t", "x: 1", false);
            let hash = inputs_hash("p", std::slice::from_ref(&p));
            let plan = diff(
                vec![p],
                vec![Observation::tag(Some("sha256:old"))],
                overwrite,
            );
            PlanDocument::new(&plan, &hash, overwrite.allowed(), &[], &[])
        };
        let (saved, refusing, allowing) = (
            plan_with(Overwrite::Allow),
            plan_with(Overwrite::Refuse),
            plan_with(Overwrite::Allow),
        );
        assert_eq!(saved.artifacts[0].action, "update");
        assert_eq!(
            overwrites_not_allowed(&saved, &refusing),
            ["r.example/avs0:t"]
        );
        assert!(overwrites_not_allowed(&saved, &allowing).is_empty());
        // A plan that refused stays a problem of its own (stale), not a missing flag.
        assert!(overwrites_not_allowed(&refusing, &refusing).is_empty());
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
