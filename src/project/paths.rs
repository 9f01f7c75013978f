//! Project files stay in the project, and no read is unbounded.
//!
//! `eigenruntime.toml` is edited in pull requests, and CI runs eigenpub on it: a spec path
//! must not make eigenpub read (and then quote in a snippet) a file outside the project,
//! such as `~/.docker/config.json`, nor read `/dev/zero` until memory runs out. So a spec
//! path (written in an operator set or found by `[[discover]]`) must resolve inside the
//! project folder after following symlinks, and every file eigenpub reads from a project is
//! a regular file of at most [`MAX_FILE_SIZE`] bytes, checked before it is read. The
//! project file, its lock and the schema files it maps are held to the same rule (the
//! project file and the lock: inside the folder they are named in).

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
    /// The path resolves (after symlinks) outside the project folder.
    Outside {
        resolved: PathBuf,
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
            ReadError::Outside { resolved } => write!(
                f,
                "it resolves to {}, outside the project folder",
                resolved.display()
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

/// Reads `path`, which must resolve inside `root` (both after following symlinks) and be a
/// regular file of at most `limit` bytes.
pub fn read_inside(root: &Path, path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let root = root.canonicalize()?;
    let resolved = path.canonicalize()?;
    if !resolved.starts_with(&root) {
        return Err(ReadError::Outside { resolved });
    }
    read_regular(&resolved, limit)
}

/// The folder a file is named in (`.` for a bare file name).
pub fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Reads a file that must resolve (after symlinks) inside the folder it is named in: the
/// project file and its lock, which a pull request could otherwise link to any file.
pub fn read_beside(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    read_inside(&folder_of(path), path, limit)
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
    let file = options.open(path)?;
    // What was opened is what is read: checked again on the open file.
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
            // A link that stays inside is fine.
            std::os::unix::fs::symlink(root.join("specs/a.yaml"), root.join("in.yaml")).unwrap();
            assert!(read_inside(&root, &root.join("in.yaml"), 100).is_ok());
        }
        assert!(matches!(
            read_inside(&root, &root.join("nope.yaml"), 100),
            Err(ReadError::Missing)
        ));
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
