//! Registry hosts: their grammar, which spellings name one registry, and which name this
//! machine. Decided here, once, for duplicate detection, settings and credential lookup
//! and the routing of credentials alike.
//!
//! A host is `name[:port]`: DNS labels (letters, digits and inner `-`, as Docker's
//! reference grammar has them), an IPv4 address, or a bracketed IPv6 address. Spellings
//! that reach one registry are one [`RegistryId`]: case, a trailing dot, the default port
//! (443 for HTTPS, 80 for plain HTTP), Docker Hub's names (`docker.io`, `index.docker.io`,
//! `registry-1.docker.io`) and this machine's names (`localhost`, `127.0.0.1`, `[::1]`) do
//! not make another registry. `localhost.` (with the dot) is not this machine: glibc asks
//! DNS for it, so it is a remote name like any other, and [`is_loopback`] says so.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// Docker Hub, as users write it.
pub const DOCKER_HUB: &str = "docker.io";

/// The names Docker Hub answers to, as a registry host.
const DOCKER_HUB_NAMES: [&str; 3] = [DOCKER_HUB, "index.docker.io", "registry-1.docker.io"];

/// The spellings of this machine that are one registry (with the same port).
const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// A registry host split into its name and port, checked against the grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host<'a> {
    /// As written: a DNS name (perhaps with a trailing dot), IPv4, or `[IPv6]`.
    pub name: &'a str,
    pub port: Option<u16>,
}

/// Splits and checks `name[:port]`.
pub fn parse_host(host: &str) -> Result<Host<'_>, String> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return Err(format!("`{host}` has a `[` without its `]`"));
        };
        let (name, after) = host.split_at(end + 2);
        match after {
            "" => (name, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (name, Some(port)),
                None => return Err(format!("`{host}` is not a valid registry host")),
            },
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => return Err(format!("`{host}` has an invalid port `{p}`")),
        },
    };
    let ok = if let Some(v6) = name.strip_prefix('[') {
        v6.strip_suffix(']')
            .is_some_and(|a| a.parse::<Ipv6Addr>().is_ok())
    } else {
        is_dns_name(name)
    };
    if ok {
        Ok(Host { name, port })
    } else {
        Err(format!(
            "`{host}` is not a valid registry host: write DNS labels of letters, digits and inner `-` separated by `.`, an IPv4 address or a bracketed IPv6 address, then `:port` if needed"
        ))
    }
}

/// Labels of letters, digits and inner `-`, joined by `.`; one trailing dot allowed.
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        })
}

/// A host name for comparing: lower case, IP addresses in their one textual form, a
/// trailing dot removed, except from a name of this machine (`localhost.` is a DNS name,
/// not `localhost`: see the module doc).
fn canonical_name(name: &str) -> String {
    // As the URL parser reads it, since that is where eigenpub connects: IPv4 in any of
    // its forms (`127.1`, `0x7f.0.0.1`, `127.0.0.01`) as dotted decimal.
    let lower = match reqwest::Url::parse(&format!("http://{name}/")) {
        Ok(url) => url
            .host_str()
            .map_or_else(|| name.to_ascii_lowercase(), str::to_string),
        Err(_) => name.to_ascii_lowercase(),
    };
    if let Some(v6) = lower.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return match v6.parse::<Ipv6Addr>() {
            Ok(ip) => format!("[{ip}]"),
            Err(_) => lower,
        };
    }
    if let Ok(ip) = lower.parse::<IpAddr>() {
        return ip.to_string();
    }
    match lower.strip_suffix('.') {
        Some(stripped) if !LOOPBACK_NAMES.contains(&stripped) => stripped.to_string(),
        _ => lower,
    }
}

