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
//! planted) is ignored, deleted and fetched again. So whoever can write the entries can
//! make eigenpub fetch again, never use other bytes. The folder is outside the project
//! (nothing a pull request changes can point eigenpub at it) and is chosen only by the
//! environment:
//!
//! - `EIGENPUB_CACHE_DIR`, else `$XDG_CACHE_HOME/eigenpub`, else `~/.cache/eigenpub`;
//! - `EIGENPUB_NO_CACHE` set to anything but `""` or `0` turns the cache off.
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

    /// The cache the environment asks for (see the module docs), and a warning when
    /// `EIGENPUB_CACHE_DIR` is set but unusable (relative), which turns it off.
    pub fn from_env() -> (Cache, Option<String>) {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let dir = var("EIGENPUB_CACHE_DIR").map(PathBuf::from);
        let off = var("EIGENPUB_NO_CACHE").is_some_and(|v| v != "0");
        let warning = dir
            .as_ref()
            .filter(|d| !off && !d.is_absolute())
            .map(|d| {
                format!(
                    "EIGENPUB_CACHE_DIR must be an absolute path, not {}; the cache is off for this run",
                    crate::sanitize::text(&d.display().to_string())
                )
            });
        let cache = match root(
            off,
            dir,
            var("XDG_CACHE_HOME").map(PathBuf::from),
            var("HOME").map(PathBuf::from),
        ) {
            Some(root) => Cache::at(&root, MAX_BYTES),
            None => Cache::off(),
        };
        (cache, warning)
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
        let fetch = || async {
            match kind {
                Kind::Manifest => target.fetch_manifest(digest).await,
                Kind::Blob => target.fetch_blob(digest).await,
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
        let Some(hex) = hex_of(digest) else {
            return fetch().await;
        };
        let dir = inner
            .root
            .join(SOURCES)
            .join(source_key(&registry.repository_url(repository)));
        let path = dir.join(hex);
        let cached = {
            let (path, hex) = (path.clone(), hex.to_string());
            tokio::task::spawn_blocking(move || get(&path, &hex))
                .await
                .ok()
                .flatten()
        };
        if let Some(bytes) = cached {
            return Ok(Some(bytes));
        }
        let fetched = fetch().await?;
        if let Some(bytes) = &fetched
            && sha256_hex(bytes) == hex
            && bytes.len() as u64 <= MAX_ENTRY
        {
            let bytes = bytes.clone();
            let written = tokio::task::spawn_blocking(move || put(&dir, &path, &bytes))
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
    let bytes = crate::project::paths::read_regular(path, MAX_ENTRY).ok()?;
    if sha256_hex(&bytes) == hex {
        Some(Bytes::from(bytes))
    } else {
        // Corrupted, truncated or planted: never used, fetched again and replaced.
        let _ = std::fs::remove_file(path);
        None
    }
}

/// Writes an entry whole (temporary file, then rename); false when it could not. Not
/// synced to disk: an entry a crash cuts short fails its check and is fetched again, so
/// the first plan over many adopted tags does not wait for a sync per entry.
fn put(dir: &Path, path: &Path, bytes: &[u8]) -> bool {
    use std::io::Write;
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        // The cache may hold manifests of private repositories: the user's only.
        builder.mode(0o700);
    }
    if builder.create(dir).is_err() {
        return false;
    }
    // tempfile creates its files 0600.
    let Ok(mut tmp) = tempfile::Builder::new()
        .prefix(".eigenpub-")
        .tempfile_in(dir)
    else {
        return false;
    };
    tmp.write_all(bytes).is_ok() && tmp.persist(path).is_ok()
}

/// Deletes temporary files left by killed runs, then the oldest entries (of every source)
/// until the folder holds at most three quarters of `max_bytes`, if it holds more than
/// `max_bytes`.
fn trim(root: &Path, max_bytes: u64) {
    let Ok(sources) = std::fs::read_dir(root.join(SOURCES)) else {
        return;
    };
    let now = std::time::SystemTime::now();
    let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = Vec::new();
    for source in sources.flatten() {
        let Ok(entries) = std::fs::read_dir(source.path()) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            let modified = metadata.modified().unwrap_or(now);
            let is_entry = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()));
            if !is_entry {
                let old = now
                    .duration_since(modified)
                    .is_ok_and(|age| age > STALE_TEMPORARY);
                if old && metadata.is_file() {
                    let _ = std::fs::remove_file(entry.path());
                }
                continue;
            }
            files.push((modified, metadata.len(), entry.path()));
        }
    }
    let mut total: u64 = files.iter().map(|(_, len, _)| len).sum();
    if total <= max_bytes {
        return;
    }
    files.sort();
    for (_, len, path) in files {
        if total <= max_bytes / 4 * 3 {
            break;
        }
        if std::fs::remove_file(&path).is_ok() {
            total -= len;
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
        let blobs = dir.path().join("blobs/sha256");
        let bytes = b"{\"schemaVersion\":2}";
        let hex = sha256_hex(bytes);
        let path = blobs.join(&hex);
        assert!(put(&blobs, &path, bytes));
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
        let blobs = dir.path().join("blobs/sha256");
        let bytes: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        let hex = sha256_hex(&bytes);
        let path = blobs.join(&hex);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..50 {
                        assert!(put(&blobs, &path, &bytes));
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
            assert!(put(&blobs, &blobs.join(&hex), &bytes));
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
}
