//! A local, content-addressed cache of the manifests and configs a plan reads, so that a
//! plan over tags whose digest is not eigenpub's (adopted devkit tags, judged for
//! [`equivalence`](super::equivalence)) costs one `HEAD` per artifact once those tags have
//! been read, and Docker Hub's pull budget (every manifest `GET` counts) is spent once per
//! digest and repository, not once per run.
//!
//! Entries are keyed by their source and digest, never by tag (a tag moves; a digest names
//! its bytes). The source is the repository's URL at the registry that served the bytes
//! (`https://ghcr.io/v2/acme/oracle/`): bytes are only used again for the repository that
//! served them. Keyed by digest alone, a registry a pull request adds could claim the
//! digest of an artifact another registry (or another repository, a private one) served
//! this user before, and get its bytes from the cache unasked, for `plan --format
//! markdown` to show in a comment. Registries grant reads per repository (a token's scope
//! is `repository:NAME:pull`), so the repository is part of the key, not only the host;
//! and every read through the cache follows a `HEAD` of a tag in that repository that
//! answered that digest in the same run (or is a digest such a manifest names), so the
//! reader has shown it may read the repository with its own credentials.
//!
//! Every read is verified: an entry whose sha256 is not its name (corrupted, truncated,
//! planted) is ignored, deleted and fetched again; bytes a target answers for a digest
//! that do not hash to it are an error, never used nor kept (with the cache off too). So
//! whoever can write the entries can make eigenpub fetch again, never use other bytes.
//! The folder is chosen only by the environment:
//!
//! - `EIGENPUB_CACHE_DIR`, else `$XDG_CACHE_HOME/eigenpub`, else `~/.cache/eigenpub`;
//! - `EIGENPUB_NO_CACHE` set to anything but `""` or `0` turns the cache off.
//!
//! and is refused (a warning, the cache off for the run) when it lies in the project or
//! its repository's work tree, even through a link (a CI job whose home folder is its
//! checkout, as Jenkins' `HOME=$WORKSPACE`, would otherwise keep it where a pull request
//! commits files, links included), or when it or a folder of its own (`sources`, a
//! source's folder, the earlier layout's `blobs/sha256`) is a symbolic link or not a
//! folder. Links above the folder (`~/.cache` on another disk) are the operator's and are
//! followed. Those folders are checked again before every read and write; entries are
//! opened without following a link, and temporaries are created anew (`O_EXCL`). Trimming
//! deletes only files the cache made: entries (named by 64 hex digits) and its own
//! `.eigenpub-*` temporaries, never anything else found there.
//!
//! Entries are `sources/<sha256 of the source>/<hex of the digest>`, written to a
//! temporary file and renamed, so concurrent runs sharing the folder (or a folder restored
//! by a CI cache such as `actions/cache`) only ever see whole entries. Entries of the
//! earlier layout (`blobs/sha256/<hex>`, keyed by digest alone) are never read. The folder
//! is kept under [`MAX_BYTES`]: after a run that added entries, the oldest go first. Every
//! failure of the cache (a read-only folder, a full disk) only costs the request it would
//! have saved.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use sha2::{Digest as _, Sha256};

use crate::registry::{Target, TargetError};

/// The most bytes the cache folder keeps; past it, the oldest entries are deleted.
pub const MAX_BYTES: u64 = 64 * 1024 * 1024;

/// The largest entry kept: a manifest's read limit (eigenpub's are under 2 KiB).
pub const MAX_ENTRY: u64 = 4 * 1024 * 1024;

/// The folder of `<root>` that holds one folder of entries per source.
const SOURCES: &str = "sources";

/// A temporary file older than this was left by a run that was killed mid-write.
const STALE_TEMPORARY: std::time::Duration = std::time::Duration::from_secs(3600);

/// The cache of one run: a folder, or off.
#[derive(Debug, Clone, Default)]
pub struct Cache {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    /// The cache folder (entries are in `<root>/sources/<source>/`).
    root: PathBuf,
    max_bytes: u64,
    /// Set once this run has added an entry: the folder is trimmed at the end.
    added: AtomicBool,
}

