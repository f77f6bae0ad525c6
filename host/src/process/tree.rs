//! The process tree of one call or gate: finding every descendant of the process the host
//! started (Bash tool commands run in their own sessions, so the process group does not reach
//! them), killing them, waiting for their death on pidfds, and reaping the ones re-parented to
//! the host.
//!
//! The host makes itself a child subreaper, so a descendant whose parent dies is re-parented to
//! the host rather than to init; it is then recognised by the call's marker in its environment
//! (or because it was seen in the tree before). A descendant that dropped the marker (`env -i`,
//! a setuid helper) is recognised too once the process claims its adopted orphans
//! ([`claim_adopted_orphans`]): then anything the host adopts while a call runs belongs to that
//! call. Each pid is remembered with its start time, so a recycled pid is never signalled or
//! reaped by mistake. The host only ever waits on specific pids it proved to be its own
//! re-parented orphans; the started process itself is tokio's.
//!
//! What cannot be proven gone is reported as a [`Survivor`]: a process alive after SIGKILL, or
//! one holding the call's output pipe open ([`pipe_holders`]).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

/// A process as `/proc/<pid>/stat` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub state: u8,
    /// Start time in clock ticks since boot: with the pid, identifies the process.
    pub start: u64,
}

impl Stat {
    pub(crate) fn alive(&self) -> bool {
        !matches!(self.state, b'Z' | b'X' | b'x')
    }
}

/// Parses the text of `/proc/<pid>/stat` (the command name may hold spaces and parentheses).
pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    let (head, rest) = text.rsplit_once(')')?;
    let pid = head.split_once('(')?.0.trim().parse().ok()?;
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    Some(Stat {
        pid,
        state: *fields.first()?.as_bytes().first()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgid: fields.get(2)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

pub(crate) fn read_stat(pid: i32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Whether `/proc/<pid>/task/<tid>/children` exists on this kernel (CONFIG_PROC_CHILDREN).
fn children_files() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| std::path::Path::new("/proc/thread-self/children").exists())
}

fn all_pids() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The children of `pid`, from every thread's `children` file (or a full `/proc` scan).
pub(crate) fn children(pid: i32) -> Vec<i32> {
    if !children_files() {
        return all_pids()
            .into_iter()
            .filter(|&p| read_stat(p).is_some_and(|s| s.ppid == pid))
            .collect();
    }
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        let Ok(text) = std::fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        out.extend(
            text.split_ascii_whitespace()
                .filter_map(|p| p.parse::<i32>().ok()),
        );
    }
    out
}

/// Whether the environment of `pid` holds exactly the entry `entry` (`KEY=value`).
fn environ_has(pid: i32, entry: &[u8]) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|&b| b == 0).any(|e| e == entry))
}

/// The command line of `pid` as one line (arguments joined by spaces), or `[comm]` for a process
/// without one (a kernel thread, a zombie); empty when it is gone.
pub(crate) fn command_line(pid: i32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if !args.is_empty() {
        return args.join(" ");
    }
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| format!("[{}]", c.trim_end()))
        .unwrap_or_default()
}

/// Why a process keeps the end of a call or gate from being proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SurvivorKind {
    /// A process of the call (or the call's process itself) still alive after SIGKILL.
    Alive,
    /// A process that holds the call's stdout or stderr pipe open, so its output never reaches
    /// EOF (it may be outside the call's tree: the pipe was passed to it, or it opened it
    /// through `/proc`).
    HoldsOutput,
}

/// A process that keeps the end of a call or gate from being proven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Survivor {
    /// Its pid.
    pub pid: i32,
    /// Its start time (clock ticks since boot): with the pid, identifies the process, so a
    /// recycled pid is never taken for it.
    pub start: u64,
    /// Its command line, as `/proc/<pid>/cmdline` gives it.
    pub command: String,
    /// Why it counts.
    pub kind: SurvivorKind,
}

