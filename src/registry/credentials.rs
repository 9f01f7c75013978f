//! Registry credentials, found the way Docker finds them, and never shown.
//!
//! Order: `EIGENPUB_REGISTRY_<HOST>_USERNAME`/`_PASSWORD` (for CI without a Docker config),
//! then Docker's `config.json` (`DOCKER_CONFIG` or `~/.docker`): `credHelpers`, `auths`
//! (`auth`, `username`/`password`, `identitytoken`), `credsStore`. Docker Hub's several
//! spellings are one registry. A [`Credential`] remembers where it came from so that a
//! refusal can say so, and its `Debug` never prints the secret.

use std::fmt;
use std::path::PathBuf;

use crate::reference::DOCKER_HUB;

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

impl Credential {
    /// The secret strings, for scrubbing them from anything printed.
    pub fn secrets(&self) -> Vec<&str> {
        match &self.secret {
            Secret::Basic { password, .. } => vec![password.as_str()],
            Secret::IdentityToken(t) => vec![t.as_str()],
        }
    }
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

/// The keys Docker may have stored a registry's credentials under.
pub fn config_keys(registry: &str) -> Vec<String> {
    if is_docker_hub(registry) {
        vec![
            "https://index.docker.io/v1/".into(),
            "docker.io".into(),
            "registry-1.docker.io".into(),
            "index.docker.io".into(),
        ]
    } else {
        vec![registry.to_string(), format!("https://{registry}")]
    }
}

pub fn is_docker_hub(registry: &str) -> bool {
    matches!(
        registry,
        DOCKER_HUB | "registry-1.docker.io" | "index.docker.io" | "https://index.docker.io/v1/"
    )
}

/// The environment variable prefix for a registry: `EIGENPUB_REGISTRY_GHCR_IO`.
pub fn env_prefix(registry: &str) -> String {
    let host: String = registry
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("EIGENPUB_REGISTRY_{host}")
}

/// Docker's config folder.
pub fn docker_config_dir() -> Option<PathBuf> {
    std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
}

/// Finds credentials for a registry. Blocking (may run a credential helper).
pub fn resolve(registry: &str) -> Result<Option<Credential>, String> {
    let prefix = env_prefix(registry);
    let user = std::env::var(format!("{prefix}_USERNAME")).ok();
    let pass = std::env::var(format!("{prefix}_PASSWORD")).ok();
    match (user, pass) {
        (Some(username), Some(password)) => {
            return Ok(Some(Credential {
                secret: Secret::Basic { username, password },
                origin: format!("environment ({prefix}_USERNAME/_PASSWORD)"),
            }));
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(format!(
                "only one of {prefix}_USERNAME and {prefix}_PASSWORD is set; set both, or neither"
            ));
        }
        (None, None) => {}
    }
    let Some(dir) = docker_config_dir() else {
        return Ok(None);
    };
    let path = dir.join("config.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let config: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?;
    for key in config_keys(registry) {
        let origin = if let Some(helper) = config
            .get("credHelpers")
            .and_then(|h| h.get(&key))
            .and_then(|h| h.as_str())
        {
            format!(
                "credential helper docker-credential-{helper} (credHelpers in {})",
                path.display()
            )
        } else if config
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
            })
        {
            format!("auths[\"{key}\"] in {}", path.display())
        } else if let Some(store) = config.get("credsStore").and_then(|s| s.as_str()) {
            format!(
                "credential store docker-credential-{store} (credsStore in {})",
                path.display()
            )
        } else {
            continue;
        };
        let reader = std::io::Cursor::new(text.as_bytes());
        match docker_credential::get_credential_from_reader(reader, &key) {
            Ok(docker_credential::DockerCredential::UsernamePassword(username, password)) => {
                return Ok(Some(Credential {
                    secret: Secret::Basic { username, password },
                    origin,
                }));
            }
            Ok(docker_credential::DockerCredential::IdentityToken(token)) => {
                return Ok(Some(Credential {
                    secret: Secret::IdentityToken(token),
                    origin,
                }));
            }
            // A store or helper that has nothing for this key: try the next spelling, and in
            // the end go anonymous, as Docker does.
            Err(docker_credential::CredentialRetrievalError::NoCredentialConfigured) => continue,
            Err(docker_credential::CredentialRetrievalError::HelperFailure {
                helper,
                stdout,
                stderr,
            }) => {
                let not_found = |s: &str| s.to_ascii_lowercase().contains("credentials not found");
                if not_found(&stdout) || not_found(&stderr) {
                    continue;
                }
                // Helpers report failures on stdout or stderr; a failing helper prints no
                // secret, but keep what it said short.
                let said = if stderr.trim().is_empty() {
                    stdout
                } else {
                    stderr
                };
                let said: String = said.trim().chars().take(300).collect();
                return Err(format!(
                    "credential helper {helper} failed for {key}: {said}"
                ));
            }
            Err(e) => {
                return Err(format!(
                    "cannot read credentials for {key} from {origin}: {e}"
                ));
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
    let mut config: serde_json::Value = match std::fs::read_to_string(&path) {
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
    crate::atomic::write(&path, &bytes, 0o600)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(where_)
}

fn run_helper_store(helper: &str, key: &str, username: &str, password: &str) -> Result<(), String> {
    use std::io::Write;
    let program = format!("docker-credential-{helper}");
    let mut child = std::process::Command::new(&program)
        .arg("store")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let payload = serde_json::json!({ "ServerURL": key, "Username": username, "Secret": password });
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(payload.to_string().as_bytes())
            .map_err(|e| format!("cannot talk to {program}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{program} failed: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} store failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names() {
        assert_eq!(env_prefix("ghcr.io"), "EIGENPUB_REGISTRY_GHCR_IO");
        assert_eq!(
            env_prefix("127.0.0.1:5000"),
            "EIGENPUB_REGISTRY_127_0_0_1_5000"
        );
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
}
