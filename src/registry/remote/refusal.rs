//! What a registry's refusal means, and what to do about it, from everything it said.
//!
//! Hosted registries answer the same status for different things: a 403 is a missing
//! permission, an expired ECR token, a full Harbor quota, a GHCR rate limit, an Artifact
//! Registry repository that does not exist; a 401 with `error="insufficient_scope"` means
//! the credentials were accepted but lack an action; a 400 or 412 may be an immutable tag.
//! The fix differs per registry (`docs/registries.md`, and the sources collected in the
//! project's registry notes). This module is the pure table: the facts of one refusal
//! (host, status, error codes, `message`, `detail`, the challenge's parameters, read or
//! write) in, a kind and a help text out. Nothing here sends a request.

use super::error::ErrorKind;

/// Which hosted registry a host (or its token service) is, where that changes the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Family {
    Ghcr,
    /// Amazon ECR, with the region from its host name.
    Ecr {
        region: String,
    },
    /// Google Artifact Registry (`*-docker.pkg.dev`) or GCR.
    Gar,
    Acr,
    DockerHub,
    Quay,
    GitLab,
    Harbor,
    Artifactory,
    Other,
}

/// The registry's family from its host, and from its challenge's realm when the host does
/// not tell (self-hosted GitLab, Harbor and Artifactory).
pub(super) fn family(host: &str, realm: Option<&str>) -> Family {
    let name = host_name(host);
    if name == "ghcr.io" {
        return Family::Ghcr;
    }
    if name.ends_with(".amazonaws.com")
        && let Some((_, rest)) = name.split_once(".dkr.ecr.")
    {
        let region = rest.split('.').next().unwrap_or("").to_string();
        return Family::Ecr { region };
    }
    if name.ends_with("-docker.pkg.dev") || name == "gcr.io" || name.ends_with(".gcr.io") {
        return Family::Gar;
    }
    if name.ends_with(".azurecr.io") {
        return Family::Acr;
    }
    if crate::registry::credentials::is_docker_hub(&name) {
        return Family::DockerHub;
    }
    if name == "quay.io" {
        return Family::Quay;
    }
    if name == "registry.gitlab.com" {
        return Family::GitLab;
    }
    let realm = realm.unwrap_or("").to_ascii_lowercase();
    if name.ends_with(".jfrog.io") || realm.contains("/artifactory/api/docker/") {
        return Family::Artifactory;
    }
    if realm.ends_with("/jwt/auth") {
        return Family::GitLab;
    }
    if realm.ends_with("/service/token") || realm == "harbor" {
        return Family::Harbor;
    }
    Family::Other
}

/// The host without its port, lower-case.
fn host_name(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    match host.rsplit_once(':') {
        Some((name, port))
            if !name.is_empty()
                && port.chars().all(|c| c.is_ascii_digit())
                && !name.ends_with(':') =>
        {
            name.to_string()
        }
        _ => host,
    }
}

/// Everything one refusal said, and what was being done.
#[derive(Debug, Clone, Default)]
pub(super) struct Refusal<'a> {
    /// The host as the project names it.
    pub host: &'a str,
    /// The repository the request was for, when the URL names one.
    pub repository: Option<String>,
    pub status: u16,
    /// The registry's error codes (`DENIED`, `TAG_INVALID`, …).
    pub codes: Vec<String>,
    /// The errors' `message`s, joined.
    pub message: String,
    /// The errors' `detail`s (strings, or compact JSON), joined.
    pub detail: String,
    /// The challenge's scheme (`Bearer`, `Basic`), when the answer carried one.
    pub challenge: Option<String>,
    /// The challenge's `error=` parameter (`insufficient_scope`, `invalid_token`).
    pub challenge_error: Option<String>,
    /// The token service's realm, or a Basic challenge's realm (Harbor's is `harbor`).
    pub realm: Option<String>,
    /// True for a read (a plan's check, a GET), false for a write.
    pub read: bool,
    /// A rate-limit quota the registry says is spent for hours ("0 of 100 left per 6 h").
    pub quota: Option<String>,
    /// Who the registry saw, as the help words it (`the credentials from …`).
    pub who: String,
    /// Whether credentials were sent.
    pub authenticated: bool,
    /// What to do when the registry refuses the credentials themselves.
    pub login_help: String,
}

