//! Where artifacts go: repositories in a registry or in an OCI layout, and tags, checked
//! against the OCI distribution grammar before anything touches a network or a disk.
//!
//! A project's `registry = "ghcr.io/acme"` plus an AVS name becomes a [`Repository`];
//! `registry = "oci:out"` becomes an OCI image layout under `out/`. Names are checked here,
//! once, so that a bad name is a clear error at load time and a layout repository can never
//! escape its folder (`..`, absolute paths and the like are not in the grammar). Digests
//! are a [`Digest`]: checked once where they come in (a registry's answer, a lock file, a
//! command-line reference), so that a malformed one is an error there, never a value that
//! travels into a URL or a file path.

use std::fmt;
use std::path::PathBuf;

mod host;
pub use host::{
    DOCKER_HUB, RegistryId, is_docker_hub, is_loopback, parse_host, plain_http_by_default,
    spellings,
};

/// A content digest as eigenpub reads and writes them: `sha256:` and 64 lowercase hex
/// digits (the only algorithm eigenpub computes, so the only one it can verify).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Digest(String);

impl Digest {
    /// Checks a digest from outside (a registry header, a manifest, a lock, an argument).
    pub fn parse(text: &str) -> Result<Digest, String> {
        if is_sha256(text) {
            Ok(Digest(text.to_string()))
        } else {
            Err("not a sha256 digest (`sha256:` and 64 lowercase hex digits)".to_string())
        }
    }

