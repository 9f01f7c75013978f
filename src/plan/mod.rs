//! The plan: what the project wants, against what the targets hold, as a list of actions.
//!
//! [`diff`] is pure: wanted artifacts and the digests observed at their tags in, actions
//! out. [`observe`] is the only I/O a plan does: one manifest HEAD per tag, run
//! concurrently. `plan` prints the result and `apply` executes it, so the two can never
//! disagree about what would happen.

pub mod cache;
pub mod equivalence;
pub mod locked;
pub mod mirror;
pub mod previous;
pub mod saved;
pub mod select;

use futures::StreamExt;

use crate::plan::cache::Cache;
use crate::plan::equivalence::Provenance;
use crate::project::Publication;
use crate::reference::Digest;
use crate::registry::at_once::at_once;
use crate::registry::{Target, TargetError, Targets};

/// What to do with one artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The tag does not exist yet.
    Create,
    /// The tag exists with another digest and may be overwritten.
    Update { from: Digest },
    /// The manifest is already in the repository (under another tag, or by digest): only
    /// the tag is written, no blob is uploaded. `from` is what the tag held, if anything.
    Retag { from: Option<Digest> },
    /// The tag already holds exactly this artifact, or an equivalent one (see
    /// [`equivalence`]; then [`Change::equivalent`] says who published it).
    Unchanged,
    /// The tag exists with another digest and is immutable: the plan refuses to overwrite it.
    Refused { from: Digest },
    /// The tag could not be read (its repository answered an error that outlasted the
    /// retries, e.g. a 500 or a 403 on one package): nothing is known about it, so nothing
    /// is pushed to it. The rest of the plan goes ahead; the run exits 1.
    Unreadable { reason: Box<TargetError> },
}

impl Action {
    /// The name of [`Action::Unreadable`] in plan documents.
    pub const UNREADABLE: &'static str = "unreadable";

    pub fn name(&self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update { .. } => "update",
            Action::Retag { .. } => "retag",
            Action::Unchanged => "unchanged",
            Action::Refused { .. } => "refused",
            Action::Unreadable { .. } => Action::UNREADABLE,
        }
    }

    /// True when applying this action writes to the target.
    pub fn pushes(&self) -> bool {
        matches!(
            self,
            Action::Create | Action::Update { .. } | Action::Retag { .. }
        )
    }
}

/// One artifact's entry in a plan.
#[derive(Debug, Clone)]
pub struct Change {
    pub publication: Publication,
    /// The digest the tag pointed at when observed.
    pub observed: Option<Digest>,
    pub action: Action,
    /// Set when the tag holds other bytes with the same content: the tag is adopted as it
    /// is (never re-pushed), and its digest is the one that counts.
    pub equivalent: Option<Provenance>,
}

impl Change {
    /// The digest the tag holds once this change is applied: the published one for an
    /// adopted (equivalent) tag, else the wanted one. Release records and the lock use it.
    pub fn digest(&self) -> &str {
        match (&self.action, &self.observed) {
            (Action::Unchanged, Some(observed)) => observed.as_str(),
            _ => self.publication.artifact.digest(),
        }
    }
}

/// Counts of a plan's actions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub retag: usize,
    pub unchanged: usize,
    pub refused: usize,
    /// Absent when zero, so that plans without unreadable tags read (and hash) as before.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unreadable: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A whole plan, in the project's order.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub changes: Vec<Change>,
}

impl Summary {
    /// The counts of some changes.
    pub fn of<'a>(changes: impl IntoIterator<Item = &'a Change>) -> Summary {
        let mut s = Summary::default();
        for c in changes {
            match c.action {
                Action::Create => s.create += 1,
                Action::Update { .. } => s.update += 1,
                Action::Retag { .. } => s.retag += 1,
                Action::Unchanged => s.unchanged += 1,
                Action::Refused { .. } => s.refused += 1,
                Action::Unreadable { .. } => s.unreadable += 1,
            }
        }
        s
    }
}

impl Plan {
    pub fn summary(&self) -> Summary {
        Summary::of(&self.changes)
    }

    /// True when applying would change anything (or is refused).
    pub fn has_changes(&self) -> bool {
        self.changes.iter().any(|c| c.action != Action::Unchanged)
    }

