//! bench-claude: the stand-in Claude CLI of `cargo xtask bench`'s whole-run driver. It records
//! when it started and when it is about to exit (wall clock, nanoseconds), so that the driver
//! can measure the host's overhead between agent calls (one call's exit to the next call's
//! start) without trusting the host's own clock, and otherwise runs the test crate's fake Claude
//! (`BENCH_CLAUDE_REAL`) with the same arguments, stdio and environment. std only, so that it
//! starts fast.
//!
//! Environment:
//! - `BENCH_CLAUDE_REAL`: the fake Claude to run (required unless probing).
//! - `BENCH_CLAUDE_LOG`: a file to which each call appends one line:
//!   `<start_ns> <end_ns> <role> <story> <exit code> <host_cpu_start> <host_wait_start>
//!   <host_cpu_end> <host_wait_end>`. The last four are the parent's (bmad-host's) scheduler
//!   statistics, summed over its threads (`/proc/<ppid>/task/*/schedstat`): nanoseconds on a CPU
//!   and nanoseconds runnable but waiting for one, read just after the start and just before
//!   the end is noted, so that the driver can tell the host's own work in a gap (its CPU time)
//!   from what it waited for (fsyncs, the next process's start, a busy CPU). `- -` when they
//!   cannot be read.
//! - `BENCH_CLAUDE_DELAYS_MS`: `role=ms,...` (e.g. `sm=3100,dev=3600,qa=5200`): the baseline
//!   mode. Before running the fake, the process sleeps that long for its role: the fixed delays
//!   the old Python tool put around every agent call (see `xtask/src/bench.rs`). This replays
//!   the old tool's cost on purpose; it is not a wait for anything.
//! - `BENCH_CLAUDE_PROBE=1`: print the start time and exit (the driver's spawn-cost probe).

use std::io::Write as _;
use std::process::{Command, ExitCode};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The parent's time on a CPU and time waiting for one, in ns, summed over its threads.
fn parent_sched() -> Option<(u64, u64)> {
    let ppid = std::os::unix::process::parent_id();
    let mut total = (0u64, 0u64);
    for task in std::fs::read_dir(format!("/proc/{ppid}/task")).ok()? {
        let Ok(text) = std::fs::read_to_string(task.ok()?.path().join("schedstat")) else {
            continue; // a thread that ended meanwhile
        };
        let mut fields = text.split_whitespace().map(str::parse::<u64>);
        let (Some(Ok(cpu)), Some(Ok(wait))) = (fields.next(), fields.next()) else {
            return None;
        };
        total = (total.0 + cpu, total.1 + wait);
    }
    Some(total)
}

fn sched_fields(sched: Option<(u64, u64)>) -> String {
    sched.map_or_else(|| "- -".to_owned(), |(cpu, wait)| format!("{cpu} {wait}"))
}

fn main() -> ExitCode {
    let start = now_ns();
    if std::env::var_os("BENCH_CLAUDE_PROBE").is_some() {
        println!("{start}");
        return ExitCode::SUCCESS;
    }
    let logging = std::env::var_os("BENCH_CLAUDE_LOG");
    let sched_start = logging.as_ref().and_then(|_| parent_sched());
    let role = std::env::var("BMAD_HOST_ROLE").unwrap_or_default();
    let story = std::env::var("BMAD_HOST_STORY_ID").unwrap_or_default();
    if let Some(ms) = std::env::var("BENCH_CLAUDE_DELAYS_MS")
        .ok()
        .as_deref()
        .and_then(|spec| delay_for(spec, &role))
    {
        // The baseline: the old tool's fixed per-call delays, replayed on purpose.
        std::thread::sleep(Duration::from_millis(ms));
    }
    let Some(real) = std::env::var_os("BENCH_CLAUDE_REAL") else {
        eprintln!("bench-claude: BENCH_CLAUDE_REAL is not set");
        return ExitCode::from(2);
    };
    let code = match Command::new(&real)
        .args(std::env::args_os().skip(1))
        .status()
    {
        Ok(status) => status.code().unwrap_or(1),
        Err(e) => {
            eprintln!("bench-claude: cannot run {}: {e}", real.to_string_lossy());
            127
        }
    };
    if let Some(log) = logging {
        let sched_end = parent_sched();
        let line = format!(
            "{start} {} {role} {story} {code} {} {}\n",
            now_ns(),
            sched_fields(sched_start),
            sched_fields(sched_end)
        );
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            eprintln!("bench-claude: {}: {e}", log.to_string_lossy());
        }
    }
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// The delay for `role` in `sm=3100,dev=3600`.
fn delay_for(spec: &str, role: &str) -> Option<u64> {
    spec.split(',')
        .filter_map(|pair| pair.split_once('='))
        .find(|(r, _)| r.trim() == role)
        .and_then(|(_, ms)| ms.trim().parse().ok())
}