    /// The digest of bytes eigenpub hashed itself (always well formed).
    pub fn of_hex(hex: &str) -> Digest {
        debug_assert!(hex.len() == 64);
        Digest(format!("sha256:{hex}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Any text as a digest, for tests of the pure core that use short stand-ins.
    #[cfg(test)]
    pub fn for_tests(text: &str) -> Digest {
        Digest(text.to_string())
    }

    /// The 64 hex digits (e.g. a blob's file name in an OCI layout).
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }
}

#[cfg(test)]
impl From<&str> for Digest {
    fn from(text: &str) -> Digest {
        Digest::for_tests(text)
    }
}

impl From<Digest> for String {
    fn from(digest: Digest) -> String {
        digest.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for Digest {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Digest {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// True for `sha256:` and 64 lowercase hex digits.
pub fn is_sha256(text: &str) -> bool {
    text.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// A repository that artifacts are published to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Repository {
    /// A repository in a registry: `host[:port]/path`.
    Remote { registry: String, path: String },
    /// An OCI image layout at `<root>/<path>`; `display_root` is the root as the user wrote it.
    Layout {
        root: PathBuf,
        display_root: String,
        path: String,
    },
}

impl Repository {
    /// The registry host for remote repositories.
    pub fn registry(&self) -> Option<&str> {
        match self {
            Repository::Remote { registry, .. } => Some(registry),
            Repository::Layout { .. } => None,
        }
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Repository::Remote { registry, path } => write!(f, "{registry}/{path}"),
            Repository::Layout {
                display_root, path, ..
            } => write!(f, "oci:{}/{path}", display_root.trim_end_matches('/')),
        }
    }
}

/// A registry prefix from the project file, before an AVS name is appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryPrefix {
    Remote { registry: String, path: String },
    Layout { display_root: String },
}

/// Parses `registry = "…"`: `oci:<dir>`, `host[:port][/path]`, or a Docker Hub namespace.
pub fn parse_prefix(text: &str) -> Result<RegistryPrefix, String> {
    if let Some(dir) = text.strip_prefix("oci:") {
        if dir.is_empty() {
            return Err("`oci:` needs a folder, e.g. `oci:out`".into());
        }
        return Ok(RegistryPrefix::Layout {
            display_root: dir.to_string(),
        });
    }
    let text = text.trim_end_matches('/');
    if text.is_empty() {
        return Err("the registry is empty".into());
    }
    if text.contains("://") {
        return Err(format!(
            "`{text}` has a URL scheme; write the host and path only, e.g. `ghcr.io/acme`"
        ));
    }
    let (first, rest) = match text.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (text, None),
    };
    let (registry, path) = if looks_like_host(first) {
        (first.to_string(), rest.unwrap_or("").to_string())
    } else {
        (DOCKER_HUB.to_string(), text.to_string())
    };
    check_host(&registry)?;
    if !path.is_empty() {
        check_repository_path(&path)?;
    }
    Ok(RegistryPrefix::Remote { registry, path })
}

/// Parses a full repository reference as written for `repository = "…"`.
pub fn parse_repository(text: &str) -> Result<RegistryPrefix, String> {
    let prefix = parse_prefix(text)?;
    if let RegistryPrefix::Remote { path, .. } = &prefix
        && path.is_empty()
    {
        return Err(format!(
            "`{text}` names a registry but no repository; write e.g. `{text}/my-avs`"
        ));
    }
    Ok(prefix)
}

/// Docker's rule: the first component is a host when it has a `.` or `:`, or is `localhost`.
fn looks_like_host(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost"
}

fn check_host(host: &str) -> Result<(), String> {
    parse_host(host).map(|_| ())
}

/// Checks a repository path against the distribution grammar:
/// components of `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` joined by `/`, 255 characters at most.
pub fn check_repository_path(path: &str) -> Result<(), String> {
    if path.len() > 255 {
        return Err(format!(
            "repository `{path}` is {} characters long; the limit is 255",
            path.len()
        ));
    }
    for component in path.split('/') {
        if !is_path_component(component) {
            return Err(format!(
                "repository `{path}`: component `{component}` is not allowed; components are lowercase letters and digits, separated by `.`, `_`, `__` or dashes, and must start and end with a letter or digit"
            ));
        }
    }
    Ok(())
}

fn is_path_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    if bytes.is_empty() {
        return false;
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator run: `.`, `_`, `__`, or one or more `-`.
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// A tag, checked against the OCI grammar once, where it is made (a template filled in, a
/// lock or a command-line reference read); it reads as the `str` it holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Tag(String);

impl Tag {
    pub fn parse(text: &str) -> Result<Tag, String> {
        check_tag(text)?;
        Ok(Tag(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Tag {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a tag against `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn check_tag(tag: &str) -> Result<(), String> {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok && tag.len() <= 128 {
        Ok(())
    } else {
        Err(format!(
            "tag `{tag}` is not a valid OCI tag: up to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_checked_once_where_they_come_in() {
        let hex = "a".repeat(64);
        let d = Digest::parse(&format!("sha256:{hex}")).unwrap();
        assert_eq!(d.hex(), hex);
        assert_eq!(d, format!("sha256:{hex}").as_str());
        for bad in [
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}", "a".repeat(63)),
            format!("sha512:{hex}"),
            format!("sha256:{hex}\r\nX-Evil: 1"),
            "sha256:../../etc/passwd".to_string(),
            String::new(),
        ] {
            assert!(Digest::parse(&bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn prefixes() {
        assert_eq!(
            parse_prefix("ghcr.io/acme").unwrap(),
            RegistryPrefix::Remote {
                registry: "ghcr.io".into(),
                path: "acme".into()
            }
        );
        assert_eq!(
            parse_prefix("127.0.0.1:5000").unwrap(),
            RegistryPrefix::Remote {
                registry: "127.0.0.1:5000".into(),
                path: "".into()
            }
        );
        assert_eq!(
            parse_prefix("acme").unwrap(),
            RegistryPrefix::Remote {
                registry: "docker.io".into(),
                path: "acme".into()
            }
        );
        assert_eq!(
            parse_prefix("oci:out").unwrap(),
            RegistryPrefix::Layout {
                display_root: "out".into()
            }
        );
        assert!(parse_prefix("https://ghcr.io/acme").is_err());
        assert!(parse_prefix("ghcr.io/Acme").is_err());
        assert!(parse_prefix("localhost:99999/x").is_err());
    }

    #[test]
    fn repository_grammar() {
        for ok in ["a", "acme/price-oracle", "a.b_c__d--e", "x/y/z0"] {
            assert!(check_repository_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "A", "a/", "-a", "a-", "a..b", "a___b", "../x", "a/../b", "/a", "a b",
        ] {
            assert!(check_repository_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tag_grammar() {
        assert!(check_tag("opset-0-v3").is_ok());
        assert!(check_tag("_x.1").is_ok());
        assert!(check_tag("-x").is_err());
        assert!(check_tag(".x").is_err());
        assert!(check_tag("a/b").is_err());
        assert!(check_tag(&"a".repeat(129)).is_err());
        assert!(check_tag("").is_err());
    }

    #[test]
    fn display() {
        let r = Repository::Layout {
            root: "/x/out".into(),
            display_root: "out/".into(),
            path: "a".into(),
        };
        assert_eq!(r.to_string(), "oci:out/a");
    }
}