impl Refusal<'_> {
    fn has_code(&self, code: &str) -> bool {
        self.codes.iter().any(|c| c.eq_ignore_ascii_case(code))
    }

    /// Message and detail, lower-case, for matching the registries' known phrases.
    fn text(&self) -> String {
        format!("{} {}", self.message, self.detail).to_ascii_lowercase()
    }

    fn says(&self, phrase: &str) -> bool {
        self.text().contains(phrase)
    }

    fn family(&self) -> Family {
        family(self.host, self.realm.as_deref())
    }

    fn repository(&self) -> String {
        self.repository
            .clone()
            .unwrap_or_else(|| "this repository".into())
    }

    /// "may not read R" / "may not push to R".
    fn may_not(&self) -> String {
        let verb = if self.read { "read" } else { "push to" };
        format!("{} may not {verb} {}", self.who, self.repository())
    }

    /// True when the registry says it is throttling (429, `TOOMANYREQUESTS`, GHCR's
    /// "secondary rate limit" 403).
    pub fn throttled(&self) -> bool {
        self.status == 429
            || self.has_code("TOOMANYREQUESTS")
            || self.says("rate limit")
            || self.says("too many requests")
    }

    /// True when the registry refuses to move a tag it holds (an immutable-tag rule).
    pub fn immutable_tag(&self) -> bool {
        self.status == 412 || self.has_code("PRECONDITION") || self.says("immutable")
    }

    /// True when the registry says the repository itself does not exist (`NAME_UNKNOWN`
    /// on a registry that does not create repositories on push).
    pub fn repository_missing(&self) -> bool {
        self.status == 404 && self.has_code("NAME_UNKNOWN") && self.repositories_must_exist()
    }

    /// ECR needs its repositories created first; its `NAME_UNKNOWN` says "does not exist in
    /// the registry with id". distribution (and GHCR, Docker Hub, ACR, Quay) create a
    /// repository at its first push and answer `NAME_UNKNOWN` for one not pushed yet.
    pub fn repositories_must_exist(&self) -> bool {
        matches!(self.family(), Family::Ecr { .. } | Family::Gar)
            || self.says("does not exist in the registry with id")
    }
}

/// The kind and help for a refusal.
pub(super) fn classify(r: &Refusal<'_>) -> (ErrorKind, String) {
    let family = r.family();
    if r.has_code("BLOB_UPLOAD_UNKNOWN") || r.has_code("BLOB_UPLOAD_INVALID") {
        return (
            ErrorKind::Server,
            "the registry lost the upload session, also in the new sessions eigenpub started; run apply again: it pushes only what is still missing".into(),
        );
    }
    if r.status >= 500 && !r.throttled() {
        return (
            ErrorKind::Server,
            "the registry failed; try again later".into(),
        );
    }
    if r.throttled() {
        return (ErrorKind::Rejected, throttled_help(r, &family));
    }
    if r.immutable_tag() && !r.read {
        return (ErrorKind::Rejected, immutable_help(r, &family));
    }
    match r.status {
        401 => unauthorized(r, &family),
        403 => forbidden(r, &family),
        404 if r.repository_missing() => (
            ErrorKind::RepositoryMissing,
            repository_missing_help(r, &family),
        ),
        404 => (
            ErrorKind::Rejected,
            "check the repository name; some registries need the repository created first".into(),
        ),
        400..=499 => client_error(r, &family),
        _ => (
            ErrorKind::Server,
            "the registry failed; try again later".into(),
        ),
    }
}

fn throttled_help(r: &Refusal<'_>, family: &Family) -> String {
    let host = r.host;
    if *family == Family::DockerHub || r.says("pull rate limit") {
        let left = match &r.quota {
            Some(quota) => format!(" ({quota}; not retried: it refills in hours)"),
            None => String::new(),
        };
        return format!(
            "Docker Hub's pull limit is reached{left}: 10 pulls an hour for anonymous access, 100 an hour for a personal account (every manifest GET counts, a HEAD does not); {}, or wait for the limit to reset and run again (a plan of unchanged tags only sends HEADs)",
            if r.authenticated {
                "an organisation's paid plan raises the limit"
            } else {
                "log in (`docker login` or `eigenpub login docker.io`) for the higher limit"
            }
        );
    }
    if *family == Family::Ghcr && r.status == 403 {
        return format!(
            "GHCR's secondary rate limit: wait a few minutes and run again, and lower [registries.\"{host}\"] requests-per-second or max-concurrency"
        );
    }
    if let Some(quota) = &r.quota {
        return format!(
            "the registry's rate limit is spent ({quota}), so eigenpub did not retry: wait for it to refill, or use credentials with a higher limit"
        );
    }
    format!(
        "the registry is rate limiting requests and kept doing so through eigenpub's retries: wait a little and run again (it pushes only what is still missing), and lower [registries.\"{host}\"] requests-per-second or max-concurrency"
    )
}

