//! `cargo xtask e2e-restate`: stories as Restate workflows on two workers. Needs npm (not part
//! of `cargo xtask test`; step 3 of `.ci/run`).
//!
//! It runs the engine's unit tests (built with the `restate` feature), installs the pinned
//! `@restatedev/restate-server` with npm into `target/e2e-restate/npm` (reused when present),
//! builds `bmad-host` with the feature (linted by clippy) and the fake Claude, then makes eight
//! checks, each with its own server, a bare git repository as the shared remote, two workers on
//! loopback each in a clone of its own, and `bmad-host balance` in front of them as the one
//! deployment the server knows (but in check 8); `bmad-host run --engine restate` (two jobs, but
//! in check 3) drives a BMAD epic from a third clone. Checks named on the command line (`run`,
//! `limit`, `cut`, `v6`, `conflict`, `gate`, `unresolved`, `jobs`) run alone.
//!
//! 1. A worker killed (8 stories). The Dev calls of 1.1 and 1.2 each wait on a FIFO the check
//!    holds open until both have opened theirs: both alive at once, each under its own worker
//!    (the balancer spread them), and the client prints their starts while they run. The Dev
//!    call of 1.4 is held on a FIFO, and once the client has printed its start, the worker
//!    running it is killed with SIGKILL. It asserts: exit 0 and every story done; the
//!    killed call made again (once) and no other agent call twice (the fake's calls are the
//!    journal's finished agent-call entries plus the killed one); the survivor waited for the
//!    dead worker's lease; never two copies of one story's call alive at once (the fake holds a
//!    lock per story and role for its whole life); each story's start and end printed once;
//!    every story landed exactly once on the shared branch, and is done there; `status` and
//!    `log --restate-admin` read the engine; nothing of the killed worker's call left (its
//!    keeper took the tree down at once); no process of the check left at the end, the
//!    server's included.
//! 2. A usage limit (4 stories). Worker-b's first Dev call hits its account's usage limit,
//!    resetting in 10 minutes. It asserts: exit 0 and every story done, long before the reset;
//!    worker-b made no call after the limited one and said it paused; the balancer skipped it;
//!    the limited call was redone on worker-a; every agent-call step made once but the limited
//!    one (twice); no overlap, nothing left.
//! 3. A worker cut off (1 story, the client for people). The ingress link of the worker running
//!    the Dev call is cut while the call runs. It asserts: the worker took its lease for lost
//!    and killed the call by itself; the other worker redid it, never beside the first copy;
//!    the local run's table printed; nothing left.
//! 4. BMAD v6 side by side (the v6 sample, 3 stories): every story done and landed, a
//!    sprint-status merged key by key, all three done in the shared branch's sprint-status.
//! 5. A conflict (2 stories whose Dev calls both create one file): the second's landing is
//!    refused (`integration_failed`, `back_to_dev`, naming the file) and it goes back to Dev in
//!    cycle 2, told the conflict; the worker running that Dev call is killed, the other one
//!    replays the first round, the refusal and the merge, and its Dev call resolves the
//!    conflict; both land (no other call made twice), exit 0.
//! 6. A gate on the merged result (2 stories, each adding a file of its own; the project's gate
//!    fails with both unless a fix is there): the second is refused naming the gate, back to
//!    Dev, whose call adds the fix; both land, exit 0.
//! 7. Conflict markers left (as 5, but Dev's second call leaves the conflict): the lane refuses
//!    the markers, the story escalates (exit 1), no marker lands.
//! 8. One worker, `--jobs 2`, registered alone: a stale worktree removed at its start, a second
//!    worker in its clone refused; 1.1's and 1.2's Dev calls alive at once under it, each in a
//!    worktree of its own; both land; the worktrees removed, its checkout as it was.
//!
//! `--bench` drives a 20-story epic once locally and once through one worker, and writes the
//! engine's cost per step and per story into BENCHMARKS.md.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::{Value, json};

/// The Restate server this is checked against.
const SERVER_VERSION: &str = "1.7.12";

/// Stories in the epic.
const STORIES: usize = 8;

/// How long a story's lease lasts without renewal (the survivor waits for it to expire).
const LEASE_TTL: &str = "4s";

/// The story whose Dev call is killed with its worker.
const KILLED: &str = "1.4";

/// The binaries, the server and the folder of one check.
struct Setup {
    root: PathBuf,
    bin: PathBuf,
    server: PathBuf,
    cache: PathBuf,
    work: PathBuf,
}

impl Setup {
    /// Builds bmad-host with the feature (linted by clippy, as `cargo xtask test` lints the
    /// default build) and the fake Claude, installs the server, empties `target/e2e-restate/NAME`.
    fn new(root: &Path, name: &str) -> Result<Setup> {
        let target = super::target_dir(root);
        super::build_plugins(root)?;
        let mut build = super::cargo();
        super::run(super::linted_by_clippy(build.current_dir(root))?.args([
            "build",
            "-p",
            "bmad-host-tests",
            "--features",
            "bmad-host/restate",
            "--bin",
            "bmad-host",
            "--bin",
            "fake-claude",
        ]))?;
        // The engine's own unit tests (the balancer's choice, ...), built with the feature.
        let mut unit = super::cargo();
        super::run(unit.current_dir(root).args([
            "test",
            "-p",
            "bmad-host",
            "--features",
            "restate",
            "--lib",
            "--",
            "engine::",
        ]))?;
        let server = ensure_server(&target.join("e2e-restate").join("npm"))?;
        let work = target.join("e2e-restate").join(name);
        let _ = fs::remove_dir_all(&work);
        fs::create_dir_all(&work)?;
        Ok(Setup {
            root: root.to_path_buf(),
            bin: target.join("debug"),
            server,
            cache: super::test_cache_dir(root),
            work,
        })
    }

    /// A generated v4 epic of `stories` stories at `work/NAME`, committed in a git work tree
    /// of its own (the workers keep each step's files as a commit of it).
    fn project(&self, name: &str, stories: usize) -> Result<PathBuf> {
        let project = self.work.join(name);
        super::bench::generate_project(&self.root, &project, stories)?;
        commit_all(&project)?;
        Ok(project)
    }

    /// A generated epic of `stories` stories as a bare repository, `remote.git`: the shared
    /// remote of the workers.
    fn shared_remote(&self, stories: usize) -> Result<PathBuf> {
        let seed = self.project("seed", stories)?;
        self.bare(&seed)
    }

    /// The project at `fixture` (committed) as the bare repository `remote.git`.
    fn shared_remote_of(&self, fixture: &Path) -> Result<PathBuf> {
        let seed = self.work.join("seed");
        super::copy_dir(fixture, &seed)?;
        commit_all(&seed)?;
        self.bare(&seed)
    }

    fn bare(&self, seed: &Path) -> Result<PathBuf> {
        let remote = self.work.join("remote.git");
        super::run(
            Command::new("git")
                .args(["clone", "--quiet", "--bare"])
                .arg(seed)
                .arg(&remote),
        )?;
        Ok(remote)
    }

    /// The same binaries and server, for another check in `target/e2e-restate/NAME` (emptied).
    fn sibling(&self, name: &str) -> Result<Setup> {
        let work = self.work.with_file_name(name);
        let _ = fs::remove_dir_all(&work);
        fs::create_dir_all(&work)?;
        Ok(Setup {
            root: self.root.clone(),
            bin: self.bin.clone(),
            server: self.server.clone(),
            cache: self.cache.clone(),
            work,
        })
    }

    /// A clone of `remote` at `work/NAME`.
    fn clone_of(&self, remote: &Path, name: &str) -> Result<PathBuf> {
        let dir = self.work.join(name);
        super::run(
            Command::new("git")
                .args(["clone", "--quiet"])
                .arg(remote)
                .arg(&dir),
        )?;
        Ok(dir)
    }

    /// Starts the server on free loopback ports; its ingress and admin ports once it listens.
    fn start_server(&self, procs: &mut Procs) -> Result<(u16, u16)> {
        let (ingress, admin, fabric) = (free_port()?, free_port()?, free_port()?);
        let mut child = Command::new(&self.server)
            .args(["--listen-mode", "tcp", "--no-logo", "--base-dir"])
            .arg(self.work.join("server"))
            .env(
                "RESTATE_INGRESS__BIND_ADDRESS",
                format!("127.0.0.1:{ingress}"),
            )
            .env("RESTATE_ADMIN__BIND_ADDRESS", format!("127.0.0.1:{admin}"))
            .env("RESTATE_BIND_ADDRESS", format!("127.0.0.1:{fabric}"))
            .env("RESTATE_LOG_DISABLE_ANSI_CODES", "true")
            .env("E2E_RESTATE_SERVER", self.work.as_os_str())
            // npm's `restate-server` is a Node.js wrapper that starts the server as its child:
            // both go with their process group.
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", self.server.display()))?;
        let out = child.stdout.take().context("server stdout")?;
        procs.add_group("restate-server", child);
        wait_for_line(
            out,
            &format!("server.port: {admin}"),
            &self.work.join("server.log"),
        )?;
        Ok((ingress, admin))
    }

    /// `bmad-host ARGS` on `project` with the fake Claude and the tests' component cache.
    fn bmad_host(&self, project: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.bin.join("bmad-host"));
        cmd.args(args)
            .arg("--project")
            .arg(project)
            .arg("--plugins")
            .arg(self.root.join("plugins"))
            .arg("--claude-bin")
            .arg(self.bin.join("fake-claude"))
            .env("BMAD_HOST_CACHE_DIR", &self.cache);
        cmd
    }

    /// Starts worker `name` on `port` (with `args` besides) and returns once it serves.
    #[allow(clippy::too_many_arguments, reason = "a worker's whole setup, named")]
    fn start_worker(
        &self,
        procs: &mut Procs,
        name: &str,
        port: u16,
        ingress: u16,
        project: &Path,
        env: &[(&str, &std::ffi::OsStr)],
        args: &[&str],
    ) -> Result<u32> {
        let mut cmd = self.bmad_host(project, &["worker", "--engine", "restate"]);
        cmd.args(args)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--restate")
            .arg(format!("http://127.0.0.1:{ingress}"))
            .args(["--lease-ttl", LEASE_TTL])
            .env("BMAD_HOST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(fs::File::create(self.work.join(format!("{name}.out")))?)
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("cannot start a worker")?;
        let err = child.stderr.take().context("worker stderr")?;
        let pid = child.id();
        procs.add(name, child);
        wait_for_line(
            err,
            "serving the story workflow",
            &self.work.join(format!("{name}.err")),
        )?;
        Ok(pid)
    }
}