impl Survivor {
    /// The process `st` describes, with its command line read now.
    pub(crate) fn of(st: &Stat, kind: SurvivorKind) -> Self {
        Survivor {
            pid: st.pid,
            start: st.start,
            command: command_line(st.pid),
            kind,
        }
    }

    /// The process `pid` as it is now, if it is alive.
    pub fn find(pid: i32, kind: SurvivorKind) -> Option<Self> {
        read_stat(pid)
            .filter(Stat::alive)
            .map(|st| Survivor::of(&st, kind))
    }

    /// Whether this very process (same pid, same start time) is still alive.
    pub fn is_alive(&self) -> bool {
        read_stat(self.pid).is_some_and(|st| st.alive() && st.start == self.start)
    }
}

/// `pid 123 (sleep 3600) is alive after SIGKILL`, `pid 7 (tmux) holds the output open`.
impl fmt::Display for Survivor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pid {} (`{}`) {}",
            self.pid,
            self.command,
            match self.kind {
                SurvivorKind::Alive => "is alive after SIGKILL",
                SurvivorKind::HoldsOutput => "holds the output open",
            }
        )
    }
}

/// The identity (inode) of a pipe, as `/proc/<pid>/fd/<n>` links name it (`pipe:[123]`).
pub(crate) fn pipe_inode(fd: impl AsFd) -> Option<u64> {
    nix::sys::stat::fstat(fd).ok().map(|st| st.st_ino)
}

/// Every live process but the host that has one of the pipes `inodes` open (see
/// [`pipe_inode`]): who keeps a call's output from reaching EOF. Processes whose file
/// descriptors the host may not read are not seen.
pub(crate) fn pipe_holders(inodes: &[u64]) -> Vec<Survivor> {
    if inodes.is_empty() {
        return Vec::new();
    }
    let me = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    let names: Vec<String> = inodes.iter().map(|i| format!("pipe:[{i}]")).collect();
    let mut out = Vec::new();
    for pid in all_pids() {
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|target| names.iter().any(|n| target.as_os_str() == n.as_str()))
        });
        if holds && let Some(st) = read_stat(pid).filter(Stat::alive) {
            out.push(Survivor::of(&st, SurvivorKind::HoldsOutput));
        }
    }
    out
}

/// The processes started beside the run's calls and gates (notifiers), by pid and start time:
/// no call or gate that runs meanwhile takes them, their group or their marked descendants for
/// its own orphans ([`spawn_beside`]).
static BESIDE: std::sync::Mutex<Vec<(i32, u64)>> = std::sync::Mutex::new(Vec::new());

/// The start of the marker value of a process started beside the calls: `BMAD_HOST_CALL=beside-…`.
pub(crate) const BESIDE_MARKER: &str = "beside-";

/// A process started with [`spawn_beside`]: registered until this is dropped (after it is reaped
/// and its descendants are gone).
#[derive(Debug)]
pub(crate) struct Beside {
    pid: i32,
    start: u64,
}

impl Drop for Beside {
    fn drop(&mut self) {
        let mut list = BESIDE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        list.retain(|e| *e != (self.pid, self.start));
    }
}

/// Spawns `cmd` (which must lead its own process group and carry a [`BESIDE_MARKER`] marker) as
/// a process beside the calls and gates: registered before any tracker can look at it, so none
/// takes it for an orphan of its own.
pub(crate) fn spawn_beside(
    cmd: &mut tokio::process::Command,
) -> std::io::Result<(tokio::process::Child, Beside)> {
    let mut list = BESIDE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let child = cmd.spawn()?;
    let pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .unwrap_or(i32::MAX);
    let start = read_stat(pid).map_or(0, |s| s.start);
    list.push((pid, start));
    Ok((child, Beside { pid, start }))
}

