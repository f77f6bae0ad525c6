//! The parallel case of `cargo xtask bench` (`run --jobs N`): one epic of [`STORIES`]
//! independent stories (`same_epic = "parallel"`, none drafted: SM, Dev and QA each) in a git
//! repository, each agent call taking a fixed [`CALL_MS`] (`bench-claude` sleeps it before
//! running the instant fake: the agent's simulated work), at `--jobs` 1, 2, 4 and 8. Per run:
//! the wall time against the ideal (the calls' own time spread over min(jobs, stories) lanes,
//! nothing else), the speed-up over one job, and each integration's time from the journal's
//! `lane` records (intent to result: the git commands of one integration, as the project has no
//! gates to run again).

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::{Ctx, generate_project, percentile, us};

/// Stories in the epic.
pub(super) const STORIES: usize = 16;
/// The `--jobs` values run.
pub(super) const JOBS: [usize; 4] = [1, 2, 4, 8];
/// Each agent call's fixed time, in ms.
pub(super) const CALL_MS: u64 = 300;
/// Agent calls per story (SM, Dev, QA).
const CALLS_PER_STORY: usize = 3;

/// One run of the epic.
#[derive(Debug)]
pub(super) struct Row {
    pub jobs: usize,
    pub wall: Duration,
    /// The most stories in flight at once, from the NDJSON events.
    pub most_in_flight: usize,
    /// Each integration's time (its `lane` record, intent to result), ns, sorted.
    pub integrations: Vec<u64>,
}

impl Row {
    /// The wall time if nothing but the agents took time: each lane's stories one after the
    /// other.
    pub fn ideal(&self) -> Duration {
        let lanes = self.jobs.clamp(1, STORIES);
        let rounds = STORIES.div_ceil(lanes);
        Duration::from_millis(CALL_MS * (rounds * CALLS_PER_STORY) as u64)
    }
}

/// Runs the epic at each of [`JOBS`].
pub(super) fn run(ctx: &Ctx, work: &Path) -> Result<Vec<Row>> {
    eprintln!("\nparallel runs: {STORIES} stories, {CALL_MS} ms per agent call");
    JOBS.iter().map(|&jobs| run_jobs(ctx, work, jobs)).collect()
}

fn git(dir: &Path, args: &[&str]) -> Result<()> {
    let status = Command::new("git")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .status()
        .context("cannot run git")?;
    if !status.success() {
        bail!("git {} in {}: {status}", args.join(" "), dir.display());
    }
    Ok(())
}

fn run_jobs(ctx: &Ctx, work: &Path, jobs: usize) -> Result<Row> {
    let name = format!("parallel-{jobs}");
    let project = work.join(&name);
    generate_project(&ctx.root, &project, STORIES)?;
    fs::write(
        project.join("bmad-host.toml"),
        "[workflow]\nsame_epic = \"parallel\"\n",
    )?;
    git(&project, &["init", "--quiet", "--initial-branch=main"])?;
    git(&project, &["config", "user.name", "Bench"])?;
    git(&project, &["config", "user.email", "bench@localhost"])?;
    git(&project, &["add", "--all"])?;
    git(&project, &["commit", "--quiet", "-m", "initial"])?;
    let stderr_path = ctx.out.join(format!("{name}.stderr"));
    let stderr = fs::File::create(&stderr_path)
        .with_context(|| format!("cannot create {}", stderr_path.display()))?;
    let delays = format!("sm={CALL_MS},dev={CALL_MS},qa={CALL_MS}");
    eprint!("  --jobs {jobs}: ");
    let t0 = Instant::now();
    let mut child = Command::new(&ctx.bin)
        .args(["run", "--json", "--jobs", &jobs.to_string(), "--plugins"])
        .arg(&ctx.plugins)
        .arg("--project")
        .arg(&project)
        .arg("--claude-bin")
        .arg(&ctx.wrapper)
        .env("BMAD_HOST_CACHE_DIR", &ctx.cache)
        .env("BENCH_CLAUDE_REAL", &ctx.fake)
        .env("BENCH_CLAUDE_DELAYS_MS", &delays)
        .env_remove("BENCH_CLAUDE_LOG")
        .env_remove("FAKE_CLAUDE_SCRIPT")
        .env_remove("FAKE_CLAUDE_BEHAVIOUR")
        .env_remove("FAKE_CLAUDE_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("cannot run {}", ctx.bin.display()))?;
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let (mut done, mut in_flight, mut most) = (0usize, Vec::<String>::new(), 0usize);
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading bmad-host's NDJSON")?;
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let story = event["story"].as_str().unwrap_or_default().to_owned();
        match event["event"].as_str() {
            Some("story_started") if !in_flight.contains(&story) => {
                in_flight.push(story);
                most = most.max(in_flight.len());
            }
            Some("story_finished") => {
                done += usize::from(event["result"] == "done");
                // With one job a story is done when it finishes; with lanes, when integrated.
                if jobs == 1 || event["result"] != "done" {
                    in_flight.retain(|s| *s != story);
                }
            }
            Some("story_integrated") => in_flight.retain(|s| *s != story),
            _ => {}
        }
    }
    let status = child.wait().context("waiting for bmad-host")?;
    let wall = t0.elapsed();
    if !status.success() || done != STORIES {
        bail!(
            "bmad-host --jobs {jobs} on a {STORIES}-story epic: {status}, {done} stories done \
             (see {} and {})",
            stderr_path.display(),
            project.display()
        );
    }
    let integrations = integration_times(ctx, &project)?;
    if jobs > 1 && integrations.len() != STORIES {
        bail!(
            "--jobs {jobs}: {} integrations journaled, not {STORIES} (see {})",
            integrations.len(),
            project.display()
        );
    }
    let row = Row {
        jobs,
        wall,
        most_in_flight: most,
        integrations,
    };
    eprintln!(
        "{:.2} s wall (ideal {:.2} s), most in flight {most}{}",
        wall.as_secs_f64(),
        row.ideal().as_secs_f64(),
        if row.integrations.is_empty() {
            String::new()
        } else {
            format!(
                ", integration p50 {} max {}",
                us(percentile(&row.integrations, 0.5)),
                us(percentile(&row.integrations, 1.0))
            )
        }
    );
    let _ = fs::remove_dir_all(&project);
    Ok(row)
}