/// Where two calls held side by side must run.
#[derive(Debug, Clone, Copy)]
enum Hosts<'a> {
    /// Each under its own worker of these.
    Apart(&'a [u32]),
    /// Both under this one worker.
    Together(u32),
}

/// Holds the FIFOs of `hold` open for writing until the Dev calls waiting on them have both
/// opened them (so both are alive), then checks from the fake's log that their keepers run under
/// the workers `hosts` says, and runs `while_held`; closes them (the calls go on). A call that
/// never opens its FIFO (one story waiting for the other) fails after a deadline.
fn both_held(
    hold: &[PathBuf; 2],
    log: &Path,
    hosts: Hosts<'_>,
    while_held: impl FnOnce() -> Result<()>,
) -> Result<()> {
    let (opened, held) = std::sync::mpsc::channel();
    for fifo in hold {
        let (fifo, opened) = (fifo.clone(), opened.clone());
        std::thread::spawn(move || {
            let _ = opened.send(fs::OpenOptions::new().write(true).open(&fifo));
        });
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut writers = Vec::new();
    while writers.len() < hold.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match held.recv_timeout(left) {
            Ok(writer) => writers.push(writer?),
            Err(_) => {
                // Each FIFO has a writer now (held here) or one waiting to open it (a thread):
                // a reader opens at once, and lets the waiting one go.
                for fifo in hold {
                    let _ = fs::File::open(fifo);
                }
                bail!("the Dev calls of 1.1 and 1.2 were not both running within 300 s");
            }
        }
    }
    let calls = read_calls(log)?;
    let host_of = |story: &str| -> Result<u32> {
        let call = calls
            .iter()
            .find(|c| c["role"] == "dev" && c["story"] == story)
            .with_context(|| format!("the Dev call of {story} is not in the fake's log"))?;
        let keeper = u32::try_from(call["ppid"].as_u64().unwrap_or(0))?;
        parent_of(keeper).with_context(|| format!("{story}'s keeper {keeper} has no parent"))
    };
    let (one, two) = (host_of("1.1")?, host_of("1.2")?);
    let seen = while_held();
    drop(writers);
    seen?;
    match hosts {
        Hosts::Apart(workers) => ensure!(
            workers.contains(&one) && workers.contains(&two) && one != two,
            "the Dev calls of 1.1 and 1.2 ran under {one} and {two}, not each under its own worker of {workers:?}"
        ),
        Hosts::Together(worker) => ensure!(
            one == worker && two == worker,
            "the Dev calls of 1.1 and 1.2 ran under {one} and {two}, not both under worker {worker}"
        ),
    }
    Ok(())
}

impl Setup {
    /// Starts `bmad-host balance` in front of the workers on `ports`; its port once it serves.
    fn start_balancer(
        &self,
        procs: &mut Procs,
        ports: &[u16],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Result<u16> {
        let port = free_port()?;
        let mut child = Command::new(self.bin.join("bmad-host"))
            .arg("balance")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(ports.iter().map(|p| format!("http://127.0.0.1:{p}")))
            .env("BMAD_HOST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start bmad-host balance")?;
        let err = child.stderr.take().context("balance stderr")?;
        procs.add("balance", child);
        wait_for_line(
            err,
            "bmad-host balance: serving",
            &self.work.join("balance.err"),
        )?;
        Ok(port)
    }
}

/// `git init`, and everything at `project` committed.
fn commit_all(project: &Path) -> Result<()> {
    for args in [
        &["init", "--quiet"][..],
        &["add", "--all"],
        &[
            "-c",
            "user.name=e2e",
            "-c",
            "user.email=e2e@localhost",
            "commit",
            "--quiet",
            "-m",
            "the epic",
        ],
    ] {
        super::run(Command::new("git").current_dir(project).args(args))?;
    }
    Ok(())
}

impl Setup {
    /// Clones of `remote` for two workers and the client.
    fn three_clones(&self, remote: &Path) -> Result<(PathBuf, PathBuf, PathBuf)> {
        Ok((
            self.clone_of(remote, "worker-a")?,
            self.clone_of(remote, "worker-b")?,
            self.clone_of(remote, "client")?,
        ))
    }

    /// Starts worker-a and worker-b in `clones`, each reaching the server's ingress at its port
    /// of `ingress`, with its `env`, and `bmad-host balance` in front of them, registered with
    /// the server whose admin API is on `admin`; the workers' pids.
    fn start_pair(
        &self,
        procs: &mut Procs,
        clones: [&Path; 2],
        ingress: [u16; 2],
        admin: u16,
        env: [&[(&str, &std::ffi::OsStr)]; 2],
    ) -> Result<[u32; 2]> {
        let ports = [free_port()?, free_port()?];
        let mut pids = [0; 2];
        for (i, name) in ["worker-a", "worker-b"].into_iter().enumerate() {
            pids[i] =
                self.start_worker(procs, name, ports[i], ingress[i], clones[i], env[i], &[])?;
        }
        let front = self.start_balancer(procs, &ports, env[0])?;
        register(admin, &format!("http://127.0.0.1:{front}"))?;
        Ok(pids)
    }

    /// `run --engine restate --json --jobs 2` (stories of one epic side by side) from `project`
    /// to its end, tagged `tag` (`trust`: the project's bmad-host.toml); its output, and its
    /// NDJSON lines (kept in `client.ndjson`).
    fn run_two_jobs(
        &self,
        project: &Path,
        ingress: u16,
        tag: &str,
        trust: bool,
    ) -> Result<(std::process::Output, Vec<Value>)> {
        let mut client = self.bmad_host(
            project,
            &["run", "--engine", "restate", "--json", "--jobs", "2"],
        );
        client
            .arg("--restate")
            .arg(format!("http://127.0.0.1:{ingress}"))
            .env("BMAD_HOST_WORKFLOW_SAME_EPIC", "parallel")
            .env("E2E_RESTATE_TAG", tag);
        if trust {
            client.env("BMAD_HOST_TRUST", "1");
        }
        let finished = client
            .output()
            .context("cannot run bmad-host run --engine restate")?;
        let out = String::from_utf8_lossy(&finished.stdout).into_owned();
        fs::write(self.work.join("client.ndjson"), &out)?;
        let events = out
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        Ok((finished, events))
    }
}

/// Registers `uri` as the deployment of the server whose admin API is on `admin`.
fn register(admin: u16, uri: &str) -> Result<()> {
    let (status, body) = http(admin, "POST", "/deployments", &json!({ "uri": uri }))?;
    ensure!(
        status / 100 == 2,
        "registering {uri}: HTTP {status}: {body}"
    );
    Ok(())
}

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    if args.iter().any(|a| a == "--bench") {
        return bench(root);
    }
    // Checks named on the command line (`run`, `limit`, ...): only those.
    let only: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    let wanted = |name: &str| only.is_empty() || only.contains(&name);
    let setup = Setup::new(root, "run")?;
    if wanted("run") {
        killed_worker(root, &setup)?;
    }
    if wanted("limit") {
        limited_worker(&setup.sibling("limit")?)?;
    }
    if wanted("cut") {
        cut_off_worker(&setup.sibling("cut")?)?;
    }
    if wanted("v6") {
        v6_side_by_side(root, &setup.sibling("v6")?)?;
    }
    if wanted("conflict") {
        not_landed(&setup.sibling("conflict")?, NotLanded::Conflict)?;
    }
    if wanted("gate") {
        not_landed(&setup.sibling("gate")?, NotLanded::Gate)?;
    }
    if wanted("unresolved") {
        not_landed(&setup.sibling("unresolved")?, NotLanded::Unresolved)?;
    }
    if wanted("jobs") {
        one_worker_two_stories(&setup.sibling("jobs")?)?;
    }
    Ok(())
}

/// The fake Claude of one check: its script, the log of its calls, the folder of its locks (a
/// call that finds its story's and role's lock taken logs `overlap`), and the tag its
/// processes carry (to find any left).
struct Fake {
    log: PathBuf,
    tag: String,
    script: PathBuf,
    exclusive: PathBuf,
}

impl Fake {
    /// The fake of check `name` in `work`, following `calls`.
    fn new(work: &Path, name: &str, calls: &[Value]) -> Result<Fake> {
        let exclusive = work.join("locks");
        fs::create_dir_all(&exclusive)?;
        let script = work.join("script.json");
        fs::write(&script, serde_json::to_vec(&json!({ "calls": calls }))?)?;
        Ok(Fake {
            log: work.join("calls.ndjson"),
            tag: format!("e2e-restate-{name}-{}", std::process::id()),
            script,
            exclusive,
        })
    }

    /// The environment of a worker whose calls are this fake.
    fn env(&self) -> Vec<(&'static str, &std::ffi::OsStr)> {
        vec![
            ("FAKE_CLAUDE_SCRIPT", self.script.as_os_str()),
            ("FAKE_CLAUDE_LOG", self.log.as_os_str()),
            ("FAKE_CLAUDE_EXCLUSIVE", self.exclusive.as_os_str()),
            ("E2E_RESTATE_TAG", std::ffi::OsStr::new(&self.tag)),
        ]
    }
}

/// The script entry of `story`'s first Dev call, held until `fifo` is closed (`held_by`).
fn held_dev_call(story: &str, fifo: &Path) -> Value {
    json!({ "role": "dev", "story": story, "occurrence": 1, "do": "play", "held_by": fifo })
}