/// Whether `st` was started beside the calls: a registered process, one of its group, or one
/// that carries a beside marker.
fn is_beside(st: &Stat) -> bool {
    {
        let list = BESIDE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if list
            .iter()
            .any(|&(pid, start)| (pid == st.pid && start == st.start) || st.pgid == pid)
        {
            return true;
        }
    }
    let prefix = format!("{}={BESIDE_MARKER}", super::CALL_MARKER_ENV);
    std::fs::read(format!("/proc/{}/environ", st.pid)).is_ok_and(|env| {
        env.split(|&b| b == 0)
            .any(|e| e.starts_with(prefix.as_bytes()))
    })
}

/// Set by [`claim_adopted_orphans`].
static CLAIM_ADOPTED: AtomicBool = AtomicBool::new(false);

/// Declares that this process runs one call or gate at a time and starts no other child
/// processes but those beside them ([`spawn_beside`], the notifiers: never claimed) (the `run`
/// command): from now on every orphan the host adopts as a child subreaper while a call or gate
/// runs belongs to that call or gate, with or without its marker (a descendant that ran `env -i`
/// or a setuid helper has none; one of a notifier's that did is taken for the call's too). A library user that supervises
/// several calls at once, or starts processes of its own, does not call it: there, only the
/// marker and the parent links tell whose a process is.
pub fn claim_adopted_orphans() {
    CLAIM_ADOPTED.store(true, Ordering::Relaxed);
}

/// Makes the host a child subreaper (once per process); false when the kernel refused.
pub(crate) fn ensure_subreaper() -> bool {
    static DONE: OnceLock<bool> = OnceLock::new();
    *DONE.get_or_init(|| match nix::sys::prctl::set_child_subreaper(true) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "cannot become a child subreaper; orphans are found by a full /proc scan");
            false
        }
    })
}

/// The descendants of one started process (a Claude call, a gate), as far as the host has seen them.
#[derive(Debug)]
pub(crate) struct Tracker {
    root: i32,
    root_start: u64,
    me: i32,
    marker: Vec<u8>,
    subreaper: bool,
    /// Every descendant seen: pid → start time.
    known: HashMap<i32, u64>,
    /// False once the root has been reaped: its pid may then be recycled.
    root_unreaped: bool,
    /// Every orphan adopted since the root started belongs to this call
    /// ([`claim_adopted_orphans`]).
    claim: bool,
}

impl Tracker {
    /// `marker` is the `KEY=value` environment entry every process of the call inherits.
    pub(crate) fn new(root: u32, marker: String, subreaper: bool) -> Self {
        let root = i32::try_from(root).unwrap_or(i32::MAX);
        Self {
            root,
            root_start: read_stat(root).map_or(0, |s| s.start),
            me: i32::try_from(std::process::id()).unwrap_or(i32::MAX),
            marker: marker.into_bytes(),
            subreaper,
            known: HashMap::new(),
            root_unreaped: true,
            claim: subreaper && root > 0 && CLAIM_ADOPTED.load(Ordering::Relaxed),
        }
    }

    /// A tracker of a process started beside the calls ([`spawn_beside`]): it claims no
    /// adopted orphan, only what carries its marker or descends from it.
    pub(crate) fn beside(root: u32, marker: String, subreaper: bool) -> Self {
        Self {
            claim: false,
            ..Self::new(root, marker, subreaper)
        }
    }

    /// Whether `st`, a child of the host, is an orphan of this call: it carries the marker, was
    /// seen in the tree before, or (when the host claims its adopted orphans) started after the
    /// call did and was not started beside it.
    fn adopted(&self, st: &Stat) -> bool {
        self.known.get(&st.pid) == Some(&st.start)
            || environ_has(st.pid, &self.marker)
            || (self.claim && st.ppid == self.me && st.start >= self.root_start && !is_beside(st))
    }

    /// The Claude process has been reaped: stop signalling its pid or group.
    pub(crate) fn root_reaped(&mut self) {
        self.root_unreaped = false;
    }

