//! `cargo xtask bench`: the benchmark suite, and `BENCHMARKS.md` from its figures.
//!
//! 1. Builds the plugins, the benches and `bmad-host` (one release build of the host library)
//!    and the test crate's `fake-claude` in release, and the driver's stand-in CLI
//!    `bench-claude` (`xtask/src/bin/bench-claude.rs`, std only, dev profile).
//! 2. Micro-benchmarks: `cargo bench -p bmad-host --bench <each host/benches/*.rs>` with short
//!    criterion times (status parse, policy calls, component cache, journal step, supervisor
//!    calls, stream-json throughput; `teardown` records every sample as JSON).
//! 3. Whole runs, driving the release `bmad-host` binary on generated BMAD v4 projects with one
//!    epic of N stories (none drafted: SM, Dev and QA per story) and the instant fake Claude
//!    behind `bench-claude`, which logs each call's start and exit (wall clock, ns): total time,
//!    per-story cost, host overhead between calls (p50/p99), peak RSS (`VmHWM` of the host,
//!    read from `/proc` at each `story_finished` and at `run_finished`).
//! 4. The baseline: the same kind of epic with the delays the old Python tool slept around each
//!    agent call (see [`BASELINE_DELAYS`]), replayed by `bench-claude`, never by bmad-host.
//! 5. Writes `BENCHMARKS.md`: the machine, the versions, every figure, each target with PASS or
//!    MISS and, for a miss, why.
//!
//! 5. The parallel case (`parallel.rs`): 16 stories whose agent calls take a fixed time, at
//!    `--jobs` 1, 2, 4 and 8.
//!
//! Options: `--quick` (epics of 10 and 100, a 3-story baseline), `--no-micro`, `--no-parallel`,
//! `--epics 10,100,1000`, `--baseline N` (0: none), `--out FILE` (default `BENCHMARKS.md`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::{cargo, copy_dir, target_dir};

mod parallel;

/// The old tool's fixed delays per agent call, in ms, by role (from `../shared/seeds/`): each
/// Dev or QA call ran inside one iteration of its status loop, which slept 0.1 s at the start of
/// `_parse_story_status`, 2.0 s after the parse ("wait for the SDK to clean up") and 1.0 s at
/// the end of the iteration; Dev slept another 0.5 s before notifying QA. After the last QA call
/// one more iteration found `Done` (0.1 s + 2.0 s) and returned. SM ran outside that loop and
/// gets no delay. Not replayed (so the baseline is generous to the old tool): its LLM status
/// parse, about 3 s per iteration.
const BASELINE_DELAYS: &str = "sm=0,dev=3600,qa=5200";
/// [`BASELINE_DELAYS`] per story, in seconds.
const BASELINE_PER_STORY_S: f64 = 8.8;
/// The epic run under `strace` to count the fsyncs of each kind of gap.
const CENSUS_STORIES: usize = 10;
/// The target for the host's own share of a gap (its CPU time), in ns.
const HOST_SHARE_TARGET_NS: u64 = 1_000_000;

#[derive(Debug)]
struct Opts {
    micro: bool,
    parallel: bool,
    epics: Vec<usize>,
    baseline: usize,
    out: PathBuf,
}

fn parse_opts(root: &Path) -> Result<Opts> {
    let args: Vec<String> = std::env::args().skip(2).collect();
    let mut o = Opts {
        micro: true,
        parallel: true,
        epics: vec![10, 100, 1000],
        baseline: 10,
        out: root.join("BENCHMARKS.md"),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => {
                o.epics = vec![10, 100];
                o.baseline = 3;
            }
            "--no-micro" => o.micro = false,
            "--no-parallel" => o.parallel = false,
            "--epics" => {
                let v = it
                    .next()
                    .context("--epics needs a list, e.g. 10,100,1000")?;
                o.epics = v
                    .split(',')
                    .map(|n| n.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .with_context(|| format!("--epics {v}: not a list of numbers"))?;
            }
            "--baseline" => {
                let v = it.next().context("--baseline needs a number of stories")?;
                o.baseline = v.parse().with_context(|| format!("--baseline {v}"))?;
            }
            "--out" => o.out = PathBuf::from(it.next().context("--out needs a file")?),
            other => bail!(
                "bench: unknown option `{other}` (--quick, --no-micro, --no-parallel, --epics LIST, --baseline N, --out FILE)"
            ),
        }
    }
    o.epics.retain(|&n| n > 0);
    o.epics.sort_unstable();
    o.epics.dedup();
    Ok(o)
}

/// Paths of the things a whole run needs.
#[derive(Debug)]
struct Ctx {
    root: PathBuf,
    bin: PathBuf,
    fake: PathBuf,
    wrapper: PathBuf,
    plugins: PathBuf,
    out: PathBuf,
    cache: PathBuf,
}

pub(crate) fn run(root: &Path) -> Result<()> {
    let opts = parse_opts(root)?;
    let started = Instant::now();
    let load_before = load_average();
    let since = SystemTime::now();

    super::build_plugins(root)?;
    // One release build of the host library serves the benches and the driver: building the
    // benches also builds the `bmad-host` binary (with the same features).
    if opts.micro {
        super::run(bench_command(root)?.arg("--no-run"))?;
    } else {
        super::run(cargo().current_dir(root).args([
            "build",
            "--release",
            "-p",
            "bmad-host",
            "--bin",
            "bmad-host",
        ]))?;
    }
    super::run(cargo().current_dir(root).args([
        "build",
        "--release",
        "-p",
        "bmad-host-tests",
        "--bin",
        "fake-claude",
    ]))?;
    super::run(
        cargo()
            .current_dir(root)
            .args(["build", "-p", "xtask", "--bin", "bench-claude"]),
    )?;
    let build_time = started.elapsed();

    let target = target_dir(root);
    let out = target.join("bench");
    fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let ctx = Ctx {
        root: root.to_path_buf(),
        bin: target.join("release").join("bmad-host"),
        fake: target.join("release").join("fake-claude"),
        wrapper: target.join("debug").join("bench-claude"),
        plugins: root.join("plugins"),
        cache: out.join("component-cache"),
        out,
    };

    let micro_started = Instant::now();
    let teardown_json = ctx.out.join("teardown.json");
    let _ = fs::remove_file(&teardown_json);
    if opts.micro {
        let mut cmd = bench_command(root)?;
        cmd.args(["--", "--warm-up-time", "1", "--measurement-time", "2"])
            .env("BMAD_BENCH_TEARDOWN_OUT", &teardown_json)
            .env("FAKE_CLAUDE_BIN", &ctx.fake);
        super::run(&mut cmd)?;
    }
    let micro_time = micro_started.elapsed();
    let criterion = if opts.micro {
        read_criterion(&target.join("criterion"), since)?
    } else {
        BTreeMap::new()
    };
    let teardown = fs::read_to_string(&teardown_json)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok());

    let driver_started = Instant::now();
    eprintln!("\nwhole runs (driver)");
    let floor = spawn_floor(&ctx.wrapper, 200)?;
    eprintln!(
        "  spawn floor (std Command spawn → bench-claude main): p50 {}",
        us(percentile(&floor, 0.5))
    );
    let disk = ctx.out.join("work");
    let fsync = fsync_latency(&disk, 200)?;
    eprintln!(
        "  fsync after a 4 KiB append in {}: p50 {}, p99 {}",
        disk.display(),
        us(percentile(&fsync, 0.5)),
        us(percentile(&fsync, 0.99))
    );
    let _ = fs::remove_dir_all(&ctx.cache);
    let cold = run_epic(&ctx, &disk, 1, None, "cold")?;
    let mut epics = Vec::new();
    for &n in &opts.epics {
        epics.push(run_epic(&ctx, &disk, n, None, "")?);
    }
    let census = fsync_census(&ctx, &disk, CENSUS_STORIES)?;
    // The same runs without the disk's flush latency: the host's own cost.
    let tmpfs = Path::new("/dev/shm");
    let mut in_memory = Vec::new();
    if tmpfs.is_dir() {
        let work = tmpfs.join(format!("bmad-host-bench-{}", std::process::id()));
        for &n in &opts.epics {
            // Small runs are short and noisy: keep the median of a few.
            let reps = match n {
                0..=10 => 5,
                11..=100 => 3,
                _ => 1,
            };
            let epic = run_median(&ctx, &work, n, reps);
            if epic.is_err() {
                let _ = fs::remove_dir_all(&work);
            }
            in_memory.push(epic?);
        }
        let _ = fs::remove_dir_all(&work);
    }
    let baseline = if opts.baseline > 0 {
        let fast = match epics.iter().find(|e| e.n == opts.baseline) {
            Some(e) => e.wall,
            None => run_epic(&ctx, &disk, opts.baseline, None, "")?.wall,
        };
        let slow = run_epic(
            &ctx,
            &disk,
            opts.baseline,
            Some(BASELINE_DELAYS),
            "baseline",
        )?;
        Some((opts.baseline, fast, slow.wall))
    } else {
        None
    };
    let parallel = if opts.parallel {
        parallel::run(&ctx, &disk)?
    } else {
        Vec::new()
    };
    let driver_time = driver_started.elapsed();

    let report = Report {
        ctx: &ctx,
        machine: machine(root, &ctx.bin),
        criterion,
        teardown,
        floor,
        fsync,
        census,
        cold,
        epics,
        in_memory,
        baseline,
        parallel,
        times: [build_time, micro_time, driver_time, started.elapsed()],
        load: [load_before, load_average()],
        micro: opts.micro,
    };
    let mut text = report.render();
    // The section `cargo xtask e2e-restate --bench` writes stays as it was.
    if let Ok(old) = fs::read_to_string(&opts.out)
        && let Some(at) = old.find(super::e2e_restate::BENCH_MARKER)
    {
        text.push('\n');
        text.push_str(&old[at..]);
    }
    fs::write(&opts.out, &text).with_context(|| format!("cannot write {}", opts.out.display()))?;
    eprintln!("\n{}", report.targets_table());
    eprintln!(
        "wrote {} in {} (build {}, micro-benchmarks {}, whole runs {})",
        opts.out.display(),
        mins(started.elapsed()),
        mins(build_time),
        mins(micro_time),
        mins(driver_time)
    );
    Ok(())
}