/// The FIFOs that hold the Dev calls of 1.1 and 1.2 (`held_by`), made in `work`.
fn holds(work: &Path) -> Result<[PathBuf; 2]> {
    let hold = [work.join("hold-1.1"), work.join("hold-1.2")];
    for fifo in &hold {
        let status = Command::new("mkfifo").arg(fifo).status()?;
        ensure!(status.success(), "mkfifo {}", fifo.display());
    }
    Ok(hold)
}

/// On a thread: holds the Dev calls of 1.1 and 1.2 until both run, each on its own worker
/// ([`both_held`]), so that both stories start from the same shared branch.
fn side_by_side(
    hold: [PathBuf; 2],
    log: PathBuf,
    workers: [u32; 2],
) -> std::thread::JoinHandle<Result<()>> {
    std::thread::spawn(move || both_held(&hold, &log, Hosts::Apart(&workers), || Ok(())))
}

/// How the second of two stories side by side does not land at first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NotLanded {
    /// Both create `src/same.txt`, each with its own text; the refused one's second Dev call
    /// is killed with its worker, and the other worker's redoes it and resolves the conflict.
    Conflict,
    /// Each adds a file of its own to `feat/`; the project's gate fails with both unless
    /// `feat/fixed.txt` is there, which the refused one's second Dev call adds.
    Gate,
    /// As `Conflict`, but the second Dev call leaves the markers: the story escalates.
    Unresolved,
}

/// The main check: 8 stories, two jobs, a worker killed in the middle of a call.
fn killed_worker(root: &Path, setup: &Setup) -> Result<()> {
    let started = Instant::now();
    let work = setup.work.clone();
    let remote = setup.shared_remote(STORIES)?;
    let clone = |name: &str| setup.clone_of(&remote, name);
    let (clone_a, clone_b, project) = (clone("worker-a")?, clone("worker-b")?, clone("client")?);
    let go = work.join("go");
    let status = Command::new("mkfifo").arg(&go).status()?;
    ensure!(status.success(), "mkfifo {}", go.display());
    // The Dev calls of 1.1 and 1.2 (admitted together: two jobs) each wait on a FIFO of its own
    // and run as long as the check holds it open.
    let hold = holds(&work)?;
    let fake = Fake::new(
        &work,
        "run",
        &[
            json!({ "role": "dev", "story": KILLED, "occurrence": 1, "do": "play", "held_by": go }),
            held_dev_call("1.1", &hold[0]),
            held_dev_call("1.2", &hold[1]),
        ],
    )?;
    let (log, tag, env) = (&fake.log, &fake.tag, fake.env());
    let mut procs = Procs::default();
    let (ingress, admin) = setup.start_server(&mut procs)?;
    let [pid_a, pid_b] = setup.start_pair(
        &mut procs,
        [&clone_a, &clone_b],
        [ingress, ingress],
        admin,
        [&env, &env],
    )?;

    let client = setup
        .bmad_host(
            &project,
            &["run", "--engine", "restate", "--json", "--jobs", "2"],
        )
        .arg("--restate")
        .arg(format!("http://127.0.0.1:{ingress}"))
        .env("BMAD_HOST_WORKFLOW_SAME_EPIC", "parallel")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start bmad-host run --engine restate")?;

    // Both held calls alive at once, each on a worker of its own: the balancer spread them.
    // The client's lines, as it prints them.
    let mut client = client;
    let (printed, lines) = std::sync::mpsc::channel::<String>();
    let stdout = client.stdout.take().context("client stdout")?;
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            all.push_str(&line);
            all.push('\n');
            let _ = printed.send(line);
        }
        all
    });
    // Events arrive while their story runs: the held calls' `agent_started` are printed while
    // the calls cannot end.
    let live = || -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut started = std::collections::BTreeSet::new();
        while started.len() < 2 {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines.recv_timeout(left).context(
                "the held Dev calls' agent_started lines were not printed while they ran",
            )?;
            let event: Value = serde_json::from_str(&line).unwrap_or_default();
            if event["event"] == "agent_started" && event["role"] == "dev" {
                started.insert(event["story"].as_str().unwrap_or_default().to_string());
            }
        }
        Ok(())
    };
    let spread = both_held(&hold, log, Hosts::Apart(&[pid_a, pid_b]), live);
    // The Dev call of KILLED runs once its fake opens the FIFO (it has logged itself before),
    // and stays alive while the FIFO is held open: until its worker is killed.
    let go_writer = fs::OpenOptions::new().write(true).open(&go)?;
    // The client shows the call's start while it runs, before its worker is killed.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .context("the client did not print the Dev call of the story to kill while it ran")?;
        let event: Value = serde_json::from_str(&line).unwrap_or_default();
        if event["event"] == "agent_started" && event["role"] == "dev" && event["story"] == KILLED {
            break;
        }
    }
    let calls = read_calls(log)?;
    let killed_call = calls
        .iter()
        .rev()
        .find(|c| c["role"] == "dev" && c["story"] == KILLED)
        .context("the Dev call of the story to kill is not in the fake's log")?
        .clone();
    let keeper = u32::try_from(killed_call["ppid"].as_u64().unwrap_or(0))?;
    let host = parent_of(keeper).context("the killed call's keeper has no parent")?;
    ensure!(
        host == pid_a || host == pid_b,
        "the call's keeper {keeper} runs under {host}, not a worker ({pid_a}, {pid_b})"
    );
    let victim = if host == pid_a {
        "worker-a"
    } else {
        "worker-b"
    };
    eprintln!("e2e-restate: story {KILLED}'s Dev call runs on {victim} (pid {host}): SIGKILL");
    let killed_at = Instant::now();
    procs.kill(victim);
    let call_pid = u32::try_from(killed_call["pid"].as_u64().unwrap_or(0))?;
    let gone = wait_gone(&[keeper, call_pid], Duration::from_secs(30));
    let teardown = killed_at.elapsed();
    drop(go_writer);

    let finished = client.wait_with_output()?;
    let (out, err) = (
        reader.join().unwrap_or_default(),
        String::from_utf8_lossy(&finished.stderr).into_owned(),
    );
    let code = finished.status.code();
    fs::write(work.join("client.ndjson"), &out)?;
    let events: Vec<Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    // `status` and `log` read the engine's state of the run.
    let admin_url = format!("http://127.0.0.1:{admin}");
    let inspect = |command: &str| -> Result<Vec<Value>> {
        let out = Command::new(setup.bin.join("bmad-host"))
            .args([
                command,
                "--json",
                "--restate-admin",
                &admin_url,
                "--project",
            ])
            .arg(&project)
            .output()?;
        ensure!(
            out.status.success(),
            "bmad-host {command} --restate-admin: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    };
    let engine_status = inspect("status")?;
    let engine_log = inspect("log")?;
    let journal = http(
        admin,
        "POST",
        "/query",
        &json!({ "query": "SELECT name FROM sys_journal WHERE entry_type = 'Command: Run'" }),
    )?;
    procs.stop_all();

    let mut checks = Checks::default();
    checks.check(code == Some(0), format!("run exit code {code:?}: {err}"));
    if let Err(e) = &spread {
        checks.check(
            false,
            format!("stories 1.1 and 1.2 side by side, their events live: {e:#}"),
        );
    }
    let finished = events.iter().find(|e| e["event"] == "run_finished");
    checks.check(
        finished.is_some_and(|f| f["done"] == STORIES && f["engine"] == "restate"),
        format!("run_finished: {finished:?}"),
    );
    checks.check(
        gone.is_empty(),
        format!("the killed worker's call outlived it: {gone:?}"),
    );
    let calls = read_calls(log)?;
    let overlaps: Vec<&Value> = calls.iter().filter(|c| c["overlap"] == true).collect();
    checks.check(
        overlaps.is_empty(),
        format!("two copies of one story's call alive at once: {overlaps:?}"),
    );
    // Each finished agent-call step is one journal entry (its name without ` intent`).
    let rows: Vec<Value> = serde_json::from_str::<Value>(&journal.1)
        .ok()
        .and_then(|v| v["rows"].as_array().cloned())
        .unwrap_or_default();
    let mut finished_steps: BTreeMap<String, usize> = BTreeMap::new();
    for row in &rows {
        let name = row["name"].as_str().unwrap_or_default();
        if name.contains(" agent-call #") && !name.ends_with(" intent") {
            let story = name.split(' ').next().unwrap_or_default().to_string();
            let role = name.split(' ').nth(2).unwrap_or_default().to_string();
            *finished_steps.entry(format!("{story} {role}")).or_default() += 1;
        }
    }
    let mut made: BTreeMap<String, usize> = BTreeMap::new();
    for call in &calls {
        let key = format!(
            "{} {}",
            call["story"].as_str().unwrap_or_default(),
            call["role"].as_str().unwrap_or_default()
        );
        *made.entry(key).or_default() += 1;
    }
    let mut expected = finished_steps.clone();
    *expected.entry(format!("{KILLED} dev")).or_default() += 1;
    checks.check(
        made == expected,
        format!(
            "agent calls made {made:?}, but the journal's finished calls plus the killed one are {expected:?}"
        ),
    );
    // Each story's start and end shown once, the taken-over one's too (its survivor's replayed
    // events are not shown again).
    for name in ["story_started", "story_finished"] {
        let mut per_story: BTreeMap<String, usize> = BTreeMap::new();
        for e in events.iter().filter(|e| e["event"] == name) {
            *per_story
                .entry(e["story"].as_str().unwrap_or("?").to_string())
                .or_default() += 1;
        }
        checks.check(
            per_story.len() == STORIES && per_story.values().all(|&n| n == 1),
            format!("{name} lines per story: {per_story:?}"),
        );
    }
    // Every story landed on the shared branch exactly once, done.
    let landed: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "story_landed")
        .collect();
    checks.check(
        landed.len() == STORIES,
        format!("{} story_landed events, not {STORIES}", landed.len()),
    );
    let log = Command::new("git")
        .arg("--git-dir")
        .arg(&remote)
        .args(["log", "--format=%B", "HEAD"])
        .output()?;
    let mut trailers: BTreeMap<String, usize> = BTreeMap::new();
    for line in String::from_utf8_lossy(&log.stdout).lines() {
        if let Some(key) = line.strip_prefix("Bmad-Story: ") {
            *trailers.entry(key.to_string()).or_default() += 1;
        }
    }
    checks.check(
        trailers.len() == STORIES && trailers.values().all(|&n| n == 1),
        format!("the shared branch's story commits: {trailers:?}"),
    );
    let check_clone = clone("check")?;
    let status = Command::new(setup.bin.join("bmad-host"))
        .args(["status", "--json", "--project"])
        .arg(&check_clone)
        .arg("--plugins")
        .arg(root.join("plugins"))
        .env("BMAD_HOST_CACHE_DIR", &setup.cache)
        .output()?;
    let states: Vec<String> = String::from_utf8_lossy(&status.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|s| s["state"].as_str().unwrap_or("?").to_string())
        .collect();
    checks.check(
        states.len() == STORIES && states.iter().all(|s| s == "done"),
        format!("the stories on the shared branch: {states:?}"),
    );
    checks.check(
        engine_status.len() == STORIES && engine_status.iter().all(|s| s["status"] == "completed"),
        format!("status --restate-admin: {engine_status:?}"),
    );
    let killed_step = format!("{KILLED} c1 dev agent-call #0");
    let logged = engine_log
        .iter()
        .filter(|e| e["step"] == killed_step.as_str())
        .count();
    let stories_logged: std::collections::BTreeSet<&str> = engine_log
        .iter()
        .filter_map(|e| e["story"].as_str())
        .collect();
    checks.check(
        logged == 1 && stories_logged.len() == STORIES,
        format!("log --restate-admin: `{killed_step}` {logged} times, stories {stories_logged:?}"),
    );
    // The survivor took the story over only once the dead worker's lease had expired.
    let survivor = if victim == "worker-a" {
        "worker-b"
    } else {
        "worker-a"
    };
    let survivor_log = fs::read_to_string(work.join(format!("{survivor}.err"))).unwrap_or_default();
    checks.check(
        survivor_log.contains("the story's lease is held: waiting for it to expire"),
        format!("{survivor} did not wait for the dead worker's lease (see {survivor}.err)"),
    );
    let left = processes_with(&format!("E2E_RESTATE_TAG={tag}"));
    checks.check(left.is_empty(), format!("processes left: {left:?}"));
    // The server (npm's wrapper and the server it started) is gone too, once killed.
    let server = processes_with(&format!("E2E_RESTATE_SERVER={}", work.display()));
    let server_left = wait_gone(&server, Duration::from_secs(10));
    checks.check(
        server_left.is_empty(),
        format!("the Restate server outlived the check: {server_left:?}"),
    );

    let total_calls = calls.len();
    let steps: usize = finished_steps.values().sum();
    checks.report(&work, || {
        format!(
            "{STORIES} stories done through 2 workers; {victim} killed during {KILLED}'s Dev call, its tree gone {} ms after; \
             {total_calls} agent calls for {steps} journaled finished calls + 1 killed; the survivor waited for the lease ({LEASE_TTL}); each story landed once on the shared branch, done; status and log read the engine; no overlap, nothing left; {:.1}s (killed at {:.1}s)",
            teardown.as_millis(),
            started.elapsed().as_secs_f64(),
            killed_at.duration_since(started).as_secs_f64()
        )
    })
}

