//! The project module's only file-system primitives: capped reads and atomic replacement.
//!
//! Every file of a BMAD project is read through [`read_capped`] (or [`read_capped_if_exists`]),
//! which refuses a file over its kind's size limit before reading a byte of it, so a stray
//! multi-gigabyte file is an error naming the file and never an allocation. Every write goes
//! through [`write_atomic`]: the host never leaves a half-written story or sprint-status behind,
//! whatever kills it.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::error::{FileLoc, ProjectError};

/// Reads a file, refusing one over `limit` bytes with [`ProjectError::TooLarge`] (which names the
/// file as `what`, e.g. "a story").
pub(crate) fn read_capped(
    path: &Path,
    limit: u64,
    what: &'static str,
) -> Result<Vec<u8>, ProjectError> {
    let meta = std::fs::metadata(path).map_err(|e| ProjectError::io("read", path, e))?;
    if meta.len() > limit {
        return Err(ProjectError::TooLarge {
            path: path.to_owned(),
            size: meta.len(),
            limit,
            what,
        });
    }
    std::fs::read(path).map_err(|e| ProjectError::io("read", path, e))
}

/// [`read_capped`] decoded as UTF-8 (invalid sequences replaced), or `Ok(None)` when the file
/// does not exist.
pub(crate) fn read_capped_if_exists(
    path: &Path,
    limit: u64,
    what: &'static str,
) -> Result<Option<String>, ProjectError> {
    match read_capped(path, limit, what) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(ProjectError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Replaces `path` with `bytes` atomically: a temp file in the same directory, written and
/// fsynced, given the old file's permissions, renamed over it, then the directory fsynced.
/// Refuses when the file no longer holds `expected` (someone wrote it meanwhile).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], expected: &[u8]) -> Result<(), ProjectError> {
    // Write through a symlink to its target rather than replacing the link.
    let target = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            std::fs::canonicalize(path).map_err(|e| ProjectError::io("resolve", path, e))?
        }
        _ => path.to_owned(),
    };
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let perms = std::fs::metadata(&target)
        .map_err(|e| ProjectError::io("read", &target, e))?
        .permissions();
    let mut tmp = tempfile::Builder::new()
        .prefix(".bmad-host-")
        .suffix(".tmp")
        .tempfile_in(&dir)
        .map_err(|e| ProjectError::io("create a temporary file in", &dir, e))?;
    tmp.write_all(bytes)
        .map_err(|e| ProjectError::io("write", tmp.path(), e))?;
    tmp.as_file()
        .set_permissions(perms)
        .map_err(|e| ProjectError::io("set permissions on", tmp.path(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| ProjectError::io("sync", tmp.path(), e))?;
    let now = std::fs::read(&target).map_err(|e| ProjectError::io("read", &target, e))?;
    if now != expected {
        return Err(ProjectError::StatusNotWritable {
            at: FileLoc::new(&target, None),
            problem: "the file was changed by someone else while bmad-host was writing it; re-read it and decide again".to_owned(),
        });
    }
    tmp.persist(&target)
        .map_err(|e| ProjectError::io("replace", &target, e.error))?;
    let d = std::fs::File::open(&dir).map_err(|e| ProjectError::io("open", &dir, e))?;
    d.sync_all()
        .map_err(|e| ProjectError::io("sync", &dir, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_the_limit_is_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("big.md");
        std::fs::write(&path, vec![b'x'; 11]).unwrap_or_else(|e| panic!("{e}"));
        let err = read_capped(&path, 10, "a story").expect_err("too large");
        assert!(
            matches!(
                err,
                ProjectError::TooLarge {
                    size: 11,
                    limit: 10,
                    what: "a story",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(read_capped(&path, 11, "a story").ok(), Some(vec![b'x'; 11]));
    }

    #[test]
    fn a_missing_file_is_none_only_when_asked() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("absent.yaml");
        assert_eq!(
            read_capped_if_exists(&path, 10, "a config").ok(),
            Some(None)
        );
        assert!(matches!(
            read_capped(&path, 10, "a config"),
            Err(ProjectError::Io { action: "read", .. })
        ));
    }

    #[test]
    fn atomic_write_refuses_a_file_changed_meanwhile() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("s.md");
        std::fs::write(&path, b"old").unwrap_or_else(|e| panic!("{e}"));
        assert!(write_atomic(&path, b"new", b"other").is_err());
        assert_eq!(std::fs::read(&path).ok(), Some(b"old".to_vec()));
        write_atomic(&path, b"new", b"old").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(std::fs::read(&path).ok(), Some(b"new".to_vec()));
    }
}