fn immutable_help(r: &Refusal<'_>, family: &Family) -> String {
    let repository = r.repository();
    let rule = match family {
        Family::Ecr { region } => format!(
            "ECR repository {repository} has immutable tags (image tag mutability); to allow overwriting, `aws ecr put-image-tag-mutability --repository-name {repository} --image-tag-mutability MUTABLE{}` (or IMMUTABLE_WITH_EXCLUSION with a filter for mutable tags)",
            region_flag(region)
        ),
        Family::Harbor => "a Harbor tag immutability rule of the project matches this tag (Project > Policy > Tag Immutability)".into(),
        Family::DockerHub => "the Docker Hub repository has immutable tags (repository settings)".into(),
        Family::GitLab => "a GitLab protected or immutable container tag rule matches this tag".into(),
        _ => format!("{repository} has an immutable-tag rule that matches this tag"),
    };
    format!(
        "the registry forbids overwriting this tag: {rule}. A published tag is better left as it is: publish the new content under a new version (its own tag); eigenpub only moves a tag that is in mutable-tags or with --allow-overwrite"
    )
}

fn unauthorized(r: &Refusal<'_>, family: &Family) -> (ErrorKind, String) {
    let insufficient = r
        .challenge_error
        .as_deref()
        .is_some_and(|e| e.eq_ignore_ascii_case("insufficient_scope"));
    let harbor_basic = r.authenticated
        && r.challenge
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case("basic"))
        && *family == Family::Harbor;
    if insufficient && !r.authenticated {
        // Anonymous access may not do this: the fix is to log in.
        return (ErrorKind::Auth, r.login_help.clone());
    }
    if insufficient || harbor_basic || (*family == Family::Harbor && r.says("not found")) {
        let why = match family {
            Family::DockerHub => {
                "; a Docker Hub access token needs the Read & Write scope to push (Read-only tokens only pull), and the namespace must be your user's or an organisation that lets this account push".to_string()
            }
            Family::GitLab => {
                "; on GitLab the image path must be an existing project's path followed by at most two more components, and the token needs write_registry to push (a CI job token may push only to its own project's registry)".to_string()
            }
            Family::Harbor => {
                "; on Harbor the project (the first part of the path) must exist, and the user or robot account needs push and pull permission in it".to_string()
            }
            Family::Ghcr => format!("; {}", ghcr_permissions()),
            _ => "; check the token's scopes and that the namespace is one this account may push to".to_string(),
        };
        let refused = if r.authenticated {
            let verb = if r.read { "read" } else { "push to" };
            format!(
                "the registry accepted {}, but they may not {verb} {}",
                r.who,
                r.repository()
            )
        } else {
            r.may_not()
        };
        return (ErrorKind::Denied, format!("{refused}{why}"));
    }
    let extra = match family {
        Family::Ghcr if r.authenticated => "; GHCR accepts only a classic personal access token (write:packages to push, read:packages to read) or a workflow's GITHUB_TOKEN: fine-grained tokens and GitHub App tokens are not supported".to_string(),
        Family::Ecr { region } => format!(
            "; for ECR: `aws ecr get-login-password{} | docker login --username AWS --password-stdin {}` (its tokens last 12 hours), or the docker-credential-ecr-login helper",
            region_flag(region),
            r.host
        ),
        _ => String::new(),
    };
    (ErrorKind::Auth, format!("{}{extra}", r.login_help))
}