    /// Sends `sig` to the Claude process group (while the Claude process is not reaped).
    pub(crate) fn signal_group(&self, sig: Signal) {
        if self.root_unreaped
            && let Err(e) = nix::sys::signal::killpg(Pid::from_raw(self.root), sig)
        {
            tracing::debug!(pgid = self.root, %sig, error = %e, "killpg");
        }
    }

    /// Finds the call's processes other than the Claude process itself: its subtree, plus the
    /// orphans re-parented to the host that carry the marker or were seen before, with their
    /// subtrees. Remembers them all; returns them (zombies included).
    pub(crate) fn scan(&mut self) -> Vec<Stat> {
        let candidates = self.candidates();
        self.scan_in(&candidates)
    }

    /// The processes a scan starts from: the host's children (it is a subreaper), else every
    /// process.
    fn candidates(&self) -> Vec<i32> {
        if self.subreaper {
            children(self.me)
        } else {
            all_pids()
        }
    }

    /// [`Tracker::scan`] from `candidates` (read by [`Tracker::candidates`]), so that one read
    /// of the host's children serves both the scan and the reaping that follows it.
    fn scan_in(&mut self, candidates: &[i32]) -> Vec<Stat> {
        let mut found = Vec::new();
        let mut seen = HashSet::from([self.root]);
        let mut stack = Vec::new();
        if self.root_unreaped {
            stack.push(self.root);
        }
        for &pid in candidates {
            if pid == self.root || pid == self.me || seen.contains(&pid) {
                continue;
            }
            let Some(st) = read_stat(pid) else { continue };
            if self.adopted(&st) {
                seen.insert(pid);
                found.push(st);
                stack.push(pid);
            }
        }
        while let Some(parent) = stack.pop() {
            for pid in children(parent) {
                if !seen.insert(pid) {
                    continue;
                }
                if let Some(st) = read_stat(pid) {
                    found.push(st);
                    stack.push(pid);
                }
            }
        }
        for st in &found {
            self.known.insert(st.pid, st.start);
        }
        found
    }

    /// Remembers the call's orphans now re-parented to the host (cheap: the host's children
    /// only), so that they can still be recognised, and reaped, once they are zombies (a zombie
    /// has no environment to show the marker). Reaps the ones already dead.
    pub(crate) fn note_orphans(&mut self) {
        if !self.subreaper {
            return;
        }
        // One read of the host's children serves the noting and the reaping.
        let kids = children(self.me);
        for &pid in &kids {
            if pid == self.root || self.known.contains_key(&pid) {
                continue;
            }
            if let Some(st) = read_stat(pid)
                && st.alive()
                && self.adopted(&st)
            {
                self.known.insert(pid, st.start);
            }
        }
        self.reap_zombies_in(&kids);
    }

    /// Reaps the zombies of the call that were re-parented to the host.
    pub(crate) fn reap_zombies(&mut self) {
        let candidates = if self.subreaper {
            children(self.me)
        } else {
            self.known.keys().copied().collect()
        };
        self.reap_zombies_in(&candidates);
    }