    pub fn refused(&self) -> impl Iterator<Item = &Change> {
        self.changes
            .iter()
            .filter(|c| matches!(c.action, Action::Refused { .. }))
    }

    /// The changes whose tag could not be read, each with why.
    pub fn unreadable(&self) -> impl Iterator<Item = (&Change, &TargetError)> {
        self.changes.iter().filter_map(|c| match &c.action {
            Action::Unreadable { reason } => Some((c, reason.as_ref())),
            _ => None,
        })
    }
}

/// What a target holds for one wanted artifact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    /// The digest the tag points at, if the tag exists.
    pub tag: Option<Digest>,
    /// True when the wanted manifest is already in the repository (checked only when the
    /// tag does not already hold it).
    pub manifest_present: bool,
    /// Set when the tag holds other bytes that are equivalent to the wanted artifact
    /// (checked only when the tag's digest differs): who published them.
    pub equivalent: Option<Provenance>,
}

impl Observation {
    #[cfg(test)]
    pub fn tag(digest: Option<&str>) -> Observation {
        Observation {
            tag: digest.map(Digest::for_tests),
            ..Observation::default()
        }
    }
}

/// Whether a run may overwrite a published tag that matches no `mutable-tags` glob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// Refuse: published tags are immutable (the default).
    Refuse,
    /// `--allow-overwrite`.
    Allow,
}

impl Overwrite {
    pub fn from_flag(allow: bool) -> Overwrite {
        if allow {
            Overwrite::Allow
        } else {
            Overwrite::Refuse
        }
    }

    pub fn allowed(self) -> bool {
        self == Overwrite::Allow
    }

    /// Whether this publication's tag may be moved to other content.
    fn permits(self, publication: &Publication) -> bool {
        publication.mutable || self.allowed()
    }
}

/// Pure: decides each artifact's action from what was observed at its tag.
pub fn diff(
    publications: Vec<Publication>,
    observed: Vec<Observation>,
    overwrite: Overwrite,
) -> Plan {
    diff_read(
        publications,
        observed.into_iter().map(Ok).collect(),
        overwrite,
    )
}

/// Pure: [`diff`] where some tags could not be read: those are [`Action::Unreadable`].
pub fn diff_read(
    publications: Vec<Publication>,
    observed: Vec<Result<Observation, TargetError>>,
    overwrite: Overwrite,
) -> Plan {
    let changes = publications
        .into_iter()
        .zip(observed)
        .map(|(publication, observation)| {
            let observation = match observation {
                Ok(o) => o,
                Err(reason) => {
                    return Change {
                        publication,
                        observed: None,
                        action: Action::Unreadable {
                            reason: Box::new(reason),
                        },
                        equivalent: None,
                    };
                }
            };
            let wanted = publication.artifact.digest();
            let may_write = overwrite.permits(&publication);
            let action = match &observation.tag {
                Some(d) if d == wanted => Action::Unchanged,
                Some(_) if observation.equivalent.is_some() => Action::Unchanged,
                Some(d) if !may_write => Action::Refused { from: d.clone() },
                from if observation.manifest_present => Action::Retag { from: from.clone() },
                None => Action::Create,
                Some(d) => Action::Update { from: d.clone() },
            };
            let equivalent = match action {
                Action::Unchanged => observation.equivalent,
                _ => None,
            };
            Change {
                publication,
                observed: observation.tag,
                action,
                equivalent,
            }
        })
        .collect();
    Plan { changes }
}