fn forbidden(r: &Refusal<'_>, family: &Family) -> (ErrorKind, String) {
    if r.says("token has expired") || r.says("authorization token has expired") {
        let how = match family {
            Family::Ecr { region } => format!(
                "ECR tokens last 12 hours: log in again with `aws ecr get-login-password{} | docker login --username AWS --password-stdin {}`, or use the docker-credential-ecr-login helper, which renews them",
                region_flag(region),
                r.host
            ),
            _ => r.login_help.clone(),
        };
        return (
            ErrorKind::Auth,
            format!("the registry says the authorization token expired; {how}"),
        );
    }
    if r.says("quota") || r.says("exceed the configured upper limit") {
        return (
            ErrorKind::Denied,
            match family {
                Family::Harbor | Family::Other => "the project's storage quota is full (Harbor): ask its administrator to raise the project's quota, or delete old artifacts and run garbage collection".into(),
                Family::Ecr { .. } => "an ECR service quota is reached (images per repository): delete untagged or old images (a lifecycle policy does it) or ask AWS for a higher quota".into(),
                _ => "the registry's quota for this repository or account is reached: free space or ask for a higher quota".into(),
            },
        );
    }
    if *family == Family::Gar || r.says("(or it may not exist)") {
        let read = if r.read {
            "roles/artifactregistry.reader"
        } else {
            "roles/artifactregistry.writer"
        };
        return (
            ErrorKind::Denied,
            format!(
                "Artifact Registry answers this both when the repository does not exist and when {}: create the repository (`gcloud artifacts repositories create REPOSITORY --repository-format=docker --location=LOCATION`; images inside it are created on push), or grant {read} on it",
                r.may_not()
            ),
        );
    }
    if *family == Family::Ghcr || r.says("write organization package") || r.says("write_package") {
        let fix = if r.says("installation not allowed to write") {
            "the workflow's GITHUB_TOKEN may not write packages: add `permissions: packages: write` to the workflow or job".to_string()
        } else if r.says("write_package") {
            "the package exists and does not grant this repository's workflows write access: in the package's settings, under \"Manage Actions access\", add the repository with the Write role (a package first pushed by another identity is not linked to the workflow's repository)".to_string()
        } else {
            ghcr_permissions()
        };
        return (ErrorKind::Denied, format!("{}; {fix}", r.may_not()));
    }
    (
        ErrorKind::Denied,
        format!(
            "{}; check the repository's permissions for this account{}",
            r.may_not(),
            match family {
                Family::Ecr { .. } =>
                    " (IAM: ecr:BatchGetImage and ecr:GetDownloadUrlForLayer to read; ecr:InitiateLayerUpload, ecr:UploadLayerPart, ecr:CompleteLayerUpload, ecr:PutImage and ecr:BatchCheckLayerAvailability to push)",
                Family::Acr => " (the AcrPush role to push, AcrPull to read)",
                Family::Quay => " (a robot account needs write permission on the repository)",
                _ => "",
            }
        ),
    )
}

fn ghcr_permissions() -> String {
    "for GHCR, a workflow's GITHUB_TOKEN needs `permissions: packages: write` and the package must grant the repository access (package settings, \"Manage Actions access\"); a personal access token must be classic, with write:packages (read:packages to read): fine-grained tokens and GitHub App tokens are not supported".to_string()
}

fn repository_missing_help(r: &Refusal<'_>, family: &Family) -> String {
    let repository = r.repository();
    match family {
        Family::Ecr { region } => format!(
            "ECR does not create repositories on push: create it with `aws ecr create-repository --repository-name {repository}{}` (or in the console, or with your infrastructure code), then run again",
            region_flag(region)
        ),
        Family::Gar => "create the Artifact Registry repository first: `gcloud artifacts repositories create REPOSITORY --repository-format=docker --location=LOCATION`".into(),
        _ => format!(
            "this registry does not create repositories on push: create {repository} in the registry first, then run again"
        ),
    }
}

fn client_error(r: &Refusal<'_>, family: &Family) -> (ErrorKind, String) {
    if r.has_code("MANIFEST_INVALID") {
        if *family == Family::Quay
            || r.says("not one of")
            || r.says("media type")
            || r.says("mediatype")
        {
            return (
                ErrorKind::Rejected,
                "the registry refuses the artifact's media types (Quay before 3.10 accepts only the config media types in ALLOWED_OCI_ARTIFACT_TYPES): its administrator can add eigenpub's config media type there, or set IGNORE_UNKNOWN_MEDIATYPES: true (Quay 3.10 and later)".into(),
            );
        }
        if !r.detail.is_empty() {
            return (
                ErrorKind::Rejected,
                "the registry refused the manifest for the reason in its detail above; if that names something eigenpub wrote wrong, please report it with -v output".into(),
            );
        }
    }
    if r.has_code("MANIFEST_INVALID") || r.has_code("DIGEST_INVALID") {
        return (
            ErrorKind::Rejected,
            "the registry refused the request as sent; this is likely a bug in eigenpub or an unsupported registry: please report it with -v output".into(),
        );
    }
    if r.has_code("NAME_INVALID") {
        return (
            ErrorKind::Rejected,
            format!(
                "the registry refuses the repository name {}{}",
                r.repository(),
                match family {
                    Family::Quay =>
                        ": Quay refuses nested names unless FEATURE_EXTENDED_REPOSITORY_NAMES is on; use a single-level prefix",
                    Family::GitLab =>
                        ": on GitLab it must be a project's path plus at most two more components",
                    _ =>
                        ": check the registry's naming rules (path depth, characters) and the project's registry prefix",
                }
            ),
        );
    }
    (
        ErrorKind::Rejected,
        "the registry refused the request for the reason shown; docs/registries.md lists what each registry refuses and why; if the reason names something eigenpub sent wrong, please report it with -v output".into(),
    )
}

