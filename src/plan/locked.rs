//! A plan against the lock: does every artifact end up at the digest `eigenruntime.lock`
//! pins? Pure.
//!
//! Loading already used the lock's `created` for every entry whose inputs are unchanged, so
//! an artifact eigenpub builds has the locked digest unless the lock is out of date (which
//! [`crate::project::lock::update`] reports). What only the registry can tell is checked
//! here: a tag that holds equivalent content under another digest than the locked one (the
//! lock was written offline, before the tag was adopted), or an adopted digest the tag no
//! longer holds. `plan --locked` and `apply --locked` refuse on any of these, pushing
//! nothing; without `--locked` they are warnings.

use crate::plan::equivalence::Provenance;
use crate::plan::{Action, Plan};
use crate::project::lock::{EntryChange, Lock};

/// An artifact whose planned digest is not the one the lock pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub avs: String,
    pub operator_set: u32,
    /// `repository:tag`.
    pub reference: String,
    pub locked: String,
    /// What the tag holds after the plan is applied.
    pub planned: String,
    /// Set when the tag holds equivalent content (adopted as it is).
    pub equivalent: Option<Provenance>,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (avs, opset, reference, locked, planned) = (
            &self.avs,
            self.operator_set,
            &self.reference,
            &self.locked,
            &self.planned,
        );
        match &self.equivalent {
            Some(p) => write!(
                f,
                "{avs}/{opset} ({reference}): the lock pins {locked}, but the tag holds equivalent content ({p}) with digest {planned}, which is kept"
            ),
            None => write!(
                f,
                "{avs}/{opset} ({reference}): the lock pins {locked}, but the plan would leave the tag at {planned}"
            ),
        }
    }
}

/// Every planned artifact whose digest differs from its lock entry's, leaving out the
/// entries already reported as out of date (`stale`).
pub fn mismatches(lock: &Lock, plan: &Plan, stale: &[EntryChange]) -> Vec<Mismatch> {
    plan.changes
        .iter()
        .filter_map(|change| {
            let p = &change.publication;
            // A tag that could not be read is not pushed: it cannot end anywhere new.
            if matches!(change.action, Action::Unreadable { .. }) {
                return None;
            }
            if stale
                .iter()
                .any(|s| s.key() == (p.avs.as_str(), p.operator_set))
            {
                return None;
            }
            let entry = lock.get(&p.avs, p.operator_set)?;
            let planned = change.digest();
            (planned != entry.digest).then(|| Mismatch {
                avs: p.avs.clone(),
                operator_set: p.operator_set,
                reference: p.reference(),
                locked: entry.digest.clone(),
                planned: planned.to_string(),
                equivalent: match change.action {
                    Action::Unchanged => change.equivalent.clone(),
                    _ => None,
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Observation, Overwrite, diff, tests::publication};
    use crate::project::lock::{Published, update};

    #[test]
    fn a_plan_that_lands_on_the_locked_digests_has_no_mismatch() {
        let a = publication("a", "t", "x: 1", false);
        let (lock, _) = update(None, std::slice::from_ref(&a), &[]);
        let plan = diff(vec![a], vec![Observation::tag(None)], Overwrite::Refuse);
        assert!(mismatches(&lock, &plan, &[]).is_empty());
    }

    #[test]
    fn an_equivalent_tag_under_another_digest_is_named() {
        let a = publication("a", "t", "x: 1", false);
        let (lock, _) = update(None, std::slice::from_ref(&a), &[]);
        let observed = Observation {
            tag: Some("sha256:devkit".into()),
            manifest_present: false,
            equivalent: Some(Provenance {
                date: Some("2025-06-01".into()),
                tool: Some("devkit v0.0.9".into()),
            }),
        };
        let plan = diff(vec![a], vec![observed], Overwrite::Refuse);
        let found = mismatches(&lock, &plan, &[]);
        assert_eq!(found.len(), 1);
        assert!(
            found[0]
                .to_string()
                .contains("holds equivalent content (published 2025-06-01 by devkit v0.0.9) with digest sha256:devkit"),
            "{}",
            found[0]
        );
    }

    #[test]
    fn an_adopted_digest_the_tag_no_longer_holds_is_named_unless_already_stale() {
        let a = publication("a", "t", "x: 1", false);
        let adopted = Published {
            digest: "sha256:devkit".into(),
            adopted: true,
        };
        let (lock, _) = update(None, std::slice::from_ref(&a), &[Some(adopted)]);
        // The tag was deleted: the plan creates eigenpub's own artifact.
        let plan = diff(
            vec![a.clone()],
            vec![Observation::tag(None)],
            Overwrite::Refuse,
        );
        let found = mismatches(&lock, &plan, &[]);
        assert_eq!(found[0].planned, a.artifact.digest());
        assert!(
            found[0]
                .to_string()
                .contains("the plan would leave the tag at")
        );
        let stale = [EntryChange::Removed(lock.get("a", 0).unwrap().clone())];
        assert!(mismatches(&lock, &plan, &stale).is_empty());
    }
}
