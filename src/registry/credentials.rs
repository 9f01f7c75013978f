//! Registry credentials, found the way Docker finds them, and never shown.
//!
//! Order: `EIGENPUB_REGISTRY_<HOST>_USERNAME`/`_PASSWORD` (for CI without a Docker config;
//! one name per host, see [`env_names`]), then Docker's `config.json` (`DOCKER_CONFIG` or `~/.docker`): `credHelpers`, `auths`
//! (`auth`, `username`/`password`, `identitytoken`), `credsStore`. Docker Hub's several
//! spellings are one registry. A [`Credential`] remembers where it came from so that a
//! refusal can say so, and its `Debug` never prints the secret.

use std::fmt;
use std::path::PathBuf;

mod env_names;

pub use env_names::prefix_for as env_prefix;

/// The secret part of a credential.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Basic { username: String, password: String },
    IdentityToken(String),
}

/// A credential and where it was found.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub secret: Secret,
    /// e.g. "environment (EIGENPUB_REGISTRY_GHCR_IO_*)", "docker-credential-pass".
    pub origin: String,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.secret {
            Secret::Basic { username, .. } => format!("username {username:?}, password <redacted>"),
            Secret::IdentityToken(_) => "identity token <redacted>".into(),
        };
        write!(f, "Credential({kind}, from {})", self.origin)
    }
}

