//! An OCI image layout on disk: a complete backend, not a test aid.
//!
//! `<root>/<repository>/` holds `oci-layout`, `index.json` (one entry per tag, named by
//! `org.opencontainers.image.ref.name`, sorted by tag so the same apply writes the same bytes) and `blobs/sha256/<hex>`, so `skopeo`, `oras` and
//! `crane` read it as `oci:<root>/<repository>:<tag>`. Every write is atomic (a temporary
//! file in the same folder, then a rename), blobs are written before the index names them,
//! and `index.json` is rewritten under a lock (in-process and across processes), so an
//! interrupted or concurrent run never leaves a tag naming a missing or partial blob.
//! Under that lock the tag is read again: an immutable tag that another run wrote since
//! this one planned is refused, not overwritten ([`TagGuard`]). Temporary files that an
//! interrupted run left (`.eigenpub-*`, older than [`STALE_TEMP_AGE`]) are removed on the
//! next write.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};

use crate::artifact::{self, Blob};
use crate::project::paths::ReadError;

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A temporary file this old is left over from an interrupted run (a write in progress
/// takes seconds), so the next write removes it.
pub const STALE_TEMP_AGE: Duration = Duration::from_secs(15 * 60);

/// One repository stored as an OCI image layout.
pub struct Layout {
    dir: PathBuf,
    index_lock: Mutex<()>,
    /// Stale temporary files are looked for once per run.
    swept: AtomicBool,
    /// `blobs/sha256` was found to be the layout's own folder (see `check_blob_folder`).
    blobs_checked: AtomicBool,
}

/// What a tag must still hold when it is written.
#[derive(Debug, Clone, Default)]
pub struct TagGuard {
    /// The digest the tag held when the plan was made (`None`: absent).
    pub observed: Option<String>,
    /// An immutable tag that moved since is refused; a mutable one is written.
    pub immutable: bool,
}

/// A layout failure: which folder, and what happened.
#[derive(Debug, Clone)]
pub struct LayoutError {
    pub dir: PathBuf,
    pub message: String,
    /// True when another run wrote an immutable tag since this one planned it.
    pub tag_moved: bool,
}

impl std::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OCI layout {}: {}", self.dir.display(), self.message)
    }
}

impl Layout {
    pub fn new(dir: PathBuf) -> Layout {
        Layout {
            dir,
            index_lock: Mutex::new(()),
            swept: AtomicBool::new(false),
            blobs_checked: AtomicBool::new(false),
        }
    }

    fn error(&self, message: impl Into<String>) -> LayoutError {
        LayoutError {
            dir: self.dir.clone(),
            message: message.into(),
            tag_moved: false,
        }
    }