impl Cache {
    /// No cache: every read goes to the registry.
    pub fn off() -> Cache {
        Cache::default()
    }

    /// A cache in `root`, kept under `max_bytes`.
    pub fn at(root: &Path, max_bytes: u64) -> Cache {
        Cache {
            inner: Some(Arc::new(Inner {
                root: root.to_path_buf(),
                max_bytes,
                added: AtomicBool::new(false),
            })),
        }
    }

    /// The cache the environment asks for (see the module docs), and a warning when the
    /// folder is unusable, which turns it off: `EIGENPUB_CACHE_DIR` relative, the folder
    /// inside one of `project` (the project's folder and its work tree, canonical), or it
    /// or a folder of its own a link.
    pub fn from_env(project: &[PathBuf]) -> (Cache, Option<String>) {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let dir = var("EIGENPUB_CACHE_DIR").map(PathBuf::from);
        let off = var("EIGENPUB_NO_CACHE").is_some_and(|v| v != "0");
        if let Some(d) = dir.as_ref().filter(|d| !off && !d.is_absolute()) {
            let warning = format!(
                "EIGENPUB_CACHE_DIR must be an absolute path, not {}; the cache is off for this run",
                crate::sanitize::text(&d.display().to_string())
            );
            return (Cache::off(), Some(warning));
        }
        let Some(root) = root(
            off,
            dir,
            var("XDG_CACHE_HOME").map(PathBuf::from),
            var("HOME").map(PathBuf::from),
        ) else {
            return (Cache::off(), None);
        };
        match refusal(&root, project) {
            Some(warning) => (Cache::off(), Some(warning)),
            None => (Cache::at(&root, MAX_BYTES), None),
        }
    }

    /// The manifest with this digest: from the cache when it holds it (verified), else read
    /// from the target and kept. Only registries are cached (a layout is already local).
    pub async fn manifest(
        &self,
        target: &Target,
        digest: &str,
    ) -> Result<Option<Bytes>, TargetError> {
        self.read_through(target, digest, Kind::Manifest).await
    }

    /// The blob with this digest (a config, a spec layer): as [`Cache::manifest`].
    pub async fn blob(&self, target: &Target, digest: &str) -> Result<Option<Bytes>, TargetError> {
        self.read_through(target, digest, Kind::Blob).await
    }

    async fn read_through(
        &self,
        target: &Target,
        digest: &str,
        kind: Kind,
    ) -> Result<Option<Bytes>, TargetError> {
        // A digest names its bytes: what is read for it is used only when it hashes to it.
        // The digest may come from a manifest a registry wrote (a config's, a layer's), and
        // the bytes from wherever the registry redirected the read (a metadata service, an
        // internal page only this machine reaches): unchecked, those went into the plan's
        // comment. A digest that is not sha256 is not read at all.
        let Some(hex) = hex_of(digest) else {
            return Err(not_read(
                target,
                format!(
                    "{} is not a sha256 digest, so it is not read",
                    crate::sanitize::registry_text(&crate::sanitize::truncate(digest, 100))
                ),
            ));
        };
        let fetch = || async {
            let fetched = match kind {
                Kind::Manifest => target.fetch_manifest(digest).await,
                // A config or a spec: bounded as an entry is, whatever a registry sends.
                Kind::Blob => target.fetch_blob_at_most(digest, MAX_ENTRY as usize).await,
            }?;
            match fetched {
                Some(bytes) if sha256_hex(&bytes) != hex => Err(not_read(
                    target,
                    format!(
                        "what it answered for {digest} does not hash to that digest, so it is not used"
                    ),
                )),
                fetched => Ok(fetched),
            }
        };
        let (
            Some(inner),
            Target::Remote {
                registry,
                repository,
            },
        ) = (&self.inner, target)
        else {
            return fetch().await;
        };
        let dir = inner
            .root
            .join(SOURCES)
            .join(source_key(&registry.repository_url(repository)));
        let path = dir.join(hex);
        let cached = {
            let (root, path, hex) = (inner.root.clone(), path.clone(), hex.to_string());
            tokio::task::spawn_blocking(move || {
                own_folders(&root, path.parent()?)
                    .then(|| get(&path, &hex))
                    .flatten()
            })
            .await
            .ok()
            .flatten()
        };
        if let Some(bytes) = cached {
            return Ok(Some(bytes));
        }
        let fetched = fetch().await?;
        if let Some(bytes) = &fetched
            && bytes.len() as u64 <= MAX_ENTRY
        {
            let (root, bytes) = (inner.root.clone(), bytes.clone());
            let written = tokio::task::spawn_blocking(move || put(&root, &dir, &path, &bytes))
                .await
                .unwrap_or(false);
            if written {
                inner.added.store(true, Ordering::Relaxed);
            }
        }
        Ok(fetched)
    }

