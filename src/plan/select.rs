//! `--select` and `--exclude`: publish part of a monorepo.
//!
//! Globs (globset syntax) match an artifact's AVS name, `avs/opset`, or `repository:tag`;
//! an artifact is in scope when it matches some `--select` (or none is given) and no
//! `--exclude`. Plan and apply use the same selection, and a saved plan records it.

use globset::{GlobSet, GlobSetBuilder};

use crate::project::Publication;

/// A compiled selection.
#[derive(Debug, Clone)]
pub struct Selection {
    pub select: Vec<String>,
    pub exclude: Vec<String>,
    select_set: GlobSet,
    exclude_set: GlobSet,
}

impl Selection {
    pub fn new(select: &[String], exclude: &[String]) -> Result<Selection, String> {
        Ok(Selection {
            select: select.to_vec(),
            exclude: exclude.to_vec(),
            select_set: build(select)?,
            exclude_set: build(exclude)?,
        })
    }

    #[cfg(test)]
    pub fn everything() -> Selection {
        Selection::new(&[], &[]).expect("no globs always compile")
    }

    pub fn is_everything(&self) -> bool {
        self.select.is_empty() && self.exclude.is_empty()
    }

    /// The names a glob is matched against.
    fn names(p: &Publication) -> [String; 3] {
        [
            p.avs.clone(),
            format!("{}/{}", p.avs, p.operator_set),
            p.reference(),
        ]
    }

    pub fn matches(&self, p: &Publication) -> bool {
        let names = Selection::names(p);
        let selected = self.select.is_empty() || names.iter().any(|n| self.select_set.is_match(n));
        selected && !names.iter().any(|n| self.exclude_set.is_match(n))
    }

    /// The publications in scope, in order.
    pub fn apply(&self, publications: Vec<Publication>) -> Vec<Publication> {
        publications
            .into_iter()
            .filter(|p| self.matches(p))
            .collect()
    }
}

fn build(globs: &[String]) -> Result<GlobSet, String> {
    let mut builder = GlobSetBuilder::new();
    for g in globs {
        builder.add(
            globset::GlobBuilder::new(g)
                .literal_separator(false)
                .build()
                .map_err(|e| format!("`{g}` is not a valid glob: {e}"))?,
        );
    }

    builder.build().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::publication;

    fn names(sel: &Selection, ps: &[Publication]) -> Vec<String> {
        ps.iter()
            .filter(|p| sel.matches(p))
            .map(|p| p.avs.clone())
            .collect()
    }

    #[test]
    fn select_and_exclude() {
        let ps = vec![
            publication("price-oracle", "opset-0-v1", "a", false),
            publication("dice-roller", "opset-0-v1", "b", false),
            publication("weather-feed", "opset-0-v1", "c", false),
        ];
        let all = Selection::everything();
        assert_eq!(names(&all, &ps).len(), 3);
        let one = Selection::new(&["price-oracle".into()], &[]).unwrap();
        assert_eq!(names(&one, &ps), ["price-oracle"]);
        let by_opset = Selection::new(&["dice-roller/0".into()], &[]).unwrap();
        assert_eq!(names(&by_opset, &ps), ["dice-roller"]);
        let by_ref = Selection::new(&["r.example/weather-*:opset-0-*".into()], &[]).unwrap();
        assert_eq!(names(&by_ref, &ps), ["weather-feed"]);
        let excluded = Selection::new(&[], &["*-roller".into()]).unwrap();
        assert_eq!(names(&excluded, &ps), ["price-oracle", "weather-feed"]);
        assert!(Selection::new(&["[".into()], &[]).is_err());
    }
}