/// True for a host name (or `name:port`) that only this machine can reach, where plain
/// HTTP is the default and credentials may travel unencrypted: `localhost` exactly (any
/// case), and loopback IP addresses. Not `localhost.` or `foo.localhost`, which resolvers
/// may send to DNS.
pub fn is_loopback(host: &str) -> bool {
    let name = match parse_host(host) {
        Ok(h) => h.name,
        // A bare IPv6 address (a URL's host without brackets).
        Err(_) => host,
    };
    let name = canonical_name(name);
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The default for `plain-http`: loopback registries are spoken to over plain HTTP.
pub fn plain_http_by_default(host: &str) -> bool {
    is_loopback(host)
}

/// One registry, whatever the spelling: what duplicates, settings and credentials are
/// matched by. Shown as `name:port`, e.g. `ghcr.io:443`, `localhost:5000`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegistryId {
    name: String,
    port: u16,
}

impl RegistryId {
    /// The registry `host` names when spoken to over plain HTTP (`plain_http`) or HTTPS.
    /// `None` for text that is not a host.
    pub fn of(host: &str, plain_http: bool) -> Option<RegistryId> {
        let parsed = parse_host(host).ok()?;
        let default = if plain_http { 80 } else { 443 };
        Some(RegistryId {
            name: identity_name(parsed.name),
            port: parsed.port.unwrap_or(default),
        })
    }

    /// The registry a URL's origin is: `None` for a URL without a host or known port.
    pub fn of_url(url: &reqwest::Url) -> Option<RegistryId> {
        // `host_str` keeps an IPv6 address's brackets.
        Some(RegistryId {
            name: identity_name(url.host_str()?),
            port: url.port_or_known_default()?,
        })
    }
}

impl fmt::Display for RegistryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.port)
    }
}

/// A name as a registry's identity: canonical, Docker Hub's names as `docker.io`, this
/// machine's as `localhost`.
fn identity_name(name: &str) -> String {
    let name = unmapped(canonical_name(name));
    if DOCKER_HUB_NAMES.contains(&name.as_str()) {
        DOCKER_HUB.to_string()
    } else if LOOPBACK_NAMES.contains(&name.as_str()) {
        "localhost".to_string()
    } else {
        name
    }
}

/// An IPv4-mapped IPv6 address (`[::ffff:10.0.0.1]`) as the IPv4 address it reaches
/// (`10.0.0.1`): one registry, not two. Only for identity: whether such an address is
/// this machine is left to [`is_loopback`], which is exact (a proxy's `NO_PROXY` would not
/// know it as loopback).
fn unmapped(name: String) -> String {
    name.strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .and_then(|v6| v6.parse::<Ipv6Addr>().ok())
        .and_then(|ip| ip.to_ipv4_mapped())
        .map_or(name, |v4| v4.to_string())
}

/// True for Docker Hub's names (not for other ports of them).
pub fn is_docker_hub(host: &str) -> bool {
    parse_host(host).is_ok_and(|h| {
        h.port.is_none_or(|p| p == 443)
            && DOCKER_HUB_NAMES.contains(&canonical_name(h.name).as_str())
    })
}