/// Reads what every wanted tag holds: one request per artifact, `concurrency` at once. For
/// a tag holding another digest, two more (its manifest and config, unless `cache` holds
/// them) to judge whether it is [`equivalence`]; and for one that is not and may move to
/// other content, whether that content is already in the repository (one more, only for
/// updates). Returns each artifact's observation, or why its tag could not be read, in
/// order: one repository failing does not stop the others.
pub async fn observe_each(
    targets: &Targets,
    publications: &[Publication],
    overwrite: Overwrite,
    concurrency: usize,
    cache: &Cache,
    observed_one: &(dyn Fn() + Sync),
) -> Vec<Result<Observation, TargetError>> {
    let results: Vec<(usize, Result<Observation, TargetError>)> = at_once(
        publications.iter().enumerate().map(|(i, p)| async move {
            let target = targets.target(&p.repository);
            let wanted = p.artifact.digest();
            let result = async {
                let tag = target.manifest_digest(&p.tag).await?;
                let equivalent = match &tag {
                    Some(d) if d != wanted && p.adopt_equivalent => {
                        equivalent(&target, cache, p, d).await?
                    }
                    _ => None,
                };
                let manifest_present = match &tag {
                    Some(d) if d == wanted => false,
                    Some(_) if equivalent.is_some() => false,
                    // An immutable tag with other content is refused whatever we find.
                    Some(_) if !overwrite.permits(p) => false,
                    // A tag that moves back to content it held before (a revert).
                    Some(_) => target.has_manifest(wanted).await?,
                    // A new tag: the config names the tag (`releaseVersion`), so the
                    // manifest cannot be in the repository under another one; asking
                    // would cost every new artifact a request for nothing.
                    None => false,
                };
                Ok(Observation {
                    tag,
                    manifest_present,
                    equivalent,
                })
            }
            .await;
            observed_one();
            (i, result)
        }),
        concurrency,
    )
    .collect()
    .await;
    let mut observed: Vec<Result<Observation, TargetError>> = (0..publications.len())
        .map(|_| Ok(Observation::default()))
        .collect();
    for (i, r) in results {
        observed[i] = r;
    }
    observed
}

/// The observations if every tag was read, else every failure with the artifact's index.
pub fn all_read(
    observed: Vec<Result<Observation, TargetError>>,
) -> Result<Vec<Observation>, Vec<(usize, TargetError)>> {
    let mut read = Vec::with_capacity(observed.len());
    let mut errors = Vec::new();
    for (i, r) in observed.into_iter().enumerate() {
        match r {
            Ok(o) => read.push(o),
            Err(e) => errors.push((i, e)),
        }
    }
    if errors.is_empty() {
        Ok(read)
    } else {
        Err(errors)
    }
}

/// The problems of a failed observation (see [`unread_problems`]).
pub fn observe_problems(
    errors: &[(usize, TargetError)],
    publications: &[Publication],
) -> Vec<crate::diagnostic::Problem> {
    unread_problems(
        errors.iter().map(|(i, e)| (&publications[*i], e)),
        "not attempted",
    )
}

