//! Where credentials may go: one decision, made on parsed URLs before anything is sent.
//!
//! Credentials (a password, an identity token, and the bearer tokens they buy) may go to:
//!
//! - the registry's own origin (scheme, host and port of the registry as configured);
//! - the token service (realm) the registry itself named in a `WWW-Authenticate`
//!   challenge, and only there: a challenge that came from another origin (a redirect
//!   target, an upload `Location`) is never learned. Docker does the same: it sends Basic
//!   credentials to whatever realm the registry names, so a registry can direct them to
//!   any HTTPS host it likes; that is trusting the registry, not anyone else;
//!
//! and never over plain HTTP to a host that is not this machine, whatever `plain-http`
//! says. Schemes are compared case-insensitively and hosts as registry identities
//! ([`RegistryId`]: case, trailing dot, default port, Docker Hub's and this machine's
//! names), the same identity that duplicates and credentials are matched by, because URLs
//! are parsed, not matched as strings. "This machine" is exact ([`is_loopback`]):
//! `localhost.`, which a resolver may send to DNS, is another machine.
//!
//! An anonymous token request goes by the same rules as one with credentials: what a
//! registry names as its token service must be HTTP(S), over HTTPS unless it is this
//! machine, and a registry that is not this machine may not name a token service on it
//! (eigenpub would otherwise fetch any local URL the registry chose and relay or print
//! the answer). Redirects never change
//! where credentials go: the HTTP client drops the `Authorization` header whenever a
//! redirect leaves the origin, token requests follow no redirect at all (a redirect there
//! is an error), and challenges are learned only from answers whose final URL is the
//! registry's own (tests/it/redirects.rs and the redirect tests of tests/it/security.rs).

use reqwest::Url;

use crate::reference::{RegistryId, is_loopback};

/// Why credentials may be sent to a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Destination {
    /// The registry's own origin.
    Registry,
    /// The token service the registry named.
    Realm,
}

/// Why credentials may not be sent to a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Not a URL, or not HTTP(S).
    NotHttp(String),
    /// Plain HTTP to a host that is not this machine.
    PlainHttp(String),
    /// Neither the registry nor the token service it named.
    OtherOrigin(String),
    /// A registry that is not this machine named a token service on this machine.
    LocalRealm(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotHttp(url) => write!(f, "{url} is not an HTTP or HTTPS URL"),
            Refusal::PlainHttp(host) => write!(
                f,
                "{host} is reached over plain HTTP, and it is not this machine"
            ),
            Refusal::OtherOrigin(origin) => write!(
                f,
                "{origin} is neither the registry nor the token service it named"
            ),
            Refusal::LocalRealm(origin) => write!(
                f,
                "the registry is not on this machine, but named a token service on it ({origin})"
            ),
        }
    }
}

/// A URL's scheme (lower case) and registry identity, for comparing.
fn origin(url: &Url) -> Option<(String, RegistryId)> {
    Some((url.scheme().to_ascii_lowercase(), RegistryId::of_url(url)?))
}

/// `scheme://host:port` of a URL, host as the URL has it, for messages.
fn origin_text(url: &Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(host), Some(port)) => format!("{}://{host}:{port}", url.scheme()),
        _ => "a URL without a host".to_string(),
    }
}

/// True when `url` is on the registry's own origin (`base`): the test for attaching
/// credentials to a request at all, and for learning a challenge from an answer.
pub(super) fn same_origin(url: &str, base: &str) -> bool {
    let (Ok(a), Ok(b)) = (Url::parse(url), Url::parse(base)) else {
        return false;
    };
    origin(&a).is_some() && origin(&a) == origin(&b)
}

/// True when an answer to a request for `url` came from the registry itself (`base`), after
/// any redirects: only then is its challenge learned (a redirect target's realm would
/// otherwise get the credentials).
pub(super) fn answered_by_registry(url: &str, answer: &super::Answer, base: &str) -> bool {
    same_origin(url, base)
        && answer
            .url
            .as_ref()
            .is_none_or(|u| same_origin(u.as_str(), base))
}

/// True when `url`'s host is this machine: a loopback name or address, or the unspecified
/// address (`0.0.0.0`, `::`), which reaches it too, in any spelling the URL parser accepts,
/// IPv4-mapped IPv6 forms (`[::ffff:127.0.0.1]`) included.
fn on_this_machine(url: &Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    is_loopback(host) || ip_of(host).is_some_and(|ip| ip.is_unspecified() || ip.is_loopback())
}

/// The IP address a URL's host is, when it is one (IPv4-mapped IPv6 as IPv4).
fn ip_of(host: &str) -> Option<std::net::IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| ip.to_canonical())
}

