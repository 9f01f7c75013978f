//! Carrying out a plan: push exactly the artifacts that changed, concurrently, each blob
//! at most once per repository, an artifact's config and layer at once, blobs before the
//! manifest that names them.
//!
//! A manifest is pushed only after every blob it names is confirmed present, so an
//! interrupted run never leaves a tag pointing at missing content, and a re-run pushes only
//! what is still missing. The manifest is pushed as the exact bytes eigenpub computed and
//! the digest the target reports is checked against the computed one. Independent artifacts
//! go on when one fails, unless the run is stopped (fail-fast or Ctrl-C): then nothing new
//! is started, and what was not started is reported as such. An artifact whose tag the plan
//! could not read ([`Action::Unreadable`]) is never pushed: it fails with the read's error,
//! and everything else goes ahead. [`problems`] reports the failures one per repository.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

use futures::StreamExt;
use tokio::sync::OnceCell;

use crate::artifact::Blob;
use crate::diagnostic::codes;
use crate::plan::{Action, Change, Plan};
use crate::registry::at_once::at_once;
use crate::registry::{Target, TargetError, Targets};

/// What happened to one artifact.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Pushed; the digest the target reported (equal to the planned one).
    Pushed { digest: String },
    /// Nothing to do: the tag already held this artifact.
    Unchanged,
    /// Failed; the target's error.
    Failed(TargetError),
    /// Started, then cancelled when the run was interrupted (Ctrl-C) and its grace period
    /// ended: its tag may or may not have been written (if it was, it is complete).
    Interrupted,
    /// Not attempted because the run was stopped.
    NotStarted,
}

/// One artifact of an apply with what happened to it: results stay with their inputs.
#[derive(Debug, Clone)]
pub struct Applied {
    pub change: Change,
    pub outcome: Outcome,
}

impl Applied {
    /// The error to report, for a failed or interrupted artifact.
    pub fn error(&self) -> Option<TargetError> {
        match &self.outcome {
            Outcome::Failed(e) => Some(e.clone()),
            Outcome::Interrupted => {
                let p = &self.change.publication;
                Some(TargetError {
                    target: p.repository.to_string(),
                    code: codes::APPLY_INTERRUPTED,
                    message: format!(
                        "{}: interrupted before it finished; its tag may or may not have been written (if it was, it is complete)",
                        p.reference()
                    ),
                    help: "run apply again: it pushes whatever is still missing".into(),
                    transient: true,
                    kind: None,
                    status: None,
                })
            }
            _ => None,
        }
    }
}

/// Where a run stands: sent by the signal handler, read by [`apply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Running,
    /// Ctrl-C/SIGTERM: start no new artifacts, and cancel what is in flight after the
    /// grace period.
    Interrupted,
}

impl Outcome {
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Pushed { .. } => "pushed",
            Outcome::Unchanged => "unchanged",
            Outcome::Failed(_) | Outcome::Interrupted => "failed",
            Outcome::NotStarted => "not-started",
        }
    }
}

/// Totals of an apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    pub pushed: usize,
    pub unchanged: usize,
    pub failed: usize,
    pub not_started: usize,
}

pub fn totals(applied: &[Applied]) -> Totals {
    totals_of(applied)
}

/// With mirrors, the totals of each target (a registry host, or `oci:<folder>`); empty
/// without mirrors.
pub fn per_target(applied: &[Applied]) -> std::collections::BTreeMap<String, Totals> {
    let mut targets: std::collections::BTreeMap<String, Vec<&Applied>> = Default::default();
    if !applied.iter().any(|a| a.change.publication.is_mirror()) {
        return Default::default();
    }
    for a in applied {
        targets
            .entry(crate::plan::mirror::target_name(
                &a.change.publication.repository,
            ))
            .or_default()
            .push(a);
    }
    targets
        .into_iter()
        .map(|(name, applied)| (name, totals_of(applied)))
        .collect()
}

fn totals_of<'a>(applied: impl IntoIterator<Item = &'a Applied>) -> Totals {
    let mut t = Totals::default();
    for a in applied {
        match &a.outcome {
            Outcome::Pushed { .. } => t.pushed += 1,
            Outcome::Unchanged => t.unchanged += 1,
            Outcome::Failed(_) | Outcome::Interrupted => t.failed += 1,
            Outcome::NotStarted => t.not_started += 1,
        }
    }
    t
}

/// The failures of an apply as problems: ONE per repository (or per unreachable registry),
/// naming it and its failed artifacts, whether its tags could not be read by the plan or its
/// pushes failed. Interrupted and not-started artifacts are not failures of their repository
/// and are left to the summary.
pub fn problems(applied: &[Applied]) -> Vec<crate::diagnostic::Problem> {
    let (mut read, mut written) = (Vec::new(), Vec::new());
    for a in applied {
        if let Outcome::Failed(e) = &a.outcome {
            match a.change.action {
                Action::Unreadable { .. } => read.push((&a.change.publication, e)),
                _ => written.push((&a.change.publication, e)),
            }
        }
    }
    let mut problems = crate::plan::unread_problems(read, "not pushed");
    problems.extend(unwritten_problems(written));
    problems
}