/// `cargo bench --profile release -p bmad-host --bench <each host/benches/*.rs>` (the release
/// profile has the bench profile's settings).
fn bench_command(root: &Path) -> Result<Command> {
    let mut cmd = cargo();
    cmd.current_dir(root)
        .args(["bench", "--profile", "release", "-p", "bmad-host"]);
    for name in bench_targets(root)? {
        cmd.args(["--bench", &name]);
    }
    Ok(cmd)
}

/// The stems of `host/benches/*.rs`, sorted.
fn bench_targets(root: &Path) -> Result<Vec<String>> {
    let dir = root.join("host").join("benches");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    Ok(names)
}

// ---------------------------------------------------------------------------------------------
// Criterion results

#[derive(Debug, Clone)]
struct Estimate {
    mean_ns: f64,
    median_ns: f64,
    ci_ns: (f64, f64),
    throughput_bytes: Option<u64>,
}

/// Every criterion result under `dir` written since `since`, by full id.
fn read_criterion(dir: &Path, since: SystemTime) -> Result<BTreeMap<String, Estimate>> {
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            if path.file_name().is_some_and(|n| n == "new") {
                if let Some((id, est)) = read_estimate(&path, since)? {
                    found.insert(id, est);
                }
            } else {
                stack.push(path);
            }
        }
    }
    Ok(found)
}

fn read_estimate(new: &Path, since: SystemTime) -> Result<Option<(String, Estimate)>> {
    let (bench, est) = (new.join("benchmark.json"), new.join("estimates.json"));
    let fresh = fs::metadata(&est)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t >= since);
    if !fresh || !bench.is_file() {
        return Ok(None);
    }
    let read = |p: &Path| -> Result<Value> {
        let text = fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", p.display()))
    };
    let (b, e) = (read(&bench)?, read(&est)?);
    let Some(id) = b["full_id"].as_str() else {
        return Ok(None);
    };
    let num = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    Ok(Some((
        id.to_string(),
        Estimate {
            mean_ns: num(&e["mean"]["point_estimate"]),
            median_ns: num(&e["median"]["point_estimate"]),
            ci_ns: (
                num(&e["mean"]["confidence_interval"]["lower_bound"]),
                num(&e["mean"]["confidence_interval"]["upper_bound"]),
            ),
            throughput_bytes: b["throughput"]["Bytes"].as_u64(),
        },
    )))
}

// ---------------------------------------------------------------------------------------------
// Whole runs

/// The cost of starting a process: from just before `Command::spawn` to the first statement of
/// `bench-claude`'s `main` (it prints its wall clock), `n` times, in ns.
fn spawn_floor(wrapper: &Path, n: usize) -> Result<Vec<u64>> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let before = now_ns();
        let out = Command::new(wrapper)
            .env("BENCH_CLAUDE_PROBE", "1")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", wrapper.display()))?;
        let start: u128 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .context("bench-claude --probe printed no time")?;
        samples.push(u64::try_from(start.saturating_sub(before)).unwrap_or(u64::MAX));
    }
    samples.sort_unstable();
    Ok(samples)
}

#[derive(Debug)]
struct Epic {
    n: usize,
    calls: usize,
    wall: Duration,
    /// `run_finished.duration_ms`: from the run's start (project read, plugins loaded, journal
    /// open) to its end, inside the host.
    run_ms: u64,
    /// Peak RSS of the host (`VmHWM`), in KiB.
    hwm_kib: Option<u64>,
    /// One agent call's exit to the next one's start, in ns, sorted.
    overhead_ns: Vec<u64>,
    /// The same, only between calls of the same story (SM → Dev, Dev → QA).
    within_story_ns: Vec<u64>,
    /// The time the agents themselves ran, summed, in ns.
    agent_ns: u64,
    /// Every gap, with the host's CPU time in it, in call order.
    gaps: Vec<Gap>,
    /// (start, end) of each agent call, wall clock ns, in order.
    spans: Vec<(u128, u128)>,
    /// Of how many runs this one is the median (1: a single run).
    reps: usize,
}

impl Epic {
    /// In-run time per story, in ms.
    fn per_story_ms(&self) -> f64 {
        self.run_ms as f64 / self.n as f64
    }

    /// The host's share of the in-run time per story (the agents' own time taken out), in ms.
    fn host_per_story_ms(&self) -> f64 {
        (self.run_ms as f64 - self.agent_ns as f64 / 1e6) / self.n as f64
    }

    /// The host's CPU time per gap, sorted (empty when `bench-claude` could not read it).
    fn cpu_ns(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.gaps.iter().filter_map(|g| g.cpu_ns).collect();
        v.sort_unstable();
        v
    }

    /// The slowest `share` of the gaps (at least one).
    fn slowest(&self, share: f64) -> Vec<&Gap> {
        let mut v: Vec<&Gap> = self.gaps.iter().collect();
        v.sort_by_key(|g| std::cmp::Reverse(g.ns));
        let k = ((v.len() as f64 * share).ceil() as usize)
            .max(1)
            .min(v.len());
        v.truncate(k);
        v
    }
}

/// Mean of the values that are there (0 when none).
fn mean_of(values: impl Iterator<Item = Option<u64>>) -> u64 {
    let (sum, n) = values
        .flatten()
        .fold((0u128, 0u128), |(s, n), v| (s + u128::from(v), n + 1));
    u64::try_from(sum.checked_div(n).unwrap_or(0)).unwrap_or(u64::MAX)
}

/// "CPU a, waiting for a CPU b, off the CPU c" for some gaps: means.
fn split(gaps: &[&Gap]) -> String {
    format!(
        "host CPU {}, waiting for a CPU {}, off the CPU {}",
        us(mean_of(gaps.iter().map(|g| g.cpu_ns))),
        us(mean_of(gaps.iter().map(|g| g.wait_ns))),
        us(mean_of(gaps.iter().map(|g| g.off_cpu_ns())))
    )
}

fn run_epic(ctx: &Ctx, work: &Path, n: usize, delays: Option<&str>, tag: &str) -> Result<Epic> {
    run_epic_traced(ctx, work, n, delays, tag, None)
}

/// [`run_epic`], with bmad-host under `strace` writing to `trace` when given.
fn run_epic_traced(
    ctx: &Ctx,
    work: &Path,
    n: usize,
    delays: Option<&str>,
    tag: &str,
    trace: Option<&Path>,
) -> Result<Epic> {
    let name = if tag.is_empty() {
        format!("epic-{n}")
    } else {
        format!("epic-{n}-{tag}")
    };
    let project = work.join(&name);
    generate_project(&ctx.root, &project, n)?;
    let log = ctx.out.join(format!("{name}.calls"));
    let _ = fs::remove_file(&log);
    let stderr_path = ctx.out.join(format!("{name}.stderr"));
    let stderr = fs::File::create(&stderr_path)
        .with_context(|| format!("cannot create {}", stderr_path.display()))?;
    let mut cmd = match trace {
        Some(out) => {
            let mut c = Command::new("strace");
            c.args(["-f", "-qq", "-ttt", "-y", "-o"])
                .arg(out)
                .arg(&ctx.bin);
            c
        }
        None => Command::new(&ctx.bin),
    };
    cmd.arg("run")
        .arg("--json")
        .arg("--plugins")
        .arg(&ctx.plugins)
        .arg("--project")
        .arg(&project)
        .arg("--claude-bin")
        .arg(&ctx.wrapper)
        .env("BMAD_HOST_CACHE_DIR", &ctx.cache)
        .env("BENCH_CLAUDE_REAL", &ctx.fake)
        .env("BENCH_CLAUDE_LOG", &log)
        .env_remove("FAKE_CLAUDE_SCRIPT")
        .env_remove("FAKE_CLAUDE_BEHAVIOUR")
        .env_remove("FAKE_CLAUDE_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    match delays {
        Some(d) => cmd.env("BENCH_CLAUDE_DELAYS_MS", d),
        None => cmd.env_remove("BENCH_CLAUDE_DELAYS_MS"),
    };
    eprint!("  {name}: ");
    let t0 = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run {}", ctx.bin.display()))?;
    let pid = child.id();
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let (mut done, mut hwm, mut finished) = (0usize, None::<u64>, None::<Value>);
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading bmad-host's NDJSON")?;
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        match event["event"].as_str() {
            Some("story_finished") => {
                done += usize::from(event["result"] == "done");
                hwm = hwm.max(vm_hwm_kib(pid));
            }
            Some("run_finished") => {
                hwm = hwm.max(vm_hwm_kib(pid));
                finished = Some(event);
            }
            _ => {}
        }
    }
    let status = child.wait().context("waiting for bmad-host")?;
    let wall = t0.elapsed();
    if !status.success() || done != n {
        bail!(
            "bmad-host on a {n}-story epic: {status}, {done} stories done (see {} and {})",
            stderr_path.display(),
            project.display()
        );
    }
    let run_ms = finished
        .as_ref()
        .and_then(|f| f["duration_ms"].as_u64())
        .context("no run_finished event")?;
    let Calls {
        gaps: overhead_ns,
        within: within_story_ns,
        detail: gaps,
        spans,
        count: calls,
        agent_ns,
    } = overheads(&log)?;
    let mut cpu: Vec<u64> = gaps.iter().filter_map(|g| g.cpu_ns).collect();
    cpu.sort_unstable();
    eprintln!(
        "{} calls, {:.2} s wall, {:.2} ms/story, overhead p50 {} p99 {} (host CPU p50 {} p99 {}), peak RSS {}",
        calls,
        wall.as_secs_f64(),
        wall.as_secs_f64() * 1e3 / n as f64,
        us(percentile(&overhead_ns, 0.5)),
        us(percentile(&overhead_ns, 0.99)),
        us(percentile(&cpu, 0.5)),
        us(percentile(&cpu, 0.99)),
        hwm.map_or("?".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
    );
    let _ = fs::remove_dir_all(&project);
    Ok(Epic {
        n,
        calls,
        wall,
        run_ms,
        hwm_kib: hwm,
        overhead_ns,
        within_story_ns,
        agent_ns,
        gaps,
        spans,
        reps: 1,
    })
}

