//! Mirrors: every artifact on every target, with the same digest everywhere.
//!
//! A project's `mirrors` give each artifact one copy per mirror (a [`Publication`] whose
//! [`Publication::mirror_of`] names the primary repository). The plan reads every copy's
//! tag like any other (one request per artifact per registry) and gives it its own
//! action; this module holds what is particular to mirrors:
//!
//! - a mirror goes with its primary: it is in scope when its primary is ([`in_scope`]),
//!   and sits right after it in the plan ([`interleave`]), so an apply works on every
//!   registry at once;
//! - a mirror holds exactly the digest the primary holds ([`align`]): when the primary's
//!   tag was adopted as published (equivalent content under another digest, e.g. devkit's),
//!   the mirror must hold that digest too. A mirror tag that already does is unchanged; one
//!   that does not gets the primary's published bytes ([`adopted_artifact`], every byte
//!   checked against its digest), never eigenpub's own;
//! - a mirror whose primary could not be read cannot know which digest it must hold, so it
//!   is not planned either ([`primary_unreadable`]).

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::artifact::{Artifact, Blob, CONFIG_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, sha256_digest};
use crate::diagnostic::codes;
use crate::plan::cache::Cache;
use crate::plan::select::Selection;
use crate::plan::{Change, Observation, Plan, Summary};
use crate::project::Publication;
use crate::reference::Digest;
use crate::registry::{TargetError, Targets};

/// How a target is named in summaries: a registry host, or `oci:<folder>` for layouts.
pub fn target_name(repository: &crate::reference::Repository) -> String {
    match repository {
        crate::reference::Repository::Remote { registry, .. } => registry.clone(),
        crate::reference::Repository::Layout { display_root, .. } => format!("oci:{display_root}"),
    }
}

/// The summary of each target of a plan with mirrors (empty without mirrors, so that such
/// plans read as before).
pub fn per_target(plan: &Plan) -> BTreeMap<String, Summary> {
    if !plan.changes.iter().any(|c| c.publication.is_mirror()) {
        return BTreeMap::new();
    }
    let mut targets: BTreeMap<String, Vec<&Change>> = BTreeMap::new();
    for c in &plan.changes {
        targets
            .entry(target_name(&c.publication.repository))
            .or_default()
            .push(c);
    }
    targets
        .into_iter()
        .map(|(name, changes)| (name, Summary::of(changes)))
        .collect()
}

/// How many targets a plan with mirrors pushes to (1 without mirrors).
pub fn targets(plan: &Plan) -> usize {
    if !plan.changes.iter().any(|c| c.publication.is_mirror()) {
        return 1;
    }
    plan.changes
        .iter()
        .filter(|c| c.action.pushes())
        .map(|c| target_name(&c.publication.repository))
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        .max(1)
}

/// The mirrors whose primary is among `primaries` (the selected ones) and that the
/// selection does not exclude on their own names.
pub fn in_scope(
    selection: &Selection,
    primaries: &[Publication],
    mirrors: Vec<Publication>,
) -> Vec<Publication> {
    let selected: std::collections::HashSet<String> =
        primaries.iter().map(Publication::reference).collect();
    mirrors
        .into_iter()
        .filter(|m| selected.contains(&m.primary_reference()) && !selection.excludes(m))
        .collect()
}

/// Each primary followed by its mirrors (both lists in the project's order).
pub fn interleave(primaries: Vec<Publication>, mirrors: Vec<Publication>) -> Vec<Publication> {
    if mirrors.is_empty() {
        return primaries;
    }
    let mut by_primary: std::collections::HashMap<String, Vec<Publication>> =
        std::collections::HashMap::new();
    for m in mirrors {
        by_primary.entry(m.primary_reference()).or_default().push(m);
    }
    let mut out = Vec::with_capacity(primaries.len() * 2);
    for p in primaries {
        let copies = by_primary.remove(&p.reference()).unwrap_or_default();
        out.push(p);
        out.extend(copies);
    }
    out
}

/// For each publication, the index of its primary (mirrors only).
pub fn primaries(publications: &[Publication]) -> Vec<Option<usize>> {
    let index: std::collections::HashMap<String, usize> = publications
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.is_mirror())
        .map(|(i, p)| (p.reference(), i))
        .collect();
    publications
        .iter()
        .map(|p| {
            p.is_mirror()
                .then(|| index.get(&p.primary_reference()).copied())
                .flatten()
        })
        .collect()
}