/// A check's findings: what failed, said at the end.
#[derive(Debug, Default)]
struct Checks(Vec<String>);

impl Checks {
    /// Notes `what` unless `ok`.
    fn check(&mut self, ok: bool, what: String) {
        if !ok {
            self.0.push(what);
        }
    }

    /// Notes a client that did not exit with `want`, with what it said.
    fn exit_code(&mut self, finished: &std::process::Output, want: i32) {
        let code = finished.status.code();
        self.check(
            code == Some(want),
            format!(
                "run exit code {code:?}, not {want}: {}",
                String::from_utf8_lossy(&finished.stderr)
            ),
        );
    }

    /// `PASS` and the line `pass` makes when nothing failed; else each failure, and an error
    /// naming the check's folder `work`.
    fn report(self, work: &Path, pass: impl FnOnce() -> String) -> Result<()> {
        if self.0.is_empty() {
            println!("e2e-restate PASS  {}", pass());
            return Ok(());
        }
        for f in &self.0 {
            eprintln!("e2e-restate FAIL: {f}");
        }
        bail!(
            "{} check(s) failed; the run's files are in {}",
            self.0.len(),
            work.display()
        )
    }
}

/// Stories of the usage-limit check.
const LIMIT_STORIES: usize = 4;

/// The second check: worker-b's account hits its usage limit (resetting in 10 minutes) on its
/// first Dev call. Asserts: the run still ends with every story done, well before the reset
/// (the limited story went on on worker-a); worker-b made no call after the limited one, and
/// said it paused; the balancer skipped it (and heard both workers' slots); the limited call
/// was redone (once) and no other call twice; no overlap, nothing left.
fn limited_worker(setup: &Setup) -> Result<()> {
    let started = Instant::now();
    let work = setup.work.clone();
    let remote = setup.shared_remote(LIMIT_STORIES)?;
    let (clone_a, clone_b, project) = setup.three_clones(&remote)?;
    let reset = Command::new("date")
        .args(["-u", "-d", "+10 min", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()?;
    let reset = String::from_utf8_lossy(&reset.stdout).trim().to_string();
    let limited = work.join("limited");
    let fake = Fake::new(
        &work,
        "limit",
        &[
            json!({ "role": "dev", "only_env": "E2E_WORKER=worker-b", "once": limited,
                  "do": "usage_limit", "reset": reset }),
        ],
    )?;
    let (log, tag) = (&fake.log, &fake.tag);
    let mut procs = Procs::default();
    let (ingress, admin) = setup.start_server(&mut procs)?;
    let env = |worker: &'static str| {
        let mut env = fake.env();
        env.push(("E2E_WORKER", std::ffi::OsStr::new(worker)));
        env
    };
    setup.start_pair(
        &mut procs,
        [&clone_a, &clone_b],
        [ingress, ingress],
        admin,
        [&env("worker-a"), &env("worker-b")],
    )?;
    let (finished, events) = setup.run_two_jobs(&project, ingress, tag, false)?;
    let journal = http(
        admin,
        "POST",
        "/query",
        &json!({ "query": "SELECT name FROM sys_journal WHERE entry_type = 'Command: Run'" }),
    )?;
    procs.stop_all();

    let mut checks = Checks::default();
    checks.exit_code(&finished, 0);
    let run_finished = events.iter().find(|e| e["event"] == "run_finished");
    checks.check(
        run_finished.is_some_and(|f| f["done"] == LIMIT_STORIES),
        format!("run_finished: {run_finished:?}"),
    );
    let calls = read_calls(log)?;
    let on = |call: &Value, worker: &str| {
        call["cwd"]
            .as_str()
            .is_some_and(|cwd| Path::new(cwd).starts_with(work.join(worker)))
    };
    let at = calls.iter().position(|c| c["do"] == "usage_limit");
    checks.check(
        at.is_some_and(|i| on(&calls[i], "worker-b")),
        format!(
            "no usage-limited call on worker-b in the fake's log ({} calls)",
            calls.len()
        ),
    );
    let at = at.unwrap_or(calls.len());
    let limited_story = calls
        .get(at)
        .and_then(|c| c["story"].as_str())
        .unwrap_or("?")
        .to_string();
    let after_on_b: Vec<String> = calls[at.saturating_add(1).min(calls.len())..]
        .iter()
        .filter(|c| on(c, "worker-b"))
        .map(|c| format!("{} {}", c["story"], c["role"]))
        .collect();
    checks.check(
        after_on_b.is_empty(),
        format!("worker-b made calls after its usage limit: {after_on_b:?}"),
    );
    let redone = calls[at.saturating_add(1).min(calls.len())..]
        .iter()
        .any(|c| c["story"] == limited_story && c["role"] == "dev" && on(c, "worker-a"));
    checks.check(
        redone,
        format!("the limited Dev call of {limited_story} was not redone on worker-a"),
    );
    let overlaps = calls.iter().filter(|c| c["overlap"] == true).count();
    checks.check(
        overlaps == 0,
        format!("{overlaps} calls overlapped a copy of themselves"),
    );
    // Each agent-call step of the engine's journal made once, the limited one twice (its entry
    // says it was left, and the redone call's is `<step> again`).
    let rows: Vec<Value> = serde_json::from_str::<Value>(&journal.1)
        .ok()
        .and_then(|v| v["rows"].as_array().cloned())
        .unwrap_or_default();
    let steps: std::collections::BTreeSet<&str> = rows
        .iter()
        .filter_map(|r| r["name"].as_str())
        .filter(|n| n.contains(" agent-call #"))
        .map(|n| n.trim_end_matches(" intent").trim_end_matches(" again"))
        .collect();
    let finished_calls = steps.len();
    checks.check(
        calls.len() == finished_calls + 1,
        format!(
            "{} agent calls made for {finished_calls} agent-call steps in the journal (plus the limited one): {steps:?}",
            calls.len()
        ),
    );
    let b_log = fs::read_to_string(work.join("worker-b.err")).unwrap_or_default();
    checks.check(
        b_log.contains("usage limit: this worker takes no story until the reset"),
        "worker-b did not say it paused (see worker-b.err)".into(),
    );
    let balance_log = fs::read_to_string(work.join("balance.err")).unwrap_or_default();
    checks.check(
        balance_log.contains("the worker takes nothing for now: skipped"),
        "the balancer did not skip the paused worker (see balance.err)".into(),
    );
    // Each worker's answers said its slots (one story at once).
    let heard: std::collections::BTreeSet<&str> = balance_log
        .lines()
        .filter(|l| l.contains("the worker's slots") && l.contains("slots=1"))
        .filter_map(|l| l.split("worker=").nth(1)?.split_whitespace().next())
        .collect();
    checks.check(
        heard.len() == 2,
        format!("the balancer heard the slots of {heard:?}, not of both workers"),
    );
    let left = processes_with(&format!("E2E_RESTATE_TAG={tag}"));
    checks.check(left.is_empty(), format!("processes left: {left:?}"));
    checks.report(&work, || {
        format!(
            "usage limit on worker-b (reset {reset}) at its Dev call of {limited_story}: worker-b took no story after it, \
             the balancer skipped it, {limited_story} went on on worker-a; {LIMIT_STORIES} stories done in {:.1}s, not waiting for the reset; \
             {} agent calls for {finished_calls} journaled agent-call steps + the limited one redone; no overlap, nothing left",
            started.elapsed().as_secs_f64(),
            calls.len()
        )
    })
}

/// The third check: the worker running story 1.1's Dev call is cut off from the server's
/// ingress (where it renews the story's lease) while the call runs. Asserts: the worker takes
/// its lease for lost and tears the call down by itself (it says so; the call's process ends);
/// the other worker redoes the call, and never while the first copy was alive (the fake's lock);
/// the story is done; nothing left.
fn cut_off_worker(setup: &Setup) -> Result<()> {
    let started = Instant::now();
    let work = setup.work.clone();
    let remote = setup.shared_remote(1)?;
    let (clone_a, clone_b, project) = setup.three_clones(&remote)?;
    let hold = work.join("hold");
    let status = Command::new("mkfifo").arg(&hold).status()?;
    ensure!(status.success(), "mkfifo {}", hold.display());
    let fake = Fake::new(&work, "cut", &[held_dev_call("1.1", &hold)])?;
    let (log, tag, env) = (&fake.log, &fake.tag, fake.env());
    let mut procs = Procs::default();
    let (ingress, admin) = setup.start_server(&mut procs)?;
    // Each worker reaches the ingress through a link of its own that the check can cut.
    let (link_a, link_b) = (Link::start(ingress)?, Link::start(ingress)?);
    setup.start_pair(
        &mut procs,
        [&clone_a, &clone_b],
        [link_a.port, link_b.port],
        admin,
        [&env, &env],
    )?;
    // For people this time: the local run's lines and table.
    let client = setup
        .bmad_host(&project, &["run", "--engine", "restate"])
        .arg("--restate")
        .arg(format!("http://127.0.0.1:{ingress}"))
        .env("E2E_RESTATE_TAG", tag)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start bmad-host run --engine restate")?;
    // The Dev call runs, held, once its fake has opened the FIFO.
    let writer = fs::OpenOptions::new().write(true).open(&hold)?;
    let calls = read_calls(log)?;
    let held = calls
        .iter()
        .find(|c| c["role"] == "dev")
        .context("the Dev call is not in the fake's log")?
        .clone();
    let on_a = held["cwd"]
        .as_str()
        .is_some_and(|cwd| Path::new(cwd).starts_with(&clone_a));
    let (victim, survivor, link) = if on_a {
        ("worker-a", "worker-b", &link_a)
    } else {
        ("worker-b", "worker-a", &link_b)
    };
    let call_pid = u32::try_from(held["pid"].as_u64().unwrap_or(0))?;
    let keeper = u32::try_from(held["ppid"].as_u64().unwrap_or(0))?;
    eprintln!(
        "e2e-restate: story 1.1's Dev call runs on {victim}: cutting it off from the ingress"
    );
    let cut_at = Instant::now();
    link.cut();
    // Its own worker stops it: nothing here kills it.
    let alive = wait_gone(&[call_pid, keeper], Duration::from_secs(60));
    let torn_down = cut_at.elapsed();
    drop(writer);
    let finished = client.wait_with_output()?;
    procs.stop_all();

    let people = String::from_utf8_lossy(&finished.stderr).into_owned();
    fs::write(work.join("client.err"), &people)?;
    let mut checks = Checks::default();
    let code = finished.status.code();
    checks.check(code == Some(0), format!("run exit code {code:?}: {people}"));
    let row = people
        .lines()
        .find(|l| l.starts_with("1.1 "))
        .unwrap_or_default();
    checks.check(
        people.contains("running ")
            && row.split_whitespace().nth(1) == Some("done")
            && people.contains("* API-equivalent cost"),
        format!(
            "the output for people (client.err) lacks its start or its table row `1.1 done`: {people}"
        ),
    );
    checks.check(
        alive.is_empty(),
        format!("the cut-off worker's call is still alive 60 s after the cut: {alive:?}"),
    );
    let victim_log = fs::read_to_string(work.join(format!("{victim}.err"))).unwrap_or_default();
    checks.check(
        victim_log.contains("lost the story's lease"),
        format!("{victim} did not say it lost the lease (see {victim}.err)"),
    );
    let calls = read_calls(log)?;
    let devs: Vec<&Value> = calls.iter().filter(|c| c["role"] == "dev").collect();
    let redone_on_survivor = devs.len() == 2
        && devs[1]["cwd"]
            .as_str()
            .is_some_and(|cwd| Path::new(cwd).starts_with(work.join(survivor)));
    checks.check(
        redone_on_survivor,
        format!("the Dev call was not made once more, on {survivor}: {devs:?}"),
    );
    let overlaps = calls.iter().filter(|c| c["overlap"] == true).count();
    checks.check(
        overlaps == 0,
        format!("{overlaps} calls overlapped a live copy of themselves"),
    );
    let left = processes_with(&format!("E2E_RESTATE_TAG={tag}"));
    checks.check(left.is_empty(), format!("processes left: {left:?}"));
    checks.report(&work, || {
        format!(
            "{victim} cut off from the ingress during 1.1's Dev call: it took its lease ({LEASE_TTL}) for lost and tore the call down {} ms after the cut; \
             {survivor} redid the call, never beside the first copy; the story done in {:.1}s; nothing left",
            torn_down.as_millis(),
            started.elapsed().as_secs_f64()
        )
    })
}

/// The fourth check: the BMAD v6 sample (3 stories, a sprint-status with their keys on
/// neighbouring lines), two jobs side by side. Asserts: every story done and landed, the
/// sprint-status of stories that ran side by side merged key by key (a worker says so), and the
/// shared branch's sprint-status has every story `done`; nothing left.
fn v6_side_by_side(root: &Path, setup: &Setup) -> Result<()> {
    let started = Instant::now();
    let work = setup.work.clone();
    let remote = setup.shared_remote_of(&root.join("tests/fixtures/v6-sample"))?;
    let (clone_a, clone_b, project) = setup.three_clones(&remote)?;
    let hold = holds(&work)?;
    let fake = Fake::new(
        &work,
        "v6",
        &[
            held_dev_call("1.1", &hold[0]),
            held_dev_call("1.2", &hold[1]),
        ],
    )?;
    let (log, tag, env) = (&fake.log, &fake.tag, fake.env());
    let mut procs = Procs::default();
    let (ingress, admin) = setup.start_server(&mut procs)?;
    let pids = setup.start_pair(
        &mut procs,
        [&clone_a, &clone_b],
        [ingress, ingress],
        admin,
        [&env, &env],
    )?;
    let together = side_by_side(hold, log.clone(), pids);
    let (finished, events) = setup.run_two_jobs(&project, ingress, tag, false)?;
    procs.stop_all();
    let together = together
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("panicked")));

    let mut checks = Checks::default();
    checks.exit_code(&finished, 0);
    let landed = events
        .iter()
        .filter(|e| e["event"] == "story_landed")
        .count();
    let run_finished = events.iter().find(|e| e["event"] == "run_finished");
    checks.check(
        run_finished.is_some_and(|f| f["done"] == 3) && landed == 3,
        format!("run_finished: {run_finished:?}; {landed} stories landed"),
    );
    if let Err(e) = &together {
        checks.check(
            false,
            format!("1.1's and 1.2's Dev calls side by side: {e:#}"),
        );
    }
    let merged_by_key = ["worker-a", "worker-b"].iter().any(|w| {
        fs::read_to_string(work.join(format!("{w}.err")))
            .is_ok_and(|l| l.contains("merged the sprint-status key by key"))
    });
    checks.check(
        merged_by_key,
        "no worker merged a sprint-status key by key: the stories did not land side by side".into(),
    );
    let sprint = Command::new("git")
        .arg("--git-dir")
        .arg(&remote)
        .args([
            "show",
            "HEAD:_bmad-output/implementation-artifacts/sprint-status.yaml",
        ])
        .output()?;
    let sprint = String::from_utf8_lossy(&sprint.stdout).into_owned();
    let values: Vec<String> = sprint
        .lines()
        .filter(|l| l.trim_start().starts_with("1-"))
        .map(|l| l.trim().to_string())
        .collect();
    checks.check(
        values.len() == 3 && values.iter().all(|v| v.contains(": done")),
        format!("the shared branch's sprint-status stories: {values:?}"),
    );
    let left = processes_with(&format!("E2E_RESTATE_TAG={tag}"));
    checks.check(left.is_empty(), format!("processes left: {left:?}"));
    checks.report(&work, || {
        format!(
            "BMAD v6, 2 jobs: 3 stories done and landed in {:.1}s, the sprint-status of stories run side by side merged key by key; all three done on the shared branch; nothing left",
            started.elapsed().as_secs_f64()
        )
    })
}

