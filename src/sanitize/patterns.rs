//! The sanitiser's patterns: credentials that are recognised by where they stand (after
//! `Basic `/`Bearer `, after keys named like `token` or `password`) rather than known in
//! advance, and URLs, whose userinfo and query string are dropped.

use super::REDACTED;

/// Values after `Bearer `/`Basic ` shorter than this are not taken for credentials (so that
/// `Bearer realm=` in a challenge stays readable); known secrets are redacted at any length.
const MIN_GENERIC_TOKEN: usize = 16;

/// Redacts the value after `Basic `/`Bearer ` (when long enough to be a credential) and
/// after keys like `token`, `password` or `secret` (`key=value`, `"key":"value"`).
pub(super) fn redact_credential_values(s: &str) -> String {
    let lower = s.to_ascii_lowercase();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if let Some(value_start) = credential_value_start(s, &lower, i) {
            let value_len = s[value_start..]
                .find(|c: char| {
                    c.is_whitespace()
                        || matches!(c, '"' | '\'' | '&' | ',' | ';' | '<' | '>' | '\\')
                })
                .unwrap_or(s.len() - value_start);
            let after_keyword = &lower[i..value_start];
            let generic = after_keyword.starts_with("basic") || after_keyword.starts_with("bearer");
            if value_len > 0 && (!generic || value_len >= MIN_GENERIC_TOKEN) {
                out.push_str(&s[i..value_start]);
                out.push_str(REDACTED);
                i = value_start + value_len;
                continue;
            }
        }
        let c = s[i..].chars().next().expect("i is below the length");
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// When a credential keyword starts at `i`, where its value starts.
fn credential_value_start(s: &str, lower: &str, i: usize) -> Option<usize> {
    let rest = &lower[i..];
    // A keyword must start a word.
    if i > 0
        && s[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric())
    {
        return None;
    }
    for scheme in ["basic ", "bearer "] {
        if rest.starts_with(scheme) {
            let after = i + scheme.len();
            let spaces = s[after..].len() - s[after..].trim_start_matches(' ').len();
            return Some(after + spaces);
        }
    }
    for key in [
        "access_token",
        "refresh_token",
        "identitytoken",
        "token",
        "password",
        "passwd",
        "secret",
    ] {
        // The key may end a longer name (`x_token`), but then no letter may follow it.
        let Some(pos) = rest.find(key).filter(|p| {
            rest[..*p]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        }) else {
            continue;
        };
        let end = i + pos + key.len();
        let after = &s[end..];
        if after.starts_with('=') {
            return Some(end + 1);
        }
        // JSON: `"token": "value"` (the key's closing quote, a colon, an opening quote).
        let trimmed = after.strip_prefix('"').unwrap_or(after).trim_start();
        if let Some(value) = trimmed.strip_prefix(':') {
            let value = value.trim_start();
            if let Some(v) = value.strip_prefix('"') {
                return Some(s.len() - v.len());
            }
        }
        return None;
    }
    None
}

/// Drops userinfo and query strings from every `http://` and `https://` URL in the text.
pub(super) fn scrub_urls(s: &str) -> String {
    let lower = s.to_ascii_lowercase();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let scheme_len = if lower[i..].starts_with("https://") {
            8
        } else if lower[i..].starts_with("http://") {
            7
        } else {
            0
        };
        if scheme_len == 0 {
            let c = s[i..].chars().next().expect("i is below the length");
            out.push(c);
            i += c.len_utf8();
            continue;
        }
        let url_len = s[i..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`' | ')'))
            .unwrap_or(s.len() - i);
        let url = &s[i..i + url_len];
        let (scheme, rest) = url.split_at(scheme_len);
        let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(authority_len);
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        out.push_str(scheme);
        out.push_str(host);
        match path.split_once('?') {
            Some((path, _query)) => {
                out.push_str(path);
                out.push_str("?[query-removed]");
            }
            None => out.push_str(path),
        }
        i += url_len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sanitize::Sanitizer;

    #[test]
    fn tokens_after_auth_schemes_and_keys_are_redacted() {
        let s = Sanitizer::default();
        let out = s.text("echo: Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig here");
        assert_eq!(out, format!("echo: Authorization: Bearer {REDACTED} here"));
        assert_eq!(
            s.text(r#"{"token": "abc", "access_token":"def"}"#),
            format!(r#"{{"token": "{REDACTED}", "access_token":"{REDACTED}"}}"#)
        );
        assert_eq!(
            s.text("grant_type=refresh_token&refresh_token=xyz&client_id=e"),
            format!("grant_type=refresh_token&refresh_token={REDACTED}&client_id=e")
        );
        // A challenge stays readable.
        let challenge = r#"Bearer realm="https://auth.example/token",service="r""#;
        assert_eq!(s.text(challenge), challenge);
        assert_eq!(s.text("tokens expire"), "tokens expire");
    }

    #[test]
    fn urls_lose_userinfo_and_query() {
        let s = Sanitizer::default();
        assert_eq!(
            s.text("error sending request for url (https://bucket.s3.example/blob?X-Amz-Signature=abc&x=1): reset"),
            "error sending request for url (https://bucket.s3.example/blob?[query-removed]): reset"
        );
        assert_eq!(
            s.text("GET HTTP://user:pw@host:5000/v2/ failed"),
            "GET HTTP://host:5000/v2/ failed"
        );
        assert_eq!(
            s.text("see https://x.example/a#b."),
            "see https://x.example/a#b."
        );
    }
}
