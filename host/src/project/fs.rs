//! The project module's only file-system primitives: capped reads and atomic replacement.
//!
//! Every file of a BMAD project is read through [`read_capped`] (or [`read_capped_if_exists`]),
//! which refuses a file over its kind's size limit before reading a byte of it, so a stray
//! multi-gigabyte file is an error naming the file and never an allocation. Every write goes
//! through [`write_atomic`]: the host never leaves a half-written story or sprint-status behind,
//! whatever kills it, and never loses a change someone else made meanwhile.
//!
//! Nothing is read or written outside the project: [`outside`] resolves a path (`..` and
//! symlinks) against the project root; the files the host reads for a story ([`read_inside`])
//! and every file it writes ([`write_atomic`]) are refused with
//! [`ProjectError::OutsideProject`] when they lead out of it.

use std::io::{Read as _, Write as _};
use std::path::{Component, Path, PathBuf};

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

/// Where `path` (relative to `root`, or absolute) really leads when that is outside `root`:
/// `..` components and symlinks (of the path and of its existing ancestors) resolved, compared
/// with the resolved root. `None` when it stays inside. A path that does not exist yet is judged
/// by its deepest existing ancestor.
pub(crate) fn outside(root: &Path, path: &Path) -> Option<PathBuf> {
    if resolves_beneath(root, path) {
        return None;
    }
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| lexical(root));
    let joined = lexical(&root.join(path));
    // The deepest ancestor that exists, resolved; the rest appended as written.
    let mut existing = joined.as_path();
    let mut rest = Vec::new();
    let resolved = loop {
        if let Ok(real) = std::fs::canonicalize(existing) {
            break rest.iter().rev().fold(real, |p: PathBuf, c| p.join(c));
        }
        if let Ok(link) = std::fs::read_link(existing) {
            // A dangling symlink: judged by where it points.
            let parent = existing.parent().unwrap_or(Path::new("/"));
            let target = lexical(&parent.join(link));
            break rest.iter().rev().fold(target, |p: PathBuf, c| p.join(c));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => break joined.clone(),
        }
    };
    (!resolved.starts_with(&root)).then_some(resolved)
}

/// The fast proof that `path` stays inside `root`, in a few path walks instead of one
/// `readlink` per component of each: the path, made relative to `root` with `.` and `..`
/// applied as [`outside`] applies them, opens (`openat2`, `RESOLVE_BENEATH`) from the root
/// folder without any step of its resolution (a `..`, a symlink, its target) leaving the folder.
/// A path that does not exist yet is judged, as [`outside`] judges it, by its deepest existing
/// ancestor (the rest is plain names): the proof climbs while the last name is missing, not
/// even a dangling symlink. False when it cannot be shown this way (a symlink is absolute or
/// dangling, the kernel has no `openat2`, any other error): [`outside`] then resolves the path
/// the long way. True implies what the long way finds: what is reached only through the
/// folder's descendants resolves to a path under the root's.
fn resolves_beneath(root: &Path, path: &Path) -> bool {
    use nix::errno::Errno;
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag, open, openat2};
    let joined = lexical(&root.join(path));
    let Ok(rel) = joined.strip_prefix(lexical(root)) else {
        return false;
    };
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return false;
    }
    let flags = OFlag::O_PATH | OFlag::O_CLOEXEC;
    let Ok(dir) = open(
        root,
        flags | OFlag::O_DIRECTORY,
        nix::sys::stat::Mode::empty(),
    ) else {
        return false;
    };
    let beneath = |p: &Path, flags: OFlag| {
        let how = OpenHow::new()
            .flags(flags)
            .resolve(ResolveFlag::RESOLVE_BENEATH);
        openat2(&dir, p, how).map(drop)
    };
    let mut rel = rel;
    loop {
        if rel.as_os_str().is_empty() {
            // The root itself (it was opened).
            return true;
        }
        match beneath(rel, flags) {
            Ok(()) => return true,
            Err(Errno::ENOENT) => {}
            Err(_) => return false,
        }
        // Missing: is the last name there, as a dangling symlink? Then its target decides.
        if beneath(rel, flags | OFlag::O_NOFOLLOW) != Err(Errno::ENOENT) {
            return false;
        }
        let Some(parent) = rel.parent() else {
            return false;
        };
        rel = parent;
    }
}

/// `path` with `.` dropped and `..` applied to the components before it (never above `/`).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The error for `path`, which leads to `target` outside `root`.
fn outside_error(root: &Path, path: &Path, target: PathBuf) -> ProjectError {
    ProjectError::OutsideProject {
        path: path.to_owned(),
        target,
        root: root.to_owned(),
    }
}

/// Refuses `path` with [`ProjectError::OutsideProject`] when it leads outside `root`.
pub(crate) fn inside(root: &Path, path: &Path) -> Result<(), ProjectError> {
    match outside(root, path) {
        None => Ok(()),
        Some(target) => Err(outside_error(root, path, target)),
    }
}

