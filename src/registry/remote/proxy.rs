//! Which requests go through a proxy: those to other machines, as `HTTPS_PROXY`,
//! `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (or their lower-case forms) say; never those
//! to this machine.
//!
//! The HTTP client would otherwise send a loopback registry's plain-HTTP requests, with
//! their `Authorization` header, through `HTTP_PROXY`: credentials in clear text to
//! another machine. Loopback hosts ([`crate::reference::is_loopback`]: `localhost`,
//! `127.0.0.0/8`, `::1`) are added to `NO_PROXY`; nothing else carries credentials over
//! plain HTTP ([`super::routing`]), and an HTTPS request goes through a proxy as a
//! `CONNECT` tunnel the proxy cannot read.

/// Makes a proxy for some schemes from its URL.
type MakeProxy = fn(&str) -> reqwest::Result<reqwest::Proxy>;

/// The first of `names` set to something, with the name it was found under.
fn first_set(names: &[&'static str]) -> Option<(&'static str, String)> {
    names.iter().find_map(|name| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|v| (*name, v))
    })
}

/// The proxies of the environment, none of them for this machine. An unusable proxy URL
/// is an error naming its variable (not its value, which may hold the proxy's password).
pub(super) fn from_env() -> Result<Vec<reqwest::Proxy>, String> {
    // As curl and the HTTP client do: under CGI, `HTTP_PROXY` is a request header.
    let http_names: &[&'static str] = if std::env::var_os("REQUEST_METHOD").is_some() {
        &["http_proxy"]
    } else {
        &["HTTP_PROXY", "http_proxy"]
    };
    let no_proxy = first_set(&["NO_PROXY", "no_proxy"])
        .map(|(_, v)| v)
        .unwrap_or_default();
    let no_proxy = format!("{no_proxy},localhost,127.0.0.0/8,::1");
    let mut proxies = Vec::new();
    let candidates: [(&[&'static str], MakeProxy); 3] = [
        (http_names, |u| reqwest::Proxy::http(u)),
        (&["HTTPS_PROXY", "https_proxy"], |u| {
            reqwest::Proxy::https(u)
        }),
        (&["ALL_PROXY", "all_proxy"], |u| reqwest::Proxy::all(u)),
    ];
    for (names, make) in candidates {
        if let Some((name, url)) = first_set(names) {
            let proxy = make(url.trim())
                .map_err(|_| format!("{name} is set, but not to a proxy URL the HTTP client can use (e.g. http://proxy.example:3128)"))?;
            proxies.push(proxy.no_proxy(reqwest::NoProxy::from_string(&no_proxy)));
        }
    }
    Ok(proxies)
}