    /// [`Tracker::reap_zombies`] among `candidates`: the host's children as just read (or, when
    /// the host is not a subreaper, the processes seen in the tree).
    fn reap_zombies_in(&mut self, candidates: &[i32]) {
        for &pid in candidates {
            if pid == self.root {
                continue;
            }
            let Some(st) = read_stat(pid) else { continue };
            let in_root_group =
                self.root > 0 && st.pgid == self.root && st.start >= self.root_start;
            let claimed = self.claim && st.start >= self.root_start && !is_beside(&st);
            let ours = self.known.get(&pid) == Some(&st.start) || in_root_group || claimed;
            if st.state == b'Z' && st.ppid == self.me && ours {
                match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
                    Ok(status) => tracing::debug!(pid, ?status, "reaped an orphan of the call"),
                    Err(e) => tracing::debug!(pid, error = %e, "waitpid"),
                }
            }
        }
    }

    /// SIGKILLs every live process of the call (except the Claude process, which the caller
    /// handles), waits for their death until `deadline`, reaps the orphans, and repeats until a
    /// scan finds nobody. Returns the processes still alive at the deadline (empty: proven gone).
    pub(crate) async fn kill_all(&mut self, deadline: Instant) -> Vec<Survivor> {
        loop {
            // One read of the host's children for the scan and, when nobody is left, the
            // reaping (the usual case: a call that ended cleanly costs one read).
            let candidates = self.candidates();
            let live: Vec<Stat> = self
                .scan_in(&candidates)
                .into_iter()
                .filter(Stat::alive)
                .collect();
            if live.is_empty() {
                if self.subreaper {
                    self.reap_zombies_in(&candidates);
                } else {
                    self.reap_zombies();
                }
                return Vec::new();
            }
            if Instant::now() >= deadline {
                return live
                    .iter()
                    .map(|st| Survivor::of(st, SurvivorKind::Alive))
                    .collect();
            }
            let mut fds = Vec::new();
            for st in &live {
                tracing::debug!(
                    pid = st.pid,
                    ppid = st.ppid,
                    pgid = st.pgid,
                    "killing a descendant of the call"
                );
                if let Some(fd) = kill_verified(st) {
                    fds.push((st.pid, fd));
                }
            }
            // Until every one is dead or the deadline passed; the next scan says which.
            wait_exit(fds, deadline).await;
            self.reap_zombies();
        }
    }
}

/// SIGKILLs the process `st` names through a pidfd, after checking that the pid still belongs to
/// it (same start time). Returns the pidfd to wait on.
fn kill_verified(st: &Stat) -> Option<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(st.pid)?;
    let fd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()?;
    if read_stat(st.pid).map(|s| s.start) != Some(st.start) {
        return None;
    }
    if let Err(e) = rustix::process::pidfd_send_signal(&fd, rustix::process::Signal::KILL) {
        tracing::debug!(pid = st.pid, error = %e, "pidfd_send_signal");
    }
    Some(fd)
}

