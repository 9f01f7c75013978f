//! `EIGENPUB_REGISTRY_<HOST>_USERNAME`/`_PASSWORD`: credentials in the environment, each
//! sent only to the host its name spells, whatever host a project (or a pull request that
//! edits it) names.
//!
//! A name spells one host and a host has one name (Terraform's `TF_TOKEN_<host>` rule,
//! with the port added): letters upper-cased, digits kept, `.` as `_`, `-` as `__`, and
//! the `:` before a port as `___`. It can be read back: a host's labels neither start nor
//! end with `-` (the reference grammar, checked in [`crate::reference::parse_host`]), so a
//! run of one `_` is a dot, of two, four, … is as many hyphens halved, of three the port's
//! colon, and nothing else occurs. The name is made from the registry's canonical spelling
//! (lower case, no trailing dot, no default port); a loopback registry also answers to the
//! names of its other spellings (`localhost`, `127.0.0.1`), and Docker Hub to those of its
//! three names. An IPv6 address has no name (use `docker login` or `eigenpub login`), nor
//! has `localhost.` (whose dot would meet the port's `___`).
//!
//! Before this rule every character other than a letter or digit became `_`, so
//! `registry.example.com` and `registry-example.com` shared a name, and a pull request
//! that switched to the look-alike got the password. Where a registry's old name differs
//! from its name now (a `-` or a port in the host) and only the old one is set, the lookup
//! fails saying which host that name now means and what to rename: a login is never
//! silently dropped, nor sent elsewhere.

use crate::reference::{DOCKER_HUB, is_docker_hub, plain_http_by_default, spellings};

const PREFIX: &str = "EIGENPUB_REGISTRY_";

/// `EIGENPUB_REGISTRY_<NAME>` for one spelling of a host (`ghcr.io`, `my-reg.io:5000`);
/// `None` for an IPv6 address, which has no name.
pub fn encode(spelling: &str) -> Option<String> {
    // An IPv6 address has no name; nor has `localhost.`, the one canonical spelling with
    // a trailing dot: its `.` next to the port's `___` would read as `--`
    // (`localhost.:5000` and `localhost--5000`), and at the end it would run into the
    // `_USERNAME` after it.
    if spelling.starts_with('[') || spelling.ends_with('.') || spelling.contains(".:") {
        return None;
    }
    let mut name = String::from(PREFIX);
    for c in spelling.chars() {
        match c {
            c if c.is_ascii_alphanumeric() => name.push(c.to_ascii_uppercase()),
            '.' => name.push('_'),
            '-' => name.push_str("__"),
            ':' => name.push_str("___"),
            _ => return None,
        }
    }
    Some(name)
}

/// The host a variable prefix (`EIGENPUB_REGISTRY_MY__REG_IO`) spells, if any: the proof,
/// in the tests, that a name spells one host.
#[cfg(test)]
fn decode(prefix: &str) -> Option<String> {
    let name = prefix.strip_prefix(PREFIX)?;
    let mut host = String::new();
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '_' {
            if !(c.is_ascii_uppercase() || c.is_ascii_digit()) {
                return None;
            }
            host.push(c.to_ascii_lowercase());
            continue;
        }
        let mut run = 1;
        while chars.peek() == Some(&'_') {
            chars.next();
            run += 1;
        }
        match run {
            1 => host.push('.'),
            3 => host.push(':'),
            n if n % 2 == 0 => host.extend(std::iter::repeat_n('-', n / 2)),
            _ => return None,
        }
    }
    let parsed = crate::reference::parse_host(&host).ok()?;
    // Only the canonical spelling is a name (no trailing dot).
    (!parsed.name.ends_with('.')).then_some(host)
}

/// The variable prefix to tell a user for `host`: its canonical spelling's name.
pub fn prefix_for(host: &str) -> Option<String> {
    encode(names(host).first()?)
}

/// Every spelling of `host` whose variables are its credentials, the canonical first.
fn names(host: &str) -> Vec<String> {
    if is_docker_hub(host) {
        vec![
            DOCKER_HUB.into(),
            "index.docker.io".into(),
            "registry-1.docker.io".into(),
        ]
    } else {
        spellings(host, plain_http_by_default(host))
    }
}

/// How every character other than a letter or digit was folded to `_` before: the names
/// the lookup warns about.
fn folded(spelling: &str) -> String {
    let host: String = spelling
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{PREFIX}{host}")
}