/// Checks 5, 6 and 7: two stories side by side, the second of which does not
/// land as it is (`how`). Asserts: one `integration_failed` (back to Dev), naming the file or
/// the gate; the refused story's Dev call made again, in cycle 2, with the conflict markers in
/// its file (a conflict); then both stories done and landed, the shared branch holding the
/// resolution (exit 0), or, the markers left, the lane refusing the story again and the story
/// escalated (exit 1); nothing left.
fn not_landed(setup: &Setup, how: NotLanded) -> Result<()> {
    let started = Instant::now();
    let work = setup.work.clone();
    let seed = setup.project("seed", 2)?;
    if how == NotLanded::Gate {
        // Passes on each story's own work tree, fails once both have landed without the fix.
        fs::write(
            seed.join("bmad-host.toml"),
            "[[gates]]\nname = \"one-feature\"\ncommand = \"test ! -f feat/a.txt || test ! -f feat/b.txt || test -f feat/fixed.txt\"\n",
        )?;
        super::run(
            Command::new("git")
                .current_dir(&seed)
                .args(["add", "--all"]),
        )?;
        super::run(Command::new("git").current_dir(&seed).args([
            "-c",
            "user.name=e2e",
            "-c",
            "user.email=e2e@localhost",
            "commit",
            "--quiet",
            "-m",
            "a gate",
        ]))?;
    }
    let remote = setup.bare(&seed)?;
    let (clone_a, clone_b, project) = setup.three_clones(&remote)?;
    let hold = holds(&work)?;
    // The refused story's second Dev call waits on it (a conflict), and its worker is killed.
    let go = work.join("go");
    let status = Command::new("mkfifo").arg(&go).status()?;
    ensure!(status.success(), "mkfifo {}", go.display());
    let (one, two, fix) = match how {
        NotLanded::Conflict => (
            ("src/same.txt", "one\n"),
            ("src/same.txt", "two\n"),
            json!({ "src/same.txt": "one and two\n" }),
        ),
        NotLanded::Gate => (
            ("feat/a.txt", "a\n"),
            ("feat/b.txt", "b\n"),
            json!({ "feat/fixed.txt": "fixed\n" }),
        ),
        NotLanded::Unresolved => (
            ("src/same.txt", "one\n"),
            ("src/same.txt", "two\n"),
            json!({ "src/other.txt": "not the conflict\n" }),
        ),
    };
    let mut calls = vec![
        json!({ "role": "dev", "story": "1.1", "occurrence": 1, "held_by": hold[0], "write_files": { one.0: one.1 } }),
        json!({ "role": "dev", "story": "1.2", "occurrence": 1, "held_by": hold[1], "write_files": { two.0: two.1 } }),
    ];
    if how == NotLanded::Conflict {
        calls.push(json!({ "role": "dev", "occurrence": 2, "held_by": go, "write_files": fix }));
    }
    calls.push(json!({ "role": "dev", "write_files": fix }));
    let fake = Fake::new(&work, "landing", &calls)?;
    let (log, tag) = (&fake.log, &fake.tag);
    let mut env = fake.env();
    // The seed's bmad-host.toml (its gate) is the check's own.
    env.push(("BMAD_HOST_TRUST", std::ffi::OsStr::new("1")));
    let mut procs = Procs::default();
    let (ingress, admin) = setup.start_server(&mut procs)?;
    let pids = setup.start_pair(
        &mut procs,
        [&clone_a, &clone_b],
        [ingress, ingress],
        admin,
        [&env, &env],
    )?;
    let together = side_by_side(hold, log.clone(), pids);
    let killer = (how == NotLanded::Conflict).then(|| {
        let (go, log) = (go.clone(), log.clone());
        std::thread::spawn(move || kill_second_dev_call(&go, &log, pids))
    });
    let (finished, events) = setup.run_two_jobs(&project, ingress, tag, true)?;
    // A second Dev call that never came: the killer's FIFO has a reader now (which does not
    // wait for a writer), and it goes on.
    let _ = fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(&go);
    procs.stop_all();
    let together = together
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("panicked")));
    let killed = killer.map(|k| {
        k.join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("panicked")))
    });

    let mut checks = Checks::default();
    if let Some(Err(e)) = &killed {
        checks.check(
            false,
            format!("killing the second Dev call's worker: {e:#}"),
        );
    }
    let escalates = how == NotLanded::Unresolved;
    checks.exit_code(&finished, if escalates { 1 } else { 0 });
    if let Err(e) = &together {
        checks.check(
            false,
            format!("1.1's and 1.2's Dev calls side by side: {e:#}"),
        );
    }
    let named =
        |name: &str| -> Vec<&Value> { events.iter().filter(|e| e["event"] == name).collect() };
    let failed = named("integration_failed");
    let landed = named("story_landed").len();
    let first = failed.first().copied().cloned().unwrap_or_default();
    let refused = first["story"].as_str().unwrap_or_default().to_string();
    let reason = first["reason"].as_str().unwrap_or_default().to_string();
    let why = match how {
        NotLanded::Conflict | NotLanded::Unresolved => "src/same.txt",
        NotLanded::Gate => "gate `one-feature` failed after integration",
    };
    checks.check(
        first["back_to_dev"] == true && reason.contains("does not land") && reason.contains(why),
        format!("the first integration_failed: {first}"),
    );
    if how == NotLanded::Conflict {
        checks.check(
            first["files"] == json!(["src/same.txt"]),
            format!("the conflict's files: {}", first["files"]),
        );
    }
    // The refused story's Dev call again, in cycle 2, on the merged files (twice when the first
    // copy was killed with its worker).
    let calls = read_calls(log)?;
    let again: Vec<&Value> = calls
        .iter()
        .filter(|c| {
            c["role"] == "dev"
                && c["story"] == refused.as_str()
                && c["occurrence"].as_u64() >= Some(2)
        })
        .collect();
    let copies = if killed.is_some() { 2 } else { 1 };
    // Nothing else made twice: the worker that took the story over replayed the first round,
    // the lane's refusal and the merge.
    let made = |role: &str| {
        calls
            .iter()
            .filter(|c| c["role"] == role && c["story"] == refused.as_str())
            .count()
    };
    checks.check(
        made("sm") == 1 && made("dev") == 1 + copies && made("qa") == 2,
        format!(
            "{refused}'s calls: sm {}, dev {}, qa {} (want 1, {}, 2)",
            made("sm"),
            made("dev"),
            made("qa"),
            1 + copies
        ),
    );
    // Dev is told what the lane found.
    let told = match how {
        NotLanded::Gate => "quality gate `one-feature` failed on the story integrated",
        _ => "integration conflict",
    };
    checks.check(
        again.len() == copies
            && again.iter().all(|c| {
                c["env"]["BMAD_HOST_CYCLE"] == "2"
                    && c["prompt"].as_str().is_some_and(|p| p.contains(told))
            }),
        format!("{refused}'s Dev calls after the refusal (told `{told}`): {again:?}"),
    );
    let last_end = named("story_finished")
        .into_iter()
        .rev()
        .find(|e| e["story"] == refused.as_str())
        .cloned()
        .unwrap_or_default();
    let shared_file = |path: &str| {
        Command::new("git")
            .arg("--git-dir")
            .arg(&remote)
            .args(["show", &format!("HEAD:{path}")])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let run_finished = named("run_finished")
        .first()
        .copied()
        .cloned()
        .unwrap_or_default();
    if escalates {
        checks.check(
            failed.len() == 2
                && failed[1]["back_to_dev"] == false
                && failed[1]["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("conflict markers left in src/same.txt")),
            format!("the second integration_failed: {:?}", failed.get(1)),
        );
        checks.check(
            landed == 1 && last_end["result"] == "escalated",
            format!("{landed} landed; {refused}'s last end: {last_end}"),
        );
        checks.check(
            run_finished["done"] == 1 && run_finished["escalated"] == 1,
            format!("run_finished: {run_finished}"),
        );
        checks.check(
            !shared_file("src/same.txt").contains("<<<<<<<"),
            "conflict markers landed on the shared branch".into(),
        );
    } else {
        checks.check(
            failed.len() == 1 && landed == 2,
            format!("{landed} landed, integration_failed {failed:?}"),
        );
        checks.check(
            last_end["result"] == "done" && last_end["cycles"] == 2,
            format!("{refused}'s last end: {last_end}"),
        );
        checks.check(
            run_finished["done"] == 2 && run_finished["exit_code"] == 0,
            format!("run_finished: {run_finished}"),
        );
        let on_shared = match how {
            NotLanded::Conflict => shared_file("src/same.txt") == "one and two\n",
            _ => ["feat/a.txt", "feat/b.txt", "feat/fixed.txt"]
                .iter()
                .all(|f| !shared_file(f).is_empty()),
        };
        checks.check(on_shared, "the shared branch lacks the resolution".into());
    }
    let left = processes_with(&format!("E2E_RESTATE_TAG={tag}"));
    checks.check(left.is_empty(), format!("processes left: {left:?}"));
    checks.report(&work, || {
        let end = match (escalates, &killed) {
            (true, _) => "refused again with the markers left: escalated, exit 1".to_string(),
            (false, Some(Ok(victim))) => format!(
                "{victim} killed during that Dev call; the other worker replayed the first round, the refusal and the merge, and its Dev call fixed it; both landed, exit 0"
            ),
            _ => "Dev's second call fixed it; both landed, exit 0".to_string(),
        };
        format!(
            "two stories side by side ({how:?}): {refused} refused by the lane (`{reason}`), back to Dev in cycle 2; {end}; {:.1}s; nothing left",
            started.elapsed().as_secs_f64()
        )
    })
}

/// Holds the FIFO `go` open for writing until a second Dev call opens it, then kills (SIGKILL)
/// the worker of `workers` it runs under, and waits for the call's tree to go; the victim's
/// name.
fn kill_second_dev_call(go: &Path, log: &Path, workers: [u32; 2]) -> Result<String> {
    let writer = fs::OpenOptions::new().write(true).open(go)?;
    let calls = read_calls(log)?;
    let call = calls
        .iter()
        .rev()
        .find(|c| c["role"] == "dev" && c["occurrence"] == 2)
        .context("no second Dev call in the fake's log")?;
    let keeper = u32::try_from(call["ppid"].as_u64().unwrap_or(0))?;
    let host = parent_of(keeper).context("the second Dev call's keeper has no parent")?;
    let victim = match workers.iter().position(|&w| w == host) {
        Some(0) => "worker-a",
        Some(_) => "worker-b",
        None => bail!("the second Dev call's keeper {keeper} runs under {host}, not a worker"),
    };
    eprintln!("e2e-restate: the second Dev call runs on {victim} (pid {host}): SIGKILL");
    let pid = i32::try_from(host)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .context("the worker's pid")?;
    rustix::process::kill_process(pid, rustix::process::Signal::KILL)?;
    let call_pid = u32::try_from(call["pid"].as_u64().unwrap_or(0))?;
    let left = wait_gone(&[keeper, call_pid], Duration::from_secs(30));
    drop(writer);
    ensure!(
        left.is_empty(),
        "the killed call's tree is still alive: {left:?}"
    );
    Ok(victim.to_string())
}

/// Check 8: one worker with `--jobs 2`, registered with the server by itself, and
/// two stories. Their Dev calls are held until both are alive: both under that worker, each in
/// a worktree of its own. Asserts: both stories done and landed; the worktrees gone at the end
/// and the worker's own checkout as it was; no overlap, nothing left.
fn one_worker_two_stories(setup: &Setup) -> Result<()> {
    let started = Instant::now();
    let work = setup.work.clone();
    let remote = setup.shared_remote(2)?;
    let worker = setup.clone_of(&remote, "worker")?;
    let project = setup.clone_of(&remote, "client")?;
    let head_before = git_out(&worker, &["rev-parse", "HEAD"])?;
    let hold = holds(&work)?;
    let fake = Fake::new(
        &work,
        "jobs",
        &[
            held_dev_call("1.1", &hold[0]),
            held_dev_call("1.2", &hold[1]),
        ],
    )?;
    let (log, tag, env) = (&fake.log, &fake.tag, fake.env());
    let mut procs = Procs::default();
    let (ingress, admin) = setup.start_server(&mut procs)?;
    // A story worktree a stopped worker left behind.
    let stale = worker.join(".bmad-host").join("workflows").join("stale");
    fs::create_dir_all(stale.parent().context("a parent")?)?;
    git_out(
        &worker,
        &[
            "worktree",
            "add",
            "--quiet",
            "--detach",
            &stale.to_string_lossy(),
        ],
    )?;
    let port = free_port()?;
    let pid = setup.start_worker(
        &mut procs,
        "worker",
        port,
        ingress,
        &worker,
        &env,
        &["--jobs", "2"],
    )?;
    register(admin, &format!("http://127.0.0.1:{port}"))?;
    let mut checks = Checks::default();
    checks.check(
        !stale.exists(),
        format!("the stale worktree {} is still there", stale.display()),
    );
    // A second worker in the same clone is refused.
    let mut second = setup
        .bmad_host(&worker, &["worker", "--engine", "restate"])
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()?))
        .arg("--restate")
        .arg(format!("http://127.0.0.1:{ingress}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let alive = wait_gone(&[second.id()], Duration::from_secs(60));
    if !alive.is_empty() {
        let _ = second.kill();
    }
    let refused = second.wait_with_output()?;
    let said = String::from_utf8_lossy(&refused.stderr).into_owned();
    checks.check(
        alive.is_empty()
            && refused.status.code() != Some(0)
            && said.contains("another bmad-host run is in progress"),
        format!(
            "a second worker in the clone: {:?}, {said}",
            refused.status.code()
        ),
    );
    let held_log = log.clone();
    let together =
        std::thread::spawn(move || both_held(&hold, &held_log, Hosts::Together(pid), || Ok(())));
    let (finished, events) = setup.run_two_jobs(&project, ingress, tag, false)?;
    procs.stop_all();
    let together = together
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("panicked")));

    checks.exit_code(&finished, 0);
    if let Err(e) = &together {
        checks.check(false, format!("1.1's and 1.2's Dev calls at once: {e:#}"));
    }
    let landed = events
        .iter()
        .filter(|e| e["event"] == "story_landed")
        .count();
    let run_finished = events.iter().find(|e| e["event"] == "run_finished");
    checks.check(
        run_finished.is_some_and(|f| f["done"] == 2) && landed == 2,
        format!("run_finished: {run_finished:?}; {landed} stories landed"),
    );
    let calls = read_calls(log)?;
    let dirs: std::collections::BTreeSet<String> = calls
        .iter()
        .filter(|c| c["role"] == "dev")
        .filter_map(|c| c["cwd"].as_str().map(str::to_string))
        .collect();
    let worktrees = worker.join(".bmad-host").join("workflows");
    checks.check(
        dirs.len() == 2 && dirs.iter().all(|d| Path::new(d).starts_with(&worktrees)),
        format!(
            "the Dev calls' folders {dirs:?}: not two worktrees in {}",
            worktrees.display()
        ),
    );
    let overlaps = calls.iter().filter(|c| c["overlap"] == true).count();
    checks.check(overlaps == 0, format!("{overlaps} calls overlapped"));
    let listed = git_out(&worker, &["worktree", "list", "--porcelain"])?;
    let left_trees: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.strip_prefix("worktree "))
        .filter(|t| t.contains("/.bmad-host/workflows/"))
        .collect();
    checks.check(
        left_trees.is_empty(),
        format!("worktrees left: {left_trees:?}"),
    );
    let status = git_out(&worker, &["status", "--porcelain"])?;
    let head_after = git_out(&worker, &["rev-parse", "HEAD"])?;
    checks.check(
        status.is_empty() && head_after == head_before,
        format!(
            "the worker's checkout changed: HEAD {head_before} -> {head_after}, status {status:?}"
        ),
    );
    let left = processes_with(&format!("E2E_RESTATE_TAG={tag}"));
    checks.check(left.is_empty(), format!("processes left: {left:?}"));
    checks.report(&work, || {
        format!(
            "one worker, --jobs 2: a stale worktree removed at its start, a second worker in its clone refused; both Dev calls alive at once under it, each in its own worktree; 2 stories done and landed in {:.1}s; worktrees removed, its checkout untouched; nothing left",
            started.elapsed().as_secs_f64()
        )
    })
}