/// [`read_capped`] of a project file that must lead nowhere outside `root`.
pub(crate) fn read_inside(
    root: &Path,
    path: &Path,
    limit: u64,
    what: &'static str,
) -> Result<Vec<u8>, ProjectError> {
    inside(root, path)?;
    read_capped(path, limit, what)
}

/// Replaces `path` (a file inside `root`) with `bytes` atomically: a temp file in the same
/// directory, written and fsynced, given the old file's permissions, swapped in for it, then the
/// directory fsynced. A symlink inside the project is written through to its target; one that
/// leads outside the project is refused ([`ProjectError::OutsideProject`]), whatever it points
/// to.
///
/// Refuses when the file no longer holds `expected` (someone wrote it meanwhile). The compare and
/// the replacement cannot race: the new file is exchanged with the old one in one step
/// (`renameat2(RENAME_EXCHANGE)`), and what the exchange took out is compared again; if someone
/// changed the file between the first compare and the exchange, it is exchanged back, so their
/// version is the one left in place, and the write is refused.
pub(crate) fn write_atomic(
    root: &Path,
    path: &Path,
    bytes: &[u8],
    expected: &[u8],
) -> Result<(), ProjectError> {
    replace(root, path, bytes, expected, &mut || {})
}

/// [`write_atomic`], with `between` run after the first compare and before the exchange (the
/// window a concurrent writer could use; tests put one there).
fn replace(
    root: &Path,
    path: &Path,
    bytes: &[u8],
    expected: &[u8],
    between: &mut dyn FnMut(),
) -> Result<(), ProjectError> {
    inside(root, path)?;
    // Write through a symlink (inside the project) to its target rather than replacing the link.
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
    let changed = || {
        ProjectError::StatusNotWritable {
        at: FileLoc::new(&target, None),
        problem: "the file was changed by someone else while bmad-host was writing it; re-read it and decide again".to_owned(),
    }
    };
    let now = std::fs::read(&target).map_err(|e| ProjectError::io("read", &target, e))?;
    if now != expected {
        return Err(changed());
    }
    between();
    match exchange(tmp.path(), &target) {
        Ok(()) => {
            // `tmp` now names the file that was in place at the exchange: it must be the one
            // compared above, else someone wrote in the window and theirs goes back in place.
            let mut taken_out = Vec::with_capacity(expected.len());
            std::fs::File::open(tmp.path())
                .and_then(|mut f| f.read_to_end(&mut taken_out))
                .map_err(|e| ProjectError::io("read", tmp.path(), e))?;
            if taken_out != expected {
                exchange(tmp.path(), &target)
                    .map_err(|e| ProjectError::io("restore", &target, e))?;
                return Err(changed());
            }
            // The old file (still named by the temp file) is removed when `tmp` drops.
        }
        Err(e) if exchange_unsupported(&e) => {
            // A file system without RENAME_EXCHANGE: compare, then rename, as close as it gets.
            tmp.persist(&target)
                .map_err(|e| ProjectError::io("replace", &target, e.error))?;
        }
        Err(e) => return Err(ProjectError::io("replace", &target, e)),
    }
    let d = std::fs::File::open(&dir).map_err(|e| ProjectError::io("open", &dir, e))?;
    d.sync_all()
        .map_err(|e| ProjectError::io("sync", &dir, e))?;
    Ok(())
}

/// Swaps the files at `a` and `b` in one step.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
    renameat2(AT_FDCWD, a, AT_FDCWD, b, RenameFlags::RENAME_EXCHANGE).map_err(std::io::Error::from)
}

/// Swaps the files at `a` and `b` in one step (not available here).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn exchange(_a: &Path, _b: &Path) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