/// The spellings of `host` that are the same registry and that Docker or a user may
/// have filed credentials under, the canonical one first: lower case without a trailing
/// dot, without the default port (`ghcr.io` for `GHCR.io:443`), then the other names of
/// this machine for a loopback host. Docker Hub's keys are the caller's business.
pub fn spellings(host: &str, plain_http: bool) -> Vec<String> {
    let Ok(parsed) = parse_host(host) else {
        return vec![host.to_string()];
    };
    let default = if plain_http { 80 } else { 443 };
    let port = parsed.port.filter(|p| *p != default);
    let with_port = |name: &str| match port {
        Some(p) => format!("{name}:{p}"),
        None => name.to_string(),
    };
    let name = canonical_name(parsed.name);
    let mut all = vec![with_port(&name)];
    if LOOPBACK_NAMES.contains(&name.as_str()) {
        all.extend(
            LOOPBACK_NAMES
                .iter()
                .filter(|n| **n != name)
                .map(|n| with_port(n)),
        );
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(host: &str) -> RegistryId {
        RegistryId::of(host, plain_http_by_default(host)).unwrap()
    }

    #[test]
    fn grammar() {
        for ok in [
            "ghcr.io",
            "GHCR.io:443",
            "ghcr.io.",
            "my-reg.example:5000",
            "127.0.0.1:5000",
            "[::1]:5000",
            "[2001:db8::1]",
            "localhost",
            "a--b.io",
        ] {
            assert!(parse_host(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a.io",
            "a-.io",
            "a..io",
            ".a.io",
            "a.io..",
            "a_b.io",
            "a.io:",
            "a.io:0",
            "a.io:+5",
            "a.io:99999",
            "[::1",
            "[nope]:5",
            "[::1]x",
            "a:b:c",
            "::1",
            "a]b",
        ] {
            assert!(parse_host(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn one_registry_whatever_the_spelling() {
        assert_eq!(id("ghcr.io"), id("GHCR.IO:443"));
        assert_eq!(id("ghcr.io"), id("ghcr.io."));
        assert_eq!(id("localhost:5000"), id("127.0.0.1:5000"));
        assert_eq!(id("localhost:5000"), id("[::1]:5000"));
        assert_eq!(id("LOCALHOST:5000"), id("[0:0::1]:5000"));
        // IPv4 as the URL parser reads it, where eigenpub connects.
        assert_eq!(id("localhost:5000"), id("127.1:5000"));
        assert_eq!(id("localhost:5000"), id("127.0.0.01:5000"));
        assert_eq!(id("localhost:5000"), id("0x7f.0.0.1:5000"));
        assert_eq!(id("10.0.0.1:5000"), id("10.0.1:5000"));
        assert_eq!(id("localhost"), id("localhost:80"));
        assert_eq!(id("docker.io"), id("index.docker.io"));
        assert_eq!(id("docker.io"), id("registry-1.docker.io:443"));
        assert_eq!(id("ghcr.io").to_string(), "ghcr.io:443");
        // Another port, another scheme's default, another name: another registry.
        assert_ne!(id("ghcr.io"), id("ghcr.io:8443"));
        assert_ne!(
            RegistryId::of("r.example", true),
            RegistryId::of("r.example", false)
        );
        assert_ne!(id("localhost:5000"), id("127.0.0.2:5000"));
        assert_ne!(id("localhost:5000"), id("localhost.:5000"));
        assert_ne!(id("registry.example.com"), id("registry-example.com"));
        // An IPv4-mapped IPv6 address reaches the IPv4 address: one registry.
        assert_eq!(
            RegistryId::of("[::ffff:10.0.0.1]:5000", false),
            RegistryId::of("10.0.0.1:5000", false)
        );
        assert_eq!(
            RegistryId::of("[::FFFF:7f00:1]:5000", true),
            RegistryId::of("localhost:5000", true)
        );
        assert_ne!(id("[::ffff:10.0.0.2]"), id("10.0.0.1"));
    }

    #[test]
    fn loopback_is_exact() {
        for yes in [
            "localhost",
            "LocalHost:5000",
            "127.0.0.1:5000",
            "127.8.9.10",
            "[::1]:5000",
            "::1",
            "127.1:5000",
        ] {
            assert!(is_loopback(yes), "{yes}");
        }
        for no in [
            "localhost.",
            "localhost.:5000",
            "foo.localhost",
            "localhost.example",
            "ghcr.io",
            "10.0.0.1:5000",
            "0.0.0.0",
            "[::ffff:127.0.0.1]",
        ] {
            assert!(!is_loopback(no), "{no}");
        }
    }

    #[test]
    fn spellings_canonical_first() {
        assert_eq!(spellings("GHCR.io:443", false), ["ghcr.io"]);
        assert_eq!(spellings("ghcr.io.:8443", false), ["ghcr.io:8443"]);
        assert_eq!(
            spellings("127.0.0.1:5000", true),
            ["127.0.0.1:5000", "localhost:5000", "[::1]:5000"]
        );
        assert_eq!(
            spellings("localhost:80", true),
            ["localhost", "127.0.0.1", "[::1]"]
        );
    }

    #[test]
    fn docker_hub() {
        assert!(is_docker_hub("docker.io"));
        assert!(is_docker_hub("Registry-1.Docker.IO"));
        assert!(is_docker_hub("index.docker.io:443"));
        assert!(!is_docker_hub("docker.io:5000"));
        assert!(!is_docker_hub("ghcr.io"));
    }
}