/// `git ARGS` in `dir`, its output trimmed.
fn git_out(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git").current_dir(dir).args(args).output()?;
    ensure!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A TCP link to 127.0.0.1:`to` that the check can cut: from then on, every connection through
/// it is shut, and each new one closed at once.
struct Link {
    port: u16,
    cut: Arc<AtomicBool>,
    open: Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

impl Link {
    fn start(to: u16) -> Result<Link> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let cut = Arc::new(AtomicBool::new(false));
        let open = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (flag, streams) = (Arc::clone(&cut), Arc::clone(&open));
        std::thread::spawn(move || {
            for incoming in listener.incoming() {
                let Ok(client) = incoming else { continue };
                if flag.load(Ordering::SeqCst) {
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                let mut kept = streams
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for s in [&client, &server] {
                    if let Ok(s) = s.try_clone() {
                        kept.push(s);
                    }
                }
                drop(kept);
                pipe(client, server);
            }
        });
        Ok(Link { port, cut, open })
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(..)
        {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Copies both ways between `a` and `b` until either side closes.
fn pipe(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let one = move |mut from: TcpStream, mut to: TcpStream| {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Both);
        let _ = from.shutdown(std::net::Shutdown::Both);
    };
    std::thread::spawn(move || one(a, b2));
    std::thread::spawn(move || one(b, a2));
}

/// The server at `dir/node_modules/.bin/restate-server`, installed with npm unless there.
fn ensure_server(dir: &Path) -> Result<PathBuf> {
    let bin = dir.join("node_modules/.bin/restate-server");
    let installed = Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(SERVER_VERSION));
    if installed {
        return Ok(bin);
    }
    fs::create_dir_all(dir)?;
    super::run(Command::new("npm").current_dir(dir).args([
        "install",
        "--no-audit",
        "--no-fund",
        "--no-save",
        "--prefix",
        ".",
        &format!("@restatedev/restate-server@{SERVER_VERSION}"),
    ]))
    .context(
        "cargo xtask e2e-restate installs the Restate server with npm: install Node.js and npm",
    )?;
    Ok(bin)
}

/// A port nobody listens on now (the kernel's pick).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Reads `from` until a line contains `needle`; keeps what it read in `copy`, and the rest of
/// the stream too (on a thread, so the writer never blocks on a full pipe).
fn wait_for_line(
    from: impl std::io::Read + Send + 'static,
    needle: &str,
    copy: &Path,
) -> Result<()> {
    let mut file = fs::File::create(copy)?;
    let mut lines = BufReader::new(from).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) => {
                writeln!(file, "{line}")?;
                if line.contains(needle) {
                    break;
                }
            }
            _ => bail!("`{needle}` never came (see {})", copy.display()),
        }
    }
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = writeln!(file, "{line}");
        }
    });
    Ok(())
}