/// The keys Docker may have stored a registry's credentials under: each spelling of the
/// registry (case, trailing dot, default port, this machine's names), as a host and as an
/// `https://` URL; Docker Hub's four keys.
pub fn config_keys(registry: &str) -> Vec<String> {
    if is_docker_hub(registry) {
        vec![
            "https://index.docker.io/v1/".into(),
            "docker.io".into(),
            "registry-1.docker.io".into(),
            "index.docker.io".into(),
        ]
    } else {
        let mut keys = vec![registry.to_string(), format!("https://{registry}")];
        for spelling in
            crate::reference::spellings(registry, crate::reference::plain_http_by_default(registry))
        {
            for key in [spelling.clone(), format!("https://{spelling}")] {
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
        keys
    }
}

/// Docker Hub's names, and the key `docker login` files it under.
pub fn is_docker_hub(registry: &str) -> bool {
    registry == "https://index.docker.io/v1/" || crate::reference::is_docker_hub(registry)
}

/// Why credentials could not be looked up, and what to do when there is more to say than
/// the generic advice.
#[derive(Debug)]
pub struct LookupError {
    pub message: String,
    pub help: Option<String>,
}

impl From<String> for LookupError {
    fn from(message: String) -> LookupError {
        LookupError {
            message,
            help: None,
        }
    }
}

/// Docker's config folder.
pub fn docker_config_dir() -> Option<PathBuf> {
    std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
}

impl Credential {
    /// Tells the sanitiser this credential's secrets, in every form they travel in (the
    /// password, `user:password`, and their base64 forms are derived there), so that no
    /// output of the run can show them.
    pub fn register_secrets(&self) {
        match &self.secret {
            Secret::Basic { username, password } => {
                if !password.is_empty() {
                    crate::sanitize::register(password);
                    crate::sanitize::register(&format!("{username}:{password}"));
                }
            }
            Secret::IdentityToken(token) => crate::sanitize::register(token),
        }
    }
}

/// Docker's `config.json`, read as a regular file of bounded size (a FIFO or a huge file
/// in its place is an error, not a hang). A missing file is `NotFound`.
fn read_config(path: &std::path::Path) -> std::io::Result<String> {
    use crate::project::paths::{ReadError, read_regular};
    const LIMIT: u64 = 8 << 20;
    let bytes = read_regular(path, LIMIT).map_err(|e| match e {
        ReadError::Missing => std::io::Error::from(std::io::ErrorKind::NotFound),
        ReadError::Io(e) => e,
        ReadError::TooLarge { size, .. } => std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("it is {size} bytes; a Docker config of more than 8 MiB is not read"),
        ),
        other => std::io::Error::new(std::io::ErrorKind::InvalidData, other.to_string()),
    })?;
    String::from_utf8(bytes)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"))
}

/// The credential of one `auths` entry of Docker's config, read the way Docker reads it:
/// `identitytoken`, else `auth` (base64 of `user:password`, which must agree with
/// `username`/`password` when those are there too), else `username` and `password`.
/// `None` when it holds none of these. Nothing of the entry is quoted in an error.
fn auths_secret(entry: &serde_json::Value) -> Result<Option<Secret>, String> {
    use base64::Engine as _;
    let field = |name: &str| {
        entry
            .get(name)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
    };
    if let Some(token) = field("identitytoken") {
        return Ok(Some(Secret::IdentityToken(token.to_string())));
    }
    let fields = field("username").zip(field("password"));
    if let Some(auth) = field("auth") {
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        let decoded = engine
            .decode(auth.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or("`auth` is not base64 of user:password")?;
        let (username, password) = decoded
            .split_once(':')
            .ok_or("`auth` is not base64 of user:password (no `:`)")?;
        if fields.is_some_and(|(u, p)| (u, p) != (username, password)) {
            return Err("`auth` does not match `username` and `password`".into());
        }
        return Ok(Some(Secret::Basic {
            username: username.to_string(),
            password: password.to_string(),
        }));
    }
    Ok(fields.map(|(username, password)| Secret::Basic {
        username: username.to_string(),
        password: password.to_string(),
    }))
}

/// A helper's answer as a credential: the user name `<token>` marks an identity token.
fn from_helper(helper: &str, key: &str, origin: String) -> Result<Option<Credential>, String> {
    Ok(super::helper::get(helper, key)?.map(|answer| {
        let secret = if answer.username == "<token>" {
            Secret::IdentityToken(answer.secret)
        } else {
            Secret::Basic {
                username: answer.username,
                password: answer.secret,
            }
        };
        Credential { secret, origin }
    }))
}

/// Finds credentials for a registry, and registers their secrets with the sanitiser so
/// that no output of the run can show them. Blocking (may run a credential helper).
pub fn resolve(registry: &str) -> Result<Option<Credential>, LookupError> {
    let from_env =
        env_names::lookup(registry, |name| std::env::var(name).ok()).map_err(|r| LookupError {
            message: r.message,
            help: r.help,
        })?;
    let found = match from_env {
        Some(env_names::Found {
            prefix,
            username,
            password,
        }) => Some(Credential {
            secret: Secret::Basic { username, password },
            origin: format!("environment ({prefix}_USERNAME/_PASSWORD)"),
        }),
        None => find(registry)?,
    };
    if let Some(credential) = &found {
        credential.register_secrets();
    }
    Ok(found)
}

fn find(registry: &str) -> Result<Option<Credential>, String> {
    let Some(dir) = docker_config_dir() else {
        return Ok(None);
    };
    let path = dir.join("config.json");
    let Ok(text) = read_config(&path) else {
        return Ok(None);
    };
    // serde_json's messages quote no input beyond a character or two; still, this is a
    // file of secrets: say where, not what.
    let config: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{} is not valid JSON (line {}, column {})",
            path.display(),
            e.line(),
            e.column()
        )
    })?;
    for key in config_keys(registry) {
        let helper = config
            .get("credHelpers")
            .and_then(|h| h.get(&key))
            .and_then(|h| h.as_str())
            .filter(|h| !h.is_empty());
        let in_auths = config
            .get("auths")
            .and_then(|a| a.get(&key))
            .is_some_and(|e| {
                e.as_object().is_some_and(|o| {
                    ["auth", "username", "identitytoken"].iter().any(|k| {
                        o.get(*k)
                            .and_then(|v| v.as_str())
                            .is_some_and(|s| !s.is_empty())
                    })
                })
            });
        let store = config
            .get("credsStore")
            .and_then(|s| s.as_str())
            .filter(|s| !s.is_empty());
        if let Some(helper) = helper {
            let origin = format!(
                "credential helper docker-credential-{helper} (credHelpers in {})",
                path.display()
            );
            match from_helper(helper, &key, origin)? {
                Some(c) => return Ok(Some(c)),
                None => continue,
            }
        }
        if in_auths {
            let origin = format!("auths[\"{key}\"] in {}", path.display());
            // An entry with no usable credential (a user name alone) falls through to
            // credsStore, as Docker's does.
            if let Some(secret) = auths_secret(&config["auths"][&key])
                .map_err(|e| format!("cannot read credentials for {key} from {origin}: {e}"))?
            {
                return Ok(Some(Credential { secret, origin }));
            }
        }
        if let Some(store) = store {
            let origin = format!(
                "credential store docker-credential-{store} (credsStore in {})",
                path.display()
            );
            match from_helper(store, &key, origin)? {
                Some(c) => return Ok(Some(c)),
                None => continue,
            }
        }
    }
    Ok(None)
}

