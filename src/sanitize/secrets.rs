//! The run's known secrets and every form they may be seen in.
//!
//! A registry, a token service or a proxy may echo a password or token back in many
//! encodings, and a redaction that knows only some of them leaks the secret in the others.
//! So a secret is matched:
//!
//! - as literal forms, precomputed ([`Secret::forms`]): the plain text, its base64
//!   (standard and URL-safe) and, for secrets long enough, the middle of its base64 at each
//!   of the three alignments it can have inside a longer base64 stream (a `user:password`
//!   or a JSON document that holds it, encoded whole);
//! - with escapes decoded as it is scanned ([`escaped_len`]): percent escapes in either
//!   case (`%2F`, `%2f`), `+` for a space (form encoding), JSON escapes (`\u0026` as Go
//!   writes `&`, `\u00e4` as Python writes non-ASCII, surrogate pairs, `\/`, `\"`, `\\`)
//!   and HTML character references (`&amp;`, `&#38;`, `&#x26;`), mixed freely.
//!
//! A secret shorter than [`MIN_SECRET_LEN`] (a test password such as `p` or `tok`) is still
//! redacted in every form, but only where it stands alone: not inside a longer word, where
//! it would mangle unrelated text (`o[redacted]set-0-v1` for `opset-0-v1`) and, worse,
//! point at the secret by showing where its letters occur.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

/// Secrets shorter than this (in characters) are redacted only where they stand alone.
pub const MIN_SECRET_LEN: usize = 8;

/// One registered secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Secret {
    /// The secret as it was found.
    pub plain: String,
    /// Its literal forms, longest first.
    pub forms: Vec<String>,
    /// Short: matched only where no letter or digit touches it on either side.
    pub whole_word: bool,
}

impl Secret {
    /// A secret with every literal form it may be seen in; `None` for an empty one.
    pub fn new(plain: &str) -> Option<Secret> {
        if plain.is_empty() {
            return None;
        }
        let mut forms = vec![plain.to_string()];
        for engine in [STANDARD_NO_PAD, URL_SAFE_NO_PAD] {
            // Unpadded forms are prefixes of the padded ones, so they catch both.
            forms.push(engine.encode(plain));
        }
        let whole_word = plain.chars().count() < MIN_SECRET_LEN;
        if !whole_word {
            forms.extend(aligned_base64(plain.as_bytes()));
        }
        forms.retain(|f| !f.is_empty());
        forms.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        forms.dedup();
        Some(Secret {
            plain: plain.to_string(),
            forms,
            whole_word,
        })
    }

    /// How many bytes of `text` at `at` are this secret, in any form; `None` if it does not
    /// start there (or, for a short secret, does not stand alone there).
    pub fn matches_at(&self, text: &str, at: usize) -> Option<usize> {
        let rest = &text[at..];
        // Fast: a form starts with its first byte, an escape with one of these.
        let first = *rest.as_bytes().first()?;
        if !matches!(first, b'%' | b'\\' | b'&' | b'+')
            && !self.forms.iter().any(|f| f.as_bytes()[0] == first)
        {
            return None;
        }
        let len = self
            .forms
            .iter()
            .find(|form| rest.starts_with(form.as_str()))
            .map(String::len)
            .or_else(|| escaped_len(rest, &self.plain))?;
        (!self.whole_word || stands_alone(text, at, at + len)).then_some(len)
    }

    /// Whether `text` may hold this secret at all (a fast check before scanning).
    pub fn may_be_in(&self, text: &str) -> bool {
        self.forms.iter().any(|f| text.contains(f.as_str()))
            || text.contains(['%', '\\', '&'])
            || (self.plain.contains(' ') && text.contains('+'))
    }
}

/// True when no letter or digit touches `text[start..end]` on either side.
fn stands_alone(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
}

/// The base64 characters that depend only on the secret's bytes when they stand at each
/// of the three offsets (mod 3) inside a longer base64-encoded stream, in both alphabets.
fn aligned_base64(secret: &[u8]) -> Vec<String> {
    let mut forms = Vec::new();
    for offset in 0..3usize {
        let mut stream = vec![0u8; offset];
        stream.extend_from_slice(secret);
        // Character i of the encoding covers bits [6i, 6i + 6) of the stream; the secret
        // holds bits [8 * offset, 8 * (offset + len)).
        let first = (8 * offset).div_ceil(6);
        let end = 8 * (offset + secret.len()) / 6;
        for engine in [STANDARD_NO_PAD, URL_SAFE_NO_PAD] {
            let encoded = engine.encode(&stream);
            if first < end && end <= encoded.len() {
                forms.push(encoded[first..end].to_string());
            }
        }
    }
    forms
}

/// How many bytes of `text` spell `secret` with at least one character escaped (percent,
/// `+`, JSON or HTML escapes, freely mixed); `None` when they do not.
pub(super) fn escaped_len(text: &str, secret: &str) -> Option<usize> {
    let mut at = 0;
    let mut escaped = false;
    for c in secret.chars() {
        let rest = &text[at..];
        if let Some(n) = escape_len(rest, c) {
            at += n;
            escaped = true;
        } else if rest.starts_with(c) {
            at += c.len_utf8();
        } else {
            return None;
        }
    }
    escaped.then_some(at)
}