/// The problems of tags that could not be read: ONE per repository, naming it and its
/// artifacts (repositories that failed alike, e.g. on credentials the registry refuses,
/// share one). An unreachable registry fails every tag alike: it is one problem, with the
/// number of artifacts not attempted. `consequence` says what became of the artifacts
/// ("not planned", "not pushed").
pub fn unread_problems<'a>(
    failed: impl IntoIterator<Item = (&'a Publication, &'a TargetError)>,
    consequence: &str,
) -> Vec<crate::diagnostic::Problem> {
    use std::collections::BTreeMap;
    // Per place (an unreachable registry, or a repository): the first error, and the
    // artifacts, in the project's order.
    let mut places: BTreeMap<(bool, String), (&TargetError, Vec<&Publication>)> = BTreeMap::new();
    let mut order = Vec::new();
    for (p, e) in failed {
        let key = match e.kind {
            Some(crate::registry::remote::ErrorKind::Unreachable) => (true, e.target.clone()),
            _ => (false, p.repository.to_string()),
        };
        places
            .entry(key.clone())
            .or_insert_with(|| {
                order.push(key);
                (e, Vec::new())
            })
            .1
            .push(p);
    }
    // Repositories that failed with the same error are one problem.
    type Places<'p> = Vec<(String, Vec<&'p Publication>)>;
    let mut groups: Vec<(bool, &TargetError, Places<'_>)> = Vec::new();
    for key in order {
        let (e, ps) = places.remove(&key).expect("every key was inserted");
        let (unreachable, place) = key;
        match groups
            .iter_mut()
            .find(|(u, g, _)| *u == unreachable && g.code == e.code && g.message == e.message)
        {
            Some(group) => group.2.push((place, ps)),
            None => groups.push((unreachable, e, vec![(place, ps)])),
        }
    }
    groups
        .into_iter()
        .map(|(unreachable, e, places)| {
            let mut problem = e.to_problem();
            let n: usize = places.iter().map(|(_, ps)| ps.len()).sum();
            let artifacts = format!("{n} artifact{}", if n == 1 { "" } else { "s" });
            let detail = e
                .message
                .strip_prefix(&format!("registry {}: ", e.target))
                .unwrap_or(&e.message);
            problem.message = if unreachable {
                format!(
                    "registry {} is unreachable: {detail}; {artifacts} {consequence}",
                    e.target
                )
            } else {
                let (what, names) = match &places[..] {
                    [(repository, ps)] => (
                        format!("repository {repository}"),
                        ps.iter().map(|p| p.tag.to_string()).collect::<Vec<_>>(),
                    ),
                    _ => (
                        format!(
                            "{} repositories ({})",
                            places.len(),
                            places
                                .iter()
                                .map(|(r, _)| r.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        places
                            .iter()
                            .flat_map(|(_, ps)| ps.iter().map(|p| p.reference()))
                            .collect(),
                    ),
                };
                format!(
                    "{what}: {detail}; {artifacts} {consequence}: {}",
                    listed(&names)
                )
            };
            problem
        })
        .collect()
}

/// Up to ten names, then how many more.
fn listed(names: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut text = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

/// Reads the manifest a tag holds and its config, and judges them against the wanted
/// artifact. `None` when they are not equivalent, or no longer there.
async fn equivalent(
    target: &Target,
    cache: &Cache,
    publication: &Publication,
    digest: &Digest,
) -> Result<Option<Provenance>, TargetError> {
    let Some(manifest) = cache.manifest(target, digest.as_str()).await? else {
        return Ok(None);
    };
    // Not an EigenRuntime artifact (a container image a pull request pointed the tag at):
    // never equivalent, and its config (an image's environment) is not read.
    let Some(config_digest) = equivalence::our_config_digest(&manifest) else {
        return Ok(None);
    };
    let Some(config) = cache.blob(target, &config_digest).await? else {
        return Ok(None);
    };
    Ok(equivalence::compare(&publication.artifact, digest.as_str(), &manifest, &config).ok())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::artifact::{Artifact, ArtifactInput};
    use crate::reference::Repository;

    pub fn publication(avs: &str, tag: &str, spec: &str, mutable: bool) -> Publication {
        let input = ArtifactInput {
            avs: avs.into(),
            tag: tag.into(),
            kind: "Hourglass".into(),
            schema: "s".into(),
            devkit_version: "eigenpub".into(),
            created: "2025-01-01T00:00:00Z".into(),
            source: None,
            layer_title: None,
            spec: bytes::Bytes::copy_from_slice(spec.as_bytes()),
        };
        Publication {
            avs: avs.into(),
            operator_set: 0,
            spec: format!("{avs}.yaml"),
            repository: Repository::Remote {
                registry: "r.example".into(),
                path: avs.into(),
            },
            tag: crate::reference::Tag::parse(tag).expect("a valid test tag"),
            mirror_of: None,
            mutable,
            adopt_equivalent: true,
            created: input.created.clone(),
            artifact: Artifact::build(&input),
            origin: crate::project::Origin {
                declared: crate::project::Declared::Avs {
                    index: 0,
                    key: 0..0,
                },
                span: 0..0,
                label: format!("{avs} operator set 0"),
            },
        }
    }

    #[test]
    fn actions_from_observations() {
        let a = publication("a", "t", "x: 1", false);
        let b = publication("b", "t", "x: 2", false);
        let c = publication("c", "t", "x: 3", false);
        let d = publication("d", "t", "x: 4", true);
        let same = a.artifact.digest().to_string();
        let plan = diff(
            vec![a, b, c, d],
            vec![
                Observation::tag(Some(&same)),
                Observation::tag(None),
                Observation::tag(Some("sha256:old")),
                Observation::tag(Some("sha256:old")),
            ],
            Overwrite::Refuse,
        );
        let actions: Vec<_> = plan.changes.iter().map(|c| c.action.clone()).collect();
        assert_eq!(
            actions,
            [
                Action::Unchanged,
                Action::Create,
                Action::Refused {
                    from: "sha256:old".into()
                },
                Action::Update {
                    from: "sha256:old".into()
                },
            ]
        );
        assert_eq!(
            plan.summary(),
            Summary {
                create: 1,
                update: 1,
                retag: 0,
                unchanged: 1,
                refused: 1,
                unreadable: 0,
            }
        );
        assert!(plan.has_changes());
    }

    fn server_error(host: &str) -> TargetError {
        TargetError {
            target: host.into(),
            code: crate::diagnostic::codes::REGISTRY_SERVER,
            message: format!("registry {host}: could not check a tag: HTTP 500 UNKNOWN: boom"),
            help: "try again later".into(),
            transient: true,
            kind: Some(crate::registry::remote::ErrorKind::Server),
            status: Some(500),
        }
    }

    #[test]
    fn an_unreadable_tag_is_its_own_action_and_the_rest_is_planned() {
        let a = publication("a", "t", "x: 1", false);
        let c = publication("c", "t", "x: 3", false);
        let plan = diff_read(
            vec![a, c],
            vec![Ok(Observation::tag(None)), Err(server_error("r.example"))],
            Overwrite::Refuse,
        );
        assert_eq!(plan.changes[0].action, Action::Create);
        assert_eq!(plan.changes[1].action.name(), "unreadable");
        assert!(!plan.changes[1].action.pushes());
        assert_eq!(plan.summary().unreadable, 1);
        assert_eq!(plan.unreadable().count(), 1);
    }

    #[test]
    fn unreadable_tags_are_one_problem_per_repository() {
        let c0 = publication("c", "opset-0-v1", "x: 1", false);
        let c1 = publication("c", "opset-1-v1", "x: 2", false);
        let d0 = publication("d", "opset-0-v1", "x: 3", false);
        let e = server_error("r.example");
        let mut other = server_error("r.example");
        other.message = "registry r.example: could not check a tag: HTTP 403: Forbidden".into();
        let problems = unread_problems([(&c0, &e), (&c1, &e), (&d0, &other)], "not pushed");
        let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "repository r.example/c: could not check a tag: HTTP 500 UNKNOWN: boom; 2 artifacts not pushed: opset-0-v1, opset-1-v1",
                "repository r.example/d: could not check a tag: HTTP 403: Forbidden; 1 artifact not pushed: opset-0-v1",
            ]
        );
        // Repositories that failed alike (refused credentials) are one problem.
        let problems = unread_problems([(&c0, &e), (&d0, &e)], "not planned");
        assert_eq!(problems.len(), 1);
        assert_eq!(
            problems[0].message,
            "2 repositories (r.example/c, r.example/d): could not check a tag: HTTP 500 UNKNOWN: boom; 2 artifacts not planned: r.example/c:opset-0-v1, r.example/d:opset-0-v1"
        );
    }

    #[test]
    fn allow_overwrite_turns_refusals_into_updates() {
        let a = publication("a", "t", "x: 1", false);
        let plan = diff(
            vec![a],
            vec![Observation::tag(Some("sha256:old"))],
            Overwrite::Allow,
        );
        assert_eq!(
            plan.changes[0].action,
            Action::Update {
                from: "sha256:old".into()
            }
        );
    }

    #[test]
    fn nothing_to_do() {
        let a = publication("a", "t", "x: 1", false);
        let d = a.artifact.digest().to_string();
        let plan = diff(vec![a], vec![Observation::tag(Some(&d))], Overwrite::Refuse);
        assert!(!plan.has_changes());
    }

    #[test]
    fn a_manifest_already_present_is_a_retag() {
        let a = publication("a", "t", "x: 1", false);
        let b = publication("b", "t", "x: 2", true);
        let c = publication("c", "t", "x: 3", false);
        let present = |tag: Option<&str>| Observation {
            tag: tag.map(Digest::for_tests),
            manifest_present: true,
            equivalent: None,
        };
        let plan = diff(
            vec![a, b, c],
            vec![
                present(None),
                present(Some("sha256:old")),
                present(Some("sha256:old")),
            ],
            Overwrite::Refuse,
        );
        let actions: Vec<_> = plan.changes.iter().map(|c| c.action.clone()).collect();
        assert_eq!(
            actions,
            [
                Action::Retag { from: None },
                Action::Retag {
                    from: Some("sha256:old".into())
                },
                // An immutable tag stays refused, whatever the repository holds.
                Action::Refused {
                    from: "sha256:old".into()
                },
            ]
        );
    }
}