/// Waits until every pidfd reports its process's exit, or `deadline`. Returns the pids still alive.
async fn wait_exit(fds: Vec<(i32, OwnedFd)>, deadline: Instant) -> Vec<i32> {
    if fds.is_empty() {
        return Vec::new();
    }
    let waited = tokio::task::spawn_blocking(move || {
        let mut pending = fds;
        while !pending.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let timeout =
                rustix::event::Timespec::try_from(left).unwrap_or(rustix::event::Timespec {
                    tv_sec: i64::from(u32::MAX),
                    tv_nsec: 0,
                });
            let ready: Vec<bool> = {
                let mut polls: Vec<rustix::event::PollFd<'_>> = pending
                    .iter()
                    .map(|(_, fd)| rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN))
                    .collect();
                match rustix::event::poll(&mut polls, Some(&timeout)) {
                    Ok(_) | Err(rustix::io::Errno::INTR) => {
                        polls.iter().map(|p| !p.revents().is_empty()).collect()
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "poll on pidfds");
                        break;
                    }
                }
            };
            let mut i = 0;
            pending.retain(|_| {
                let keep = !ready[i];
                i += 1;
                keep
            });
        }
        pending
            .into_iter()
            .map(|(pid, _)| pid)
            .collect::<Vec<i32>>()
    })
    .await;
    waited.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_command_names() {
        let text = "4242 (a b) (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615";
        assert_eq!(
            parse_stat(text),
            Some(Stat {
                pid: 4242,
                ppid: 1,
                pgid: 4242,
                state: b'S',
                start: 987654
            })
        );
        let zombie = "7 (sleep) Z 3 7 7 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 55 0 0";
        let st = parse_stat(zombie).expect("a zombie's stat parses");
        assert!(!st.alive());
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 0"), None);
    }

    #[tokio::test]
    async fn an_orphan_noted_alive_is_reaped_once_dead() {
        assert!(ensure_subreaper());
        let marker = format!("BMAD_HOST_TREE_TEST={}", std::process::id());
        let (key, value) = marker.split_once('=').expect("key=value");
        // `sh` starts a background sleep and exits: the sleep is re-parented to us.
        let out = std::process::Command::new("sh")
            .args(["-c", "sleep 3600 >/dev/null 2>&1 & echo $!"])
            .env(key, value)
            .output()
            .expect("run sh");
        let orphan: i32 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("pid");
        let st = read_stat(orphan).expect("the orphan is alive");
        assert_eq!(st.ppid, i32::try_from(std::process::id()).expect("pid"));
        let mut tracker = Tracker::new(0, marker, true);
        tracker.root_reaped();
        tracker.note_orphans();
        assert_eq!(tracker.known.get(&orphan), Some(&st.start));
        // It dies unseen (no scan): a zombie without environment, known only by pid.
        let fd = kill_verified(&st).expect("killed");
        assert!(
            wait_exit(
                vec![(orphan, fd)],
                Instant::now() + std::time::Duration::from_secs(10)
            )
            .await
            .is_empty()
        );
        assert_eq!(read_stat(orphan).map(|s| s.state), Some(b'Z'));
        tracker.reap_zombies();
        assert_eq!(read_stat(orphan), None, "the zombie was reaped");
    }

    #[test]
    fn a_process_holding_a_pipe_is_named_with_its_command_line() {
        // Close-on-exec: no process another test starts meanwhile inherits it.
        let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        let inode = pipe_inode(&read_end).expect("the pipe's inode");
        let mut holder = std::process::Command::new("sleep")
            .arg("3600")
            .stdout(std::process::Stdio::from(write_end))
            .spawn()
            .expect("spawn sleep");
        let pid = i32::try_from(holder.id()).expect("pid");
        // `spawn` returns once the child is in execve, before the kernel has set up its
        // arguments: until then its command line reads empty. The exec is over when the
        // executable `/proc/PID/exe` names is sleep's, not ours.
        let ours = std::fs::read_link("/proc/self/exe").expect("own exe");
        while std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == ours)
            || std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.is_empty())
        {
            std::thread::yield_now();
        }
        // Another test's child, between its fork and its exec, holds every descriptor of this
        // process for a moment (the pipe's ends included: close-on-exec closes them only at the
        // exec). Such a child still runs this test binary: it is left out.
        let not_ours = |holders: Vec<Survivor>| -> Vec<Survivor> {
            holders
                .into_iter()
                .filter(|s| {
                    std::fs::read_link(format!("/proc/{}/exe", s.pid)).is_ok_and(|e| e != ours)
                })
                .collect()
        };
        let held = not_ours(pipe_holders(&[inode]));
        assert_eq!(
            held.iter().map(|s| s.pid).collect::<Vec<_>>(),
            [pid],
            "{held:?}"
        );
        assert_eq!(held[0].command, "sleep 3600");
        assert_eq!(held[0].kind, SurvivorKind::HoldsOutput);
        assert!(held[0].is_alive());
        assert_eq!(
            held[0].to_string(),
            format!("pid {pid} (`sleep 3600`) holds the output open")
        );
        holder.kill().expect("kill");
        holder.wait().expect("wait");
        assert!(!held[0].is_alive());
        assert!(not_ours(pipe_holders(&[inode])).is_empty());
        assert!(Survivor::find(pid, SurvivorKind::Alive).is_none());
    }

    #[test]
    fn own_stat_and_children() {
        let me = i32::try_from(std::process::id()).expect("pid fits");
        let st = read_stat(me).expect("own stat");
        assert_eq!(st.pid, me);
        assert!(st.alive());
        let child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = i32::try_from(child.id()).expect("pid fits");
        let mut child = child;
        // The child is ours until reaped (running or a zombie).
        assert!(children(me).contains(&pid));
        child.wait().expect("wait");
        assert!(!children(me).contains(&pid));
    }
}