/// Stores credentials the way `docker login` does, so that Docker and eigenpub share them:
/// through the configured credential helper or store when there is one, else base64 in
/// `auths` of `config.json` (written atomically, readable only by its owner). Returns where
/// they went.
pub fn store(registry: &str, username: &str, password: &str) -> Result<String, String> {
    use base64::Engine as _;
    let dir = docker_config_dir()
        .ok_or("cannot find Docker's config folder: set DOCKER_CONFIG or HOME")?;
    let path = dir.join("config.json");
    let mut config: serde_json::Value = match read_config(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
        // Never replace a config that exists but cannot be read: it holds other logins.
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    if !config.is_object() {
        return Err(format!("{} is not a JSON object", path.display()));
    }
    let key = if is_docker_hub(registry) {
        "https://index.docker.io/v1/".to_string()
    } else {
        registry.to_string()
    };
    let helper = config
        .get("credHelpers")
        .and_then(|h| h.get(&key))
        .and_then(|h| h.as_str())
        .or_else(|| config.get("credsStore").and_then(|s| s.as_str()))
        .map(str::to_string);
    let auths = config
        .as_object_mut()
        .expect("checked above")
        .entry("auths")
        .or_insert_with(|| serde_json::json!({}));
    if !auths.is_object() {
        *auths = serde_json::json!({});
    }
    let where_ = if let Some(helper) = helper {
        run_helper_store(&helper, &key, username, password)?;
        auths[&key] = serde_json::json!({});
        format!("credential helper docker-credential-{helper}")
    } else {
        let auth =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        auths[&key] = serde_json::json!({ "auth": auth });
        format!("{}", path.display())
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let bytes = serde_json::to_vec_pretty(&config).expect("JSON values serialize");
    write_config(&path, &bytes)?;
    Ok(where_)
}

/// Writes Docker's `config.json` atomically, readable only by its owner. When it is a
/// symlink (a dotfiles repository, a mounted secret), the file it points at is written, as
/// Docker does, and the link stays.
fn write_config(path: &std::path::Path, bytes: &[u8]) -> Result<(), String> {
    let target = match std::fs::read_link(path) {
        Ok(link) => {
            // Relative links are relative to the link's folder.
            let target = path.parent().map_or(link.clone(), |dir| dir.join(&link));
            std::fs::canonicalize(&target).unwrap_or(target)
        }
        Err(_) => path.to_path_buf(),
    };
    crate::atomic::write(&target, bytes, 0o600)
        .map_err(|e| format!("cannot write {}: {e}", target.display()))
}

fn run_helper_store(helper: &str, key: &str, username: &str, password: &str) -> Result<(), String> {
    let program = format!("docker-credential-{helper}");
    let payload = serde_json::json!({ "ServerURL": key, "Username": username, "Secret": password });
    let out = super::helper::run(
        &program,
        "store",
        payload.to_string().as_bytes(),
        super::helper::timeout(),
    )
    .map_err(|e| format!("{program} store failed: {e}"))?;
    if !out.status.success() {
        // The password is a registered secret by now; the sanitiser removes it if echoed.
        return Err(format!(
            "{program} store failed: {}",
            crate::sanitize::truncate(
                &crate::sanitize::text(String::from_utf8_lossy(&out.stderr).trim()),
                300
            )
        ));
    }
    Ok(())
}

/// Forgets the credentials stored for a registry, as `docker logout` does: erased from its
/// credential helper or store (when one is configured) and removed from `auths`. Returns
/// where they were, or `None` when nothing was stored.
pub fn erase(registry: &str) -> Result<Option<String>, String> {
    let dir = docker_config_dir()
        .ok_or("cannot find Docker's config folder: set DOCKER_CONFIG or HOME")?;
    let path = dir.join("config.json");
    let mut config: serde_json::Value = match read_config(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let keys = config_keys(registry);
    let helper = keys
        .iter()
        .find_map(|k| config.get("credHelpers")?.get(k)?.as_str())
        .or_else(|| config.get("credsStore").and_then(|s| s.as_str()))
        .map(str::to_string);
    let mut removed = None;
    if let Some(auths) = config.get_mut("auths").and_then(|a| a.as_object_mut()) {
        for key in &keys {
            if auths.remove(key).is_some() {
                removed = Some(format!("{}", path.display()));
            }
        }
    }
    if let Some(helper) = helper {
        for key in &keys {
            if run_helper_erase(&helper, key)? {
                removed = Some(format!("credential helper docker-credential-{helper}"));
            }
        }
    }
    if removed.is_some() {
        let bytes = serde_json::to_vec_pretty(&config).expect("JSON values serialize");
        write_config(&path, &bytes)?;
    }
    Ok(removed)
}

/// `docker-credential-<helper> erase`; false when the helper holds nothing for `key`.
fn run_helper_erase(helper: &str, key: &str) -> Result<bool, String> {
    let program = format!("docker-credential-{helper}");
    let out = super::helper::run(&program, "erase", key.as_bytes(), super::helper::timeout())
        .map_err(|e| format!("{program} erase failed: {e}"))?;
    if out.status.success() {
        return Ok(true);
    }
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if said.contains("credentials not found") {
        return Ok(false);
    }
    Err(format!("{program} erase failed: {}", sanitize_line(&said)))
}

/// Helper output, made safe to print: one line, printable characters, bounded.
fn sanitize_line(text: &str) -> String {
    crate::sanitize::text(text)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect::<String>()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_writes_through_a_symlinked_config() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("dotfiles/docker.json");
        std::fs::create_dir_all(real.parent().unwrap()).unwrap();
        std::fs::write(&real, "{}").unwrap();
        let link = dir.path().join("config.json");
        std::os::unix::fs::symlink("dotfiles/docker.json", &link).unwrap();
        write_config(&link, b"{\"auths\":{}}").unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read(&real).unwrap(), b"{\"auths\":{}}");
    }

    #[test]
    fn docker_hub_spellings_are_one_registry() {
        assert!(is_docker_hub("docker.io"));
        assert!(is_docker_hub("registry-1.docker.io"));
        assert!(config_keys("docker.io").contains(&"https://index.docker.io/v1/".to_string()));
        assert!(!is_docker_hub("ghcr.io"));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let c = Credential {
            secret: Secret::Basic {
                username: "u".into(),
                password: "hunter2".into(),
            },
            origin: "test".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn a_docker_config_that_is_not_a_bounded_regular_file_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("config.json");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        assert!(read_config(&fifo).is_err());
        let missing = read_config(&dir.path().join("absent.json")).unwrap_err();
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
        let big = dir.path().join("big.json");
        std::fs::write(&big, vec![b' '; (8 << 20) + 1]).unwrap();
        assert!(read_config(&big).unwrap_err().to_string().contains("8 MiB"));
    }
}
