//! Operator-set keys as written in `[avs.operator-sets]`: each operator set has exactly one
//! spelling (`0`, `1`, …; not `00`, `+0` or `1.0`), so that none can be listed twice under
//! two spellings. Pure parsing, and the problem that says what to write instead.

use crate::diagnostic::codes;
use crate::diagnostic::{Problem, SourceFile};

/// An operator-set key as written in `[avs.operator-sets]`.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyError {
    /// A number, spelled another way: the canonical spelling.
    NotCanonical(String),
    Negative,
    NotANumber,
}

/// Parses an operator-set key: a non-negative integer in its one spelling.
pub fn operator_set_id(key: &str) -> Result<u32, KeyError> {
    let canonical = !key.is_empty()
        && key.bytes().all(|b| b.is_ascii_digit())
        && (key == "0" || !key.starts_with('0'));
    if canonical {
        return key.parse::<u32>().map_err(|_| KeyError::NotANumber);
    }
    let unsigned = key.strip_prefix('+').unwrap_or(key);
    if key.starts_with('-') && key[1..].bytes().any(|b| b.is_ascii_digit()) {
        return Err(KeyError::Negative);
    }
    // `00`, `+1`, `1.0`, `1.00`, ` 1`: the number they mean, if it is a whole one.
    let trimmed = unsigned.trim();
    let whole = match trimmed.split_once('.') {
        Some((int, frac)) if frac.bytes().all(|b| b == b'0') => int,
        Some(_) => return Err(KeyError::NotANumber),
        None => trimmed,
    };
    if !whole.is_empty() && whole.bytes().all(|b| b.is_ascii_digit()) {
        let digits = whole.trim_start_matches('0');
        let digits = if digits.is_empty() { "0" } else { digits };
        if digits.parse::<u32>().is_ok() {
            return Err(KeyError::NotCanonical(digits.to_string()));
        }
    }
    Err(KeyError::NotANumber)
}

/// The problem for an operator-set key that is not one.
pub fn key_problem(
    file: &SourceFile,
    avs: &str,
    key: &str,
    span: std::ops::Range<usize>,
) -> Problem {
    let (message, label, help) = match operator_set_id(key) {
        Ok(_) => unreachable!("only called for keys that are not operator sets"),
        Err(KeyError::NotCanonical(canonical)) => (
            format!("operator set `{key}` of AVS `{avs}` is not written as a plain number"),
            format!("write `{canonical}`"),
            format!(
                "write `{canonical} = \"…\"`: an operator set has one spelling (no sign, leading zeros or decimals), so that it cannot be listed twice"
            ),
        ),
        Err(KeyError::Negative) => (
            format!("operator set `{key}` of AVS `{avs}` is negative"),
            "not an operator set id".to_string(),
            "operator sets are numbered from 0: 0 = \"…\", 1 = \"…\"".to_string(),
        ),
        Err(KeyError::NotANumber) => (
            format!("operator set `{key}` of AVS `{avs}` is not a number"),
            "not an operator set id".to_string(),
            "operator sets are numbered: 0 = \"…\", 1 = \"…\"".to_string(),
        ),
    };
    Problem::error(codes::PROJECT_OPERATOR_SET, message)
        .at(file, span, label)
        .help(help)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_sets_have_one_spelling() {
        assert_eq!(operator_set_id("0"), Ok(0));
        assert_eq!(operator_set_id("17"), Ok(17));
        for (key, canonical) in [
            ("00", "0"),
            ("+0", "0"),
            ("007", "7"),
            ("1.0", "1"),
            ("+1.00", "1"),
            (" 1", "1"),
        ] {
            assert_eq!(
                operator_set_id(key),
                Err(KeyError::NotCanonical(canonical.into())),
                "{key}"
            );
        }
        assert_eq!(operator_set_id("-1"), Err(KeyError::Negative));
        assert_eq!(operator_set_id("-0"), Err(KeyError::Negative));
        for bad in ["", "a", "1.5", "0x1", "99999999999", "1e3"] {
            assert_eq!(operator_set_id(bad), Err(KeyError::NotANumber), "{bad}");
        }
    }
}