    /// After a run: when it added entries, deletes the oldest until the folder is back under
    /// its bound (to three quarters of it, so that the next runs do not trim again at once).
    pub async fn trim(&self) {
        let Some(inner) = self.inner.clone() else {
            return;
        };
        if !inner.added.load(Ordering::Relaxed) {
            return;
        }
        let _ = tokio::task::spawn_blocking(move || trim(&inner.root, inner.max_bytes)).await;
    }
}

/// A read by digest whose answer is not used (see [`Cache::read_through`]).
fn not_read(target: &Target, why: String) -> TargetError {
    TargetError {
        target: target.registry().unwrap_or("OCI layout").to_string(),
        code: crate::diagnostic::codes::REGISTRY_PROTOCOL,
        message: why,
        help: "check what serves this registry (a proxy, or a redirect of its reads, may answer in its place)".into(),
        transient: false,
        kind: Some(crate::registry::remote::ErrorKind::Protocol),
        status: None,
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Manifest,
    Blob,
}

/// Pure: the cache's root folder from the environment (see the module docs), or `None`
/// when it is off or no folder is known. Relative folders are refused: they would depend on
/// where eigenpub runs (the project, a folder a pull request controls).
fn root(
    off: bool,
    dir: Option<PathBuf>,
    xdg_cache_home: Option<PathBuf>,
    home: Option<PathBuf>,
) -> Option<PathBuf> {
    if off {
        return None;
    }
    if let Some(dir) = dir {
        return dir.is_absolute().then_some(dir);
    }
    if let Some(xdg) = xdg_cache_home.filter(|d| d.is_absolute()) {
        return Some(xdg.join("eigenpub"));
    }
    home.filter(|h| h.is_absolute())
        .map(|h| h.join(".cache").join("eigenpub"))
}

/// The cache's own folders below its root that must be real folders (not links) when
/// they exist: what it writes into, reads from or trims.
const OWN_FOLDERS: [&str; 3] = [SOURCES, "blobs", "blobs/sha256"];

/// Why the cache folder `root` is not to be used, as a warning to print, or `None`. It
/// must not lie in any of `project` (canonical folders a pull request controls), through
/// a link or not; it and its own folders must be real folders where they exist.
fn refusal(root: &Path, project: &[PathBuf]) -> Option<String> {
    let shown = |p: &Path| crate::sanitize::text(&p.display().to_string());
    let off = "the cache is off for this run";
    // Each folder on the way, resolved: one in the project (`$HOME` the checkout, or a
    // link committed on the way) puts the cache where a pull request writes.
    for on_the_way in root.ancestors() {
        let Ok(real) = on_the_way.canonicalize() else {
            continue;
        };
        if let Some(folder) = project.iter().find(|p| real.starts_with(p)) {
            return Some(format!(
                "the cache folder {} is inside the project's folder or work tree {} (is $HOME the checkout?), where a pull request controls the files; {off}: set EIGENPUB_CACHE_DIR to an absolute folder outside it",
                shown(root),
                shown(folder)
            ));
        }
    }
    let sources = std::fs::read_dir(root.join(SOURCES))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(is_hex_name))
        .map(|e| e.path());
    let folders = std::iter::once(root.to_path_buf())
        .chain(OWN_FOLDERS.iter().map(|f| root.join(f)))
        .chain(sources);
    for folder in folders {
        match std::fs::symlink_metadata(&folder) {
            Ok(m) if m.file_type().is_symlink() => {
                return Some(format!(
                    "the cache folder {} is a symbolic link; {off}: remove the link (eigenpub makes the folder again), or set EIGENPUB_CACHE_DIR to a real folder",
                    shown(&folder)
                ));
            }
            Ok(m) if !m.is_dir() => {
                return Some(format!(
                    "the cache folder {} is not a folder; {off}: remove it (eigenpub makes the folder again), or set EIGENPUB_CACHE_DIR to another folder",
                    shown(&folder)
                ));
            }
            _ => {}
        }
    }
    None
}

