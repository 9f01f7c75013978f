//! The Markdown renderer: a plan as a pull-request comment.
//!
//! The summary line, a table of changes, and for each update a `<details>` block with a
//! unified diff of the spec YAML (what the registry holds against what would be pushed) and
//! of any changed config or annotation field. GitHub refuses comments over 65,536
//! characters, so the comment is kept under [`LIMIT`]: details are dropped from the end
//! first, then table rows, with a note saying how much was left out. The comment starts with
//! a hidden [`MARKER`] so automation can find and update it.

use std::collections::HashMap;
use std::fmt::Write;

use similar::TextDiff;

use crate::plan::previous::Contents;
use crate::plan::{Action, Change, Plan};
use crate::report::text::plan_summary;
use crate::sanitize::Untrusted;

/// The most characters a rendered comment may have.
pub const LIMIT: usize = 65_000;

/// The first line of every comment: invisible on GitHub, it lets a workflow (the GitHub
/// Action in `action.yml`) find its earlier comment and update it instead of adding one.
pub const MARKER: &str = "<!-- eigenpub-plan -->";

fn short(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    format!("`{}`", &hex[..hex.len().min(12)])
}

/// An outside value (a repository, a spec path, a registry's note) inside a table cell's
/// code span: sanitised on one line, and unable to end the code span or the row, or to
/// open HTML.
fn cell(s: &str) -> String {
    crate::sanitize::line(s)
        .replace('|', "\\|")
        .replace('`', "'")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// An outside value inside an HTML element (the `<summary>` of a diff): sanitised on one
/// line, every character HTML gives a meaning escaped, so it can neither close the element
/// nor open a tag or a comment (`</code></summary><!--` would hide every later diff).
fn html(s: &str) -> String {
    let line = crate::sanitize::line(s);
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn row(change: &Change) -> Option<String> {
    let p = &change.publication;
    let digest = p.artifact.digest();
    let (action, digests) = match &change.action {
        Action::Create => ("➕ create", short(digest)),
        Action::Update { from } => (
            "🔄 update",
            format!("{} → {}", short(from.as_str()), short(digest)),
        ),
        Action::Retag { from } => (
            "🏷️ retag",
            match from {
                Some(f) => format!("{} → {}", short(f.as_str()), short(digest)),
                None => short(digest),
            },
        ),
        Action::Refused { from } => (
            "⛔ refused",
            format!("{} → {}", short(from.as_str()), short(digest)),
        ),
        Action::Unreadable { reason } => (
            "❓ unreadable",
            // The registry's words, in a code span like every outside value of the table:
            // as Markdown they would mention people (`@org/team`), link and show images in
            // a comment the CI's account posts.
            format!(
                "could not be read: `{}`",
                cell(&crate::sanitize::truncate(&reason.message, 300))
            ),
        ),
        Action::Unchanged => return None,
    };
    Some(format!(
        "| {action} | `{}`{} | `{}` | {digests} |",
        cell(&p.reference()),
        mirror_note(change),
        cell(&p.spec)
    ))
}

/// ` (mirror)` after a mirror's copy.
fn mirror_note(change: &Change) -> &'static str {
    if change.publication.is_mirror() {
        " (mirror)"
    } else {
        ""
    }
}

/// Unified diffs of what changes in one artifact.
pub fn details(change: &Change, before: &Contents, after: &Contents) -> String {
    let p = &change.publication;
    let mut out = format!(
        "<details><summary>{} <code>{}</code></summary>\n\n",
        change.action.name(),
        html(&p.reference())
    );
    let old_spec = before.spec.clone().unwrap_or_default();
    let new_spec = after.spec.clone().unwrap_or_default();
    if old_spec != new_spec {
        let diff = TextDiff::from_lines(&old_spec, &new_spec);
        let unified = diff
            .unified_diff()
            .context_radius(3)
            .header(
                &format!("registry: {}", Untrusted(&p.spec)),
                &format!("proposed: {}", Untrusted(&p.spec)),
            )
            .to_string();
        let _ = write!(out, "Spec:\n\n```diff\n{}```\n\n", fence_safe(&unified));
    } else {
        out.push_str("The spec is unchanged.\n\n");
    }
    let mut fields = String::new();
    let keys: std::collections::BTreeSet<&String> =
        before.fields.keys().chain(after.fields.keys()).collect();
    for k in keys {
        let (a, b) = (before.fields.get(k), after.fields.get(k));
        if a != b {
            // Names and values the registry holds: one line each.
            if let Some(a) = a {
                let _ = writeln!(fields, "- {}: {}", Untrusted(k), Untrusted(a));
            }
            if let Some(b) = b {
                let _ = writeln!(fields, "+ {}: {}", Untrusted(k), Untrusted(b));
            }
        }
    }
    if !fields.is_empty() {
        let _ = write!(
            out,
            "Config and annotations:\n\n```diff\n{}```\n\n",
            fence_safe(&fields)
        );
    }
    out.push_str("</details>\n");
    out
}

fn fence_safe(s: &str) -> String {
    s.replace("```", "`\u{200b}``")
}

/// Renders a plan; `contents` maps a change's index to (before, after) for updates.
pub fn plan(plan: &Plan, contents: &HashMap<usize, (Contents, Contents)>, verbose: bool) -> String {
    let mut head = format!("{MARKER}\n### eigenpub plan\n\n");
    let _ = writeln!(head, "**{}**\n", plan_summary(plan));
    let targets = crate::report::text::target_counts(plan);
    if !targets.is_empty() {
        // One list item per target; a target name (outside text) in a code span, escaped
        // like any cell.
        for (target, counts) in &targets {
            let _ = writeln!(head, "- `{}`: {counts}", cell(target));
        }
        head.push('\n');
    }
    let rows: Vec<String> = plan
        .changes
        .iter()
        .filter_map(|c| {
            if verbose && c.action == Action::Unchanged {
                let note = c
                    .equivalent
                    .as_ref()
                    .map(|p| format!(" (equivalent: `{}`)", cell(&p.to_string())))
                    .unwrap_or_default();
                Some(format!(
                    "| unchanged | `{}`{} | `{}` | {}{note} |",
                    cell(&c.publication.reference()),
                    mirror_note(c),
                    cell(&c.publication.spec),
                    short(c.digest())
                ))
            } else {
                row(c)
            }
        })
        .collect();
    // The "before" side is what the registry sent: escape sequences and the run's secrets
    // never reach the comment (or the terminal it is printed at).
    let sanitizer = crate::sanitize::current();
    let blocks: Vec<String> = plan
        .changes
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            contents
                .get(&i)
                .map(|(b, a)| sanitizer.source(&details(c, b, a)).0)
        })
        .collect();
    if plan.refused().next().is_some() {
        head.push_str("> [!WARNING]\n> Some published tags would be overwritten with different content. `eigenpub apply` refuses this: bump `version` so a new tag is made, or, if overwriting is intended, list the tags in `mutable-tags` or pass `--allow-overwrite`.\n\n");
    }
    if rows.is_empty() {
        head.push_str("No changes: every tag already holds its artifact.\n");
        return head;
    }
    let table_head = "| Action | Artifact | Spec | Digest |\n|---|---|---|---|\n";
    assemble(&head, table_head, &rows, &blocks)
}

