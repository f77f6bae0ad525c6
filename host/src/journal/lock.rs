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

/// Whether a process holds the run lock `lock` now, as the kernel's table of locks
/// (`/proc/locks`) says. Read only: the lock is neither taken nor touched (even a brief shared
/// `flock` as a probe would make a `run` starting at that instant fail as locked). `Some(false)`
/// when there is no lock file; `None` when the table cannot be read.
pub(super) fn held(lock: &Path) -> Option<bool> {
    use std::os::unix::fs::MetadataExt;
    let meta = match std::fs::metadata(lock) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(false),
        Err(_) => return None,
    };
    // `/proc/locks` names a file `MAJOR:MINOR:INODE`, the device numbers in hex.
    let dev = meta.dev();
    let file = format!(
        "{:02x}:{:02x}:{}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev),
        meta.ino()
    );
    let table = std::fs::read_to_string("/proc/locks").ok()?;
    Some(table.lines().any(|line| {
        // A process waiting for a lock has its own line, marked `->`: not a holder.
        !line.contains("->")
            && line.split_whitespace().nth(1) == Some("FLOCK")
            && line.split_whitespace().any(|field| field == file)
    }))
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
}