/// Whether a registry at `registry` (its host) may redirect a request to `target`: a
/// registry on this machine anywhere; another one not to this machine nor to a
/// link-local address (`169.254.0.0/16`, `fe80::/10`: the cloud's metadata service at
/// `169.254.169.254`), nor to EC2's IPv6 metadata address `fd00:ec2::254`. What answers
/// there is not the registry, and a registry a pull request names would otherwise have
/// eigenpub, in CI, ask services only that machine reaches (credentials never follow a
/// redirect off the registry's origin).
pub(super) fn may_redirect(registry: &str, target: &Url) -> bool {
    if is_loopback(registry) {
        return true;
    }
    const EC2_METADATA_V6: std::net::Ipv6Addr =
        std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
    let link_local = ip_of(target.host_str().unwrap_or_default()).is_some_and(|ip| match ip {
        std::net::IpAddr::V4(v4) => v4.is_link_local(),
        std::net::IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80 || v6 == EC2_METADATA_V6,
    });
    !on_this_machine(target) && !link_local
}

/// Decides whether credentials may be sent to `url`, for a registry at `registry` whose
/// token service (named by the registry itself) is `realm`.
pub(super) fn may_send(
    url: &str,
    registry: &Url,
    realm: Option<&Url>,
) -> Result<Destination, Refusal> {
    let parsed = Url::parse(url).map_err(|_| Refusal::NotHttp(crate::sanitize::text(url)))?;
    let Some(target) = origin(&parsed) else {
        return Err(Refusal::NotHttp(crate::sanitize::text(url)));
    };
    // `host_str` as the URL has it: `localhost.` keeps its dot, IPv6 its brackets.
    let host = parsed.host_str().unwrap_or_default();
    let local = is_loopback(host);
    match target.0.as_str() {
        "https" => {}
        "http" if local => {}
        "http" => {
            let port = parsed.port_or_known_default().unwrap_or(80);
            return Err(Refusal::PlainHttp(format!("{host}:{port}")));
        }
        _ => return Err(Refusal::NotHttp(crate::sanitize::text(url))),
    }
    let target = Some(target);
    if target == origin(registry) {
        return Ok(Destination::Registry);
    }
    if let Some(realm) = realm
        && target == origin(realm)
    {
        if on_this_machine(&parsed) && !registry.host_str().is_some_and(is_loopback) {
            return Err(Refusal::LocalRealm(origin_text(&parsed)));
        }
        return Ok(Destination::Realm);
    }
    Err(Refusal::OtherOrigin(origin_text(&parsed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn credentials_stay_on_the_registry() {
        assert!(same_origin(
            "https://ghcr.io/v2/a/blobs/uploads/x",
            "https://ghcr.io"
        ));
        assert!(!same_origin(
            "https://ghcr.io.evil.example/v2/",
            "https://ghcr.io"
        ));
        assert!(!same_origin("https://uploads.example/x", "https://ghcr.io"));
        assert!(!same_origin("http://ghcr.io/v2/", "https://ghcr.io"));
        assert!(same_origin(
            "http://LOCALHOST:5000/v2/x",
            "http://localhost:5000"
        ));
        assert!(same_origin("https://ghcr.io:443/v2/x", "https://ghcr.io"));
        // Another port of the same host is another origin.
        assert!(!same_origin("https://ghcr.io:8443/v2/x", "https://ghcr.io"));
        // A user-info trick does not change the host that is compared.
        assert!(!same_origin(
            "https://ghcr.io@evil.example/v2/",
            "https://ghcr.io"
        ));
        assert!(!same_origin("not a url", "https://ghcr.io"));
    }

    #[test]
    fn redirects_from_another_machine_stay_off_this_one() {
        for target in [
            "http://127.0.0.1:8080/x",
            "http://127.9.9.9/x",
            "http://localhost/x",
            "http://LOCALHOST:1/x",
            "http://[::1]/x",
            "http://0.0.0.0/x",
            "http://[::]/x",
            "http://[::ffff:127.0.0.1]/x",
            "http://2130706433/x",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fe80::1]/x",
            "http://[fd00:ec2::254]/latest/meta-data/",
            "http://[::ffff:169.254.169.254]/",
        ] {
            assert!(!may_redirect("ghcr.io", &url(target)), "{target}");
            assert!(may_redirect("localhost:5000", &url(target)), "{target}");
        }
        for target in [
            "https://pkg-containers.githubusercontent.com/x",
            "https://10.0.0.5/x",
            "http://localhost./x",
            "http://[fd00:ec2::253]/x",
        ] {
            assert!(may_redirect("ghcr.io", &url(target)), "{target}");
        }
    }

    #[test]
    fn the_registry_itself() {
        let reg = url("https://ghcr.io");
        assert_eq!(
            may_send("https://ghcr.io/v2/a/manifests/t", &reg, None),
            Ok(Destination::Registry)
        );
        // Scheme and host case, default port and a trailing dot do not make another origin.
        assert_eq!(
            may_send("HTTPS://GHCR.IO:443/v2/", &reg, None),
            Ok(Destination::Registry)
        );
        assert_eq!(
            may_send("https://ghcr.io./v2/", &reg, None),
            Ok(Destination::Registry)
        );
        // Another port, another host, a look-alike, a user-info trick: other origins.
        for other in [
            "https://ghcr.io:8443/v2/",
            "https://uploads.example/x",
            "https://ghcr.io.evil.example/v2/",
            "https://ghcr.io@evil.example/v2/",
        ] {
            assert!(
                matches!(may_send(other, &reg, None), Err(Refusal::OtherOrigin(_))),
                "{other}"
            );
        }
    }

    #[test]
    fn the_realm_only_when_the_registry_named_it() {
        let reg = url("https://registry.example");
        let realm = url("https://auth.example/token");
        assert_eq!(
            may_send("https://auth.example/token?scope=x", &reg, Some(&realm)),
            Ok(Destination::Realm)
        );
        assert!(may_send("https://auth.example/token", &reg, None).is_err());
        assert!(may_send("https://other.example/token", &reg, Some(&realm)).is_err());
    }

    #[test]
    fn never_plain_http_to_another_machine() {
        // Whatever the scheme's case, and even when it is the registry itself (plain-http).
        let plain = url("http://registry.example");
        for target in [
            "http://registry.example/v2/",
            "HTTP://registry.example/v2/",
            "Http://auth.example/token",
        ] {
            let realm = url("http://auth.example/token");
            assert!(
                matches!(
                    may_send(target, &plain, Some(&realm)),
                    Err(Refusal::PlainHttp(_))
                ),
                "{target}"
            );
        }
        // A realm spelled with an upper-case scheme is still plain HTTP.
        let reg = url("https://registry.example");
        let realm = url("HTTP://auth.example/token");
        assert!(matches!(
            may_send("HTTP://auth.example/token", &reg, Some(&realm)),
            Err(Refusal::PlainHttp(_))
        ));
        // This machine is fine over plain HTTP.
        let local = url("http://127.0.0.1:5000");
        assert_eq!(
            may_send("http://127.0.0.1:5000/v2/", &local, None),
            Ok(Destination::Registry)
        );
        let v6 = url("http://[::1]:5000");
        assert_eq!(
            may_send("http://[::1]:5000/v2/", &v6, None),
            Ok(Destination::Registry)
        );
        assert_eq!(
            may_send(
                "http://LOCALHOST:5001/token",
                &local,
                Some(&url("http://localhost:5001/token"))
            ),
            Ok(Destination::Realm)
        );
    }

    #[test]
    fn this_machine_is_exact() {
        // `localhost.` goes through DNS: another machine, not the registry `localhost`.
        let local = url("http://localhost:5000");
        for target in ["http://localhost.:5000/v2/", "http://LOCALHOST.:5000/v2/"] {
            assert!(
                matches!(may_send(target, &local, None), Err(Refusal::PlainHttp(_))),
                "{target}"
            );
        }
        let realm = url("http://localhost.:5001/token");
        assert!(matches!(
            may_send("http://localhost.:5001/token", &local, Some(&realm)),
            Err(Refusal::PlainHttp(_))
        ));
        // Over HTTPS `localhost.` is just another origin.
        let tls = url("https://localhost:5000");
        assert!(matches!(
            may_send("https://localhost.:5000/v2/", &tls, None),
            Err(Refusal::OtherOrigin(_))
        ));
        assert!(!same_origin(
            "http://localhost.:5000/v2/",
            "http://localhost:5000"
        ));
    }

    #[test]
    fn one_registry_whatever_the_spelling() {
        // This machine's names are one registry, as they are for duplicates and credentials.
        let local = url("http://127.0.0.1:5000");
        for target in [
            "http://localhost:5000/v2/",
            "http://[::1]:5000/v2/",
            "http://127.0.0.1:5000/v2/",
        ] {
            assert_eq!(
                may_send(target, &local, None),
                Ok(Destination::Registry),
                "{target}"
            );
        }
        assert!(may_send("http://127.0.0.2:5000/v2/", &local, None).is_err());
        assert!(may_send("http://localhost:5001/v2/", &local, None).is_err());
    }

    #[test]
    fn a_remote_registry_names_no_token_service_on_this_machine() {
        let reg = url("https://registry.example");
        for realm in [
            "http://127.0.0.1:8080/token",
            "https://localhost/token",
            "http://[::1]/token",
            "https://0.0.0.0:8443/token",
            "https://[::]/token",
            "https://127.1/token",
            // IPv4-mapped IPv6 addresses of this machine.
            "https://[::ffff:127.0.0.1]/token",
            "https://[::ffff:7f00:2]:8443/token",
            "https://[::ffff:0.0.0.0]/token",
        ] {
            let named = url(realm);
            assert!(
                matches!(
                    may_send(realm, &reg, Some(&named)),
                    Err(Refusal::LocalRealm(_))
                ),
                "{realm}"
            );
        }
        // A registry on this machine may.
        let local = url("http://localhost:5000");
        let named = url("http://127.0.0.1:5001/token");
        assert_eq!(
            may_send("http://127.0.0.1:5001/token", &local, Some(&named)),
            Ok(Destination::Realm)
        );
    }

    #[test]
    fn nothing_but_http() {
        let reg = url("https://ghcr.io");
        for bad in [
            "ftp://ghcr.io/x",
            "file:///etc/passwd",
            "not a url",
            "data:,x",
        ] {
            assert!(
                matches!(may_send(bad, &reg, None), Err(Refusal::NotHttp(_))),
                "{bad}"
            );
        }
    }
}