/// The integrations' times, from `bmad-host log --json`: each `lane` record of work
/// `integrate`, its result's time minus its intent's, ns, sorted.
fn integration_times(ctx: &Ctx, project: &Path) -> Result<Vec<u64>> {
    let out = Command::new(&ctx.bin)
        .args(["log", "--json", "--project"])
        .arg(project)
        .stdin(Stdio::null())
        .output()
        .context("cannot run bmad-host log")?;
    if !out.status.success() {
        bail!(
            "bmad-host log --json: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let at = |v: &Value| -> Option<SystemTime> { humantime::parse_rfc3339(v.as_str()?).ok() };
    let mut times: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|s| s["kind"] == "lane" && s["intent"]["work"] == "integrate")
        .filter_map(|s| {
            let d = at(&s["result_at"])?
                .duration_since(at(&s["intent_at"])?)
                .ok()?;
            u64::try_from(d.as_nanos()).ok()
        })
        .collect();
    times.sort_unstable();
    Ok(times)
}

/// The section of `BENCHMARKS.md`.
pub(super) fn render(rows: &[Row], s: &mut String) {
    let _ = write!(
        s,
        "\n## Parallel runs (`--jobs N`)\n\nThe release `bmad-host` on a generated BMAD v4 \
         project in a git repository: one epic of {STORIES} independent stories (`[workflow] \
         same_epic = \"parallel\"`, none drafted: SM, Dev and QA each), every agent call taking \
         a fixed {CALL_MS} ms (`bench-claude` sleeps that long, then runs the instant fake). \
         *Ideal* is the agents' own time spread over min(jobs, stories) lanes and nothing else \
         ({calls} calls × {CALL_MS} ms at one job); *speed-up* is the one-job wall time over \
         this one. With one job the stories run in the main checkout, one at a time (no \
         worktree, no integration); with more, each story runs in its own worktree and is \
         integrated onto `main` by the one integration lane (one commit per story). An \
         integration's time is its journal `lane` record's, from intent to result: the git \
         commands of one integration (commit, squash, rebase, fast-forward, worktree removal; \
         the project has no quality gates to run again). A lane stays taken until its story is \
         integrated, and integrations go one at a time: their sum is time the lanes wait on top \
         of the agents'.\n\n\
         | jobs | wall | ideal | over ideal | speed-up | ideal speed-up | most in flight | \
         integration p50 | integration max | integrations, summed |\n| ---: | ---: | ---: | ---: \
         | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        calls = STORIES * CALLS_PER_STORY,
    );
    let one = rows.iter().find(|r| r.jobs == 1).map(|r| r.wall);
    for r in rows {
        let ideal = r.ideal();
        let ideal_speedup = Duration::from_millis(CALL_MS * (STORIES * CALLS_PER_STORY) as u64)
            .as_secs_f64()
            / ideal.as_secs_f64();
        let speedup = one.map_or("–".to_owned(), |w| {
            format!("{:.2}×", w.as_secs_f64() / r.wall.as_secs_f64())
        });
        let (p50, max, sum) = if r.integrations.is_empty() {
            ("–".to_owned(), "–".to_owned(), "–".to_owned())
        } else {
            (
                us(percentile(&r.integrations, 0.5)),
                us(percentile(&r.integrations, 1.0)),
                us(r.integrations.iter().sum()),
            )
        };
        let _ = writeln!(
            s,
            "| {} | {:.2} s | {:.2} s | {:.2} s | {speedup} | {ideal_speedup:.2}× | {} | {p50} | \
             {max} | {sum} |",
            r.jobs,
            r.wall.as_secs_f64(),
            ideal.as_secs_f64(),
            r.wall.as_secs_f64() - ideal.as_secs_f64(),
            r.most_in_flight,
        );
    }
}
