//! Project files stay in the project, are read from what was checked, and no read is
//! unbounded.
//!
//! `eigenruntime.toml` is edited in pull requests, and CI runs eigenpub on it: a spec path
//! must not make eigenpub read (and then quote in a snippet) a file outside the project,
//! such as `~/.docker/config.json`, nor read `/dev/zero` until memory runs out. So a spec
//! path (written in an operator set or found by `[[discover]]`) is opened relative to the
//! project folder, once, by [`read_inside`]: the folder is opened first, and the path is
//! resolved beneath it (`cap-std`: `openat2` with `RESOLVE_BENEATH` on Linux, a checked
//! walk elsewhere), so no `..`, absolute path or symbolic link leads out of it, however
//! the files are swapped meanwhile (a check of the path followed by a second open by name
//! could be raced). What was opened is then checked (a regular file of at most
//! [`MAX_FILE_SIZE`] bytes) and read from that handle. The project file, its lock and the
//! schema files it maps are held to the same rule (the project file and the lock: inside
//! the folder they are named in).

use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest project file or spec eigenpub reads by default (a 10 MiB spec, with room to
/// spare); `EIGENPUB_MAX_FILE_MIB` sets another limit (the operator's environment, not the
/// project file, which a pull request could edit).
pub const MAX_FILE_SIZE: u64 = 16 * 1024 * 1024;

/// The limit of this run: `EIGENPUB_MAX_FILE_MIB` (1 to 4096), else [`MAX_FILE_SIZE`].
pub fn max_file_size() -> u64 {
    static LIMIT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        std::env::var("EIGENPUB_MAX_FILE_MIB")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|m| (1..=4096).contains(m))
            .map_or(MAX_FILE_SIZE, |m| m * 1024 * 1024)
    })
}

/// Why a project file was not read.
#[derive(Debug)]
pub enum ReadError {
    Missing,
    /// The path leads outside `folder` (`..`, an absolute path, or a symbolic link);
    /// `resolved` is where it points, when that is outside (for the message only: the
    /// decision was made on the open).
    Outside {
        resolved: Option<PathBuf>,
        folder: PathBuf,
    },
    /// A folder, device, FIFO or socket.
    NotRegular {
        kind: &'static str,
    },
    TooLarge {
        size: u64,
        limit: u64,
    },
    Io(std::io::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Missing => f.write_str("not found"),
            ReadError::Outside {
                resolved: Some(resolved),
                folder,
            } => write!(
                f,
                "it resolves to {}, outside {}",
                resolved.display(),
                folder.display()
            ),
            ReadError::Outside {
                resolved: None,
                folder,
            } => write!(
                f,
                "it leads outside {} (through `..` or a symbolic link; a link to an absolute path is refused even when it points inside)",
                folder.display()
            ),
            ReadError::NotRegular { kind } => write!(f, "it is a {kind}, not a regular file"),
            ReadError::TooLarge { size, limit } => write!(
                f,
                "it is {size} bytes; files may be at most {limit} bytes ({} MiB; EIGENPUB_MAX_FILE_MIB sets another limit)",
                limit / (1024 * 1024)
            ),
            ReadError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::NotFound {
            ReadError::Missing
        } else {
            ReadError::Io(e)
        }
    }
}

/// Reads `path`, which must be inside `root`: opened once, beneath the folder `root`
/// (opened first), with no `..`, absolute path or symbolic link leading out of it, then
/// checked to be a regular file of at most `limit` bytes and read from that handle.
pub fn read_inside(root: &Path, path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let Some(relative) = relative_to(root, path) else {
        return Err(ReadError::Outside {
            resolved: Some(path.to_path_buf()),
            folder: shown(root),
        });
    };
    let folder = cap_std::fs::Dir::open_ambient_dir(root, cap_std::ambient_authority())?;
    let mut options = cap_std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        // Should the path name a FIFO, opening it must not block.
        use cap_std::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    match folder.open_with(&relative, &options) {
        Ok(file) => read_open(file.into_std(), limit),
        Err(e) if escaped(&e) => Err(ReadError::Outside {
            resolved: outside(root, path),
            folder: shown(root),
        }),
        Err(e) => Err(e.into()),
    }
}

/// `path` relative to `root` (lexically: `..` in it is resolved, and refused, on the open).
fn relative_to(root: &Path, path: &Path) -> Option<PathBuf> {
    if let Ok(relative) = path.strip_prefix(root) {
        return Some(relative.to_path_buf());
    }
    // A folder named `.`, and a path given relative to it without the `./`.
    let here = root.as_os_str().is_empty() || root == Path::new(".");
    (here && path.is_relative()).then(|| path.to_path_buf())
}

/// Whether an open failed because the path leads out of the folder (cap-std's refusal is
/// an error of its own, with no OS error code; a real permission error has one).
fn escaped(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::PermissionDenied && e.raw_os_error().is_none()
}

/// A folder as a message names it: absolute when it can be (`.` says little).
fn shown(folder: &Path) -> PathBuf {
    folder
        .canonicalize()
        .unwrap_or_else(|_| folder.to_path_buf())
}

/// Where a refused path points, when that is outside `root`: for the message only.
fn outside(root: &Path, path: &Path) -> Option<PathBuf> {
    let resolved = path.canonicalize().ok()?;
    let root = root.canonicalize().ok()?;
    (!resolved.starts_with(root)).then_some(resolved)
}

