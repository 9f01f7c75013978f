//! `eigenpub login HOST -u USER [--password-stdin]`: check credentials against a registry
//! (through the same client `plan` and `apply` use, with the project's settings for that
//! host) and store them as `docker login` does; without `--password-stdin` the password is
//! asked at the terminal, without echo. `eigenpub logout HOST` forgets them again.

use std::io::Read;
use std::sync::Arc;

use super::{Context, Exit, Failure, Outcome, connection};
use crate::cli::{LoginArgs, LogoutArgs};
use crate::diagnostic::Problem;
use crate::diagnostic::codes;
use crate::project::file::ProjectFile;
use crate::registry::credentials::{self, Credential, Secret};
use crate::registry::open_registry;
use crate::registry::remote::{Access, ErrorKind, Stats};

pub(super) async fn run(ctx: &Context, args: &LoginArgs) -> Outcome {
    let host = registry_host(
        &args.registry,
        "eigenpub login ghcr.io -u USER --password-stdin",
    )?;
    let password = if args.password_stdin {
        read_password(&host)?
    } else {
        prompt_password(&host, &args.username)?
    };
    // The project's settings for this registry (plain-http, ca-file), when there are some.
    let settings = crate::project::paths::project_text(&ctx.config)
        .ok()
        .and_then(|text| toml::from_str::<ProjectFile>(&text).ok())
        .map(|p| crate::project::file::RegistrySettings::for_host(&p.registries, &host))
        .unwrap_or_default();
    let credential = Credential {
        secret: Secret::Basic {
            username: args.username.clone(),
            password: password.clone(),
        },
        origin: "eigenpub login".into(),
    };
    credential.register_secrets();
    let registry = open_registry(
        &host,
        &connection(&ctx.project_dir(), &settings),
        Access::Pull,
        Some(credential),
        Arc::new(Stats::default()),
    )?;
    match registry.check_login().await {
        Ok(()) if !registry.challenged().await && !ctx.quiet() => eprintln!(
            "warning: {host} answered without asking for credentials, so they could not be checked; storing them anyway (they are sent when the registry asks)"
        ),
        Ok(()) => {}
        Err(e) => {
            let refused = e.kind == ErrorKind::Auth;
            let mut problem = crate::registry::TargetError::from(e).to_problem();
            if refused {
                problem.help = Some(format!(
                    "{host} refused these credentials: check the user name and the password or token (for GHCR, a token with write:packages); nothing was stored"
                ));
            }
            return Err(problem.into());
        }
    }
    let user = args.username.clone();
    // Filed under the registry's canonical spelling (`ghcr.io` for `GHCR.io:443`), the
    // first key every lookup tries, whichever spelling a project uses.
    let store_host = crate::reference::spellings(&host, settings.plain_http_for(&host))
        .into_iter()
        .next()
        .unwrap_or_else(|| host.clone());
    let stored =
        tokio::task::spawn_blocking(move || credentials::store(&store_host, &user, &password))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
    let place = stored.map_err(|m| {
        Problem::error(
            codes::LOGIN_STORE,
            format!("the registry accepted the credentials, but they could not be stored: {m}"),
        )
        .help("check that Docker's config.json (or DOCKER_CONFIG) is writable, or that its credential helper works")
    })?;
    if !ctx.quiet() {
        crate::report::out::line(&format!(
            "Login succeeded for {}; credentials stored in {place}.",
            args.registry
        ));
    }
    Ok(Exit::Ok)
}

/// Asks for the password at the terminal, without echo; refuses when there is none.
fn prompt_password(host: &str, username: &str) -> Result<String, Failure> {
    use std::io::IsTerminal;
    let hint = format!(
        "pipe the password or token in: `echo \"$TOKEN\" | eigenpub login {host} -u USER --password-stdin`"
    );
    if !std::io::stdin().is_terminal() {
        return Err(Problem::error(
            codes::LOGIN_PASSWORD,
            "no terminal to ask for the password, and --password-stdin was not given",
        )
        .help(hint)
        .into());
    }
    let password = rpassword::prompt_password(format!("Password for {username} at {host}: "))
        .map_err(|e| {
            Problem::error(
                codes::LOGIN_PASSWORD,
                format!("cannot read the password: {e}"),
            )
            .help(hint.clone())
        })?;
    if password.is_empty() {
        return Err(
            Problem::error(codes::LOGIN_PASSWORD, "the password is empty")
                .help(hint)
                .into(),
        );
    }
    Ok(password)
}

/// `eigenpub logout HOST`: forget the stored credentials, as `docker logout` does.
pub(super) fn logout(ctx: &Context, args: &LogoutArgs) -> Outcome {
    let host = registry_host(&args.registry, "eigenpub logout ghcr.io")?;
    let removed = credentials::erase(&host).map_err(|m| {
        Problem::error(
            codes::LOGOUT_ERASE,
            format!("cannot remove the credentials for {host}: {m}"),
        )
        .help("check that Docker's config.json (or DOCKER_CONFIG) is writable, or that its credential helper works")
    })?;
    if !ctx.quiet() {
        match removed {
            Some(place) => crate::report::out::line(&format!(
                "Removed the credentials for {host} from {place}."
            )),
            None => crate::report::out::line(&format!("Not logged in to {host}.")),
        }
    }
    Ok(Exit::Ok)
}

/// The password from standard input, without its line ending.
fn read_password(host: &str) -> Result<String, Failure> {
    let mut password = String::new();
    // A password or token, not a stream: bounded.
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut password)
        .map_err(|e| {
        Problem::error(
            codes::LOGIN_PASSWORD,
            format!("cannot read the password from standard input: {e}"),
        )
        .help("pipe the password or token in, e.g. `echo \"$TOKEN\" | eigenpub login HOST -u USER --password-stdin`")
    })?;
    let password = password.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err(Problem::error(codes::LOGIN_PASSWORD, "no password on standard input")
            .help(format!(
                "pipe it in, e.g. `echo \"$TOKEN\" | eigenpub login {host} -u USER --password-stdin`"
            ))
            .into());
    }
    Ok(password)
}

/// The registry host a user typed (`ghcr.io`, `https://ghcr.io/`), checked.
fn registry_host(typed: &str, example: &str) -> Result<String, Problem> {
    let host = typed
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    crate::reference::parse_prefix(&host).map_err(|m| {
        Problem::error(codes::LOGIN_HOST, m)
            .help(format!("give the registry host, e.g. `{example}`"))
    })?;
    Ok(host)
}