    fn blob_path(&self, digest: &str) -> Result<PathBuf, LayoutError> {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|_| crate::reference::is_sha256(digest))
            .ok_or_else(|| self.error(format!("`{digest}` is not a sha256 digest")))?;
        Ok(self.dir.join("blobs").join("sha256").join(hex))
    }

    /// Reads `index.json`; a missing layout is an empty one. A layout may be committed in
    /// a pull request: what it holds is read as a regular file, bounded.
    fn read_index(&self) -> Result<Value, LayoutError> {
        match read_bounded(&self.dir, &self.dir.join("index.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| self.error(format!("index.json is not valid JSON: {e}"))),
            Err(ReadError::Missing) => Ok(json!({"schemaVersion": 2, "manifests": []})),
            Err(e) => Err(self.error(format!("cannot read index.json: {e}"))),
        }
    }

    /// The digest a tag points at, or `None`.
    pub fn manifest_digest(&self, tag: &str) -> Result<Option<String>, LayoutError> {
        let index = self.read_index()?;
        Ok(find_tag(&index, tag).and_then(|m| m["digest"].as_str().map(str::to_string)))
    }

    pub fn blob_exists(&self, digest: &str) -> Result<bool, LayoutError> {
        Ok(self.blob_path(digest)?.is_file())
    }

    /// A blob's bytes, which must hash to its name: a file placed under another digest's
    /// name (a link to a file elsewhere, say) is never shown as the blob.
    pub fn fetch_blob(&self, digest: &str) -> Result<Option<Bytes>, LayoutError> {
        match read_bounded(&self.dir, &self.blob_path(digest)?) {
            Ok(b) if artifact::sha256_digest(&b) == digest => Ok(Some(Bytes::from(b))),
            Ok(_) => Err(self.error(format!(
                "blob {digest} does not hold what its name says (its bytes hash to another digest)"
            ))),
            Err(ReadError::Missing) => Ok(None),
            Err(e) => Err(self.error(format!("cannot read blob {digest}: {e}"))),
        }
    }

    /// The manifest bytes at a tag or digest, or `None`.
    pub fn fetch_manifest(&self, reference: &str) -> Result<Option<Bytes>, LayoutError> {
        let digest = if reference.starts_with("sha256:") {
            reference.to_string()
        } else {
            match self.manifest_digest(reference)? {
                Some(d) => d,
                None => return Ok(None),
            }
        };
        self.fetch_blob(&digest)
    }

    /// Writes a blob (atomically) unless it is already there; true when it was written.
    pub fn push_blob(&self, blob: &Blob) -> Result<bool, LayoutError> {
        self.check_blob_folder()?;
        self.ensure_layout()?;
        let path = self.blob_path(&blob.digest)?;
        if path.is_file()
            && artifact::sha256_digest(&read_bounded(&self.dir, &path).unwrap_or_default())
                == blob.digest
        {
            return Ok(false);
        }
        write_atomic(&path, &blob.bytes)
            .map_err(|e| self.error(format!("cannot write blob {}: {e}", blob.digest)))?;
        Ok(true)
    }

    /// Writes the manifest blob, then points the tag at it in `index.json`, unless the tag
    /// is immutable and moved since it was planned (`guard`).
    pub fn push_manifest(
        &self,
        tag: &str,
        manifest: &Blob,
        artifact_type: &str,
        guard: &TagGuard,
    ) -> Result<String, LayoutError> {
        self.sweep_stale_temporaries();
        self.push_blob(manifest)?;
        let _guard = self.index_lock.lock().unwrap_or_else(|e| e.into_inner());
        // Lock the layout's folder itself: unlike `oci-layout`, it is never replaced, so
        // every process (and thread) that rewrites index.json locks the same thing.
        let lock_file = File::open(&self.dir)
            .map_err(|e| self.error(format!("cannot open the layout folder: {e}")))?;
        lock_within(&lock_file, LOCK_WAIT).map_err(|e| {
            self.error(format!(
                "cannot lock the layout to write tag {tag}: {e}; the manifest is stored, the tag not written"
            ))
        })?;
        let mut index = self.read_index()?;
        // Read again under the lock: another run may have written the tag since the plan.
        let current = find_tag(&index, tag).and_then(|m| m["digest"].as_str().map(str::to_string));
        if guard.immutable
            && current != guard.observed
            && current.as_deref() != Some(manifest.digest.as_str())
        {
            let d = |x: &Option<String>| x.clone().unwrap_or_else(|| "nothing".into());
            return Err(LayoutError {
                tag_moved: true,
                ..self.error(format!(
                    "tag {tag} was written by another run while this one ran (it held {} when planned, {} now); an immutable tag is not overwritten, so it was left as it is",
                    d(&guard.observed),
                    d(&current)
                ))
            });
        }
        let entry = json!({
            "mediaType": manifest.media_type,
            "digest": manifest.digest,
            "size": manifest.size(),
            "artifactType": artifact_type,
            "annotations": { REF_NAME: tag },
        });
        let manifests = index
            .as_object_mut()
            .and_then(|o| o.get_mut("manifests"))
            .and_then(serde_json::Value::as_array_mut)
            .ok_or_else(|| self.error("index.json has no `manifests` list"))?;
        match manifests
            .iter_mut()
            .find(|m| m["annotations"][REF_NAME] == tag)
        {
            Some(existing) => *existing = entry,
            None => manifests.push(entry),
        }
        // Sorted by tag, so the same apply gives the same bytes whatever order pushes
        // finished in.
        manifests.sort_by(|a, b| {
            a["annotations"][REF_NAME]
                .as_str()
                .cmp(&b["annotations"][REF_NAME].as_str())
        });
        let bytes = serde_json::to_vec_pretty(&index).expect("JSON values serialize");
        write_atomic(&self.dir.join("index.json"), &bytes)
            .map_err(|e| self.error(format!("cannot write index.json: {e}")))?;
        drop(lock_file);
        Ok(manifest.digest.clone())
    }

    /// Removes `.eigenpub-*` temporary files older than [`STALE_TEMP_AGE`] from the layout
    /// folder and its blob folder: what an interrupted run left. Younger ones may belong to
    /// a run in progress and are kept. Failures are ignored (the files are harmless).
    fn sweep_stale_temporaries(&self) {
        if self.swept.swap(true, Ordering::SeqCst) {
            return;
        }
        for dir in [self.dir.clone(), self.dir.join("blobs").join("sha256")] {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let stale = entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".eigenpub-")
                    && entry.metadata().is_ok_and(|m| {
                        m.file_type().is_file()
                            && m.modified()
                                .ok()
                                .and_then(|t| t.elapsed().ok())
                                .is_some_and(|age| age > STALE_TEMP_AGE)
                    });
                if stale {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
    }

    /// Blobs are written into `blobs/sha256` only when it is that folder of the layout
    /// (or not there yet): a layout may be committed in a pull request, and a `blobs` (or
    /// `sha256`) that is a link to a folder elsewhere would have had `apply` create folders
    /// and write files there (reads refuse such links already, see [`read_bounded`]).
    /// Checked once per run, before anything is created or written.
    fn check_blob_folder(&self) -> Result<(), LayoutError> {
        if self.blobs_checked.load(Ordering::SeqCst) {
            return Ok(());
        }
        let blobs = self.dir.join("blobs");
        for folder in [blobs.clone(), blobs.join("sha256")] {
            match fs::symlink_metadata(&folder) {
                Ok(m) if m.is_dir() => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                _ => {
                    return Err(self.error(format!(
                        "{} is not a folder of the layout (a link, or another kind of file); nothing is written through it: replace it with a folder, or remove it",
                        folder.strip_prefix(&self.dir).unwrap_or(&folder).display()
                    )));
                }
            }
        }
        self.blobs_checked.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn ensure_layout(&self) -> Result<(), LayoutError> {
        let marker = self.dir.join("oci-layout");
        if marker.is_file() {
            return Ok(());
        }
        fs::create_dir_all(self.dir.join("blobs").join("sha256"))
            .map_err(|e| self.error(format!("cannot create the layout folder: {e}")))?;
        write_atomic(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)
            .map_err(|e| self.error(format!("cannot write oci-layout: {e}")))
    }
}

/// A symbolic link on the way to a layout folder that leads out of the project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkOut {
    /// The link, as on the way to the layout folder.
    pub link: PathBuf,
    /// What it points to, as written in it.
    pub target: PathBuf,
}

/// The first folder on the way to the layout folder `dir` that is a symbolic link lying
/// in one of `project` (canonical folders a pull request controls: the project's folder
/// and its work tree) and leading outside all of them, or to nothing. A relative `oci:`
/// folder whose name a pull request commits as such a link would have the layout (blobs,
/// `index.json`, `oci-layout`) written wherever it points, while the project file and the
/// plan name a folder of the project. Links that stay in the project are followed, as are
/// links outside it (`/home` → `/var/home`: the machine's, not a pull request's); a
/// folder outside the project written in the project file (`oci:/srv/layouts`) is shown
/// as such in every plan. `blobs/` and `blobs/sha256` are checked when writing
/// (`check_blob_folder`): they may not be links at all.
pub fn link_out_of_project(dir: &Path, project: &[PathBuf]) -> Option<LinkOut> {
    let inside = |p: &Path| project.iter().any(|f| p.starts_with(f));
    let dir = std::path::absolute(dir).ok()?;
    let mut on_the_way = PathBuf::new();
    for component in dir.components() {
        on_the_way.push(component);
        let Ok(metadata) = fs::symlink_metadata(&on_the_way) else {
            // Not there yet: eigenpub makes it, and nothing below it can be a link.
            return None;
        };
        if !metadata.file_type().is_symlink() {
            continue;
        }
        let in_project = on_the_way
            .parent()
            .and_then(|p| p.canonicalize().ok())
            .is_some_and(|p| inside(&p));
        let leads_inside = on_the_way.canonicalize().is_ok_and(|r| inside(&r));
        if in_project && !leads_inside {
            return Some(LinkOut {
                target: fs::read_link(&on_the_way).unwrap_or_default(),
                link: on_the_way,
            });
        }
    }
    None
}

/// The most eigenpub reads of one layout file (index, manifest, config or spec layer).
const LAYOUT_READ_LIMIT: u64 = 64 * 1024 * 1024;

/// How long a tag write waits for another process holding the layout's lock. A write
/// holds it for milliseconds; far longer means a stuck or stopped process.
const LOCK_WAIT: Duration = Duration::from_secs(120);

/// Takes the exclusive lock on `file`, waiting at most `wait` for another holder: a
/// stopped process holding it must not hang this run.
fn lock_within(file: &File, wait: Duration) -> Result<(), String> {
    let start = std::time::Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(fs::TryLockError::WouldBlock) if start.elapsed() < wait => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(format!(
                    "another process has held its lock for {} s (a stuck or stopped eigenpub?)",
                    wait.as_secs()
                ));
            }
            Err(fs::TryLockError::Error(e)) => return Err(e.to_string()),
        }
    }
}