/// True when `root`, its `sources` and `source` (a folder in it) are real folders, not
/// links: checked before every read and write, as they may have changed since the run
/// began.
fn own_folders(root: &Path, source: &Path) -> bool {
    let real = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
    source.parent() == Some(&root.join(SOURCES))
        && real(root)
        && real(&root.join(SOURCES))
        && real(source)
}

/// Whether a file name is one an entry (or a source's folder) has: 64 lowercase hex digits.
fn is_hex_name(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The hex of a `sha256:` digest, when it is one (so it is safe as a file name).
fn hex_of(digest: &str) -> Option<&str> {
    crate::reference::is_sha256(digest)
        .then(|| digest.strip_prefix("sha256:"))
        .flatten()
}

/// Pure: the folder name of a source's entries (the hex of its sha256: any URL is a
/// safe, fixed-length name so).
fn source_key(source: &str) -> String {
    sha256_hex(source.as_bytes())
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// An entry, only if its bytes are what its name says; one that is not is deleted.
fn get(path: &Path, hex: &str) -> Option<Bytes> {
    let bytes = read_entry(path)?;
    if sha256_hex(&bytes) == hex {
        Some(Bytes::from(bytes))
    } else {
        // Corrupted, truncated or planted: never used, fetched again and replaced.
        let _ = std::fs::remove_file(path);
        None
    }
}

/// An entry's bytes: a regular file of at most [`MAX_ENTRY`] bytes, opened without
/// following a link and without blocking (should it be a FIFO).
fn read_entry(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = options.open(path).ok()?;
    let metadata = file.metadata().ok()?;
    if !metadata.is_file() || metadata.len() > MAX_ENTRY {
        return None;
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    file.take(MAX_ENTRY + 1).read_to_end(&mut bytes).ok()?;
    (bytes.len() as u64 <= MAX_ENTRY).then_some(bytes)
}

/// Writes an entry whole (a temporary file created anew, then renamed over `path`, which
/// replaces a link rather than writing through it); false when it could not, or when the
/// folders on the way are not the cache's own (a link). Not synced to disk: an entry a
/// crash cuts short fails its check and is fetched again, so the first plan over many
/// adopted tags does not wait for a sync per entry.
fn put(root: &Path, dir: &Path, path: &Path, bytes: &[u8]) -> bool {
    use std::io::Write;
    let builder = |recursive: bool| {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(recursive);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            // The cache may hold manifests of private repositories: the user's only.
            builder.mode(0o700);
        }
        builder
    };
    let made = |folder: &Path, recursive: bool| match builder(recursive).create(folder) {
        Ok(()) => true,
        Err(e) => e.kind() == std::io::ErrorKind::AlreadyExists,
    };
    // The root and the folders above it the usual way; the cache's own folders one at a
    // time (mkdir never follows a link in place of the folder), then checked.
    let ready = made(root, true)
        && made(&root.join(SOURCES), false)
        && made(dir, false)
        && own_folders(root, dir);
    if !ready {
        return false;
    }
    // tempfile creates its files 0600, with O_EXCL.
    let Ok(mut tmp) = tempfile::Builder::new()
        .prefix(TEMPORARY_PREFIX)
        .tempfile_in(dir)
    else {
        return false;
    };
    tmp.write_all(bytes).is_ok() && tmp.persist(path).is_ok()
}

/// How the cache's temporary files are named (and the only files besides entries that
/// trimming deletes).
const TEMPORARY_PREFIX: &str = ".eigenpub-";

/// A file the cache made, found in one of its folders.
struct Own {
    path: PathBuf,
    len: u64,
    modified: std::time::SystemTime,
    entry: bool,
}

/// The files of `dir` the cache made: regular files (not links) named as entries or as
/// its temporaries. Anything else is not the cache's, and is left alone.
fn own_files(dir: &Path) -> Vec<Own> {
    let now = std::time::SystemTime::now();
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let name = name.to_str()?;
            let entry = is_hex_name(name);
            if !entry && !name.starts_with(TEMPORARY_PREFIX) {
                return None;
            }
            // Not followed: a link is not a file the cache made.
            let metadata = std::fs::symlink_metadata(e.path()).ok()?;
            metadata.is_file().then(|| Own {
                path: e.path(),
                len: metadata.len(),
                modified: metadata.modified().unwrap_or(now),
                entry,
            })
        })
        .collect()
}