/// Fits the comment under the limit, dropping details from the end, then rows.
fn assemble(head: &str, table_head: &str, rows: &[String], blocks: &[String]) -> String {
    let note_room = 200;
    let budget = LIMIT - note_room;
    let mut out = String::from(head);
    out.push_str(table_head);
    let mut rows_shown = 0;
    for r in rows {
        if out.len() + r.len() + 1 > budget {
            break;
        }
        out.push_str(r);
        out.push('\n');
        rows_shown += 1;
    }
    out.push('\n');
    let mut blocks_shown = 0;
    if rows_shown == rows.len() {
        for b in blocks {
            if out.len() + b.len() + 1 > budget {
                break;
            }
            out.push_str(b);
            out.push('\n');
            blocks_shown += 1;
        }
    }
    let rows_left = rows.len() - rows_shown;
    let blocks_left = blocks.len() - blocks_shown;
    if rows_left > 0 || blocks_left > 0 {
        let left_chars: usize = rows[rows_shown..]
            .iter()
            .map(|r| r.len() + 1)
            .sum::<usize>()
            + blocks[blocks_shown..]
                .iter()
                .map(|b| b.len() + 1)
                .sum::<usize>();
        let _ = writeln!(
            out,
            "> [!NOTE]\n> Truncated to fit a comment: {rows_left} table row(s) and {blocks_left} diff(s) left out ({left_chars} characters). Run `eigenpub plan` for the full plan."
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Overwrite;
    use crate::plan::{Observation, diff, tests::publication};

    #[test]
    fn an_update_shows_a_yaml_diff() {
        let old = publication("a", "t", "name: a\nversion: 1\n", true);
        let new = publication("a", "t", "name: a\nversion: 2\n", true);
        let before = Contents::of(&old.artifact);
        let after = Contents::of(&new.artifact);
        let p = diff(
            vec![new],
            vec![Observation::tag(Some(old.artifact.digest()))],
            Overwrite::Refuse,
        );
        let mut contents = HashMap::new();
        contents.insert(0, (before, after));
        let md = plan(&p, &contents, false);
        assert!(
            md.contains("**Plan: 0 to create, 1 to update, 0 unchanged.**"),
            "{md}"
        );
        assert!(md.contains("| 🔄 update | `r.example/a:t` |"), "{md}");
        assert!(md.contains("-version: 1\n+version: 2\n"), "{md}");
        assert!(md.starts_with(&format!("{MARKER}\n")), "{md}");
        assert!(md.contains("<details><summary>update <code>r.example/a:t</code></summary>"));
    }

    #[test]
    fn long_plans_are_truncated_with_a_note() {
        let ps: Vec<_> = (0..3000)
            .map(|i| {
                publication(
                    &format!("avs-with-a-long-name-{i}"),
                    "opset-0-v1",
                    &format!("x: {i}"),
                    false,
                )
            })
            .collect();
        let n = ps.len();
        let p = diff(ps, vec![Observation::tag(None); n], Overwrite::Refuse);
        let md = plan(&p, &HashMap::new(), false);
        assert!(md.chars().count() <= LIMIT, "{}", md.len());
        assert!(md.contains("Truncated to fit a comment"));
    }

    #[test]
    fn a_hostile_folder_name_cannot_hide_later_diffs_or_start_a_command() {
        let hostile = "x\u{1b}[2J\n::error::pwned\n</code></summary><!--";
        let mut changes = Vec::new();
        let mut contents = HashMap::new();
        for (i, name) in ["a", "b"].iter().enumerate() {
            let old = publication(name, "t", "v: 1\n", true);
            let mut new = publication(name, "t", "v: 2\n##[error]spec\n", true);
            new.repository = crate::reference::Repository::Remote {
                registry: "r.example".into(),
                path: format!("{name}{hostile}"),
            };
            new.spec = format!("{name}{hostile}.yaml");
            contents.insert(
                i,
                (Contents::of(&old.artifact), Contents::of(&new.artifact)),
            );
            changes.push((new, Observation::tag(Some(old.artifact.digest()))));
        }
        let (ps, obs) = changes.into_iter().unzip();
        let md = plan(&diff(ps, obs, Overwrite::Refuse), &contents, true);
        // Every fence opened is closed, and outside the fences (inside them HTML is text)
        // the marker is the one comment and every element opened is closed.
        let fences = md.lines().filter(|l| l.starts_with("```")).count();
        assert_eq!(fences, 4, "{md}");
        let outside: String = md.split("```").step_by(2).collect::<Vec<_>>().join("");
        assert_eq!(outside.matches("<!--").count(), 1, "{md}");
        assert_eq!(outside.matches("<details>").count(), 2, "{md}");
        assert_eq!(outside.matches("</details>").count(), 2, "{md}");
        assert_eq!(outside.matches("</summary>").count(), 2, "{md}");
        assert_eq!(outside.matches("</code>").count(), 2, "{md}");
        assert!(!md.contains('\u{1b}'), "{md}");
        assert!(
            !crate::sanitize::workflow::tests::runner_sees_a_command(&md),
            "{md}"
        );
        // Both diffs are there.
        assert_eq!(md.matches("+v: 2").count(), 2, "{md}");
    }

    #[test]
    fn a_mirror_folder_name_is_no_markdown_in_the_target_list() {
        let primary = publication("a", "t", "v: 1\n", true);
        let mut mirror = primary.clone();
        mirror.repository = crate::reference::Repository::Layout {
            root: "/tmp/x".into(),
            display_root: "@acme/admins [x](https://evil.example/) *loud*".into(),
            path: "a".into(),
        };
        mirror.mirror_of = Some(primary.repository.clone());
        let p = diff(
            vec![primary, mirror],
            vec![Observation::tag(None); 2],
            Overwrite::Refuse,
        );
        let md = plan(&p, &HashMap::new(), false);
        let item = md
            .lines()
            .find(|l| l.starts_with("- ") && l.contains("@acme"))
            .unwrap_or_else(|| panic!("no target line for the mirror\n{md}"));
        let live: String = item.split('`').step_by(2).collect();
        for markdown in ["@acme", "](", "*loud*"] {
            assert!(!live.contains(markdown), "{markdown}: {item}\n{md}");
        }
        assert!(
            item.ends_with(": 1 to create, 0 to update, 0 unchanged"),
            "{item}"
        );
    }

    #[test]
    fn a_file_name_cannot_break_out_of_its_table_cell() {
        let c = cell("a`b|c<img src=x>\nd\u{1b}[31m");
        assert!(
            !c.contains('`') && !c.contains('<') && !c.contains('\n'),
            "{c}"
        );
        assert!(!c.contains('\u{1b}'), "{c}");
        assert!(c.contains("\\|"), "{c}");
    }
}