/// Credentials found in the environment.
#[derive(Debug, PartialEq, Eq)]
pub struct Found {
    /// `EIGENPUB_REGISTRY_<NAME>`.
    pub prefix: String,
    pub username: String,
    pub password: String,
}

/// Why the environment's credentials cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused {
    pub message: String,
    /// Set when the variables are another host's (what to rename); `None` for a half pair.
    pub help: Option<String>,
}

/// Looks up `host`'s variables through `var` (the environment, in production): the first
/// of its names with both set wins; one of a pair alone, or only an old name set, is an
/// error.
pub fn lookup(host: &str, var: impl Fn(&str) -> Option<String>) -> Result<Option<Found>, Refused> {
    let names = names(host);
    for spelling in &names {
        let Some(prefix) = encode(spelling) else {
            continue;
        };
        let user = var(&format!("{prefix}_USERNAME"));
        let pass = var(&format!("{prefix}_PASSWORD"));
        match (user, pass) {
            (Some(username), Some(password)) => {
                return Ok(Some(Found {
                    prefix,
                    username,
                    password,
                }));
            }
            (None, None) => {}
            _ => {
                return Err(Refused {
                    message: format!(
                        "only one of {prefix}_USERNAME and {prefix}_PASSWORD is set; set both, or neither"
                    ),
                    help: None,
                });
            }
        }
    }
    let mut old: Vec<String> = names.iter().map(|s| folded(s)).collect();
    old.push(folded(host));
    for old in old {
        if names.iter().any(|s| encode(s).as_deref() == Some(&old)) {
            continue;
        }
        let Some(set) = ["USERNAME", "PASSWORD"]
            .iter()
            .map(|v| format!("{old}_{v}"))
            .find(|v| var(v).is_some())
        else {
            continue;
        };
        // The host the old name most likely meant besides this one: dots for dashes.
        let dotted = host.replace('-', ".");
        let shared = if dotted != host && crate::reference::parse_host(&dotted).is_ok() {
            format!("the old name of {host} and also {dotted}'s")
        } else {
            format!("{host}'s old name")
        };
        let Some(right) = prefix_for(host) else {
            continue;
        };
        return Err(Refused {
            message: format!(
                "{set} is set, but that is not a name for {host}: variable names spell `.` as `_`, `-` as `__` and the `:` before a port as `___`, so that no two hosts share one, and {old}_* is {shared}; nothing was sent to {host}"
            ),
            help: Some(format!(
                "if these credentials are for {host}, rename the variables to {right}_USERNAME and {right}_PASSWORD; if they are for another registry, the project names {host} instead: check `registry`/`repository` in eigenruntime.toml"
            )),
        });
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn names() {
        assert_eq!(encode("ghcr.io").unwrap(), "EIGENPUB_REGISTRY_GHCR_IO");
        assert_eq!(
            encode("europe-docker.pkg.dev").unwrap(),
            "EIGENPUB_REGISTRY_EUROPE__DOCKER_PKG_DEV"
        );
        assert_eq!(
            encode("127.0.0.1:5000").unwrap(),
            "EIGENPUB_REGISTRY_127_0_0_1___5000"
        );
        assert_eq!(encode("[::1]:5000"), None);
        assert_eq!(encode("localhost."), None);
        assert_eq!(prefix_for("localhost.:5000"), None);
        assert_eq!(
            prefix_for("GHCR.IO:443").unwrap(),
            "EIGENPUB_REGISTRY_GHCR_IO"
        );
        assert_eq!(
            prefix_for("registry-1.docker.io").unwrap(),
            "EIGENPUB_REGISTRY_DOCKER_IO"
        );
    }

    #[test]
    fn a_name_reads_back_as_its_one_host() {
        let hosts = [
            "ghcr.io",
            "registry.gitlab.com",
            "registry-gitlab.com",
            "acme.azurecr.io",
            "acme-azurecr.io",
            "europe-docker.pkg.dev",
            "europe-docker-pkg.dev",
            "a--b.io",
            "a---b.io:5000",
            "xn--bcher-kva.example",
            "127.0.0.1:5000",
            "localhost:5000",
            "1-2.3",
        ];
        let mut seen = std::collections::HashSet::new();
        for host in hosts {
            let name = encode(host).unwrap();
            assert_eq!(decode(&name).as_deref(), Some(host), "{name}");
            assert!(seen.insert(name), "{host} shares a name");
        }
        for junk in [
            "EIGENPUB_REGISTRY_A_____B",
            "EIGENPUB_REGISTRY__A",
            "EIGENPUB_REGISTRY_A_",
            "EIGENPUB_REGISTRY_A___B",
            "EIGENPUB_REGISTRY_a_io",
            "EIGENPUB_REGISTRY_",
        ] {
            assert_eq!(decode(junk), None, "{junk}");
        }
    }

    #[test]
    fn no_two_canonical_spellings_share_a_name() {
        // Every string of up to 7 pieces (a letter, a digit, the separators, a name of
        // this machine) that is a host in its canonical spelling: their names differ.
        let alphabet = ["a", "1", ".", "-", ":", "localhost"];
        let mut by_name: HashMap<String, String> = HashMap::new();
        let mut strings = vec![String::new()];
        for _ in 0..7 {
            let longer: Vec<String> = strings
                .iter()
                .flat_map(|s| alphabet.iter().map(move |piece| format!("{s}{piece}")))
                .collect();
            for host in &longer {
                if crate::reference::parse_host(host).is_err()
                    || spellings(host, false).first() != Some(host)
                {
                    continue;
                }
                if let Some(name) = encode(host)
                    && let Some(other) = by_name.insert(name.clone(), host.clone())
                {
                    panic!("{host} and {other} share {name}");
                }
            }
            strings = longer;
        }
        assert!(by_name.len() > 1000, "{}", by_name.len());
    }

    #[test]
    fn a_look_alike_host_does_not_get_the_credentials() {
        let vars = env(&[
            ("EIGENPUB_REGISTRY_REGISTRY_EXAMPLE_COM_USERNAME", "u"),
            ("EIGENPUB_REGISTRY_REGISTRY_EXAMPLE_COM_PASSWORD", "p"),
        ]);
        assert_eq!(
            lookup("registry.example.com", &vars).unwrap().unwrap(),
            Found {
                prefix: "EIGENPUB_REGISTRY_REGISTRY_EXAMPLE_COM".into(),
                username: "u".into(),
                password: "p".into()
            }
        );
        // The look-alike: refused, saying whose name it is and what to rename.
        let refused = lookup("registry-example.com", &vars).unwrap_err();
        assert!(
            refused.message.contains("and also registry.example.com's"),
            "{refused:?}"
        );
        assert!(
            refused
                .help
                .unwrap()
                .contains("EIGENPUB_REGISTRY_REGISTRY__EXAMPLE_COM_USERNAME")
        );
        // Other hosts are anonymous.
        assert_eq!(lookup("registry.example.org", &vars), Ok(None));
    }

    #[test]
    fn an_old_name_with_a_port_is_refused_saying_what_to_rename() {
        let vars = env(&[("EIGENPUB_REGISTRY_127_0_0_1_5000_PASSWORD", "p")]);
        let refused = lookup("127.0.0.1:5000", &vars).unwrap_err();
        assert!(
            refused
                .help
                .as_deref()
                .unwrap()
                .contains("EIGENPUB_REGISTRY_127_0_0_1___5000_USERNAME"),
            "{refused:?}"
        );
    }

    #[test]
    fn one_registry_many_spellings() {
        let vars = env(&[
            ("EIGENPUB_REGISTRY_LOCALHOST___5000_USERNAME", "u"),
            ("EIGENPUB_REGISTRY_LOCALHOST___5000_PASSWORD", "p"),
            ("EIGENPUB_REGISTRY_GHCR_IO_USERNAME", "g"),
            ("EIGENPUB_REGISTRY_GHCR_IO_PASSWORD", "h"),
        ]);
        for host in ["127.0.0.1:5000", "[::1]:5000", "LOCALHOST:5000"] {
            assert_eq!(
                lookup(host, &vars).unwrap().unwrap().username,
                "u",
                "{host}"
            );
        }
        assert_eq!(lookup("localhost:5001", &vars), Ok(None));
        assert_eq!(lookup("ghcr.io:443", &vars).unwrap().unwrap().username, "g");
        assert_eq!(lookup("GHCR.io.", &vars).unwrap().unwrap().username, "g");
        assert_eq!(lookup("ghcr.io:8443", &vars), Ok(None));
    }

    #[test]
    fn half_a_pair_is_an_error() {
        let vars = env(&[("EIGENPUB_REGISTRY_GHCR_IO_USERNAME", "u")]);
        assert!(lookup("ghcr.io", &vars).is_err());
    }
}