/// The length of an escape of `c` at the start of `text`, if one is there.
fn escape_len(text: &str, c: char) -> Option<usize> {
    let first = *text.as_bytes().first()?;
    match first {
        b'+' if c == ' ' => Some(1),
        b'%' => percent_len(text, c),
        b'\\' => json_len(text, c),
        b'&' => html_len(text, c),
        _ => None,
    }
}

/// `%XX` for each UTF-8 byte of `c`, hex digits in either case.
fn percent_len(text: &str, c: char) -> Option<usize> {
    let mut buf = [0u8; 4];
    let bytes = c.encode_utf8(&mut buf).as_bytes();
    let t = text.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        let at = 3 * i;
        if t.get(at) != Some(&b'%') || hex_value(t.get(at + 1..at + 3)?)? != u32::from(*b) {
            return None;
        }
    }
    Some(3 * bytes.len())
}

/// A JSON escape of `c`: `\uXXXX` (either case; a surrogate pair beyond the BMP) or the
/// short forms `\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`.
fn json_len(text: &str, c: char) -> Option<usize> {
    let t = text.as_bytes();
    let short = match c {
        '"' => Some(b'"'),
        '\\' => Some(b'\\'),
        '/' => Some(b'/'),
        '\u{8}' => Some(b'b'),
        '\u{c}' => Some(b'f'),
        '\n' => Some(b'n'),
        '\r' => Some(b'r'),
        '\t' => Some(b't'),
        _ => None,
    };
    if short.is_some() && t.get(1).copied() == short {
        return Some(2);
    }
    let unit = |at: usize| -> Option<u32> {
        if t.get(at..at + 2)? != b"\\u" {
            return None;
        }
        hex_value(t.get(at + 2..at + 6)?)
    };
    let mut units = [0u16; 2];
    match c.encode_utf16(&mut units) {
        [single] => (unit(0)? == u32::from(*single)).then_some(6),
        [high, low] => (unit(0)? == u32::from(*high) && unit(6)? == u32::from(*low)).then_some(12),
        _ => None,
    }
}

/// An HTML character reference to `c`: `&amp;`, `&lt;`, `&gt;`, `&quot;`, `&apos;`,
/// `&#NN;` or `&#xNN;`.
fn html_len(text: &str, c: char) -> Option<usize> {
    let named = match c {
        '&' => "&amp;",
        '<' => "&lt;",
        '>' => "&gt;",
        '"' => "&quot;",
        '\'' => "&apos;",
        _ => "",
    };
    if !named.is_empty() && text.starts_with(named) {
        return Some(named.len());
    }
    let rest = text.strip_prefix("&#")?;
    // `;` is ASCII, so where it stands is a character boundary.
    let end = rest.bytes().take(10).position(|b| b == b';')?;
    let number = &rest[..end];
    let value = match number.strip_prefix(['x', 'X']) {
        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
        None => number.parse().ok()?,
    };
    (value == c as u32).then_some(2 + end + 1)
}

/// The value of ASCII hex digits (either case).
fn hex_value(digits: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(digits).ok()?;
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    fn found(secret: &str, text: &str) -> bool {
        let s = Secret::new(secret).unwrap();
        text.char_indices()
            .any(|(i, _)| s.matches_at(text, i).is_some())
    }

    #[test]
    fn escaped_forms_are_found() {
        let secret = "s3cr3t/P@ss&<w0rd> x";
        for text in [
            // Go's encoding/json escapes & < > in strings.
            r#"{"message":"s3cr3t\/P@ss\u0026\u003cw0rd\u003e x"}"#,
            // Upper-case hex in a \u escape.
            r"s3cr3t/P@ss\u0026\u003Cw0rd\u003E x",
            // Form encoding: + for the space, lower-case percent escapes.
            "password=s3cr3t%2fP%40ss%26%3cw0rd%3e+x",
            // HTML references.
            "s3cr3t/P@ss&amp;&lt;w0rd&#62;&#x20;x",
        ] {
            assert!(found(secret, text), "{text}");
        }
        // Python's ensure_ascii: every non-ASCII character as \uXXXX, surrogate pairs too.
        assert!(found(
            "pässwörd-🔑-long",
            r"p\u00e4ssw\u00f6rd-\ud83d\udd11-long"
        ));
        assert!(!found("s3cr3t/P@ss&<w0rd> x", "s3cr3t/P@ss%2"));
    }

    #[test]
    fn base64_is_found_at_every_alignment_inside_a_longer_stream() {
        let secret = "hunter2-very-secret";
        for prefix in ["", "x", "xy", "{\"auth\":\"", "user:"] {
            let stream = STANDARD.encode(format!("{prefix}{secret}\",\"more\":1}}"));
            assert!(found(secret, &stream), "{prefix:?}: {stream}");
            let url = URL_SAFE_NO_PAD.encode(format!("{prefix}{secret}~~~"));
            assert!(found(secret, &url), "{prefix:?}: {url}");
        }
    }

    #[test]
    fn a_short_secret_is_redacted_only_where_it_stands_alone() {
        assert!(!found("p", "opset-0-v1"));
        assert!(!found("tok", "the token service"));
        assert!(found("p", "password p was refused"));
        assert!(found("p", "pw=p&x=1"));
        assert!(found("tok", r#"{"token":"tok"}"#));
        assert!(found("p&q", "pw=p%26q&x"));
        // Long secrets are found inside words too.
        assert!(found("hunter2-pass", "xhunter2-passx"));
    }
}