/// A mirror that must get the primary's published bytes: the mirror's index, its
/// primary's, and the digest the primary holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub mirror: usize,
    pub primary: usize,
    pub digest: Digest,
}

/// Pure: makes each mirror's observation say what the primary's digest asks of it. Where
/// the primary's tag was adopted as published (equivalent content, digest D), a mirror
/// tag holding D is unchanged (with the primary's provenance); any other mirror needs D's
/// bytes, returned as a [`Copy`] to fetch. Mirrors of a primary that holds (or will hold)
/// eigenpub's own artifact need nothing: their publication is that artifact already.
pub fn align(
    publications: &[Publication],
    observed: &mut [Result<Observation, TargetError>],
) -> Vec<Copy> {
    let mut copies = Vec::new();
    for (i, primary) in primaries(publications).into_iter().enumerate() {
        let Some(j) = primary else { continue };
        let adopted = match &observed[j] {
            Ok(Observation {
                tag: Some(digest),
                equivalent: Some(provenance),
                ..
            }) => Some((digest.clone(), provenance.clone())),
            Ok(_) => None,
            Err(_) => {
                observed[i] = Err(primary_unreadable(&publications[i]));
                continue;
            }
        };
        let Some((digest, provenance)) = adopted else {
            continue;
        };
        if let Ok(mirror) = &mut observed[i] {
            // Whatever the mirror holds, the question "is eigenpub's own manifest there"
            // no longer matters: the primary's is the one it must hold.
            mirror.manifest_present = false;
            if mirror.tag.as_ref() == Some(&digest) {
                mirror.equivalent = Some(provenance);
            } else {
                copies.push(Copy {
                    mirror: i,
                    primary: j,
                    digest,
                });
            }
        }
    }
    copies
}

/// Why a mirror of an unreadable primary is not planned.
pub fn primary_unreadable(mirror: &Publication) -> TargetError {
    TargetError {
        target: mirror.repository.to_string(),
        code: codes::MIRROR_PRIMARY_UNREADABLE,
        message: format!(
            "{}: its primary {} could not be read, so the digest this mirror must hold is unknown",
            mirror.reference(),
            mirror.primary_reference()
        ),
        help: "fix what stops the primary from being read (its own problem says what), then run again: mirrors are filled from what the primary holds".into(),
        transient: true,
        kind: None,
        status: None,
    }
}

/// Aligns every mirror with its primary ([`align`]) and fetches the primary's bytes for
/// the mirrors that must get them (`concurrency` at once): each such mirror's artifact
/// becomes that copy; a copy that cannot be made leaves the mirror unreadable.
pub async fn copy_adopted(
    targets: &Targets,
    cache: &Cache,
    publications: &mut [Publication],
    observed: &mut [Result<Observation, TargetError>],
    concurrency: usize,
) {
    use futures::StreamExt;
    let copies = align(publications, observed);
    if copies.is_empty() {
        return;
    }
    let fetched: Vec<(usize, Result<Artifact, TargetError>)> = {
        let publications = &*publications;
        crate::registry::at_once::at_once(
            copies.iter().map(|copy| async move {
                (copy.mirror, fetch(targets, cache, publications, copy).await)
            }),
            concurrency,
        )
        .collect()
        .await
    };
    for (i, result) in fetched {
        match result {
            Ok(artifact) => publications[i].artifact = artifact,
            Err(e) => observed[i] = Err(e),
        }
    }
}