/// `reps` runs of the same epic; the one with the median host's share per story.
fn run_median(ctx: &Ctx, work: &Path, n: usize, reps: usize) -> Result<Epic> {
    let mut runs = (0..reps.max(1))
        .map(|_| run_epic(ctx, work, n, None, "tmpfs"))
        .collect::<Result<Vec<_>>>()?;
    runs.sort_by(|a, b| a.host_per_story_ms().total_cmp(&b.host_per_story_ms()));
    let mid = runs.len() / 2;
    let mut median = runs.swap_remove(mid);
    median.reps = reps.max(1);
    Ok(median)
}

/// What `bench-claude`'s log says about a run's agent calls.
#[derive(Debug)]
struct Calls {
    /// Every gap between one call's exit and the next call's start, in ns, sorted.
    gaps: Vec<u64>,
    /// The same, only between calls of the same story.
    within: Vec<u64>,
    /// Every gap with what the host did in it, in call order.
    detail: Vec<Gap>,
    /// (start, end) of each call, wall clock ns, in order.
    spans: Vec<(u128, u128)>,
    count: usize,
    /// The time the agents ran (start to exit, summed), in ns.
    agent_ns: u64,
}

/// One gap between two agent calls, from the host's scheduler statistics (read by
/// `bench-claude` from `/proc/<host>/task/*/schedstat` at the end of one call and the start of
/// the next).
#[derive(Debug, Clone)]
struct Gap {
    /// The previous call's role and the next one's (`qa→sm` is a gap between stories).
    from: String,
    to: String,
    /// One call's end to the next one's start.
    ns: u64,
    /// The host's CPU time in the gap, all its threads: the host's own work.
    cpu_ns: Option<u64>,
    /// Time the host's threads were runnable but waited for a CPU (the machine was busy).
    wait_ns: Option<u64>,
}

impl Gap {
    /// The rest: the host off the CPU and not waiting for one (fsyncs, the next process's exec
    /// and start, the previous one's exit).
    fn off_cpu_ns(&self) -> Option<u64> {
        Some(self.ns.saturating_sub(self.cpu_ns? + self.wait_ns?))
    }

    fn kind(&self) -> String {
        format!("{} → {}", self.from.to_uppercase(), self.to.to_uppercase())
    }
}

/// One line of `bench-claude`'s log.
struct CallLine {
    start: u128,
    end: u128,
    role: String,
    story: String,
    /// The host's (CPU, run-queue wait) ns at the call's start and end.
    sched: [Option<(u64, u64)>; 2],
}

fn parse_call(line: &str) -> Option<CallLine> {
    let f: Vec<&str> = line.split(' ').collect();
    let pair = |i: usize| -> Option<(u64, u64)> {
        Some((f.get(i)?.parse().ok()?, f.get(i + 1)?.parse().ok()?))
    };
    Some(CallLine {
        start: f.first()?.parse().ok()?,
        end: f.get(1)?.parse().ok()?,
        role: (*f.get(2)?).to_owned(),
        story: (*f.get(3)?).to_owned(),
        sched: [pair(5), pair(7)],
    })
}

fn overheads(log: &Path) -> Result<Calls> {
    let text = fs::read_to_string(log).with_context(|| format!("cannot read {}", log.display()))?;
    let mut calls = Vec::new();
    for line in text.lines() {
        let Some(call) = parse_call(line) else {
            bail!("{}: bad line `{line}`", log.display());
        };
        calls.push(call);
    }
    calls.sort_by_key(|c| (c.start, c.end));
    let (mut all, mut within, mut detail) = (Vec::new(), Vec::new(), Vec::new());
    for pair in calls.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let gap = u64::try_from(b.start.saturating_sub(a.end)).unwrap_or(u64::MAX);
        all.push(gap);
        if a.story == b.story {
            within.push(gap);
        }
        let delta = match (a.sched[1], b.sched[0]) {
            (Some(x), Some(y)) => (Some(y.0.saturating_sub(x.0)), Some(y.1.saturating_sub(x.1))),
            _ => (None, None),
        };
        detail.push(Gap {
            from: a.role.clone(),
            to: b.role.clone(),
            ns: gap,
            cpu_ns: delta.0,
            wait_ns: delta.1,
        });
    }
    all.sort_unstable();
    within.sort_unstable();
    let agent: u128 = calls.iter().map(|c| c.end.saturating_sub(c.start)).sum();
    Ok(Calls {
        gaps: all,
        within,
        detail,
        spans: calls.iter().map(|c| (c.start, c.end)).collect(),
        count: calls.len(),
        agent_ns: u64::try_from(agent).unwrap_or(u64::MAX),
    })
}