/// One HTTP/1.1 request with a JSON body to 127.0.0.1:`port`; the status and the body.
fn http(port: u16, method: &str, path: &str, body: &Value) -> Result<(u16, String)> {
    let body = body.to_string();
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Accept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let (head, rest) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok((
        status,
        if chunked {
            dechunk(rest)
        } else {
            rest.to_string()
        },
    ))
}

/// A chunked body's data.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

fn read_calls(log: &Path) -> Result<Vec<Value>> {
    Ok(fs::read_to_string(log)
        .with_context(|| format!("reading {}", log.display()))?
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Waits (by pidfd, up to `limit`) until each of `pids` has ended; those still alive.
fn wait_gone(pids: &[u32], limit: Duration) -> Vec<u32> {
    let deadline = Instant::now() + limit;
    pids.iter()
        .copied()
        .filter(|&pid| {
            let Some(pid_) = i32::try_from(pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            else {
                return false;
            };
            // A pid that cannot be opened has ended already.
            let Ok(fd) = rustix::process::pidfd_open(pid_, rustix::process::PidfdFlags::empty())
            else {
                return false;
            };
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let Ok(timeout) = rustix::event::Timespec::try_from(left) else {
                    return true;
                };
                let mut poll = [rustix::event::PollFd::new(
                    &fd,
                    rustix::event::PollFlags::IN,
                )];
                match rustix::event::poll(&mut poll, Some(&timeout)) {
                    Ok(1) => return false,
                    Err(rustix::io::Errno::INTR) => {}
                    _ => return true,
                }
            }
        })
        .collect()
}

/// Live processes whose environment holds `entry` (`KEY=value`).
fn processes_with(entry: &str) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|e| e == entry.as_bytes()))
                && fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                    s.rsplit_once(')')
                        .and_then(|(_, r)| r.split_whitespace().next())
                        .is_some_and(|state| state != "Z" && state != "X")
                })
        })
        .collect()
}