/// Reads the primary's published manifest `copy.digest` and its config from the
/// primary's repository, and makes the artifact the mirror gets from them.
pub async fn fetch(
    targets: &Targets,
    cache: &Cache,
    publications: &[Publication],
    copy: &Copy,
) -> Result<Artifact, TargetError> {
    let primary = &publications[copy.primary];
    let mirror = &publications[copy.mirror];
    let target = targets.target(&primary.repository);
    let failure = |what: String, help: String, transient: bool| TargetError {
        target: primary.repository.to_string(),
        code: codes::MIRROR_COPY,
        message: format!(
            "{}: cannot copy {} from {} ({}): {what}",
            mirror.reference(),
            copy.digest,
            primary.reference(),
            "the digest the primary holds"
        ),
        help,
        transient,
        kind: None,
        status: None,
    };
    // Gone since the primary's tag was read: another plan may find it again.
    let gone = |what: String| {
        failure(
            what,
            "the primary's tag changed or was deleted while planning: run plan again".into(),
            true,
        )
    };
    // What the primary holds is not an artifact eigenpub can copy as it is: that does not
    // change by trying again.
    let mismatch = |what: String| {
        failure(
            what,
            format!(
                "the primary's tag holds content judged equivalent that cannot be copied byte for byte (running plan again does not change that); `eigenpub inspect {}` shows what it holds. If its bytes do not hash to their digests, something other than the registry answers: check what serves {}. Otherwise set `adopt-equivalent = false` in [defaults] to publish eigenpub's own artifact to the primary and its mirrors (with a new `version` if the tag is immutable)",
                primary.reference(),
                primary.repository.registry().unwrap_or("the layout"),
            ),
            false,
        )
    };
    // The primary's equivalence check read both through the cache a moment ago.
    let Some(manifest) = cache.manifest(&target, copy.digest.as_str()).await? else {
        return Err(gone("the manifest is no longer there".into()));
    };
    let config_digest = config_digest(&manifest).map_err(&mismatch)?;
    let Some(config) = cache.blob(&target, &config_digest).await? else {
        return Err(gone(format!("its config {config_digest} is not there")));
    };
    adopted_artifact(&primary.artifact, copy.digest.as_str(), manifest, config).map_err(mismatch)
}

/// The `sha256:` digest a manifest names for its config.
fn config_digest(manifest: &[u8]) -> Result<String, String> {
    serde_json::from_slice::<serde_json::Value>(manifest)
        .ok()
        .and_then(|m| m.pointer("/config/digest")?.as_str().map(str::to_string))
        .filter(|d| crate::reference::is_sha256(d))
        .ok_or_else(|| "the manifest names no sha256 config".to_string())
}

