//! Every problem code eigenpub reports, in one place. Codes are part of the JSON
//! contract (`code` in diagnostics and apply results, the title of GitHub annotations);
//! `docs/diagnostics.md` gives each its meaning and fix, and a unit test keeps the two
//! in step.

/// `apply` was stopped (Ctrl-C or SIGTERM) while an artifact was being pushed, and the grace
/// period ran out; its tag may or may not have been written (if it was, it is complete).
pub const APPLY_INTERRUPTED: &str = "eigenpub::apply::interrupted";
/// `apply PLAN`: the saved plan could not read this artifact's tag when it was made (action
/// `unreadable`), so it was not reviewed and is not pushed; the rest of the plan is applied.
pub const APPLY_NOT_REVIEWED: &str = "eigenpub::apply::not-reviewed";
/// The plan would overwrite published, immutable tags with different content (action
/// `refused`), so nothing is pushed.
pub const APPLY_REFUSED_OVERWRITE: &str = "eigenpub::apply::refused-overwrite";
/// The plan file given to `apply` cannot be read, is not a plan saved by `eigenpub plan --out`,
/// has an unsupported plan format, or carries an invalid selection.
pub const APPLY_SAVED_PLAN_INVALID: &str = "eigenpub::apply::saved-plan-invalid";
/// The saved plan moves published, immutable tags to other content (it was made with
/// `--allow-overwrite`), and `apply` was not given `--allow-overwrite` itself: a saved plan
/// grants no permission. Nothing is pushed.
pub const APPLY_SAVED_PLAN_OVERWRITE: &str = "eigenpub::apply::saved-plan-overwrite";
/// The saved plan no longer holds, or was edited: the plan made again with its options differs
/// from it (an artifact added or missing, another action, digest, spec or mutability, an option
/// such as `allow_overwrite` or the selection changed), an artifact's inputs or the project
/// file changed, a tag in the registry moved, or the file does not match its `plan_hash`.
/// Nothing is pushed; each difference is named.
pub const APPLY_STALE_PLAN: &str = "eigenpub::apply::stale-plan";
/// The config blob eigenpub would push fails the config schema, before anything is pushed.
pub const ARTIFACT_CONFIG: &str = "eigenpub::artifact::config";
/// `SOURCE_DATE_EPOCH` is set but is not a whole number of seconds since 1970-01-01 (or is out
/// of range).
pub const CREATED_EPOCH: &str = "eigenpub::created::epoch";
/// Asking git for the specs' commit times failed for a reason other than "not a repository" or
/// "git not installed" (for example git's "detected dubious ownership" in a CI container).
pub const CREATED_GIT: &str = "eigenpub::created::git";
/// A `created` setting is neither an RFC 3339 time nor `"git"`.
pub const CREATED_INVALID: &str = "eigenpub::created::invalid";
/// (warning) The project is in a shallow git clone, so a spec's last commit may be cut off and
/// its time (and so the digest) differ from a full clone.
pub const CREATED_SHALLOW: &str = "eigenpub::created::shallow";
/// (warning) A spec has uncommitted changes, so the created time taken from its last commit
/// does not describe the content being published.
pub const CREATED_UNCOMMITTED: &str = "eigenpub::created::uncommitted";
/// An artifact needs its spec's commit time (`created` is `"git"`, explicitly or by default)
/// but the project is not in a git repository, git is not available, or the spec has never been
/// committed.
pub const CREATED_UNKNOWN: &str = "eigenpub::created::unknown";
/// The project file to write (`eigenruntime.toml`, or the `-c/--config` path) already exists;
/// `init` never overwrites it.
pub const INIT_EXISTS: &str = "eigenpub::init::exists";
/// No EigenRuntime spec (YAML with `apiVersion: eigenruntime.io/…` and a `name`) was found
/// under the project folder.
pub const INIT_NO_SPECS: &str = "eigenpub::init::no-specs";
/// The `--registry` value is not a valid registry prefix or `oci:` layout.
pub const INIT_REGISTRY: &str = "eigenpub::init::registry";
/// The new project file, or the `eigenruntime.schema.json` written beside it, could not be
/// written.
pub const INIT_WRITE: &str = "eigenpub::init::write";
/// (warning) `init` found a YAML file that looks like an EigenRuntime spec but could not
/// use it (too large, not UTF-8, not valid YAML, no usable `name`), or stopped walking.
pub const INIT_SKIPPED: &str = "eigenpub::init::skipped";
/// (warning) `init` numbered an AVS's operator sets by the order of their file names,
/// since not every file name says its number (`opset-N`).
pub const INIT_GUESSED: &str = "eigenpub::init::guessed-operator-sets";
/// What the registry or layout served is unusable: content that does not match its digest or
/// size, a tag that does not point at a `sha256` digest, a manifest that is not JSON or whose
/// descriptors lack a digest or size, a blob larger than eigenpub reads, or an artifact without
/// a `text/yaml` spec layer; nothing was used.
pub const INSPECT_INVALID: &str = "eigenpub::inspect::invalid";
/// The tag does not exist in the repository, or no manifest has the given digest.
pub const INSPECT_NOT_FOUND: &str = "eigenpub::inspect::not-found";
/// The `REF` argument is not a reference eigenpub reads (it names no tag or digest, has an
/// invalid tag, repository name or digest, or is an `oci:` reference without a folder).
pub const INSPECT_REFERENCE: &str = "eigenpub::inspect::reference";
/// Reading or writing the layout folder failed (creating it, locking it, reading or writing
/// `index.json`, `oci-layout` or a blob, or an `index.json` that is not valid), or a layout
/// write stopped before it finished.
pub const LAYOUT_IO: &str = "eigenpub::layout::io";
/// Another run wrote an immutable tag of the same OCI layout after this run planned it (the tag
/// is read again under the layout's lock before `index.json` is rewritten); the tag was left as
/// the other run wrote it.
pub const LAYOUT_TAG_MOVED: &str = "eigenpub::layout::tag-moved";
/// A locked tag holds (or would be given) another digest than the lock records: someone moved
/// the tag, or it holds equivalent content published by another tool.
pub const LOCK_DIGEST: &str = "eigenpub::lock::digest";
/// The lock file is not one eigenpub reads: not UTF-8, not valid TOML or of the wrong shape
/// (often left-over merge-conflict markers), an unsupported lock format version, an entry with
/// an invalid field, or the same AVS operator set listed twice.
pub const LOCK_INVALID: &str = "eigenpub::lock::invalid";
/// `--locked` (or `verify`) was given but there is no lock file beside the project file.
pub const LOCK_MISSING: &str = "eigenpub::lock::missing";
/// The lock no longer matches the project: an entry is new, removed, or its spec or settings
/// changed since `eigenpub lock` ran.
pub const LOCK_OUT_OF_DATE: &str = "eigenpub::lock::out-of-date";
/// The lock file exists but cannot be read: permissions, or it is not a regular file of at most
/// 16 MiB inside the project folder (a symlink to a file elsewhere is refused, unread).
pub const LOCK_UNREADABLE: &str = "eigenpub::lock::unreadable";
/// The registry argument is not a valid registry `host[:port]`.
pub const LOGIN_HOST: &str = "eigenpub::login::host";
/// The password could not be read from standard input, or standard input held none.
pub const LOGIN_PASSWORD: &str = "eigenpub::login::password";
/// The registry accepted the credentials, but storing them (in Docker's `config.json` or its
/// credential helper) failed.
pub const LOGIN_STORE: &str = "eigenpub::login::store";
/// The credentials stored for the registry could not be removed (from Docker's `config.json` or
/// its credential helper).
pub const LOGOUT_ERASE: &str = "eigenpub::logout::erase";
/// A mirror needs the bytes its primary holds (a tag adopted as published) and they could
/// not be read, or do not match their digests.
pub const MIRROR_COPY: &str = "eigenpub::mirror::copy";
/// A mirror is not planned because its primary's tag could not be read: the digest the
/// mirror must hold is unknown.
pub const MIRROR_PRIMARY_UNREADABLE: &str = "eigenpub::mirror::primary-unreadable";
/// `eigenpub man` could not render the man page.
pub const MAN: &str = "eigenpub::man";
/// A file eigenpub writes could not be written: the plan (`plan --out FILE`) or the release
/// record (`apply --release-json FILE`).
pub const OUTPUT_WRITE: &str = "eigenpub::output::write";
/// `concurrency` in `[defaults]` is 0.
pub const PROJECT_CONCURRENCY: &str = "eigenpub::project::concurrency";
/// A `[[discover]]` `specs` pattern is invalid (it leaves the project folder with a leading `/`
/// or `..`, has an unclosed `{`, uses a placeholder other than `{avs}` and `{opset}`, puts two
/// placeholders side by side, or lacks one of them), or searching the folders for it failed.
pub const PROJECT_DISCOVER: &str = "eigenpub::project::discover";
/// (warning) A `[[discover]]` pattern matches no files, so it contributes nothing.
pub const PROJECT_DISCOVER_EMPTY: &str = "eigenpub::project::discover-empty";
/// Two artifacts resolve to the same `repository:tag` (both places are labelled).
pub const PROJECT_DUPLICATE: &str = "eigenpub::project::duplicate";
/// Two `[[avs]]` tables have the same `name` (both places are labelled).
pub const PROJECT_DUPLICATE_AVS: &str = "eigenpub::project::duplicate-avs";
/// Two entries (from `[[avs]]` or `[[discover]]`) give one AVS and operator set two specs (both
/// places are labelled); the release record keeps one digest per operator set.
pub const PROJECT_DUPLICATE_OPERATOR_SET: &str = "eigenpub::project::duplicate-operator-set";
/// (warning) The project has neither an `[[avs]]` nor a `[[discover]]`, so there is nothing to
/// publish.
pub const PROJECT_EMPTY: &str = "eigenpub::project::empty";
/// The project file is not UTF-8 text.
pub const PROJECT_ENCODING: &str = "eigenpub::project::encoding";
/// `format` is set to a value other than 1, the only project file format this eigenpub reads.
pub const PROJECT_FORMAT: &str = "eigenpub::project::format";
/// An entry of `mutable-tags` is not a valid glob.
pub const PROJECT_GLOB: &str = "eigenpub::project::glob";
/// The project file does not exist (default `eigenruntime.toml` in the current folder).
pub const PROJECT_MISSING: &str = "eigenpub::project::missing";
/// A required key is missing from a table (for example an `[[avs]]` without `name`).
pub const PROJECT_MISSING_KEY: &str = "eigenpub::project::missing-key";
/// (warning) An `[[avs]]` lists no operator sets, so nothing is published for it.
pub const PROJECT_NO_OPERATOR_SETS: &str = "eigenpub::project::no-operator-sets";
/// A key in `[avs.operator-sets]` is not an operator set number in its one spelling: not a
/// number, negative, or spelled with a sign, leading zeros or decimals (`00`, `"+0"`, `"1.0"`).
pub const PROJECT_OPERATOR_SET: &str = "eigenpub::project::operator-set";
/// A `mirrors` entry is not a registry prefix or `oci:` layout, gives an invalid repository
/// name, lands on the primary's repository or another mirror's, or is an `oci:` folder
/// reached through a link in the project that leads out of it.
pub const PROJECT_MIRROR: &str = "eigenpub::project::mirror";
/// A `[registries."…"]` table is keyed by something that is not a registry `host[:port]`, or
/// two tables name one registry (`ghcr.io` and `GHCR.io:443`), or one sets `max-concurrency`
/// outside 1–1024 or `requests-per-second` outside 0.01–100000.
pub const PROJECT_REGISTRY: &str = "eigenpub::project::registry";
/// No repository can be made for an artifact: no `registry` is set, the `registry` value is not
/// a valid registry prefix or `oci:` layout, the resulting repository name is invalid (for
/// example an AVS name with capital letters), or an `oci:` layout's folder is reached
/// through a link in the project that leads out of it.
pub const PROJECT_REPOSITORY: &str = "eigenpub::project::repository";
/// The tag made from the tag template and the version is not a valid OCI tag (at most 128
/// characters of `A-Za-z0-9_.-`, not starting with `.` or `-`).
pub const PROJECT_TAG: &str = "eigenpub::project::tag";
/// The `tag` template has an unmatched `{` or `}`, or uses a placeholder other than `{avs}`,
/// `{opset}` and `{version}`.
pub const PROJECT_TAG_TEMPLATE: &str = "eigenpub::project::tag-template";
/// The project file is not valid TOML (or has another parse error not covered by a more
/// specific code).
pub const PROJECT_TOML: &str = "eigenpub::project::toml";
/// A setting has a value of the wrong type (for example a string where a number or a list is
/// expected).
pub const PROJECT_TYPE: &str = "eigenpub::project::type";
/// The project file contains a key eigenpub does not know (often a typo; the help suggests the
/// closest known key).
pub const PROJECT_UNKNOWN_KEY: &str = "eigenpub::project::unknown-key";
/// The project file exists but cannot be read: permissions, or it is not a regular file (a
/// folder, a device such as `/dev/zero`, a pipe) or is larger than 16 MiB; such a file is not
/// read.
pub const PROJECT_UNREADABLE: &str = "eigenpub::project::unreadable";
/// A `version` is neither an integer nor a string (e.g. a fractional number such as `3.5`,
/// which TOML cannot keep exactly), or an artifact's version, from the project file or the
/// spec, is empty.
pub const PROJECT_VERSION: &str = "eigenpub::project::version";
/// The file `pull` would write the spec to already exists.
pub const PULL_EXISTS: &str = "eigenpub::pull::exists";
/// The output folder could not be created, or the spec file could not be written into it.
pub const PULL_WRITE: &str = "eigenpub::pull::write";
/// The registry (HTTP 401) or its token service refused the credentials, or wanted some and
/// none were found, or said the token expired (ECR's 403); also when eigenpub refuses to send credentials over plain HTTP to a host
/// (or token service) that is not this machine, or refuses to ask a token service at all (plain
/// HTTP to another machine, or on this machine for a registry that is not).
pub const REGISTRY_AUTH: &str = "eigenpub::registry::auth";
/// The `ca-file` set for a registry in `[registries."…"]` cannot be read.
pub const REGISTRY_CA_FILE: &str = "eigenpub::registry::ca-file";
/// Looking up stored credentials failed: only one of
/// `EIGENPUB_REGISTRY_<HOST>_USERNAME`/`_PASSWORD` is set, Docker's `config.json` is not valid
/// JSON, a credential helper failed (its output is not shown, since it may hold a secret), or a
/// helper did not answer within `EIGENPUB_CREDENTIAL_HELPER_TIMEOUT` seconds (30 by default)
/// and was killed with the processes it started.
pub const REGISTRY_CREDENTIALS: &str = "eigenpub::registry::credentials";
/// The registry refused a request with HTTP 403, or with a 401 to credentials it accepted
/// (`error="insufficient_scope"`, Harbor's `Basic realm="harbor"`): they may not push to (or
/// read) this repository. The help names the fix for the registry (GHCR, ECR, Artifact
/// Registry, ACR, Docker Hub, Harbor, GitLab, Quay).
pub const REGISTRY_DENIED: &str = "eigenpub::registry::denied";
/// After a push, the registry reported a manifest digest different from the one eigenpub
/// computed (it rewrote the manifest).
pub const REGISTRY_DIGEST_MISMATCH: &str = "eigenpub::registry::digest-mismatch";
/// The registry, or its token service, answered in a way the protocol does not allow (an upload
/// without a usable `Location`, a token answer without a token, no token service named, a
/// malformed `Docker-Content-Digest`, an answer larger than the request can need: manifests 4
/// MiB, blobs 32 MiB, anything else 64 KiB).
pub const REGISTRY_PROTOCOL: &str = "eigenpub::registry::protocol";
/// The registry refused a request with HTTP 404 or another 4xx status (other than 401 and 403):
/// an immutable tag (ECR `TAG_INVALID`, Harbor `412 PRECONDITION`), a manifest it does not
/// accept (its `detail` shown), a name it refuses (also from its token service), or
/// throttling that outlasted the retries or a rate-limit quota spent for hours (Docker Hub's
/// pull limit, said at once).
pub const REGISTRY_REJECTED: &str = "eigenpub::registry::rejected";
/// The repository does not exist and the registry does not create repositories on push
/// (Amazon ECR, Google Artifact Registry): named once per repository by the plan, with the
/// command that creates it; or ECR closed the connection at every try to start an upload,
/// its way of answering a missing repository ("may not exist").
pub const REGISTRY_REPOSITORY_MISSING: &str = "eigenpub::registry::repository-missing";
/// The registry or its token service failed with a 5xx status, after retries, or lost an upload
/// session.
pub const REGISTRY_SERVER: &str = "eigenpub::registry::server";
/// Only the 0.1 name of a registry's variables is set (`EIGENPUB_REGISTRY_MY_REG_IO_*` for
/// `my-reg.io`), a name it shared with hosts that differ in punctuation (`my.reg.io`) and that
/// is now another host's: the variables are not used for this registry. Nothing was sent.
pub const REGISTRY_SHARED_CREDENTIALS: &str = "eigenpub::registry::shared-credentials";
/// (warning) The registry answered 403 to the plan's check of a tag, with Artifactory's text for
/// a tag that does not exist in a virtual repository (RTFACT-13797): the tag is planned as new
/// and the push decides.
pub const REGISTRY_TAG_FORBIDDEN: &str = "eigenpub::registry::tag-forbidden";
/// The registry's TLS certificate is not trusted, the `ca-file` holds no usable PEM
/// certificate, or HTTPS could not be set up.
pub const REGISTRY_TLS: &str = "eigenpub::registry::tls";
/// The registry could not be reached: connection refused or name not resolved (reported once
/// for the registry, with the number of artifacts not attempted), or connections kept breaking,
/// or a request found no complete answer within the deadline (`[registries."HOST"] timeout`,
/// default 60 s) or its answer stalled, after retries; or the registry refused every request
/// (429 or 5xx) for at least 30 s and eigenpub gave up on it (reported once, likewise).
pub const REGISTRY_UNREACHABLE: &str = "eigenpub::registry::unreachable";
/// eigenpub could not start its async runtime because the system refused threads or file
/// descriptors.
pub const RUNTIME: &str = "eigenpub::runtime";
/// The schema for an artifact's schema URL is not a valid JSON Schema.
pub const SCHEMA_INVALID: &str = "eigenpub::schema::invalid";
/// An artifact's schema URL is neither bundled with eigenpub nor mapped in `[schemas]`.
pub const SCHEMA_UNKNOWN: &str = "eigenpub::schema::unknown";
/// A file mapped in `[schemas]` cannot be read, is not JSON, or is not a regular file of at
/// most 16 MiB inside the project folder (after following symlinks; such a file is not read).
pub const SCHEMA_UNREADABLE: &str = "eigenpub::schema::unreadable";
/// The `--select`/`--exclude` globs match none of the project's artifacts, so nothing would be
/// planned.
pub const SELECT_EMPTY: &str = "eigenpub::select::empty";
/// One `--select` or `--exclude` glob matches none of the project's artifacts (most likely a
/// typo; an `--exclude` that misses would publish what it meant to leave out).
pub const SELECT_UNMATCHED: &str = "eigenpub::select::unmatched";
/// `--select`, `--exclude` or `--concurrency` was written before a command that works on
/// the whole project (or on no project), which would ignore it.
pub const SELECT_UNUSED: &str = "eigenpub::select::unused";
/// A `--select` or `--exclude` value is not a valid glob.
pub const SELECT_GLOB: &str = "eigenpub::select::glob";
/// (warning) A component's `spec.<name>.digest` is not `sha256:` followed by 64 lowercase hex
/// digits (for example it holds a tag).
pub const SPEC_DIGEST: &str = "eigenpub::spec::digest";
/// The spec file is empty or only whitespace.
pub const SPEC_EMPTY: &str = "eigenpub::spec::empty";
/// The spec file is not UTF-8 text (the problem points at the first invalid byte).
pub const SPEC_ENCODING: &str = "eigenpub::spec::encoding";
/// A spec file the project names (under `[avs.operator-sets]`, or found by `[[discover]]`) does
/// not exist or cannot be read.
pub const SPEC_MISSING: &str = "eigenpub::spec::missing";
/// The spec path names something that is not a regular file (a folder, a device such as
/// `/dev/zero`, a pipe); nothing was read.
pub const SPEC_NOT_A_FILE: &str = "eigenpub::spec::not-a-file";
/// The spec's top level is not a YAML mapping (for example a list or a scalar).
pub const SPEC_NOT_A_MAPPING: &str = "eigenpub::spec::not-a-mapping";
/// An artifact has no version: the spec has no `version` field and the project sets none.
pub const SPEC_NO_VERSION: &str = "eigenpub::spec::no-version";
/// The spec path (with `..`, an absolute path, or a symlink) leads outside the folder that
/// holds the project file; its contents were not read or shown.
pub const SPEC_OUTSIDE_PROJECT: &str = "eigenpub::spec::outside-project";
/// The spec does not follow the JSON Schema its artifact names (`validationSchema`); the
/// problem points at the failing YAML node.
pub const SPEC_SCHEMA: &str = "eigenpub::spec::schema";
/// The spec file is larger than the limit (16 MiB, or `EIGENPUB_MAX_FILE_MIB`); it was not
/// read.
pub const SPEC_TOO_LARGE: &str = "eigenpub::spec::too-large";
/// The spec is not valid YAML: a syntax error, a key written twice in one mapping, aliases that
/// expand to too many nodes, or nesting that is too deep.
pub const SPEC_YAML: &str = "eigenpub::spec::yaml";