fn region_flag(region: &str) -> String {
    if region.is_empty() {
        String::new()
    } else {
        format!(" --region {region}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal<'a>(host: &'a str, status: u16, code: &str, message: &str) -> Refusal<'a> {
        Refusal {
            host,
            repository: Some("acme/x".into()),
            status,
            codes: if code.is_empty() {
                vec![]
            } else {
                vec![code.into()]
            },
            message: message.into(),
            who: "the credentials from the environment".into(),
            authenticated: true,
            login_help: "log in again".into(),
            ..Refusal::default()
        }
    }

    #[test]
    fn families_from_hosts_and_realms() {
        assert_eq!(family("ghcr.io", None), Family::Ghcr);
        assert_eq!(
            family("123456789012.dkr.ecr.eu-west-1.amazonaws.com", None),
            Family::Ecr {
                region: "eu-west-1".into()
            }
        );
        assert_eq!(
            family("123456789012.dkr.ecr.eu-west-1.amazonaws.com:5000", None),
            Family::Ecr {
                region: "eu-west-1".into()
            }
        );
        assert_eq!(family("us-central1-docker.pkg.dev", None), Family::Gar);
        assert_eq!(family("acme.azurecr.io", None), Family::Acr);
        assert_eq!(family("docker.io", None), Family::DockerHub);
        assert_eq!(family("quay.io", None), Family::Quay);
        assert_eq!(
            family("reg.example", Some("https://gitlab.example/jwt/auth")),
            Family::GitLab
        );
        assert_eq!(
            family("reg.example", Some("https://reg.example/service/token")),
            Family::Harbor
        );
        assert_eq!(family("reg.example", Some("harbor")), Family::Harbor);
        assert_eq!(family("127.0.0.1:5000", None), Family::Other);
        assert_eq!(family("[::1]:5000", None), Family::Other);
    }

    #[test]
    fn reads_and_writes_are_worded_apart() {
        let mut r = refusal("reg.example", 403, "DENIED", "denied");
        r.read = true;
        let (kind, help) = classify(&r);
        assert_eq!(kind, ErrorKind::Denied);
        assert!(help.contains("may not read acme/x"), "{help}");
        assert!(!help.contains("GHCR"), "{help}");
        r.read = false;
        assert!(classify(&r).1.contains("may not push to acme/x"));
    }

    #[test]
    fn ghcr_names_the_exact_fix() {
        let r = refusal(
            "ghcr.io",
            403,
            "DENIED",
            "installation not allowed to Write organization package",
        );
        assert!(classify(&r).1.contains("permissions: packages: write"));
        let r = refusal("ghcr.io", 403, "DENIED", "permission_denied: write_package");
        assert!(classify(&r).1.contains("Manage Actions access"));
        let mut r = refusal("ghcr.io", 401, "UNAUTHORIZED", "authentication required");
        r.challenge = Some("Bearer".into());
        let (kind, help) = classify(&r);
        assert_eq!(kind, ErrorKind::Auth);
        assert!(help.contains("fine-grained"), "{help}");
    }

    #[test]
    fn insufficient_scope_is_a_permission_not_bad_credentials() {
        let mut r = refusal("docker.io", 401, "UNAUTHORIZED", "authentication required");
        r.challenge = Some("Bearer".into());
        r.challenge_error = Some("insufficient_scope".into());
        let (kind, help) = classify(&r);
        assert_eq!(kind, ErrorKind::Denied);
        assert!(
            help.contains(
                "accepted the credentials from the environment, but they may not push to acme/x"
            ),
            "{help}"
        );
        assert!(help.contains("Read & Write"), "{help}");
        let mut anonymous = r.clone();
        anonymous.authenticated = false;
        anonymous.login_help = "no credentials were found; log in".into();
        assert_eq!(
            classify(&anonymous),
            (ErrorKind::Auth, "no credentials were found; log in".into())
        );
        r.realm = Some("https://gitlab.example/jwt/auth".into());
        r.host = "registry.gitlab.example";
        assert!(classify(&r).1.contains("two more components"));
    }

    #[test]
    fn harbor_basic_401_to_credentials_is_a_permission() {
        let mut r = refusal("harbor.example", 401, "UNAUTHORIZED", "unauthorized");
        r.challenge = Some("Basic".into());
        r.realm = Some("harbor".into());
        let (kind, help) = classify(&r);
        assert_eq!(kind, ErrorKind::Denied);
        assert!(help.contains("project"), "{help}");
    }

    #[test]
    fn policy_refusals_are_not_called_bugs() {
        for r in [
            refusal(
                "1.dkr.ecr.us-east-1.amazonaws.com",
                400,
                "TAG_INVALID",
                "The image tag 'v1' already exists in the 'x' repository and cannot be overwritten because the tag is immutable.",
            ),
            refusal(
                "harbor.example",
                412,
                "PRECONDITION",
                "Failed to process request due to 'x:v1' configured as immutable.",
            ),
        ] {
            let (kind, help) = classify(&r);
            assert_eq!(kind, ErrorKind::Rejected);
            assert!(help.contains("forbids overwriting"), "{help}");
            assert!(!help.contains("bug"), "{help}");
        }
        let r = refusal(
            "registry-1.docker.io",
            429,
            "TOOMANYREQUESTS",
            "You have reached your pull rate limit.",
        );
        assert!(classify(&r).1.contains("pull limit"));
        let r = refusal("reg.example", 400, "DIGEST_INVALID", "digest invalid");
        assert!(classify(&r).1.contains("bug in eigenpub"));
    }

    #[test]
    fn quay_detail_names_the_media_type_fix() {
        let mut r = refusal("quay.example", 400, "MANIFEST_INVALID", "manifest invalid");
        r.detail = r#"{"message":"'application/vnd.x' is not one of ['application/vnd.oci.image.config.v1+json']"}"#.into();
        let help = classify(&r).1;
        assert!(help.contains("ALLOWED_OCI_ARTIFACT_TYPES"), "{help}");
    }

    #[test]
    fn hosted_403s_get_their_own_help() {
        let r = refusal(
            "1.dkr.ecr.us-east-1.amazonaws.com",
            403,
            "DENIED",
            "Your authorization token has expired. Reauthenticate and try again.",
        );
        let (kind, help) = classify(&r);
        assert_eq!(kind, ErrorKind::Auth);
        assert!(
            help.contains("get-login-password --region us-east-1"),
            "{help}"
        );
        let r = refusal(
            "harbor.example",
            403,
            "DENIED",
            "adding 1 MiB of storage resource, which when updated to current usage of 9 MiB will exceed the configured upper limit of 10 MiB.",
        );
        assert!(classify(&r).1.contains("quota"));
        let r = refusal(
            "europe-docker.pkg.dev",
            403,
            "DENIED",
            "Permission \"artifactregistry.repositories.uploadArtifacts\" denied on resource \"projects/p/locations/europe/repositories/r\" (or it may not exist)",
        );
        assert!(
            classify(&r)
                .1
                .contains("gcloud artifacts repositories create")
        );
        let r = refusal(
            "ghcr.io",
            403,
            "DENIED",
            "You have exceeded a secondary rate limit",
        );
        assert!(classify(&r).1.contains("secondary rate limit"));
    }

    #[test]
    fn missing_repositories() {
        let r = refusal(
            "1.dkr.ecr.us-east-1.amazonaws.com",
            404,
            "NAME_UNKNOWN",
            "The repository with name 'acme/x' does not exist in the registry with id '1'",
        );
        let (kind, help) = classify(&r);
        assert_eq!(kind, ErrorKind::RepositoryMissing);
        assert!(
            help.contains("aws ecr create-repository --repository-name acme/x --region us-east-1"),
            "{help}"
        );
        // distribution creates repositories on push: its NAME_UNKNOWN is not a refusal.
        let r = refusal(
            "127.0.0.1:5000",
            404,
            "NAME_UNKNOWN",
            "repository name not known to registry",
        );
        assert!(!r.repository_missing());
    }
}