/// Reads a layout file: inside the layout folder (opened once beneath it, as project files
/// are), a regular file of at most [`LAYOUT_READ_LIMIT`] bytes.
fn read_bounded(dir: &Path, path: &Path) -> Result<Vec<u8>, ReadError> {
    crate::project::paths::read_inside(dir, path, LAYOUT_READ_LIMIT)
}

fn find_tag<'a>(index: &'a Value, tag: &str) -> Option<&'a Value> {
    index["manifests"]
        .as_array()?
        .iter()
        .find(|m| m["annotations"][REF_NAME] == tag)
}

/// Layout files are for other tools (and users) to read.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    crate::atomic::write(path, bytes, 0o644)
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_held_layout_lock_is_waited_for_then_given_up() {
        let dir = tempfile::tempdir().unwrap();
        let holder = File::open(dir.path()).unwrap();
        holder.lock().unwrap();
        let waiter = File::open(dir.path()).unwrap();
        // Held throughout: an error naming the wait, after it.
        let start = std::time::Instant::now();
        let e = lock_within(&waiter, Duration::from_millis(200)).unwrap_err();
        assert!(start.elapsed() >= Duration::from_millis(200));
        assert!(e.contains("another process has held its lock"), "{e}");
        // Released while waiting: taken.
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            holder.unlock().unwrap();
        });
        lock_within(&waiter, Duration::from_secs(30)).unwrap();
        release.join().unwrap();
    }

    use super::*;

    #[test]
    fn tags_point_at_written_manifests() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().join("repo"));
        assert_eq!(layout.manifest_digest("t").unwrap(), None);
        let blob = Blob::new("text/yaml", b"a: 1\n".to_vec());
        assert!(layout.push_blob(&blob).unwrap());
        assert!(!layout.push_blob(&blob).unwrap());
        assert!(layout.blob_exists(&blob.digest).unwrap());
        let manifest = Blob::new(artifact::MANIFEST_MEDIA_TYPE, b"{}".to_vec());
        layout
            .push_manifest(
                "t",
                &manifest,
                artifact::ARTIFACT_TYPE,
                &TagGuard::default(),
            )
            .unwrap();
        assert_eq!(
            layout.manifest_digest("t").unwrap(),
            Some(manifest.digest.clone())
        );
        // Re-pointing a tag replaces its entry instead of adding a second one.
        let other = Blob::new(artifact::MANIFEST_MEDIA_TYPE, b"{\"a\":1}".to_vec());
        layout
            .push_manifest("t", &other, artifact::ARTIFACT_TYPE, &TagGuard::default())
            .unwrap();
        let index = layout.read_index().unwrap();
        assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
        assert_eq!(layout.manifest_digest("t").unwrap(), Some(other.digest));
        assert!(dir.path().join("repo/oci-layout").is_file());
    }

    #[test]
    fn the_index_is_sorted_by_tag_whatever_the_push_order() {
        let dir = tempfile::tempdir().unwrap();
        let index_after = |order: &[&str], name: &str| {
            let layout = Layout::new(dir.path().join(name));
            for tag in order {
                let manifest = Blob::new(artifact::MANIFEST_MEDIA_TYPE, tag.as_bytes().to_vec());
                layout
                    .push_manifest(
                        tag,
                        &manifest,
                        artifact::ARTIFACT_TYPE,
                        &TagGuard::default(),
                    )
                    .unwrap();
            }
            fs::read(dir.path().join(name).join("index.json")).unwrap()
        };
        let a = index_after(&["v2", "v10", "v1"], "a");
        let b = index_after(&["v1", "v2", "v10"], "b");
        assert_eq!(a, b);
        let index: Value = serde_json::from_slice(&a).unwrap();
        let tags: Vec<&str> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["annotations"][REF_NAME].as_str().unwrap())
            .collect();
        assert_eq!(tags, ["v1", "v10", "v2"]);
    }

    #[test]
    fn an_immutable_tag_written_by_another_run_meanwhile_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        // Two runs (two handles, as two processes have) both planned the tag as absent.
        let first = Layout::new(dir.path().join("repo"));
        let second = Layout::new(dir.path().join("repo"));
        let planned_absent = TagGuard {
            observed: None,
            immutable: true,
        };
        let a = Blob::new(artifact::MANIFEST_MEDIA_TYPE, b"{\"a\":1}".to_vec());
        let b = Blob::new(artifact::MANIFEST_MEDIA_TYPE, b"{\"b\":1}".to_vec());
        first
            .push_manifest("t", &a, artifact::ARTIFACT_TYPE, &planned_absent)
            .unwrap();
        let refused = second
            .push_manifest("t", &b, artifact::ARTIFACT_TYPE, &planned_absent)
            .unwrap_err();
        assert!(refused.tag_moved, "{refused}");
        assert_eq!(second.manifest_digest("t").unwrap(), Some(a.digest.clone()));
        // The same content is no conflict; a mutable tag is written.
        second
            .push_manifest("t", &a, artifact::ARTIFACT_TYPE, &planned_absent)
            .unwrap();
        let mutable = TagGuard {
            observed: None,
            immutable: false,
        };
        second
            .push_manifest("t", &b, artifact::ARTIFACT_TYPE, &mutable)
            .unwrap();
        assert_eq!(second.manifest_digest("t").unwrap(), Some(b.digest));
    }

    #[test]
    fn stale_temporary_files_are_removed_on_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        fs::create_dir_all(repo.join("blobs/sha256")).unwrap();
        let old = std::time::SystemTime::now() - STALE_TEMP_AGE - Duration::from_secs(60);
        let make = |path: PathBuf, modified| {
            let f = File::create(&path).unwrap();
            f.set_modified(modified).unwrap();
            path
        };
        let stale_index = make(repo.join(".eigenpub-old1"), old);
        let stale_blob = make(repo.join("blobs/sha256/.eigenpub-old2"), old);
        let fresh = make(repo.join(".eigenpub-fresh"), std::time::SystemTime::now());
        let foreign = make(repo.join("notes-old"), old);
        let layout = Layout::new(repo.clone());
        let manifest = Blob::new(artifact::MANIFEST_MEDIA_TYPE, b"{}".to_vec());
        layout
            .push_manifest(
                "t",
                &manifest,
                artifact::ARTIFACT_TYPE,
                &TagGuard::default(),
            )
            .unwrap();
        assert!(!stale_index.exists() && !stale_blob.exists());
        assert!(
            fresh.exists(),
            "a temporary file of a run in progress is kept"
        );
        assert!(
            foreign.exists(),
            "only eigenpub's temporary files are removed"
        );
    }

    #[test]
    fn bad_digests_never_become_paths() {
        let layout = Layout::new(PathBuf::from("/nonexistent"));
        assert!(layout.blob_exists("sha256:../../etc/passwd").is_err());
    }

    #[test]
    fn an_index_that_is_not_an_object_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().join("repo"));
        let manifest = Blob::new(artifact::MANIFEST_MEDIA_TYPE, b"{}".to_vec());
        layout
            .push_manifest(
                "t",
                &manifest,
                artifact::ARTIFACT_TYPE,
                &TagGuard::default(),
            )
            .unwrap();
        for hostile in ["[]", "\"x\"", "1", "{\"manifests\": {}}"] {
            std::fs::write(dir.path().join("repo/index.json"), hostile).unwrap();
            let pushed = layout.push_manifest(
                "u",
                &manifest,
                artifact::ARTIFACT_TYPE,
                &TagGuard::default(),
            );
            assert!(pushed.is_err(), "{hostile}");
        }
    }
}