/// Pure: the artifact a mirror gets for a primary tag adopted as published: the primary's
/// manifest and config bytes, and the spec layer (whose bytes are eigenpub's own: adoption
/// requires the same spec). Every byte is checked against its digest, and the manifest
/// must name exactly that config and that one layer, so that what is pushed is exactly
/// what the primary holds.
pub fn adopted_artifact(
    own: &Artifact,
    digest: &str,
    manifest: Bytes,
    config: Bytes,
) -> Result<Artifact, String> {
    if sha256_digest(&manifest) != digest {
        return Err(format!("the manifest read does not hash to {digest}"));
    }
    let parsed: serde_json::Value =
        serde_json::from_slice(&manifest).map_err(|e| format!("the manifest is not JSON: {e}"))?;
    if parsed["mediaType"].as_str() != Some(MANIFEST_MEDIA_TYPE) {
        return Err("the manifest is not an OCI image manifest".into());
    }
    let config_digest = config_digest(&manifest)?;
    if sha256_digest(&config) != config_digest {
        return Err(format!("the config read does not hash to {config_digest}"));
    }
    if parsed["config"]["size"].as_u64() != Some(config.len() as u64) {
        return Err(format!(
            "the manifest gives its config {config_digest} a `size` other than its {} bytes",
            config.len()
        ));
    }
    let layers = parsed["layers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    match layers {
        [layer]
            if layer["digest"].as_str() == Some(own.layer.digest.as_str())
                && layer["size"].as_u64() == Some(own.layer.size() as u64) => {}
        _ => {
            return Err(format!(
                "the manifest's layers are not exactly the spec layer {}",
                own.layer.digest
            ));
        }
    }
    let config = Blob::new(CONFIG_MEDIA_TYPE, config);
    let manifest = Blob::new(MANIFEST_MEDIA_TYPE, manifest);
    Ok(Artifact {
        config,
        layer: own.layer.clone(),
        manifest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::equivalence::Provenance;
    use crate::plan::tests::publication;
    use crate::reference::Repository;

    fn mirror_of(primary: &Publication, registry: &str) -> Publication {
        Publication {
            repository: Repository::Remote {
                registry: registry.into(),
                path: primary.avs.clone(),
            },
            mirror_of: Some(primary.repository.clone()),
            adopt_equivalent: false,
            ..primary.clone()
        }
    }

    /// A devkit-style artifact: the same spec layer, another config (another time).
    fn devkit(own: &Artifact) -> (String, Bytes, Bytes) {
        let config = Bytes::from_static(b"{\"createdAt\": \"2025-06-01\"}");
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": sha256_digest(&config), "size": config.len()},
            "layers": [{"mediaType": "text/yaml", "digest": own.layer.digest, "size": own.layer.size()}],
        });
        let manifest = Bytes::from(serde_json::to_vec(&manifest).unwrap());
        (sha256_digest(&manifest), manifest, config)
    }

    #[test]
    fn mirrors_follow_their_primary() {
        let a = publication("a", "t", "x: 1", false);
        let b = publication("b", "t", "x: 2", false);
        let (ma, mb) = (mirror_of(&a, "m.example"), mirror_of(&b, "m.example"));
        let rows = interleave(vec![a.clone(), b.clone()], vec![ma.clone(), mb.clone()]);
        let refs: Vec<_> = rows.iter().map(Publication::reference).collect();
        assert_eq!(
            refs,
            [
                "r.example/a:t",
                "m.example/a:t",
                "r.example/b:t",
                "m.example/b:t"
            ]
        );
        assert_eq!(primaries(&rows), [None, Some(0), None, Some(2)]);

        // Out of scope with their primary; excluded on their own name.
        let only_a = Selection::new(&["a".into()], &[]).unwrap();
        assert_eq!(
            in_scope(
                &only_a,
                std::slice::from_ref(&a),
                vec![ma.clone(), mb.clone()]
            )
            .len(),
            1
        );
        let no_mirror = Selection::new(&[], &["m.example/*".into()]).unwrap();
        assert!(in_scope(&no_mirror, &[a, b], vec![ma, mb]).is_empty());
    }

    #[test]
    fn a_mirror_holds_the_digest_the_primary_adopted() {
        let a = publication("a", "t", "x: 1", false);
        let (theirs, manifest, config) = devkit(&a.artifact);
        let rows = vec![
            a.clone(),
            mirror_of(&a, "m1"),
            mirror_of(&a, "m2"),
            mirror_of(&a, "m3"),
        ];
        let provenance = Provenance::for_tests("published 2025-06-01 by devkit v0.0.9");
        let adopted = Observation {
            tag: Some(Digest::for_tests(&theirs)),
            manifest_present: false,
            equivalent: Some(provenance.clone()),
        };
        let mut observed = vec![
            Ok(adopted),
            // Holds the primary's digest already.
            Ok(Observation::tag(Some(&theirs))),
            // Absent.
            Ok(Observation::tag(None)),
            // Holds eigenpub's own: not what the primary holds.
            Ok(Observation {
                manifest_present: true,
                ..Observation::tag(Some(a.artifact.digest()))
            }),
        ];
        let copies = align(&rows, &mut observed);
        assert_eq!(
            copies
                .iter()
                .map(|c| (c.mirror, c.primary))
                .collect::<Vec<_>>(),
            [(2, 0), (3, 0)]
        );
        let o = |i: usize| observed[i].as_ref().unwrap().clone();
        assert_eq!(o(1).equivalent, Some(provenance));
        assert!(!o(3).manifest_present);

        let copied = adopted_artifact(&a.artifact, &theirs, manifest.clone(), config.clone())
            .expect("a faithful copy");
        assert_eq!(copied.digest(), theirs);
        assert_eq!(copied.manifest.bytes, manifest);
        assert_eq!(copied.config.bytes, config);

        // Every byte is checked.
        assert!(
            adopted_artifact(
                &a.artifact,
                a.artifact.digest(),
                manifest.clone(),
                config.clone()
            )
            .is_err()
        );
        assert!(
            adopted_artifact(&a.artifact, &theirs, manifest, Bytes::from_static(b"{}")).is_err()
        );
        let other = publication("b", "t", "x: 2", false);
        let (theirs, manifest, config) = devkit(&other.artifact);
        assert!(adopted_artifact(&a.artifact, &theirs, manifest, config).is_err());
    }

    #[test]
    fn a_mirror_of_an_unreadable_primary_is_not_planned() {
        let a = publication("a", "t", "x: 1", false);
        let rows = vec![a.clone(), mirror_of(&a, "m1")];
        let mut observed = vec![Err(primary_unreadable(&a)), Ok(Observation::tag(None))];
        assert!(align(&rows, &mut observed).is_empty());
        let e = observed[1].as_ref().expect_err("not planned");
        assert_eq!(e.code, codes::MIRROR_PRIMARY_UNREADABLE);
        assert!(
            e.message.contains("its primary r.example/a:t"),
            "{}",
            e.message
        );
    }
}