/// Deletes temporary files left by killed runs and the earlier layout's entries, then the
/// oldest entries (of every source) until the folder holds at most three quarters of
/// `max_bytes`, if it holds more than `max_bytes`. Only files the cache made go
/// ([`own_files`]), and only in its own folders, not reached through a link.
fn trim(root: &Path, max_bytes: u64) {
    let now = std::time::SystemTime::now();
    let real = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
    let stale = |file: &Own| {
        now.duration_since(file.modified)
            .is_ok_and(|age| age > STALE_TEMPORARY)
    };
    if !real(root) {
        return;
    }
    // The earlier layout (keyed by digest alone) is never read: its entries go, and its
    // folders once empty.
    let (blobs, old) = (root.join("blobs"), root.join("blobs").join("sha256"));
    if real(&blobs) && real(&old) {
        for file in own_files(&old) {
            if file.entry || stale(&file) {
                let _ = std::fs::remove_file(&file.path);
            }
        }
        let _ = std::fs::remove_dir(&old);
        let _ = std::fs::remove_dir(&blobs);
    }
    let sources = root.join(SOURCES);
    if !real(&sources) {
        return;
    }
    let mut entries: Vec<Own> = Vec::new();
    for source in std::fs::read_dir(&sources).into_iter().flatten().flatten() {
        let path = source.path();
        if !source.file_name().to_str().is_some_and(is_hex_name) || !own_folders(root, &path) {
            continue;
        }
        for file in own_files(&path) {
            if file.entry {
                entries.push(file);
            } else if stale(&file) {
                let _ = std::fs::remove_file(&file.path);
            }
        }
    }
    let mut total: u64 = entries.iter().map(|f| f.len).sum();
    if total <= max_bytes {
        return;
    }
    entries.sort_by(|a, b| (a.modified, &a.path).cmp(&(b.modified, &b.path)));
    for file in entries {
        if total <= max_bytes / 4 * 3 {
            break;
        }
        if std::fs::remove_file(&file.path).is_ok() {
            total -= file.len;
            // A source's folder emptied here goes too (not one another run just made).
            if let Some(folder) = file.path.parent() {
                let _ = std::fs::remove_dir(folder);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_folder_comes_from_the_environment() {
        let p = |s: &str| Some(PathBuf::from(s));
        assert_eq!(root(false, p("/c"), p("/x"), p("/h")), p("/c"));
        assert_eq!(root(false, None, p("/x"), p("/h")), p("/x/eigenpub"));
        assert_eq!(root(false, None, None, p("/h")), p("/h/.cache/eigenpub"));
        // XDG says a relative XDG_CACHE_HOME is to be ignored.
        assert_eq!(root(false, None, p("x"), p("/h")), p("/h/.cache/eigenpub"));
        // A relative folder would depend on where eigenpub runs: off.
        assert_eq!(root(false, p("c"), p("/x"), p("/h")), None);
        assert_eq!(root(true, p("/c"), p("/x"), p("/h")), None);
        assert_eq!(root(false, None, None, None), None);
    }

    #[test]
    fn only_sha256_digests_name_entries() {
        let hex = "a".repeat(64);
        assert_eq!(hex_of(&format!("sha256:{hex}")), Some(hex.as_str()));
        assert_eq!(hex_of("sha256:../../etc/passwd"), None);
        assert_eq!(hex_of(&format!("sha512:{hex}{hex}")), None);
        assert_eq!(hex_of("opset-0-v1"), None);
    }

    #[test]
    fn an_entry_is_used_only_when_its_bytes_match_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join(SOURCES).join(source_key("https://r/v2/a/"));
        let bytes = b"{\"schemaVersion\":2}";
        let hex = sha256_hex(bytes);
        let path = blobs.join(&hex);
        assert!(put(dir.path(), &blobs, &path, bytes));
        assert_eq!(get(&path, &hex).as_deref(), Some(&bytes[..]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!((mode(&blobs), mode(&path)), (0o700, 0o600));
        }
        // Truncated: ignored and deleted.
        std::fs::write(&path, &bytes[..5]).unwrap();
        assert_eq!(get(&path, &hex), None);
        assert!(!path.exists());
        // Other bytes under the name: the same.
        std::fs::write(&path, b"{\"schemaVersion\":3}").unwrap();
        assert_eq!(get(&path, &hex), None);
        assert!(!path.exists());
        // Not a regular file: refused without blocking (a FIFO would).
        #[cfg(unix)]
        {
            let fifo = std::process::Command::new("mkfifo").arg(&path).status();
            if fifo.is_ok_and(|s| s.success()) {
                assert_eq!(get(&path, &hex), None);
            }
        }
    }

    #[test]
    fn concurrent_writers_and_readers_only_ever_see_whole_entries() {
        // Runs sharing the folder write the same entries at once; readers in between get
        // the bytes or nothing, never a part.
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join(SOURCES).join(source_key("https://r/v2/a/"));
        let bytes: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        let hex = sha256_hex(&bytes);
        let path = blobs.join(&hex);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..50 {
                        assert!(put(dir.path(), &blobs, &path, &bytes));
                    }
                });
                scope.spawn(|| {
                    for _ in 0..200 {
                        if let Some(read) = get(&path, &hex) {
                            assert_eq!(read.len(), bytes.len());
                        }
                    }
                });
            }
        });
        assert_eq!(get(&path, &hex).as_deref(), Some(&bytes[..]));
        // Nothing but the entry is left (no temporary files).
        assert_eq!(std::fs::read_dir(&blobs).unwrap().count(), 1);
    }

    #[test]
    fn the_folder_is_trimmed_oldest_first_and_leftover_temporaries_go() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join(SOURCES).join(source_key("https://r/v2/a/"));
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        let mut names = Vec::new();
        for i in 0..8u8 {
            let bytes = vec![i; 1000];
            let hex = sha256_hex(&bytes);
            assert!(put(dir.path(), &blobs, &blobs.join(&hex), &bytes));
            let when = old + std::time::Duration::from_secs(u64::from(i) * 60);
            std::fs::File::options()
                .write(true)
                .open(blobs.join(&hex))
                .unwrap()
                .set_modified(when)
                .unwrap();
            names.push(hex);
        }
        let leftover = blobs.join(".eigenpub-abandoned");
        std::fs::write(&leftover, b"half").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&leftover)
            .unwrap()
            .set_modified(old)
            .unwrap();
        // Under the bound: only the leftover goes.
        trim(dir.path(), 8000);
        assert!(!leftover.exists());
        assert!(names.iter().all(|n| blobs.join(n).exists()));
        // Over it: the oldest go until three quarters are left.
        trim(dir.path(), 4000);
        let kept: Vec<bool> = names.iter().map(|n| blobs.join(n).exists()).collect();
        assert_eq!(
            kept,
            [false, false, false, false, false, true, true, true],
            "{kept:?}"
        );
    }

    /// Sets a file's (not a link's target's) modification time to two hours ago.
    fn age(path: &Path) {
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn trimming_deletes_only_files_the_cache_made_and_follows_no_link() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let (root, outside) = (dir.path().join("cache"), dir.path().join("outside"));
        let source = root.join(SOURCES).join(source_key("https://r/v2/a/"));
        let bytes = b"{}";
        let hex = sha256_hex(bytes);
        assert!(put(&root, &source, &source.join(&hex), bytes));
        // Files the cache did not make, old: in a source's folder, and reached through
        // links named as entries or as a source's folder.
        std::fs::create_dir_all(&outside).unwrap();
        let theirs = [
            source.join("notes.txt"),
            source.join("README"),
            outside.join("precious"),
            outside.join(".eigenpub-not-ours-either"),
            outside.join("b".repeat(64)),
        ];
        for file in &theirs {
            std::fs::write(file, b"keep me").unwrap();
            age(file);
        }
        symlink(outside.join("precious"), source.join("c".repeat(64))).unwrap();
        symlink(&outside, root.join(SOURCES).join("d".repeat(64))).unwrap();
        // Its own leftovers: a stale temporary, and the earlier layout's entry.
        let leftover = source.join(".eigenpub-abandoned");
        let old_layout = root.join("blobs/sha256");
        std::fs::create_dir_all(&old_layout).unwrap();
        let old_entry = old_layout.join("e".repeat(64));
        let old_note = old_layout.join("not-an-entry");
        for file in [&leftover, &old_entry, &old_note] {
            std::fs::write(file, b"x").unwrap();
            age(file);
        }
        // Under the bound, then over it (every entry goes).
        trim(&root, MAX_BYTES);
        assert!(!leftover.exists() && !old_entry.exists());
        assert!(source.join(&hex).exists());
        trim(&root, 1);
        assert!(!source.join(&hex).exists());
        for file in &theirs {
            assert_eq!(
                std::fs::read(file).unwrap(),
                b"keep me",
                "{}",
                file.display()
            );
        }
        assert!(old_note.exists());
        assert!(std::fs::symlink_metadata(source.join("c".repeat(64))).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn a_cache_folder_that_is_a_link_holds_one_or_lies_in_the_project_is_refused() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let (real, elsewhere) = (base.join("real"), base.join("elsewhere"));
        std::fs::create_dir_all(&real).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        assert_eq!(refusal(&real, &[]), None);
        // The folder itself a link.
        symlink(&elsewhere, base.join("link")).unwrap();
        let said = refusal(&base.join("link"), &[]).unwrap();
        assert!(
            said.contains("is a symbolic link") && said.contains("cache is off"),
            "{said}"
        );
        // Its `sources`, or a source's folder, a link.
        symlink(&elsewhere, real.join(SOURCES)).unwrap();
        assert!(
            refusal(&real, &[])
                .unwrap()
                .contains("sources is a symbolic link")
        );
        std::fs::remove_file(real.join(SOURCES)).unwrap();
        std::fs::create_dir(real.join(SOURCES)).unwrap();
        let key = source_key("https://r/v2/a/");
        symlink(&elsewhere, real.join(SOURCES).join(&key)).unwrap();
        assert!(refusal(&real, &[]).unwrap().contains(&key));
        // And checked again when writing: nothing goes through the link.
        let source = real.join(SOURCES).join(&key);
        assert!(!put(&real, &source, &source.join(sha256_hex(b"{}")), b"{}"));
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
        // In the project (the home folder the checkout), also through a link committed in
        // it: refused. Beside it: used.
        let project = base.join("checkout");
        std::fs::create_dir_all(&project).unwrap();
        let folders = [project.clone()];
        let said = refusal(&project.join(".cache/eigenpub"), &folders).unwrap();
        assert!(
            said.contains("inside the project") && said.contains("EIGENPUB_CACHE_DIR"),
            "{said}"
        );
        symlink(&elsewhere, project.join(".cache")).unwrap();
        assert!(refusal(&project.join(".cache/eigenpub"), &folders).is_some());
        assert_eq!(refusal(&elsewhere.join("eigenpub"), &folders), None);
    }
}