/// The folder a file is named in (`.` for a bare file name).
pub fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Reads a file that must be inside the folder it is named in (as [`read_inside`] reads):
/// the project file and its lock, which a pull request could otherwise link to any file.
pub fn read_beside(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let name = path
        .file_name()
        .ok_or(ReadError::NotRegular { kind: "folder" })?;
    let folder = folder_of(path);
    read_inside(&folder, &folder.join(name), limit)
}

/// The project file's text, read as [`read_beside`] reads it (for commands that only want
/// its settings).
pub fn project_text(config: &Path) -> Result<String, ReadError> {
    let bytes = read_beside(config, max_file_size())?;
    String::from_utf8(bytes).map_err(|_| {
        ReadError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "it is not UTF-8 text",
        ))
    })
}

/// Reads a regular file of at most `limit` bytes; anything else is refused before reading.
/// For files the operator names (a saved plan, Docker's config, a CA bundle), which may
/// be anywhere: project files are read with [`read_inside`].
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    check(&std::fs::metadata(path)?, limit)?;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        // Should the path be swapped for a FIFO after the check, opening it must not block.
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    read_open(options.open(path)?, limit)
}

/// Checks an open file (regular, at most `limit` bytes) and reads it, never past the limit.
fn read_open(file: std::fs::File, limit: u64) -> Result<Vec<u8>, ReadError> {
    let metadata = file.metadata()?;
    check(&metadata, limit)?;
    // Sized from the file (thousands of specs are kept in memory), never beyond the limit.
    let mut bytes = Vec::with_capacity(metadata.len().min(limit) as usize);
    file.take(limit + 1).read_to_end(&mut bytes)?;
    bytes.shrink_to_fit();
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge {
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

fn check(metadata: &std::fs::Metadata, limit: u64) -> Result<(), ReadError> {
    let kind = metadata.file_type();
    if !kind.is_file() {
        return Err(ReadError::NotRegular {
            kind: kind_name(&kind),
        });
    }
    if metadata.len() > limit {
        return Err(ReadError::TooLarge {
            size: metadata.len(),
            limit,
        });
    }
    Ok(())
}

fn kind_name(kind: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_char_device() || kind.is_block_device() {
            return "device";
        }
        if kind.is_fifo() {
            return "FIFO";
        }
        if kind.is_socket() {
            return "socket";
        }
    }
    if kind.is_dir() {
        "folder"
    } else {
        "special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_stay_inside_the_project() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("project");
        std::fs::create_dir_all(root.join("specs")).unwrap();
        std::fs::write(root.join("specs/a.yaml"), "a: 1").unwrap();
        std::fs::write(outer.path().join("secret.json"), "{}").unwrap();
        assert_eq!(
            read_inside(&root, &root.join("specs/a.yaml"), 100).unwrap(),
            b"a: 1"
        );
        assert!(matches!(
            read_inside(&root, &root.join("specs/../../secret.json"), 100),
            Err(ReadError::Outside { .. })
        ));
        assert!(matches!(
            read_inside(&root, &outer.path().join("secret.json"), 100),
            Err(ReadError::Outside { .. })
        ));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(outer.path().join("secret.json"), root.join("link.yaml"))
                .unwrap();
            assert!(matches!(
                read_inside(&root, &root.join("link.yaml"), 100),
                Err(ReadError::Outside { .. })
            ));
            // A relative link that stays inside is fine; an absolute one is refused.
            std::os::unix::fs::symlink("specs/a.yaml", root.join("in.yaml")).unwrap();
            assert_eq!(
                read_inside(&root, &root.join("in.yaml"), 100).unwrap(),
                b"a: 1"
            );
            std::os::unix::fs::symlink(root.join("specs/a.yaml"), root.join("abs.yaml")).unwrap();
            assert!(matches!(
                read_inside(&root, &root.join("abs.yaml"), 100),
                Err(ReadError::Outside { resolved: None, .. })
            ));
            // A folder linked out of the project.
            std::os::unix::fs::symlink(outer.path(), root.join("out")).unwrap();
            assert!(matches!(
                read_inside(&root, &root.join("out/secret.json"), 100),
                Err(ReadError::Outside {
                    resolved: Some(_),
                    ..
                })
            ));
            // A FIFO is refused, without blocking.
            let fifo = root.join("fifo.yaml");
            assert!(
                std::process::Command::new("mkfifo")
                    .arg(&fifo)
                    .status()
                    .unwrap()
                    .success()
            );
            assert!(matches!(
                read_inside(&root, &fifo, 100),
                Err(ReadError::NotRegular { kind: "FIFO" })
            ));
        }
        assert!(matches!(
            read_inside(&root, &root.join("nope.yaml"), 100),
            Err(ReadError::Missing)
        ));
        std::fs::write(root.join("big.yaml"), vec![b'x'; 101]).unwrap();
        assert!(matches!(
            read_inside(&root, &root.join("big.yaml"), 100),
            Err(ReadError::TooLarge { .. })
        ));
        // A project file named without a folder is read from the working folder.
        assert_eq!(
            relative_to(Path::new("."), Path::new("a.toml")),
            Some("a.toml".into())
        );
    }

    #[test]
    fn devices_folders_and_large_files_are_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_regular(Path::new("/dev/zero"), 100),
            Err(ReadError::NotRegular { kind: "device" })
        ));
        assert!(matches!(
            read_regular(dir.path(), 100),
            Err(ReadError::NotRegular { kind: "folder" })
        ));
        std::fs::write(dir.path().join("big"), vec![b'x'; 101]).unwrap();
        assert!(matches!(
            read_regular(&dir.path().join("big"), 100),
            Err(ReadError::TooLarge {
                size: 101,
                limit: 100
            })
        ));
    }
}