/// One problem per repository whose pushes failed (repositories that failed alike share
/// one), naming its failed artifacts.
fn unwritten_problems<'a>(
    failed: Vec<(&'a crate::project::Publication, &'a TargetError)>,
) -> Vec<crate::diagnostic::Problem> {
    // Per repository, in the project's order: its first error and its failed tags.
    let mut repositories: Vec<(String, &TargetError, Vec<String>)> = Vec::new();
    for (p, e) in failed {
        let repository = p.repository.to_string();
        match repositories.iter_mut().find(|(r, _, _)| *r == repository) {
            Some((_, _, tags)) => tags.push(p.tag.to_string()),
            None => repositories.push((repository, e, vec![p.tag.to_string()])),
        }
    }
    repositories
        .into_iter()
        .map(|(repository, e, tags)| {
            let mut problem = e.to_problem();
            let n = tags.len();
            let detail = e
                .message
                .strip_prefix(&format!("registry {}: ", e.target))
                .unwrap_or(&e.message);
            let shown: Vec<&str> = tags.iter().take(10).map(String::as_str).collect();
            let more = if n > shown.len() {
                format!(" and {} more", n - shown.len())
            } else {
                String::new()
            };
            problem.message = format!(
                "could not push to repository {repository}: {detail}; {n} artifact{} not pushed: {}{more}",
                if n == 1 { "" } else { "s" },
                shown.join(", ")
            );
            problem
        })
        .collect()
}

/// Hears about progress as artifacts start and finish (the CLI draws bars or prints lines).
pub trait Progress: Sync {
    fn started(&self, _change: &Change) {}
    fn finished(&self, _change: &Change, _outcome: &Outcome) {}
}

/// How an apply runs.
pub struct Options {
    pub concurrency: usize,
    pub fail_fast: bool,
    /// Where the run stands (Ctrl-C/SIGTERM): no new work once stopping; in-flight
    /// artifacts get `grace` to finish once interrupted, then are cancelled.
    pub state: watch::Receiver<RunState>,
    pub grace: std::time::Duration,
}

/// One cell per `(repository, digest)`: set once the blob is known to be there.
type Cells = HashMap<(String, String), Arc<OnceCell<()>>>;

/// Which blobs are known present in which repository, shared by the whole run.
#[derive(Default)]
struct Ledger {
    cells: std::sync::Mutex<Cells>,
    /// Per `(registry, digest)`: a repository of that registry that holds the blob in a
    /// manifest pushed by this run, so another repository can mount it instead of
    /// uploading it again. Only a pushed manifest makes a source: ECR mounts only blobs a
    /// manifest of the source references, and a repository still uploading has none.
    holders: std::sync::Mutex<HashMap<(String, String), String>>,
}

impl Ledger {
    /// Records that `target`'s repository now holds `blobs` under a pushed manifest.
    fn pushed(&self, target: &Target, blobs: &[&Blob]) {
        let (Some(registry), Some(repository)) = (target.registry(), target.repository()) else {
            return;
        };
        let mut holders = self.holders.lock().unwrap_or_else(|e| e.into_inner());
        for blob in blobs {
            holders
                .entry((registry.to_string(), blob.digest.clone()))
                .or_insert_with(|| repository.to_string());
        }
    }

    /// Makes sure a blob is in a repository, uploading it only when absent. Concurrent
    /// callers for the same blob and repository share one check and one upload.
    async fn ensure(&self, key: &str, target: &Target, blob: &Blob) -> Result<(), TargetError> {
        let cell = self
            .cells
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((key.to_string(), blob.digest.clone()))
            .or_default()
            .clone();
        cell.get_or_try_init(|| async {
            let holder_key = target
                .registry()
                .map(|r| (r.to_string(), blob.digest.clone()));
            let from = holder_key.as_ref().and_then(|k| {
                self.holders
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(k)
                    .cloned()
            });
            target.ensure_blob(blob, from.as_deref()).await?;
            Ok::<(), TargetError>(())
        })
        .await?;
        Ok(())
    }
}

