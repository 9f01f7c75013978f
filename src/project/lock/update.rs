//! What `eigenpub lock` writes, and what `--locked` refuses: the new lock of a project and
//! how it differs from the old one, entry by entry. Pure.

use super::{Lock, LockEntry};
use crate::project::Publication;

/// What the registry says a tag will hold, learned by `lock --registry`: the digest, and
/// whether it is an adopted (equivalent) artifact rather than eigenpub's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub digest: String,
    pub adopted: bool,
}

/// How one entry of a lock changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryChange {
    /// Not in the lock yet.
    Added(LockEntry),
    /// In the lock with other values; `fields` names what differs.
    Changed {
        before: Box<LockEntry>,
        after: Box<LockEntry>,
        fields: Vec<&'static str>,
    },
    /// In the lock, no longer in the project.
    Removed(LockEntry),
}

impl std::fmt::Display for EntryChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EntryChange::Added(e) => {
                write!(f, "{}: not in the lock (would pin {})", e.name(), e.digest)
            }
            EntryChange::Changed {
                before,
                after,
                fields,
            } => {
                write!(f, "{}: {} changed", after.name(), fields.join(", "))?;
                if before.digest != after.digest {
                    write!(f, " (digest {} -> {})", before.digest, after.digest)?;
                }
                Ok(())
            }
            EntryChange::Removed(e) => write!(f, "{}: no longer in the project", e.name()),
        }
    }
}

impl EntryChange {
    /// The AVS and operator set the change is about.
    pub fn key(&self) -> (&str, u32) {
        let e = match self {
            EntryChange::Added(e) | EntryChange::Removed(e) => e,
            EntryChange::Changed { after, .. } => after,
        };
        (&e.avs, e.operator_set)
    }
}

/// The lock the project wants, and how it differs from `old`.
///
/// Pure. An entry whose inputs are unchanged keeps its `created` (loading already used it)
/// and, offline, an adopted digest it had; every other entry is the publication as built.
/// `published[i]`, when given (`lock --registry`), is what the registry says publication
/// `i`'s tag will hold, and wins.
#[cfg(test)]
pub fn update(
    old: Option<&Lock>,
    publications: &[Publication],
    published: &[Option<Published>],
) -> (Lock, Vec<EntryChange>) {
    update_with_mirrors(old, publications, &[], published)
}

/// The rule above (`update`), for a project with mirrors: each entry also lists the repositories of its
/// publication's mirrors (`mirrors`, the project's mirror copies), which must hold its
/// digest too.
pub fn update_with_mirrors(
    old: Option<&Lock>,
    publications: &[Publication],
    mirrors: &[Publication],
    published: &[Option<Published>],
) -> (Lock, Vec<EntryChange>) {
    let mut mirrored: std::collections::HashMap<String, Vec<String>> =
        std::collections::HashMap::new();
    for m in mirrors {
        mirrored
            .entry(m.primary_reference())
            .or_default()
            .push(m.repository.to_string());
    }
    let mut entries = Vec::with_capacity(publications.len());
    let mut changes = Vec::new();
    for (i, p) in publications.iter().enumerate() {
        let mut entry = LockEntry::of(p);
        entry.mirrors = mirrored.remove(&p.reference()).unwrap_or_default();
        let before = old.and_then(|l| l.get(&p.avs, p.operator_set));
        if let Some(Some(published)) = published.get(i) {
            entry.digest = published.digest.clone();
            entry.adopted = published.adopted;
        } else if let Some(b) = before
            && b.adopted
            && b.spec_sha256 == entry.spec_sha256
            && b.repository == entry.repository
            && b.tag == entry.tag
        {
            entry.digest = b.digest.clone();
            entry.adopted = true;
        }
        match before {
            None => changes.push(EntryChange::Added(entry.clone())),
            Some(b) if *b != entry => changes.push(EntryChange::Changed {
                fields: differing(b, &entry),
                before: Box::new(b.clone()),
                after: Box::new(entry.clone()),
            }),
            Some(_) => {}
        }
        entries.push(entry);
    }
    let new = Lock::of(entries);
    if let Some(old) = old {
        for (key, e) in &old.entries {
            if !new.entries.contains_key(key) {
                changes.push(EntryChange::Removed(e.clone()));
            }
        }
    }
    changes.sort_by(|a, b| a.key().cmp(&b.key()));
    (new, changes)
}

fn differing(a: &LockEntry, b: &LockEntry) -> Vec<&'static str> {
    let mut fields = Vec::new();
    let mut check = |name, differs: bool| {
        if differs {
            fields.push(name);
        }
    };
    check("repository", a.repository != b.repository);
    check("tag", a.tag != b.tag);
    check("spec", a.spec != b.spec);
    check("spec-sha256", a.spec_sha256 != b.spec_sha256);
    check("created", a.created != b.created);
    check("digest", a.digest != b.digest);
    check("adopted", a.adopted != b.adopted);
    check("mirrors", a.mirrors != b.mirrors);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::publication;

    fn lock_of(ps: &[Publication]) -> Lock {
        update(None, ps, &[]).0
    }

    #[test]
    fn an_unchanged_project_changes_nothing() {
        let ps = [publication("a", "t", "x: 1", false)];
        let lock = lock_of(&ps);
        let (again, changes) = update(Some(&lock), &ps, &[]);
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(again.render(), lock.render());
    }

    #[test]
    fn new_changed_and_removed_entries_are_named() {
        let old = lock_of(&[
            publication("a", "t", "x: 1", false),
            publication("gone", "t", "x: 9", false),
        ]);
        let now = [
            publication("a", "t", "x: 2", false),
            publication("new", "t", "x: 3", false),
        ];
        let (lock, changes) = update(Some(&old), &now, &[]);
        assert_eq!(lock.entries.len(), 2);
        let text: Vec<String> = changes.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 3, "{text:?}");
        assert!(
            text[0].starts_with("a/0 (r.example/a:t): spec-sha256, digest changed (digest sha256:"),
            "{text:?}"
        );
        assert_eq!(
            text[1],
            "gone/0 (r.example/gone:t): no longer in the project"
        );
        assert!(
            text[2].starts_with("new/0 (r.example/new:t): not in the lock"),
            "{text:?}"
        );
    }

    #[test]
    fn adopted_digests_are_kept_offline_and_replaced_from_the_registry() {
        let ps = [publication("a", "t", "x: 1", false)];
        let adopted = Published {
            digest: format!("sha256:{}", "d".repeat(64)),
            adopted: true,
        };
        let (lock, _) = update(None, &ps, &[Some(adopted.clone())]);
        assert!(lock.render().contains("adopted = true"));
        // Offline, with the same inputs: the adopted digest stays.
        let (again, changes) = update(Some(&lock), &ps, &[]);
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(again.get("a", 0).unwrap().digest, adopted.digest);
        // With the spec changed, it is the new artifact's digest.
        let changed = [publication("a", "t", "x: 2", false)];
        let (after, _) = update(Some(&lock), &changed, &[]);
        assert_eq!(
            after.get("a", 0).unwrap().digest,
            changed[0].artifact.digest()
        );
        assert!(!after.get("a", 0).unwrap().adopted);
    }
}
