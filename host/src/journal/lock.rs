//! The run lock: an exclusive `flock(2)` on `.bmad-host/run.lock`, held for the life of a
//! [`super::Journal`]. The kernel drops it when the holder's file is closed, including when the
//! process is killed, so a crash never leaves a project locked. The holder writes its pid into the
//! file so that a refused process can say who holds it; the pid is information only, never what
//! decides whether the lock is held.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::JournalError;

pub(super) struct RunLock {
    _file: Flock<File>,
    path: PathBuf,
}

impl fmt::Debug for RunLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunLock").field("path", &self.path).finish()
    }
}

impl RunLock {
    /// Takes the lock without waiting, or says who holds it.
    pub(super) fn acquire(path: &Path) -> Result<RunLock, JournalError> {
        let io = |action: &'static str| {
            move |source: std::io::Error| JournalError::Io {
                action,
                path: path.to_owned(),
                source,
            }
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io("open the run lock"))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut locked) => {
                locked.set_len(0).map_err(io("write the run lock"))?;
                locked
                    .write_all(format!("{}\n", std::process::id()).as_bytes())
                    .map_err(io("write the run lock"))?;
                Ok(RunLock {
                    _file: locked,
                    path: path.to_owned(),
                })
            }
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                // Best effort: the holder may not have written its pid yet.
                let pid = match file.read_to_string(&mut text) {
                    Ok(_) => text.trim().parse().ok(),
                    Err(_) => None,
                };
                Err(JournalError::Locked {
                    lock: path.to_owned(),
                    pid,
                })
            }
            Err((_, errno)) => Err(io("lock")(std::io::Error::from(errno))),
        }
    }
}

/// Whether some process holds the run lock at `lock`, as the kernel's lock table says. Read
/// only: the lock is neither taken nor touched (even a brief shared `flock` as a probe would make
/// a `run` starting at that instant fail as locked). `Some(false)` when there is no lock file;
/// `None` when the table cannot be read.
///
/// `/proc/locks` is a `seq_file`, read a page at a time, and each page is found by its position
/// in the kernel's list: a lock taken or dropped by any other process between two pages (SQLite
/// takes and drops POSIX locks all the time) shifts the list, and a held lock can fall between
/// the pages. So a lock the table does not show is looked for where it cannot be skipped: in
/// the `fdinfo` of the process whose pid the lock file holds, which lists the locks of each of
/// its open files. Either view seeing it held is proof; a lock neither shows is not held.
pub(super) fn held(lock: &Path) -> Option<bool> {
    let meta = match std::fs::metadata(lock) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(false),
        Err(_) => return None,
    };
    let file = file_id(&meta);
    let in_table = std::fs::read_to_string("/proc/locks")
        .ok()
        .map(|table| table.lines().any(|line| holds_flock(line, &file)));
    if in_table == Some(true) {
        return in_table;
    }
    let holder = std::fs::read_to_string(lock)
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok());
    if holder.is_some_and(|pid| holder_shows(pid, &file)) {
        return Some(true);
    }
    in_table
}

/// How the lock table and an `fdinfo` name a file: `MAJOR:MINOR:INODE`, the device numbers in
/// hex.
fn file_id(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    let dev = meta.dev();
    format!(
        "{:02x}:{:02x}:{}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev),
        meta.ino()
    )
}

/// Whether a line of the lock table (or a `lock:` line of an `fdinfo`) is a held `flock` on
/// `file`. A process waiting for a lock has its own line, marked `->`: not a holder.
fn holds_flock(line: &str, file: &str) -> bool {
    !line.contains("->")
        && line.split_whitespace().nth(1) == Some("FLOCK")
        && line.split_whitespace().any(|field| field == file)
}

/// Whether process `pid` holds a `flock` on `file`, from the `lock:` lines of the `fdinfo` of
/// each of its open files (each small, read whole).
fn holder_shows(pid: u32, file: &str) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_to_string(fd.path()).is_ok_and(|info| {
            info.lines()
                .filter_map(|line| line.strip_prefix("lock:"))
                .any(|line| holds_flock(line, file))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::super::{Journal, run_in_progress};

    #[test]
    fn the_lock_table_tells_a_held_run_lock_without_taking_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(run_in_progress(dir.path()), Some(false), "no lock file");
        let journal = Journal::open(dir.path()).expect("open");
        assert_eq!(run_in_progress(dir.path()), Some(true));
        // Asking did not take it: the holder keeps it, and another open is still refused.
        assert!(Journal::open(dir.path()).is_err());
        drop(journal);
        assert_eq!(run_in_progress(dir.path()), Some(false));
    }

    /// The second view, for when the table is read while other processes change it: the
    /// holder's own `fdinfo` shows the lock exactly while it is held.
    #[test]
    fn the_holders_fdinfo_shows_the_lock_while_it_is_held() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = Journal::open(dir.path()).expect("open");
        let lock = super::super::paths::state_dir(dir.path()).join(super::super::LOCK_FILE);
        let file = super::file_id(&std::fs::metadata(&lock).expect("the lock file"));
        let pid: u32 = std::fs::read_to_string(&lock)
            .expect("read")
            .trim()
            .parse()
            .expect("the holder wrote its pid");
        assert_eq!(pid, std::process::id());
        assert!(super::holder_shows(pid, &file));
        assert!(!super::holder_shows(pid, "00:00:1"), "another file");
        drop(journal);
        assert!(!super::holder_shows(pid, &file));
    }
}