/// Whether the file system (or the platform) cannot exchange two files.
fn exchange_unsupported(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::Unsupported
        || e.raw_os_error() == Some(nix::libc::EINVAL)
        || e.raw_os_error() == Some(nix::libc::ENOSYS)
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
        assert!(write_atomic(dir.path(), &path, b"new", b"other").is_err());
        assert_eq!(std::fs::read(&path).ok(), Some(b"old".to_vec()));
        write_atomic(dir.path(), &path, b"new", b"old").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(std::fs::read(&path).ok(), Some(b"new".to_vec()));
    }

    #[test]
    fn a_change_between_the_compare_and_the_swap_is_kept_and_the_write_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("s.md");
        // Another writer replaces the file atomically in the window.
        std::fs::write(&path, b"old").unwrap_or_else(|e| panic!("{e}"));
        let err = replace(dir.path(), &path, b"ours", b"old", &mut || {
            let other = dir.path().join("other.tmp");
            std::fs::write(&other, b"theirs").unwrap_or_else(|e| panic!("{e}"));
            std::fs::rename(&other, &path).unwrap_or_else(|e| panic!("{e}"));
        })
        .expect_err("refused");
        assert!(err.to_string().contains("changed by someone else"), "{err}");
        assert_eq!(std::fs::read(&path).ok(), Some(b"theirs".to_vec()));
        // Another writer rewrites the file in place in the window.
        std::fs::write(&path, b"old").unwrap_or_else(|e| panic!("{e}"));
        let err = replace(dir.path(), &path, b"ours", b"old", &mut || {
            std::fs::write(&path, b"in place").unwrap_or_else(|e| panic!("{e}"));
        })
        .expect_err("refused");
        assert!(err.to_string().contains("changed by someone else"), "{err}");
        assert_eq!(std::fs::read(&path).ok(), Some(b"in place".to_vec()));
        // No temp file is left behind.
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap_or_else(|e| panic!("{e}"))
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, [std::ffi::OsString::from("s.md")]);
    }

    #[test]
    fn nothing_is_written_through_a_symlink_that_leads_outside() {
        let project = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let elsewhere = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let victim = elsewhere.path().join("victim");
        std::fs::write(&victim, b"old").unwrap_or_else(|e| panic!("{e}"));
        let link = project.path().join("s.md");
        std::os::unix::fs::symlink(&victim, &link).unwrap_or_else(|e| panic!("{e}"));
        let err = write_atomic(project.path(), &link, b"new", b"old").expect_err("refused");
        assert!(matches!(err, ProjectError::OutsideProject { .. }), "{err}");
        assert_eq!(std::fs::read(&victim).ok(), Some(b"old".to_vec()));
        assert!(read_inside(project.path(), &link, 100, "a story").is_err());
        // A symlink inside the project is written through.
        let inner = project.path().join("inner.md");
        std::fs::write(&inner, b"old").unwrap_or_else(|e| panic!("{e}"));
        let link2 = project.path().join("t.md");
        std::os::unix::fs::symlink(&inner, &link2).unwrap_or_else(|e| panic!("{e}"));
        write_atomic(project.path(), &link2, b"new", b"old").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(std::fs::read(&inner).ok(), Some(b"new".to_vec()));
    }

    #[test]
    fn outside_resolves_dots_and_links() {
        let project = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = project.path();
        std::fs::create_dir_all(root.join("docs")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outside(root, Path::new("docs/stories")), None);
        assert_eq!(outside(root, Path::new("docs/../docs/x/y")), None);
        assert!(outside(root, Path::new("../elsewhere")).is_some());
        assert!(outside(root, Path::new("/etc")).is_some());
        std::os::unix::fs::symlink("/tmp", root.join("docs/out")).unwrap_or_else(|e| panic!("{e}"));
        assert!(outside(root, Path::new("docs/out/stories")).is_some());
        std::os::unix::fs::symlink("/nonexistent-bmad", root.join("dangling"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(outside(root, Path::new("dangling/x")).is_some());
    }

    #[test]
    fn the_fast_proof_agrees_with_the_long_way() {
        let project = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = project.path();
        let ok = |r: std::io::Result<()>| r.unwrap_or_else(|e| panic!("{e}"));
        ok(std::fs::create_dir_all(root.join("docs/stories")));
        ok(std::fs::write(root.join("docs/stories/1.1.story.md"), b"x"));
        // Inside through links: relative, and absolute into the project.
        ok(std::os::unix::fs::symlink(
            "stories/1.1.story.md",
            root.join("docs/rel.md"),
        ));
        ok(std::os::unix::fs::symlink(
            root.join("docs/stories"),
            root.join("docs/abs"),
        ));
        // Out through links and dots.
        ok(std::os::unix::fs::symlink("/tmp", root.join("docs/out")));
        ok(std::os::unix::fs::symlink("../..", root.join("docs/up")));
        let fast_inside = [
            "docs/stories/1.1.story.md",
            "docs/rel.md",
            "docs",
            "docs/./stories/../stories/1.1.story.md",
        ];
        for p in fast_inside {
            assert!(resolves_beneath(root, Path::new(p)), "{p}");
            assert!(resolves_beneath(root, &root.join(p)), "{p} (absolute)");
            assert_eq!(outside(root, Path::new(p)), None, "{p}");
        }
        // Not there yet: judged by the deepest existing ancestor.
        for p in ["docs/missing.md", "docs/qa/gates/1.1-x.yml"] {
            assert!(resolves_beneath(root, Path::new(p)), "{p}");
            assert_eq!(outside(root, Path::new(p)), None, "{p}");
        }
        ok(std::os::unix::fs::symlink(
            "/nonexistent-bmad",
            root.join("docs/dangling"),
        ));
        ok(std::os::unix::fs::symlink(
            "missing-too",
            root.join("docs/dangling-in"),
        ));
        // The long way decides (inside after all, or outside): the fast proof declines.
        for p in [
            "docs/abs/1.1.story.md",
            "docs/out",
            "docs/up/x",
            "../x",
            "/etc",
            "docs/dangling",
            "docs/dangling/x",
            "docs/dangling-in/x",
        ] {
            assert!(!resolves_beneath(root, Path::new(p)), "{p}");
        }
        assert_eq!(outside(root, Path::new("docs/abs/1.1.story.md")), None);
        assert_eq!(outside(root, Path::new("docs/dangling-in/x")), None);
        assert!(outside(root, Path::new("docs/dangling/x")).is_some());
        assert!(outside(root, Path::new("docs/out")).is_some());
        assert!(outside(root, Path::new("docs/up/x")).is_some());
    }
}