/// The processes this check started, stopped at the end (and on an early return): each a
/// process, or (the server) a process group.
#[derive(Default)]
struct Procs(Vec<(String, Child, bool)>);

impl Procs {
    fn add(&mut self, name: &str, child: Child) {
        self.0.push((name.to_string(), child, false));
    }

    fn add_group(&mut self, name: &str, child: Child) {
        self.0.push((name.to_string(), child, true));
    }

    fn kill(&mut self, name: &str) {
        for (n, child, group) in &mut self.0 {
            if n == name {
                stop(child, *group);
            }
        }
    }

    fn stop_all(&mut self) {
        for (_, child, group) in &mut self.0 {
            stop(child, *group);
        }
        self.0.clear();
    }
}

/// SIGKILL to `child` (to its process group when `group`), then reaps it.
fn stop(child: &mut Child, group: bool) {
    let pid = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    match pid {
        Some(pid) if group => {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        _ => {
            let _ = child.kill();
        }
    }
    let _ = child.wait();
}

impl Drop for Procs {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Where the `--bench` section of BENCHMARKS.md starts (`cargo xtask bench` keeps it).
pub const BENCH_MARKER: &str = "<!-- written by cargo xtask e2e-restate --bench -->";

/// Now, UTC, to the minute, from `date` (xtask has no time crate).
fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// This machine's CPU and cores, from `/proc/cpuinfo`.
fn machine() -> String {
    let info = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, m)| m.trim())
        })
        .unwrap_or("an unknown CPU")
        .to_string();
    let cores = info.lines().filter(|l| l.starts_with("processor")).count();
    format!("{model}, {cores} cores")
}

/// Stories in the benchmark's epic.
const BENCH_STORIES: usize = 20;

/// `--bench`: the same generated epic driven by a local run (the SQLite journal) and by one
/// worker through the Restate server; wall time per story, and the engine's cost per journaled
/// step (the difference over the local run's steps).
fn bench(root: &Path) -> Result<()> {
    let setup = Setup::new(root, "bench")?;
    let local = setup.project("local", BENCH_STORIES)?;
    // The components compiled before anything is timed.
    let warm = setup.bmad_host(&local, &["run", "--dry-run"]).output()?;
    ensure!(warm.status.success(), "bmad-host run --dry-run failed");
    let timed = |cmd: &mut Command| -> Result<(Duration, Vec<Value>)> {
        let t = Instant::now();
        let out = cmd.output()?;
        let took = t.elapsed();
        ensure!(
            out.status.success(),
            "{:?} failed: {}",
            cmd,
            String::from_utf8_lossy(&out.stderr)
        );
        let events = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        Ok((took, events))
    };
    let (local_time, local_events) = timed(&mut setup.bmad_host(&local, &["run", "--json"]))?;
    let log = Command::new(setup.bin.join("bmad-host"))
        .args(["log", "--json", "--project"])
        .arg(&local)
        .output()?;
    let steps = String::from_utf8_lossy(&log.stdout).lines().count();

    let remote = setup.project("restate", BENCH_STORIES)?;
    let mut procs = Procs::default();
    let (ingress, admin) = setup.start_server(&mut procs)?;
    let port = free_port()?;
    setup.start_worker(&mut procs, "worker", port, ingress, &remote, &[], &[])?;
    register(admin, &format!("http://127.0.0.1:{port}"))?;
    let url = format!("http://127.0.0.1:{ingress}");
    let (restate_time, restate_events) = timed(&mut setup.bmad_host(
        &remote,
        &["run", "--engine", "restate", "--json", "--restate", &url],
    ))?;
    let lines: Vec<String> = restate_events.iter().map(Value::to_string).collect();
    fs::write(setup.work.join("restate.ndjson"), lines.join("\n"))?;
    let (_, entries) = http(
        admin,
        "POST",
        "/query",
        &json!({ "query": "SELECT name FROM sys_journal WHERE entry_type = 'Command: Run'" }),
    )?;
    let entries = serde_json::from_str::<Value>(&entries)
        .ok()
        .and_then(|v| v["rows"].as_array().map(Vec::len))
        .unwrap_or(0);
    procs.stop_all();

    let done = |events: &[Value]| {
        events
            .iter()
            .find(|e| e["event"] == "run_finished")
            .and_then(|e| e["done"].as_u64())
            .unwrap_or(0)
    };
    let calls = |events: &[Value]| {
        events
            .iter()
            .filter(|e| e["event"] == "agent_started")
            .count()
    };
    ensure!(
        done(&local_events) == BENCH_STORIES as u64
            && done(&restate_events) == BENCH_STORIES as u64,
        "not every story was done"
    );
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let per_story = |d: Duration| ms(d) / BENCH_STORIES as f64;
    let extra = ms(restate_time) - ms(local_time);
    // What the worker's git work costs here: a clean check (one per decision) and a commit of a
    // changed file (as `Git::commit_all` makes it: add, diff, the merge and identity checks,
    // commit, rev-parse), each the mean of 20 in the Restate run's project.
    let git = |args: &[&str]| Command::new("git").current_dir(&remote).args(args).output();
    let t = Instant::now();
    for _ in 0..20 {
        git(&["status", "--porcelain", "--untracked-files=all"])?;
    }
    let status_ms = ms(t.elapsed()) / 20.0;
    let t = Instant::now();
    for i in 0..20 {
        fs::write(remote.join("bench-git.txt"), format!("{i}\n"))?;
        git(&["add", "--all"])?;
        git(&["diff", "--cached", "--quiet"])?;
        git(&["rev-parse", "--verify", "--quiet", "MERGE_HEAD"])?;
        git(&["config", "--get", "user.email"])?;
        git(&[
            "-c",
            "user.name=b",
            "-c",
            "user.email=b@localhost",
            "commit",
            "--quiet",
            "--no-verify",
            "-m",
            "bench",
        ])?;
        git(&["rev-parse", "HEAD"])?;
    }
    let commit_ms = ms(t.elapsed()) / 20.0;
    let commits = String::from_utf8_lossy(
        &git(&["rev-list", "--count", "--grep=^bmad-host: ", "HEAD"])?.stdout,
    )
    .trim()
    .parse::<f64>()
    .unwrap_or(0.0);
    let commit = String::from_utf8_lossy(
        &Command::new("git")
            .current_dir(root)
            .args(["rev-parse", "--short", "HEAD"])
            .output()?
            .stdout,
    )
    .trim()
    .to_string();
    let section = format!(
        "{BENCH_MARKER}\n## Durable engine: Restate\n\n\
         Written by `cargo xtask e2e-restate --bench` on {} at commit {commit}, on {} (debug \
         build, the fake Claude, the server {SERVER_VERSION} and one worker on loopback; not \
         necessarily the machine of the sections above); `cargo xtask bench` keeps this section \
         as it is. \
         The same generated {BENCH_STORIES}-story v4 epic is driven once by a local run (the SQLite \
         journal) and once through the server (see README, \"Beyond one machine\").\n\n\
         | | SQLite journal (local run) | Restate (one worker) |\n\
         | --- | --- | --- |\n\
         | wall time | {:.0} ms | {:.0} ms |\n\
         | per story | {:.1} ms | {:.1} ms |\n\
         | agent calls | {} | {} |\n\
         | journaled | {steps} steps | {entries} `ctx.run` entries |\n\
         | engine's cost per journaled step | | {:.1} ms |\n\
         | engine's cost per story | | {:.1} ms |\n\n\
         Where the engine's time goes, measured in the same run: the worker commits the work tree \
         after each step that changed it ({commits:.0} commits, {:.1} ms each here: seven git \
         processes), checks it after each other step ({:.1} ms per `git status`), and journals \
         two entries per step (intent, result) and one per decision, each a round trip to the \
         server; each story is also one submission, one attach, the worker resolving the \
         project and loading the plugins again, and its events sent to the server in batches \
         (one per 250 ms of the story at most, each an invocation of the server) that the \
         client reads every 0.5 s. The git work is about {:.0} ms per story of the {:.0} (an \
         estimate from the two figures above); this check does not separate the rest (the \
         server's round trips, the events and the per-story setup). Against an agent call of \
         minutes this is noise; against the fake's 15 ms calls it is most of the time.\n",
        utc_now(),
        machine(),
        ms(local_time),
        ms(restate_time),
        per_story(local_time),
        per_story(restate_time),
        calls(&local_events),
        calls(&restate_events),
        extra / steps.max(1) as f64,
        extra / BENCH_STORIES as f64,
        commit_ms,
        status_ms,
        (commits * commit_ms + (entries as f64 / 2.0) * status_ms) / BENCH_STORIES as f64,
        extra / BENCH_STORIES as f64,
    );
    println!("{section}");
    let path = root.join("BENCHMARKS.md");
    let old = fs::read_to_string(&path).unwrap_or_default();
    let kept = old.find(BENCH_MARKER).map_or(old.as_str(), |at| &old[..at]);
    fs::write(&path, format!("{}\n{section}", kept.trim_end()))?;
    eprintln!("wrote the Restate section of {}", path.display());
    Ok(())
}