/// Where a run's fsyncs fall, counted with `strace` on a small epic.
#[derive(Debug, Default)]
struct Census {
    stories: usize,
    /// By kind of gap (`QA → SM`): how many such gaps, and the fsyncs in them by file.
    by_gap: BTreeMap<String, (usize, BTreeMap<&'static str, usize>)>,
    /// fsyncs while an agent ran.
    during_calls: usize,
    /// fsyncs before the first call or after the last (opening and closing the run).
    outside: usize,
    /// By kind of gap: the system calls of the host's own threads in such gaps, by name (the
    /// agents' processes, and the host's children between their spawn and their `exec`, are
    /// not the host's threads and are not counted).
    syscalls: BTreeMap<String, BTreeMap<String, usize>>,
    /// The host's threads seen in the trace.
    host_threads: usize,
}

impl Census {
    /// "SM → DEV 1 (journal WAL 1), ..." per gap, as means.
    fn describe(&self) -> String {
        self.by_gap
            .iter()
            .map(|(kind, (gaps, files))| {
                let per = |n: usize| n as f64 / (*gaps).max(1) as f64;
                let total: usize = files.values().sum();
                let parts: Vec<String> = files
                    .iter()
                    .map(|(f, n)| format!("{f} {}", trim_float(per(*n))))
                    .collect();
                format!("{kind} {} ({})", trim_float(per(total)), parts.join(", "))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Mean system calls of the host's threads per gap of a kind.
    fn syscalls_per_gap(&self, kind: &str) -> Option<f64> {
        let gaps = self.by_gap.get(kind)?.0;
        let calls = self.syscalls.get(kind)?;
        Some(calls.values().sum::<usize>() as f64 / gaps.max(1) as f64)
    }

    /// "SM → DEV 120 (openat 20, ...)" per kind of gap, as means, the most frequent calls first.
    fn describe_syscalls(&self) -> String {
        self.syscalls
            .iter()
            .map(|(kind, calls)| {
                let gaps = self.by_gap.get(kind).map_or(1, |g| g.0.max(1));
                let per = |n: usize| n as f64 / gaps as f64;
                let mut top: Vec<(&String, &usize)> = calls.iter().collect();
                top.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
                let parts: Vec<String> = top
                    .iter()
                    .take(8)
                    .map(|(name, n)| format!("{name} {}", trim_float(per(**n))))
                    .collect();
                format!(
                    "{kind} {} ({})",
                    trim_float(per(calls.values().sum())),
                    parts.join(", ")
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Mean fsyncs per gap of a kind.
    fn per_gap(&self, kind: &str) -> Option<f64> {
        let (gaps, files) = self.by_gap.get(kind)?;
        Some(files.values().sum::<usize>() as f64 / (*gaps).max(1) as f64)
    }
}

/// `1`, `1.5`, `0.33`.
fn trim_float(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Runs an `n`-story epic with bmad-host under `strace -f` and counts, per gap between agent
/// calls, its fsyncs by file and the system calls of its own threads by name. `None` when
/// `strace` is not installed.
fn fsync_census(ctx: &Ctx, work: &Path, n: usize) -> Result<Option<Census>> {
    let have_strace = Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have_strace {
        eprintln!("  strace is not installed: fsyncs per gap not counted");
        return Ok(None);
    }
    let trace = ctx.out.join(format!("epic-{n}-strace.trace"));
    let epic = run_epic_traced(ctx, work, n, None, "strace", Some(&trace))?;
    let text =
        fs::read_to_string(&trace).with_context(|| format!("cannot read {}", trace.display()))?;
    let mut census = Census {
        stories: n,
        ..Census::default()
    };
    for g in &epic.gaps {
        census.by_gap.entry(g.kind()).or_default().0 += 1;
    }
    let host = host_threads(&text);
    census.host_threads = host.len();
    for line in text.lines() {
        // `<pid> <secs>.<micros> fsync(5</path/to/file>) = 0` (the pid may be padded)
        let Some((pid, time, call)) = strace_line(line) else {
            continue;
        };
        let Some(at) = strace_time_ns(time) else {
            continue;
        };
        if host.contains(&pid)
            && let Some(name) = syscall_name(call)
            && let Some(g) = gap_at(&epic, at)
        {
            *census
                .syscalls
                .entry(g.kind())
                .or_default()
                .entry(name.to_owned())
                .or_default() += 1;
        }
        if !(call.starts_with("fsync(") || call.starts_with("fdatasync(")) {
            continue;
        }
        let file = call
            .split_once('<')
            .and_then(|(_, rest)| rest.split_once('>'))
            .map_or("", |(path, _)| path);
        let class = if file.ends_with("journal.sqlite-wal") {
            "journal WAL"
        } else if file.ends_with("journal.sqlite") {
            "journal checkpoint"
        } else if file.ends_with(".tmp") {
            "story file"
        } else {
            "folder"
        };
        let spans = &epic.spans;
        let after = spans.partition_point(|s| s.0 <= at);
        if after > 0 && at < spans[after - 1].1 {
            census.during_calls += 1;
        } else if after == 0 || after == spans.len() {
            census.outside += 1;
        } else if let Some(g) = epic.gaps.get(after - 1) {
            *census
                .by_gap
                .entry(g.kind())
                .or_default()
                .1
                .entry(class)
                .or_default() += 1;
        }
    }
    eprintln!("  fsyncs per gap (strace): {}", census.describe());
    eprintln!(
        "  host system calls per gap (strace): {}",
        census.describe_syscalls()
    );
    Ok(Some(census))
}

/// The gap of `epic` that the instant `at` (wall clock, ns) falls in, if any.
fn gap_at(epic: &Epic, at: u128) -> Option<&Gap> {
    let spans = &epic.spans;
    let after = spans.partition_point(|s| s.0 <= at);
    if after == 0 || after == spans.len() || at < spans[after - 1].1 {
        return None;
    }
    epic.gaps.get(after - 1)
}

/// A line of `strace -f -ttt`: pid, time and the rest (`fsync(5</f>) = 0`).
fn strace_line(line: &str) -> Option<(u32, &str, &str)> {
    let line = line.trim_start();
    let (pid, rest) = line.split_once(' ')?;
    let (time, call) = rest.trim_start().split_once(' ')?;
    Some((pid.parse().ok()?, time, call))
}

/// The system call a trace line starts (`openat(` → `openat`); `None` for the second half of
/// an interrupted one (`<... openat resumed>`), signals and exits, so that each call counts once.
fn syscall_name(call: &str) -> Option<&str> {
    let (name, _) = call.split_once('(')?;
    (!name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .then_some(name)
}

/// The threads of the traced process (the first pid of the trace): it and every task it or
/// one of its threads created with `CLONE_THREAD`. Its children (the agents, and the host's
/// own end of a spawn before the `exec`) are other processes.
fn host_threads(text: &str) -> std::collections::HashSet<u32> {
    let mut host = std::collections::HashSet::new();
    // A `clone` interrupted by another thread's line: whether it makes a thread, by pid.
    let mut pending: BTreeMap<u32, bool> = BTreeMap::new();
    for line in text.lines() {
        let Some((pid, _, call)) = strace_line(line) else {
            continue;
        };
        if host.is_empty() {
            host.insert(pid);
        }
        if !host.contains(&pid) {
            continue;
        }
        let created = |s: &str| {
            s.rsplit_once(") = ")
                .and_then(|(_, n)| n.trim().parse::<u32>().ok())
        };
        if call.starts_with("clone") {
            let thread = call.contains("CLONE_THREAD");
            match created(call) {
                Some(tid) if thread => {
                    host.insert(tid);
                }
                Some(_) => {}
                None => {
                    pending.insert(pid, thread);
                }
            }
        } else if call.starts_with("<... clone")
            && pending.remove(&pid) == Some(true)
            && let Some(tid) = created(call)
        {
            host.insert(tid);
        }
    }
    host
}

/// strace's `-ttt` time (`1700000000.123456`) in ns.
fn strace_time_ns(t: &str) -> Option<u128> {
    let (secs, micros) = t.split_once('.')?;
    Some(secs.parse::<u128>().ok()? * 1_000_000_000 + micros.parse::<u128>().ok()? * 1_000)
}

/// The latency of `fsync` after appending 4 KiB to a file in `dir`, `n` times, in ns, sorted:
/// what each durable journal commit waits for.
fn fsync_latency(dir: &Path, n: usize) -> Result<Vec<u64>> {
    use std::io::Write as _;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("fsync-probe");
    let mut file =
        fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    let block = [b'x'; 4096];
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        file.write_all(&block)?;
        let t = Instant::now();
        file.sync_all()?;
        samples.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    drop(file);
    let _ = fs::remove_file(&path);
    samples.sort_unstable();
    Ok(samples)
}

/// `VmHWM` (peak resident set) of a live process, in KiB.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A BMAD v4 project (the sample's config, agents and architecture docs) whose PRD holds one
/// epic of `n` stories, none drafted.
pub(crate) fn generate_project(root: &Path, project: &Path, n: usize) -> Result<()> {
    let _ = fs::remove_dir_all(project);
    copy_dir(&root.join("tests/fixtures/v4-sample"), project)?;
    let stories = project.join("docs/stories");
    for entry in fs::read_dir(&stories)?.flatten() {
        if entry.path().extension().is_some_and(|x| x == "md") {
            fs::remove_file(entry.path())?;
        }
    }
    let mut prd = String::from(
        "# Synthetic Product Requirements Document (PRD)\n\n## Goals and Background Context\n\n\
         A generated project for `cargo xtask bench`.\n\n## Epic List\n\n\
         - **Epic 1: Synthetic** - many small stories.\n\n## Epic 1: Synthetic\n\n\
         Stories generated for the benchmark.\n",
    );
    for i in 1..=n {
        let _ = write!(
            prd,
            "\n### Story 1.{i}: Feature {i}\n\nAs a user,\nI want feature {i},\n\
             so that the benchmark has work to do.\n\n#### Acceptance Criteria\n\n\
             1: Feature {i} works.\n2: `sh tests/run.sh` passes.\n"
        );
    }
    prd.push_str("\n## Next Steps\n\nNone.\n");
    fs::write(project.join("docs/prd.md"), prd)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The report

#[derive(Debug)]
struct Machine {
    cpu: String,
    cores: usize,
    memory: String,
    kernel: String,
    rustc: String,
    bmad_host: String,
    wasmtime: String,
    commit: String,
    date: String,
}

fn machine(root: &Path, bin: &Path) -> Machine {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".into(), |(_, v)| v.trim().to_string());
    let memory = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or("unknown".into(), |k| {
            format!("{:.1} GiB", k as f64 / 1024.0 / 1024.0)
        });
    let output = |cmd: &mut Command| {
        cmd.output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    // Uncommitted changes other than this report itself.
    let dirty = output(Command::new("git").current_dir(root).args([
        "status",
        "--porcelain",
        "--untracked-files=no",
    ]))
    .is_some_and(|s| s.lines().any(|l| !l.ends_with("BENCHMARKS.md")));
    let commit =
        output(
            Command::new("git")
                .current_dir(root)
                .args(["rev-parse", "--short", "HEAD"]),
        )
        .map_or("unknown".into(), |c| {
            if dirty {
                format!("{c} (with uncommitted changes)")
            } else {
                c
            }
        });
    let lock = fs::read_to_string(root.join("Cargo.lock")).unwrap_or_default();
    let wasmtime = lock
        .split("[[package]]")
        .find(|p| p.contains("\nname = \"wasmtime\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map_or("unknown".into(), |v| v.trim_matches('"').to_string());
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        memory,
        kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or("unknown".into(), |k| format!("Linux {}", k.trim())),
        rustc: output(Command::new("rustc").arg("-V")).unwrap_or_else(|| "unknown".into()),
        bmad_host: output(Command::new(bin).arg("--version")).unwrap_or_else(|| "unknown".into()),
        wasmtime,
        commit,
        date: utc_date(SystemTime::now()),
    }
}

#[derive(Debug)]
struct Report<'a> {
    ctx: &'a Ctx,
    machine: Machine,
    criterion: BTreeMap<String, Estimate>,
    teardown: Option<Value>,
    floor: Vec<u64>,
    /// fsync latency on the projects' disk, ns, sorted.
    fsync: Vec<u64>,
    /// The fsyncs per gap, counted with strace (when it is installed).
    census: Option<Census>,
    cold: Epic,
    epics: Vec<Epic>,
    /// The same epics with their projects on tmpfs.
    in_memory: Vec<Epic>,
    /// (stories, wall without delays, wall with the old tool's delays)
    baseline: Option<(usize, Duration, Duration)>,
    /// The parallel case, one row per `--jobs` (empty with `--no-parallel`).
    parallel: Vec<parallel::Row>,
    /// build, micro-benchmarks, whole runs, total
    times: [Duration; 4],
    /// `/proc/loadavg` before and after.
    load: [String; 2],
    micro: bool,
}

/// One row of the targets table.
#[derive(Debug)]
struct Target {
    what: String,
    measured: String,
    target: String,
    pass: Option<bool>,
    why: String,
}

impl Report<'_> {
    fn est(&self, id: &str) -> Option<&Estimate> {
        self.criterion.get(id)
    }

    /// Criterion results whose id starts with `prefix`.
    fn group(&self, prefix: &str) -> Vec<(&str, &Estimate)> {
        self.criterion
            .iter()
            .filter(|(id, _)| id.starts_with(prefix))
            .map(|(id, e)| (id.as_str(), e))
            .collect()
    }

    fn teardown_samples(&self, key: &str) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .teardown
            .as_ref()
            .and_then(|t| t[key].as_array())
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_u64)
                    .map(|u| u * 1000)
                    .collect()
            })
            .unwrap_or_default();
        v.sort_unstable();
        v
    }

    fn largest(&self) -> Option<&Epic> {
        self.epics.iter().max_by_key(|e| e.n)
    }

    fn spawn_cost_ns(&self) -> Option<(f64, &'static str)> {
        self.est("claude call/bare spawn + read + wait (baseline)")
            .map(|e| (e.mean_ns, "a bare spawn + read + wait of a tiny CLI script"))
            .or_else(|| {
                (!self.floor.is_empty()).then(|| {
                    (
                        percentile(&self.floor, 0.5) as f64,
                        "spawning a process up to its main",
                    )
                })
            })
    }

    /// Where the gaps of `e` went, from this run's measurements: the slowest 1% and all gaps
    /// split into the host's CPU time, waiting for a CPU and the rest; the fsyncs per kind of
    /// gap (strace) and what one costs on this disk; the spawn floor; the tmpfs runs.
    fn gap_breakdown(&self, e: &Epic) -> String {
        if e.cpu_ns().is_empty() {
            return String::new();
        }
        let slow = e.slowest(0.01);
        let all: Vec<&Gap> = e.gaps.iter().collect();
        let mut why = format!(
            "Measured in this run ({}-story epic, on disk): the slowest 1% of gaps ({} of {}, \
             from {}): {}; all gaps, mean: {}. ",
            e.n,
            slow.len(),
            all.len(),
            us(slow.last().map_or(0, |g| g.ns)),
            split(&slow),
            split(&all)
        );
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for g in &slow {
            *kinds.entry(g.kind()).or_default() += 1;
        }
        let _ = write!(
            why,
            "The slowest 1% by kind: {}. ",
            kinds
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = write!(
            why,
            "Off the CPU means waiting: for fsyncs (an fsync on this disk: p50 {}, p99 {}; ",
            us(percentile(&self.fsync, 0.5)),
            us(percentile(&self.fsync, 0.99))
        );
        match &self.census {
            Some(c) => {
                let _ = write!(
                    why,
                    "per gap, counted with strace on a {}-story run: {}), ",
                    c.stories,
                    c.describe()
                );
            }
            None => why.push_str("not counted: no strace), "),
        }
        let _ = write!(
            why,
            "for the next agent process to start (spawn to its `main`: p50 {}, p99 {}), and \
             for the last one to exit. {}",
            us(percentile(&self.floor, 0.5)),
            us(percentile(&self.floor, 0.99)),
            self.in_memory_note()
        );
        why
    }

    /// The host's CPU time per gap by kind of gap, from this run.
    fn cpu_by_kind(&self, e: &Epic) -> String {
        let mut kinds: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for g in &e.gaps {
            if let Some(c) = g.cpu_ns {
                kinds.entry(g.kind()).or_default().push(c);
            }
        }
        let parts: Vec<String> = kinds
            .iter_mut()
            .map(|(k, v)| {
                v.sort_unstable();
                format!(
                    "{k} p50 {} / p99 {}",
                    us(percentile(v, 0.5)),
                    us(percentile(v, 0.99))
                )
            })
            .collect();
        format!(
            "Measured in this run, by kind of gap: {}.",
            parts.join(", ")
        )
    }

    /// How the host's CPU time per gap changes with the epic's size, from this run.
    fn growth(&self, runs: &[Epic]) -> String {
        let per: Vec<String> = runs
            .iter()
            .filter(|e| !e.cpu_ns().is_empty())
            .map(|e| {
                let all: Vec<&Gap> = e.gaps.iter().collect();
                format!("{}: {}", e.n, split(&all))
            })
            .collect();
        if per.is_empty() {
            return String::new();
        }
        format!(
            "Measured in this run, per gap (means) by epic size: {}. Growth in the host's CPU \
             time is work that grows with the project; growth in waiting is the machine.",
            per.join("; ")
        )
    }

    /// What the tmpfs run shows, for the reasons of misses.
    fn in_memory_note(&self) -> String {
        self.in_memory
            .iter()
            .max_by_key(|e| e.n)
            .filter(|m| !m.overhead_ns.is_empty())
            .map(|m| {
                format!(
                    "With the project on tmpfs (fsync costs nothing) the gaps are p50 {} / \
                     p99 {}, host CPU p50 {} / p99 {} ({}-story epic).",
                    us(percentile(&m.overhead_ns, 0.5)),
                    us(percentile(&m.overhead_ns, 0.99)),
                    us(percentile(&m.cpu_ns(), 0.5)),
                    us(percentile(&m.cpu_ns(), 0.99)),
                    m.n
                )
            })
            .unwrap_or_default()
    }

    fn targets(&self) -> Vec<Target> {
        let mut t = Vec::new();
        let not_measured = |what: &str, target: &str| Target {
            what: what.into(),
            measured: "not measured".into(),
            target: target.into(),
            pass: None,
            why: String::new(),
        };

        // Host overhead per agent call, and the host's own share of it.
        match self.largest() {
            Some(e) if !e.overhead_ns.is_empty() => {
                let p99 = percentile(&e.overhead_ns, 0.99);
                let p50 = percentile(&e.overhead_ns, 0.5);
                let pass = p99 < 5_000_000;
                t.push(Target {
                    what: format!(
                        "Host overhead per agent call, p99 ({} calls, {}-story epic)",
                        e.overhead_ns.len(),
                        e.n
                    ),
                    measured: format!("p50 {}, p99 {}", us(p50), us(p99)),
                    target: "p99 < 5 ms".into(),
                    pass: Some(pass),
                    why: self.gap_breakdown(e),
                });
                let cpu = e.cpu_ns();
                if cpu.is_empty() {
                    t.push(not_measured(
                        "Host's own share of a gap (its CPU time)",
                        "< 1 ms",
                    ));
                } else {
                    let (c50, c99) = (percentile(&cpu, 0.5), percentile(&cpu, 0.99));
                    let pass = c99 < HOST_SHARE_TARGET_NS;
                    t.push(Target {
                        what: format!(
                            "Host's own share of a gap: its CPU time, all threads (everything \
                             but waiting for fsyncs, for the next process to start, for a CPU), \
                             p99 ({}-story epic)",
                            e.n
                        ),
                        measured: format!("p50 {}, p99 {}", us(c50), us(c99)),
                        target: format!("p99 < {}", us(HOST_SHARE_TARGET_NS)),
                        pass: Some(pass),
                        why: self.cpu_by_kind(e),
                    });
                }
            }
            _ => t.push(not_measured(
                "Host overhead per agent call, p99",
                "p99 < 5 ms",
            )),
        }

        // Status parse.
        for (prefix, what) in [
            (
                "status/component/",
                "Status parse per story file, via the component",
            ),
            ("status/raw/", "Status parse per story file, native parser"),
        ] {
            let g = self.group(prefix);
            if let Some((id, worst)) = g.iter().max_by(|a, b| a.1.mean_ns.total_cmp(&b.1.mean_ns)) {
                let pass = worst.mean_ns < 50_000.0;
                t.push(Target {
                    what: format!("{what} (worst of {} corpus files)", g.len()),
                    measured: format!(
                        "{} ({})",
                        us(worst.mean_ns as u64),
                        id.trim_start_matches(prefix)
                    ),
                    target: "< 50 µs".into(),
                    pass: Some(pass),
                    why: if pass {
                        String::new()
                    } else {
                        note(
                            "Most of it is a fresh component instance per parse and copying \
                             the document across the WASM boundary; see the per-file table.",
                        )
                    },
                });
            } else {
                t.push(not_measured(what, "< 50 µs"));
            }
        }

        // Policy calls.
        let calls: Vec<(&str, &Estimate)> = ["begin", "on-event", "end"]
            .iter()
            .filter_map(|c| {
                self.group("plugins/call/")
                    .into_iter()
                    .find(|(id, _)| {
                        id.trim_start_matches("plugins/call/")
                            .starts_with(&format!("{c} ("))
                    })
                    .map(|(_, e)| (*c, e))
            })
            .collect();
        if calls.is_empty() {
            t.push(not_measured(
                "Policy call (begin / on-event / end)",
                "< 20 µs",
            ));
        } else {
            let worst = calls.iter().map(|(_, e)| e.mean_ns).fold(0.0_f64, f64::max);
            let pass = worst < 20_000.0;
            t.push(Target {
                what: "Policy call (begin / on-event / end, qa policy)".into(),
                measured: calls
                    .iter()
                    .map(|(c, e)| format!("{c} {}", us(e.mean_ns as u64)))
                    .collect::<Vec<_>>()
                    .join(", "),
                target: "< 20 µs each".into(),
                pass: Some(pass),
                why: if pass {
                    String::new()
                } else {
                    note(
                        "The documents and findings crossing the boundary are copied and \
                         re-validated each call.",
                    )
                },
            });
        }

        // Component cache.
        match self
            .group("plugins/load/")
            .into_iter()
            .find(|(id, _)| id.contains("cached (one component)"))
        {
            Some((_, e)) => {
                let pass = e.mean_ns < 2_000_000.0;
                let cold = self
                    .group("plugins/load/")
                    .into_iter()
                    .find(|(id, _)| id.contains("cold"))
                    .map(|(_, c)| format!(" (cold: {})", us(c.mean_ns as u64)))
                    .unwrap_or_default();
                t.push(Target {
                    what: "Cached component load (one component)".into(),
                    measured: format!("{}{cold}", us(e.mean_ns as u64)),
                    target: "< 2 ms per component".into(),
                    pass: Some(pass),
                    why: if pass {
                        String::new()
                    } else {
                        note("Deserializing the compiled code and hashing the .wasm dominate.")
                    },
                });
            }
            None => t.push(not_measured(
                "Cached component load",
                "< 2 ms per component",
            )),
        }

        // The 1,000-story epic and flat per-story cost.
        if let Some(e) = self.epics.iter().find(|e| e.n == 1000) {
            let pass = e.wall < Duration::from_secs(60);
            t.push(Target {
                what: format!(
                    "1,000-story epic, instant fake Claude ({} agent calls)",
                    e.calls
                ),
                measured: format!("{:.1} s", e.wall.as_secs_f64()),
                target: "< 60 s on 2 cores".into(),
                pass: Some(pass),
                why: if pass {
                    String::new()
                } else {
                    format!(
                        "Three gaps per story (see the host overhead above for what they are \
                         made of). {}",
                        self.in_memory
                            .iter()
                            .find(|m| m.n == e.n)
                            .map(|m| format!(
                                "With the project on tmpfs the same epic takes {:.1} s \
                                 ({:.2} ms per story).",
                                m.wall.as_secs_f64(),
                                m.wall.as_secs_f64() * 1e3 / m.n as f64
                            ))
                            .unwrap_or_default()
                    )
                },
            });
        } else {
            t.push(not_measured("1,000-story epic", "< 60 s on 2 cores"));
        }
        // Flatness is judged where the disk's flush latency (which drifts during a run on a
        // shared machine) does not hide the host's own cost: on tmpfs when there is one.
        let (flat_runs, flat_where) = if self.in_memory.len() >= 2 {
            (&self.in_memory, "project on tmpfs")
        } else {
            (&self.epics, "project on disk")
        };
        // The host's share: the stand-in agent's own time (which also grows a little with the
        // project: it lists and writes files too) is not what is measured here.
        let per: Vec<(usize, f64, f64)> = flat_runs
            .iter()
            .filter(|e| e.n >= 10)
            .map(|e| (e.n, e.host_per_story_ms(), e.per_story_ms()))
            .collect();
        if per.len() >= 2 {
            let max = per.iter().map(|p| p.1).fold(f64::MIN, f64::max);
            let min = per.iter().map(|p| p.1).fold(f64::MAX, f64::min);
            let ratio = max / min;
            let pass = ratio <= 1.3;
            t.push(Target {
                what: format!(
                    "Per-story cost flat from 10 to 1,000 stories (host's share of the in-run \
                     time per story, {flat_where}; agents included in brackets)"
                ),
                measured: format!(
                    "{} (max/min {ratio:.2})",
                    per.iter()
                        .map(|(n, host, all)| format!("{n}: {host:.2} ms ({all:.2} ms)"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                target: "flat (max/min ≤ 1.3)".into(),
                pass: Some(pass),
                why: if ratio <= 1.1 {
                    String::new()
                } else {
                    self.growth(flat_runs)
                },
            });
        }

        // Peak RSS.
        let hwm = self.epics.iter().filter_map(|e| e.hwm_kib).max();
        match hwm {
            Some(k) => {
                let pass = k < 50 * 1024;
                t.push(Target {
                    what: "Peak RSS of bmad-host (VmHWM, any epic size)".into(),
                    measured: format!("{:.1} MiB", k as f64 / 1024.0),
                    target: "< 50 MB".into(),
                    pass: Some(pass),
                    why: if pass {
                        String::new()
                    } else {
                        note("wasmtime's code memory and the component instances.")
                    },
                });
            }
            None => t.push(not_measured("Peak RSS", "< 50 MB")),
        }

        // Teardown.
        let coop = self.teardown_samples("cooperative_us");
        if coop.is_empty() {
            t.push(not_measured("Cooperative teardown", "< 20 ms"));
        } else {
            let p99 = percentile(&coop, 0.99);
            let pass = p99 < 20_000_000;
            t.push(Target {
                what: format!(
                    "Cooperative teardown (fake `hang`, SIGINT), interrupt → proven end, {} calls",
                    coop.len()
                ),
                measured: format!("p50 {}, p99 {}", us(percentile(&coop, 0.5)), us(p99)),
                target: "< 20 ms".into(),
                pass: Some(pass),
                why: if pass {
                    String::new()
                } else {
                    note("Reaping and the descendant sweep after the exit.")
                },
            });
        }
        let forced = self.teardown_samples("forced_us");
        if forced.is_empty() {
            t.push(not_measured("Forced teardown", "graces + 50 ms"));
        } else {
            let grace_ms: u64 = self
                .teardown
                .as_ref()
                .and_then(|t| t["grace_ms"].as_array())
                .map(|a| a.iter().filter_map(Value::as_u64).sum())
                .unwrap_or(0);
            let p99 = percentile(&forced, 0.99);
            let limit = (grace_ms + 50) * 1_000_000;
            let pass = p99 <= limit;
            t.push(Target {
                what: format!(
                    "Forced teardown (ignores SIGINT/SIGTERM, setsid grandchild), {} calls",
                    forced.len()
                ),
                measured: format!("p50 {}, p99 {}", us(percentile(&forced, 0.5)), us(p99)),
                target: format!("≤ graces ({grace_ms} ms) + 50 ms"),
                pass: Some(pass),
                why: if pass {
                    String::new()
                } else {
                    note("The escaped grandchild is found and killed after SIGKILL of the group.")
                },
            });
        }

        // Journal.
        match (
            self.group("journal step").first().map(|(_, e)| e.mean_ns),
            self.spawn_cost_ns(),
        ) {
            (Some(step), Some((spawn, what))) => {
                let pass = step * 2.0 < spawn;
                t.push(Target {
                    what: "Journal step of an agent call (intent fsynced, result written and \
                           fsynced by the next intent)"
                        .into(),
                    measured: format!("{} vs {} for {what}", us(step as u64), us(spawn as u64)),
                    target: "well under a process spawn (< ½)".into(),
                    pass: Some(pass),
                    why: if pass {
                        String::new()
                    } else {
                        note("The intent's commit waits for the disk (synchronous=FULL).")
                    },
                });
            }
            _ => t.push(not_measured("Journal step", "well under a process spawn")),
        }
        t
    }

    fn targets_table(&self) -> String {
        let mut s =
            String::from("| What | Measured | Target | Result |\n| --- | --- | --- | --- |\n");
        for t in self.targets() {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                t.what,
                t.measured,
                t.target,
                match t.pass {
                    Some(true) => "PASS",
                    Some(false) => "**MISS**",
                    None => "—",
                }
            );
        }
        s
    }

    fn render(&self) -> String {
        let m = &self.machine;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Benchmarks\n\nGenerated by `cargo xtask bench` on {} at commit {}; do not edit \
             by hand, run it again. How each figure is measured: [Method](#method).\n",
            m.date, m.commit
        );
        s.push_str("## Machine and versions\n\n| | |\n| --- | --- |\n");
        for (k, v) in [
            ("CPU", m.cpu.clone()),
            ("Cores", m.cores.to_string()),
            ("Memory", m.memory.clone()),
            ("Kernel", m.kernel.clone()),
            ("rustc", m.rustc.clone()),
            ("bmad-host", m.bmad_host.clone()),
            ("wasmtime", m.wasmtime.clone()),
            (
                "Profile",
                "release (thin LTO, 4 codegen units) for `bmad-host`, `fake-claude` and the \
                 criterion benches; `bench-claude` is a dev build (std only)"
                    .into(),
            ),
            (
                "Load average (1, 5, 15 min)",
                format!(
                    "{} before, {} after (other work on the machine adds noise)",
                    self.load[0], self.load[1]
                ),
            ),
            (
                "This run",
                format!(
                    "{} in all: builds {}, micro-benchmarks {}, whole runs {}",
                    mins(self.times[3]),
                    mins(self.times[0]),
                    mins(self.times[1]),
                    mins(self.times[2])
                ),
            ),
        ] {
            let _ = writeln!(s, "| {k} | {v} |");
        }

        s.push_str("\n## Targets\n\n");
        s.push_str(&self.targets_table());
        let misses: Vec<Target> = self
            .targets()
            .into_iter()
            .filter(|t| t.pass == Some(false))
            .collect();
        if misses.is_empty() {
            s.push_str("\nEvery measured target is met.\n");
        } else {
            s.push_str("\nWhy the misses:\n\n");
            for t in misses {
                let _ = writeln!(s, "- **{}**: {}", t.what, t.why);
            }
        }
        let notes: Vec<Target> = self
            .targets()
            .into_iter()
            .filter(|t| t.pass == Some(true) && !t.why.is_empty())
            .collect();
        if !notes.is_empty() {
            s.push_str("\nNotes on targets met:\n\n");
            for t in notes {
                let _ = writeln!(s, "- **{}**: {}", t.what, t.why);
            }
        }

        self.render_runs(&mut s);
        if !self.parallel.is_empty() {
            parallel::render(&self.parallel, &mut s);
        }
        self.render_micro(&mut s);
        self.render_method(&mut s);
        s
    }

    fn render_runs(&self, s: &mut String) {
        s.push_str(
            "\n## Whole runs\n\nThe release `bmad-host` binary on generated BMAD v4 projects: one \
             epic of N stories in `docs/prd.md`, none drafted, so each story takes three agent \
             calls (SM drafts, Dev implements, QA passes; the host writes Done). Claude is the \
             test crate's fake, which answers at once, behind `bench-claude`. Components come \
             from a warm cache. \"Host's share\" is the in-run time minus the time the agent \
             processes ran (from `bench-claude`'s log).\n\n\
             | Stories | Agent calls | Wall time | Run time (in host) | Per story (wall) | Per story (in run) | Host's share per story | Peak RSS (VmHWM) |\n\
             | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        );
        for e in std::iter::once(&self.cold)
            .chain(&self.epics)
            .chain(&self.in_memory)
        {
            let label = self.label(e);
            let _ = writeln!(
                s,
                "| {label} | {} | {:.2} s | {:.2} s | {:.2} ms | {:.2} ms | {:.2} ms | {} |",
                e.calls,
                e.wall.as_secs_f64(),
                e.run_ms as f64 / 1e3,
                e.wall.as_secs_f64() * 1e3 / e.n as f64,
                e.per_story_ms(),
                e.host_per_story_ms(),
                e.hwm_kib
                    .map_or("?".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
            );
        }
        for (runs, place) in [(&self.epics, "on disk"), (&self.in_memory, "on tmpfs")] {
            if let [.., a, b] = runs.as_slice() {
                let slope = (b.run_ms as f64 - a.run_ms as f64) / (b.n - a.n) as f64;
                let _ = writeln!(
                    s,
                    "\nMarginal cost between {} and {} stories {place}: {slope:.2} ms per story \
                     ({:.2} ms per agent call, agent included).",
                    a.n,
                    b.n,
                    slope / 3.0
                );
            }
        }

        s.push_str(
            "\n### Host overhead per agent call\n\nFrom one agent process's exit to the next \
             one's start (see [Method](#method)); \"within a story\" leaves out the gaps \
             between stories (QA of one → SM of the next, which also close and open a story).\n\n\
             | Stories | Gaps | p50 | p90 | p99 | max | mean | within a story: p50 / p99 | host's CPU time: p50 / p99 |\n\
             | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        );
        for e in self.epics.iter().chain(&self.in_memory) {
            let o = &e.overhead_ns;
            let mean = if o.is_empty() {
                0
            } else {
                o.iter().sum::<u64>() / o.len() as u64
            };
            let cpu = e.cpu_ns();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} / {} | {} |",
                self.label(e),
                o.len(),
                us(percentile(o, 0.5)),
                us(percentile(o, 0.9)),
                us(percentile(o, 0.99)),
                us(o.last().copied().unwrap_or(0)),
                us(mean),
                us(percentile(&e.within_story_ns, 0.5)),
                us(percentile(&e.within_story_ns, 0.99)),
                if cpu.is_empty() {
                    "—".to_owned()
                } else {
                    format!(
                        "{} / {}",
                        us(percentile(&cpu, 0.5)),
                        us(percentile(&cpu, 0.99))
                    )
                },
            );
        }
        self.render_gap_kinds(s);
        let _ = writeln!(
            s,
            "\nSpawn floor (part of every gap): from `Command::spawn` to the first line of \
             `bench-claude`'s `main`, {} samples: p50 {}, p99 {}. Disk flush latency on the \
             projects' file system (what each durable journal commit waits for; an fsync after \
             a 4 KiB append, {} samples): p50 {}, p99 {}.",
            self.floor.len(),
            us(percentile(&self.floor, 0.5)),
            us(percentile(&self.floor, 0.99)),
            self.fsync.len(),
            us(percentile(&self.fsync, 0.5)),
            us(percentile(&self.fsync, 0.99))
        );

        if let Some((n, fast, slow)) = self.baseline {
            let ratio = slow.as_secs_f64() / fast.as_secs_f64();
            let _ = writeln!(
                s,
                "\n### Against the old tool's delays\n\n\
                 The old Python tool slept around every agent call (`../shared/seeds/`): 0.1 s \
                 when it started parsing the status, 2.0 s after the parse, 1.0 s at the end of \
                 each Dev/QA iteration, 0.5 s after Dev; one more 0.1 + 2.0 s iteration found \
                 Done. `bench-claude` replays them ({BASELINE_DELAYS} ms by role, \
                 {BASELINE_PER_STORY_S} s per story) in front of the same fake on the same \
                 {n}-story epic, measured in the same run. The old tool's LLM status parse \
                 (about 3 s per iteration) is not replayed, so the real gap was larger.\n\n\
                 | {n}-story epic | Wall time | Per story |\n| --- | ---: | ---: |\n\
                 | bmad-host | {:.2} s | {:.1} ms |\n\
                 | with the old tool's delays | {:.2} s | {:.1} ms |\n\
                 | ratio | **{ratio:.0}×** | |\n\n\
                 At that rate the delays alone cost a 1,000-story epic {:.1} hours.",
                fast.as_secs_f64(),
                fast.as_secs_f64() * 1e3 / n as f64,
                slow.as_secs_f64(),
                slow.as_secs_f64() * 1e3 / n as f64,
                1000.0 * BASELINE_PER_STORY_S / 3600.0
            );
        }

        let coop = self.teardown_samples("cooperative_us");
        let forced = self.teardown_samples("forced_us");
        if !coop.is_empty() || !forced.is_empty() {
            s.push_str(
                "\n### Teardown latency\n\n`bmad_host::claude::run` on the fake Claude playing \
                 a hung call (`do: hang`), interrupted (Ctrl-C once) at its `system/init`; from \
                 the interrupt to the return, i.e. the proven end (process reaped, no \
                 descendant, output at EOF). Graces: 100 ms after SIGINT, 100 ms after SIGTERM.\n\n\
                 | Child | Calls | p50 | p99 | max |\n| --- | ---: | ---: | ---: | ---: |\n",
            );
            for (name, v) in [
                ("cooperative (exits on SIGINT like the CLI)", &coop),
                (
                    "forced (ignores SIGINT and SIGTERM, `setsid` grandchild holding stdout)",
                    &forced,
                ),
            ] {
                let _ = writeln!(
                    s,
                    "| {name} | {} | {} | {} | {} |",
                    v.len(),
                    us(percentile(v, 0.5)),
                    us(percentile(v, 0.99)),
                    us(v.last().copied().unwrap_or(0))
                );
            }
        }
    }

    /// The gaps of the largest epic on disk and on tmpfs by kind: how long, and what the host
    /// did in them (CPU), waited for a CPU, or waited for otherwise; and the fsyncs counted.
    fn render_gap_kinds(&self, s: &mut String) {
        let runs: Vec<&Epic> = [self.largest(), self.in_memory.iter().max_by_key(|e| e.n)]
            .into_iter()
            .flatten()
            .filter(|e| !e.cpu_ns().is_empty())
            .collect();
        if runs.is_empty() {
            return;
        }
        s.push_str(
            "\n#### Where a gap's time goes\n\nBy kind of gap (the previous call's role → the \
             next one's; QA → SM crosses from one story to the next, and includes the status \
             write). Host CPU is the host's own work: its CPU time, all threads, in the gap \
             (see [Method](#method)). Waiting for a CPU: its threads were runnable but the \
             CPUs were busy (with the agents' processes or anything else on the machine). Off \
             the CPU: the rest of the gap, the host waiting for fsyncs, for the next agent's \
             process to exec and start, for the last one to exit. Means, except the gap's \
             p50 / p99.\n\n\
             | Run | Gap | Gaps | p50 / p99 | host CPU | waiting for a CPU | off the CPU | fsyncs (strace) | host system calls (strace) |\n\
             | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        );
        for e in runs {
            let mut kinds: BTreeMap<String, Vec<&Gap>> = BTreeMap::new();
            for g in &e.gaps {
                kinds.entry(g.kind()).or_default().push(g);
            }
            let on_tmpfs = self.in_memory.iter().any(|m| std::ptr::eq(e, m));
            for (kind, gaps) in &kinds {
                let mut ns: Vec<u64> = gaps.iter().map(|g| g.ns).collect();
                ns.sort_unstable();
                let (fsyncs, syscalls) = match (&self.census, on_tmpfs) {
                    (_, true) => ("—".to_owned(), "—".to_owned()),
                    (Some(c), false) => (
                        c.per_gap(kind).map_or("—".into(), trim_float),
                        c.syscalls_per_gap(kind)
                            .map_or("—".into(), |n| format!("{n:.0}")),
                    ),
                    (None, false) => ("not counted".to_owned(), "not counted".to_owned()),
                };
                let _ = writeln!(
                    s,
                    "| {} | {kind} | {} | {} / {} | {} | {} | {} | {fsyncs} | {syscalls} |",
                    self.label(e),
                    gaps.len(),
                    us(percentile(&ns, 0.5)),
                    us(percentile(&ns, 0.99)),
                    us(mean_of(gaps.iter().map(|g| g.cpu_ns))),
                    us(mean_of(gaps.iter().map(|g| g.wait_ns))),
                    us(mean_of(gaps.iter().map(|g| g.off_cpu_ns()))),
                );
            }
        }
        if let Some(c) = &self.census {
            let _ = writeln!(
                s,
                "\nfsyncs by file, per gap, counted with `strace -f` on a {}-story run on disk (a \
                 separate run, so its timings are not used): {}. While the agents ran: {}; \
                 opening and closing the run: {}.",
                c.stories,
                c.describe(),
                c.during_calls,
                c.outside
            );
            let _ = writeln!(
                s,
                "\nSystem calls of the host's own threads ({} seen) per gap, from the same \
                 trace, the most frequent first (the agents' processes, and the host's child \
                 between its spawn and its `exec`, are not counted): {}.",
                c.host_threads,
                c.describe_syscalls()
            );
        }
    }

    fn label(&self, e: &Epic) -> String {
        if std::ptr::eq(e, &self.cold) {
            format!("{} (cold cache: compiles every component)", e.n)
        } else if self.in_memory.iter().any(|m| std::ptr::eq(e, m)) {
            if e.reps > 1 {
                format!("{} (project on tmpfs, median of {} runs)", e.n, e.reps)
            } else {
                format!("{} (project on tmpfs)", e.n)
            }
        } else {
            e.n.to_string()
        }
    }

    fn render_micro(&self, s: &mut String) {
        s.push_str("\n## Micro-benchmarks (criterion)\n\n");
        if self.criterion.is_empty() {
            s.push_str(if self.micro {
                "No criterion results were written by this run.\n"
            } else {
                "Skipped (`--no-micro`).\n"
            });
            return;
        }
        s.push_str(
            "Mean with its 95% confidence interval, and the median. Sources: `host/benches/*.rs`.\n\n\
             | Benchmark | Mean | 95% CI | Median | Throughput |\n| --- | ---: | ---: | ---: | ---: |\n",
        );
        for (id, e) in &self.criterion {
            let throughput = e.throughput_bytes.map_or(String::new(), |bytes| {
                let secs = e.mean_ns / 1e9;
                let lines = lines_in(id).map_or(String::new(), |l| {
                    format!(", {:.2} M lines/s", l as f64 / secs / 1e6)
                });
                format!("{:.0} MB/s{lines}", bytes as f64 / secs / 1e6)
            });
            let _ = writeln!(
                s,
                "| {} | {} | {} – {} | {} | {throughput} |",
                id.replace('|', "\\|"),
                us(e.mean_ns as u64),
                us(e.ci_ns.0 as u64),
                us(e.ci_ns.1 as u64),
                us(e.median_ns as u64),
            );
        }
    }

    fn render_method(&self, s: &mut String) {
        let _ = write!(
            s,
            "\n## Method\n\n\
             - **Host overhead per agent call.** `bench-claude` (`xtask/src/bin/bench-claude.rs`) \
             is the `--claude-bin`: it notes the wall clock (ns) as the first thing in `main`, \
             runs the fake with the same arguments and stdio, and notes the clock again just \
             before it exits; one line per call in `target/bench/epic-N.calls`. The overhead \
             of a call is the next call's start minus this call's end: bmad-host noticing the \
             exit (EOF, reaping, proving no descendant is left), closing the transcript, \
             journaling the result, parsing the story's status through the status component, \
             the policy's `end` and the next policy's `begin` (fresh instances), the status \
             write after QA, the next step's journal intent, and spawning the next agent up to \
             its `main` (the spawn floor above). Measured from the agents' side with the \
             kernel's clock, not from the host's own timestamps (its NDJSON `ts` has \
             millisecond resolution). All gaps of a run count, those between stories too.\n\
             - **The host's own share of a gap.** `bench-claude` also reads its parent's \
             (bmad-host's) scheduler statistics, summed over the host's threads \
             (`/proc/<pid>/task/*/schedstat`: time on a CPU and time runnable but waiting for \
             one, in ns), just after it notes its start and just before it notes its end. The \
             difference across a gap is what the host did in it: its CPU time is its own work \
             (the supervisor's end of the call, transcript, journal records as written, status \
             parse, policies, NDJSON, preparing the next spawn); the rest of the gap is waiting: \
             for a CPU (busy with other processes), for fsyncs, for the next process to exec \
             and start, for the last one to exit. No change to bmad-host is needed to measure \
             it. The fsyncs per gap are counted in a separate, smaller run under `strace -f`, by \
             file (journal WAL, journal checkpoint, the story's temporary file, its folder), and \
             so are the system calls of the host's own threads, by name: a count that, unlike \
             a time, does not depend on what else the machine is doing.\n\
             - **Synthetic epics.** Projects generated in `target/bench/work/` (the checkout's \
             disk, not tmpfs): the v4 sample's config, agents and architecture, and a PRD with \
             one epic of N stories. Wall time is from spawning `bmad-host run --json` to its \
             exit; run time is `run_finished.duration_ms`. A 1-story run with an empty \
             component cache comes first (the cold row); the others use that cache \
             (`BMAD_HOST_CACHE_DIR=target/bench/component-cache`).\n\
             - **tmpfs runs.** The same epics again with their projects (and so the journal) \
             in `/dev/shm`, where fsync returns at once: what the host costs apart from the \
             disk, whose flush latency drifts with whatever else the machine writes. Real \
             projects live on disks: the time and overhead targets are judged on the disk \
             runs; only the flatness of the per-story cost is judged on tmpfs.\n\
             - **Peak RSS.** `VmHWM` of the bmad-host process from `/proc/<pid>/status`, read \
             by the driver when each `story_finished` and the `run_finished` event arrive (the \
             high-water mark of the whole run up to then; the host only exits after that).\n\
             - **Baseline.** `BENCH_CLAUDE_DELAYS_MS={BASELINE_DELAYS}`: `bench-claude` sleeps \
             that long by role before running the fake. bmad-host is unchanged.\n\
             - **Teardown.** `host/benches/teardown.rs`: not criterion, every sample kept \
             (`target/bench/teardown.json`).\n\
             - **Micro-benchmarks.** criterion 0.7 with `--warm-up-time 1 --measurement-time 2` \
             (groups may set their own sample size): `plugins` (component load cold/cached, \
             status parse and policy calls), `status` (every story file of the corpus, native \
             and component), `journal` (one agent-call step: the intent an fsynced commit, the \
             result a relaxed one, in `TMPDIR`), `supervisor` (a supervised call against a bare spawn; teardown with \
             shell-script children), `stream` (50,000 stream-json lines in the real CLI's \
             shapes through `claude::run`, against a bare `cat`).\n\
             - No test asserts a time; `cargo xtask test` does not run benchmarks. Figures from \
             a shared or busy machine are noisy: compare runs on the same machine.\n\
             - Outputs and logs of the last run: `{}`.\n",
            self.ctx
                .out
                .strip_prefix(&self.ctx.root)
                .unwrap_or(&self.ctx.out)
                .display()
        );
    }
}

/// The `N` of `... (N lines)` in a benchmark id.
fn lines_in(id: &str) -> Option<u64> {
    let before = id.split(" lines").next()?;
    before
        .rsplit(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
}

// ---------------------------------------------------------------------------------------------
// Small helpers

/// The first three fields of `/proc/loadavg`.
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg").map_or("unknown".into(), |l| {
        l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    })
}

/// A reason that this run did not measure: labelled as such in the report.
fn note(text: &str) -> String {
    format!("*A note from reading the code, not measured in this run:* {text}")
}

/// Nearest-rank percentile of sorted samples (0 when empty).
fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Nanoseconds as µs or ms.
fn us(ns: u64) -> String {
    let ns = ns as f64;
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.1} µs", ns / 1e3)
    }
}

fn mins(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}m{:02}s", s / 60, s % 60)
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// `YYYY-MM-DD HH:MM UTC`.
fn utc_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), 50);
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&v, 1.0), 100);
        assert_eq!(percentile(&[7], 0.99), 7);
        assert_eq!(percentile(&[], 0.5), 0);
    }

    #[test]
    fn dates_and_line_counts() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_451_220);
        assert_eq!(utc_date(t), "2026-11-23 16:27 UTC");
        assert_eq!(lines_in("stream/claude::run (50000 lines)"), Some(50_000));
        assert_eq!(lines_in("stream/other"), None);
    }