/// Applies a plan. Refused overwrites must have been dealt with before (the CLI refuses
/// to start); here they are reported as not started. Returns every change of the plan,
/// in order, with its outcome.
pub async fn apply(
    plan: Plan,
    targets: &Targets,
    options: &Options,
    progress: &dyn Progress,
) -> Vec<Applied> {
    let ledger = Ledger::default();
    // Fail-fast stops new work the way a first Ctrl-C does.
    let failed_fast = AtomicBool::new(false);
    let stopping =
        || *options.state.borrow() != RunState::Running || failed_fast.load(Ordering::SeqCst);
    // The results are laid out before the run (each change moves in once, while memory is
    // at its lowest) and the outcomes written in at the end: no second copy of the plan.
    let mut applied: Vec<Applied> = plan
        .changes
        .into_iter()
        .map(|change| Applied {
            change,
            outcome: Outcome::NotStarted,
        })
        .collect();
    let slots: Vec<std::sync::Mutex<Slot>> = applied
        .iter()
        .map(|_| std::sync::Mutex::new(Slot::Waiting))
        .collect();
    let work = at_once(
        applied
            .iter()
            .map(|a| &a.change)
            .zip(&slots)
            .map(|(change, slot)| {
                let ledger = &ledger;
                let (failed_fast, stopping) = (&failed_fast, &stopping);
                async move {
                    let outcome = match &change.action {
                        Action::Unchanged => Outcome::Unchanged,
                        Action::Refused { .. } => Outcome::NotStarted,
                        Action::Unreadable { reason } => Outcome::Failed(reason.as_ref().clone()),
                        Action::Create | Action::Update { .. } | Action::Retag { .. } => {
                            if stopping() {
                                Outcome::NotStarted
                            } else {
                                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Slot::Started;
                                progress.started(change);
                                let outcome = match push(change, targets, ledger).await {
                                    Ok(digest) => Outcome::Pushed { digest },
                                    Err(e) => {
                                        if options.fail_fast {
                                            failed_fast.store(true, Ordering::SeqCst);
                                        }
                                        Outcome::Failed(e)
                                    }
                                };
                                progress.finished(change, &outcome);
                                outcome
                            }
                        }
                    };
                    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Slot::Done(outcome);
                }
            }),
        options.concurrency,
    )
    .for_each(|()| async {});
    // Once the run is interrupted, in-flight artifacts get a grace period to finish; then they
    // are cancelled. Cancelling is safe: a manifest is only pushed after its blobs, so no
    // tag can point at content that did not land.
    let mut state = options.state.clone();
    let grace = async {
        if state
            .wait_for(|s| *s == RunState::Interrupted)
            .await
            .is_err()
        {
            // The sender is gone: nobody can interrupt this run any more.
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(options.grace).await;
    };
    tokio::select! {
        _ = work => {}
        _ = grace => {}
    }
    for (a, slot) in applied.iter_mut().zip(slots) {
        a.outcome = match slot.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Slot::Done(o) => o,
            Slot::Started => Outcome::Interrupted,
            Slot::Waiting => Outcome::NotStarted,
        };
    }
    applied
}

/// Where one artifact of a running apply is.
enum Slot {
    Waiting,
    Started,
    Done(Outcome),
}

/// Pushes one artifact: its blobs (each once per repository), then its manifest.
async fn push(change: &Change, targets: &Targets, ledger: &Ledger) -> Result<String, TargetError> {
    let p = &change.publication;
    let target = targets.target(&p.repository);
    let key = p.repository.to_string();
    // A retag's manifest is already in the repository, and with it its blobs.
    // The config and the layer go at once: two round trips (start, bytes) for both, not
    // four. The manifest waits for both, and neither is abandoned halfway when the other
    // fails (an upload session left open on the registry).
    if !matches!(change.action, Action::Retag { .. }) {
        let [config, layer] = p.artifact.blobs();
        let (config, layer) = futures::future::join(
            ledger.ensure(&key, &target, config),
            ledger.ensure(&key, &target, layer),
        )
        .await;
        config.and(layer)?;
    }
    let guard = crate::registry::layout::TagGuard {
        observed: change.observed.as_ref().map(|d| d.as_str().to_string()),
        immutable: !p.mutable,
    };
    let reported = target
        .push_manifest(&p.tag, &p.artifact.manifest, &p.artifact.blobs(), &guard)
        .await?;
    ledger.pushed(&target, &p.artifact.blobs());
    // The registry's header: shown only when it is a digest, else cut, as any text of it.
    if !crate::reference::is_sha256(&reported) {
        return Err(TargetError {
            target: key.clone(),
            code: codes::REGISTRY_PROTOCOL,
            message: format!(
                "{}: the target reports a digest for the manifest that is not a digest: {}",
                p.reference(),
                crate::sanitize::registry_text(&crate::sanitize::truncate(&reported, 100))
            ),
            help: "the registry (or what answers in its place) sent a malformed Docker-Content-Digest; check what is serving this host".into(),
            transient: false,
            kind: Some(crate::registry::remote::ErrorKind::Protocol),
            status: None,
        });
    }
    if reported != p.artifact.digest() {
        return Err(TargetError {
            target: key.clone(),
            code: codes::REGISTRY_DIGEST_MISMATCH,
            message: format!(
                "{}: the target reports digest {reported} for the manifest eigenpub computed as {}",
                p.reference(),
                p.artifact.digest()
            ),
            help: "the registry rewrote the manifest; eigenpub's digests would not match what is stored. Report this registry's behaviour".into(),
            transient: false,
            kind: None,
            status: None,
        });
    }
    Ok(reported)
}