    #[test]
    fn the_host_threads_of_a_trace_are_its_clone_thread_tasks() {
        let trace = "\
433   1.000001 execve(\"/bin/bmad-host\", [\"bmad-host\"], 0x1 /* 3 vars */) = 0
433   1.000002 clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM, child_tid=0x1}, 88) = 435
433   1.000003 clone3({flags=CLONE_VM|CLONE_THREAD|CLONE_SETTLS, child_tid=0x2}, 88 <unfinished ...>
435   1.000004 openat(AT_FDCWD</>, \"/proc/433/task\", O_RDONLY) = 5</proc/433/task>
433   1.000005 <... clone3 resumed> => {parent_tid=[436]}, 88) = 436
436   1.000006 clone3({flags=CLONE_VM|CLONE_VFORK, exit_signal=SIGCHLD}, 88) = 437
437   1.000007 execve(\"/bin/claude\", [\"claude\"], 0x1 /* 3 vars */) = 0
12345 1.000008 fsync(3</p/.bmad-host/journal.sqlite-wal>) = 0
";
        let host = host_threads(trace);
        let mut tids: Vec<u32> = host.into_iter().collect();
        tids.sort_unstable();
        assert_eq!(tids, [433, 435, 436]);
        let lines: Vec<_> = trace.lines().filter_map(strace_line).collect();
        assert_eq!(lines[3].0, 435);
        assert_eq!(syscall_name(lines[3].2), Some("openat"));
        assert_eq!(syscall_name(lines[4].2), None, "a resumed call counts once");
        assert_eq!(
            lines[7],
            (
                12345,
                "1.000008",
                "fsync(3</p/.bmad-host/journal.sqlite-wal>) = 0"
            )
        );
    }

    #[test]
    fn overheads_pair_each_exit_with_the_next_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("calls");
        fs::write(
            &log,
            "3000 3500 qa 1.1 0\n1000 1500 sm 1.1 0\n2000 2200 dev 1.1 0\n4000 4100 sm 1.2 0\n",
        )
        .expect("write");
        let calls = overheads(&log).expect("parse");
        assert_eq!(calls.count, 4);
        assert_eq!(calls.gaps, vec![500, 500, 800]);
        assert_eq!(calls.within, vec![500, 800]);
        assert_eq!(calls.agent_ns, 500 + 200 + 500 + 100);
    }

    #[test]
    fn generated_project_has_n_stories_and_none_drafted() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace")
            .to_path_buf();
        let dir = tempfile::tempdir().expect("tempdir");
        let project = dir.path().join("p");
        generate_project(&root, &project, 12).expect("generate");
        let prd = fs::read_to_string(project.join("docs/prd.md")).expect("prd");
        assert_eq!(prd.matches("\n### Story 1.").count(), 12);
        assert!(prd.contains("### Story 1.12: Feature 12"));
        let drafted = fs::read_dir(project.join("docs/stories"))
            .expect("stories dir")
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "md"))
            .count();
        assert_eq!(drafted, 0);
    }
}
