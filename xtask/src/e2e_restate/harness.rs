//! What the checks share: a check's binaries, server and folder ([`Setup`]), its fake Claude
//! ([`Fake`]), the FIFOs that hold calls, the processes it starts ([`Procs`]) and the server's
//! HTTP API.

use std::fs;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::{Value, json};

/// The Restate server this is checked against.
pub(super) const SERVER_VERSION: &str = "1.7.12";

/// How long a story's lease lasts without renewal (the survivor waits for it to expire).
pub(super) const LEASE_TTL: &str = "4s";

/// The binaries, the server and the folder of one check.
pub(super) struct Setup {
    pub(super) root: PathBuf,
    pub(super) bin: PathBuf,
    pub(super) server: PathBuf,
    pub(super) cache: PathBuf,
    pub(super) work: PathBuf,
}

impl Setup {
    /// Builds bmad-host with the feature (linted by clippy, as `cargo xtask test` lints the
    /// default build) and the fake Claude, installs the server, empties `target/e2e-restate/NAME`.
    pub(super) fn new(root: &Path, name: &str) -> Result<Setup> {
        let target = crate::target_dir(root);
        crate::build_plugins(root)?;
        let mut build = crate::cargo();
        crate::run(crate::linted_by_clippy(build.current_dir(root))?.args([
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
        let mut unit = crate::cargo();
        crate::run(unit.current_dir(root).args([
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
            cache: crate::test_cache_dir(root),
            work,
        })
    }

    /// A generated v4 epic of `stories` stories at `work/NAME`, committed in a git work tree
    /// of its own (the workers keep each step's files as a commit of it).
    pub(super) fn project(&self, name: &str, stories: usize) -> Result<PathBuf> {
        let project = self.work.join(name);
        crate::bench::generate_project(&self.root, &project, stories)?;
        commit_all(&project)?;
        Ok(project)
    }

    /// A generated epic of `stories` stories as a bare repository, `remote.git`: the shared
    /// remote of the workers.
    pub(super) fn shared_remote(&self, stories: usize) -> Result<PathBuf> {
        let seed = self.project("seed", stories)?;
        self.bare(&seed)
    }

    /// The project at `fixture` (committed) as the bare repository `remote.git`.
    pub(super) fn shared_remote_of(&self, fixture: &Path) -> Result<PathBuf> {
        let seed = self.work.join("seed");
        crate::copy_dir(fixture, &seed)?;
        commit_all(&seed)?;
        self.bare(&seed)
    }

    pub(super) fn bare(&self, seed: &Path) -> Result<PathBuf> {
        let remote = self.work.join("remote.git");
        crate::run(
            Command::new("git")
                .args(["clone", "--quiet", "--bare"])
                .arg(seed)
                .arg(&remote),
        )?;
        Ok(remote)
    }

    /// The same binaries and server, for another check in `target/e2e-restate/NAME` (emptied).
    pub(super) fn sibling(&self, name: &str) -> Result<Setup> {
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
    pub(super) fn clone_of(&self, remote: &Path, name: &str) -> Result<PathBuf> {
        let dir = self.work.join(name);
        crate::run(
            Command::new("git")
                .args(["clone", "--quiet"])
                .arg(remote)
                .arg(&dir),
        )?;
        Ok(dir)
    }

    /// Starts the server on free loopback ports; its ingress and admin ports once it listens.
    pub(super) fn start_server(&self, procs: &mut Procs) -> Result<(u16, u16)> {
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
    pub(super) fn bmad_host(&self, project: &Path, args: &[&str]) -> Command {
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
    pub(super) fn start_worker(
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
pub(super) enum Hosts<'a> {
    /// Each under its own worker of these.
    Apart(&'a [u32]),
    /// Both under this one worker.
    Together(u32),
}

/// Holds the FIFOs of `hold` open for writing until the Dev calls waiting on them have both
/// opened them (so both are alive), then checks from the fake's log that their keepers run under
/// the workers `hosts` says, and runs `while_held`; closes them (the calls go on). A call that
/// never opens its FIFO (one story waiting for the other) fails after a deadline.
pub(super) fn both_held(
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
    pub(super) fn start_balancer(
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
pub(super) fn commit_all(project: &Path) -> Result<()> {
    crate::run(
        Command::new("git")
            .current_dir(project)
            .args(["init", "--quiet"]),
    )?;
    commit(project, "the epic")
}

/// Everything at `project` committed as `message` (e2e's identity).
pub(super) fn commit(project: &Path, message: &str) -> Result<()> {
    crate::run(
        Command::new("git")
            .current_dir(project)
            .args(["add", "--all"]),
    )?;
    crate::run(Command::new("git").current_dir(project).args([
        "-c",
        "user.name=e2e",
        "-c",
        "user.email=e2e@localhost",
        "commit",
        "--quiet",
        "-m",
        message,
    ]))
}

/// The names of the run entries (`ctx.run`) the server whose admin API is on `admin` journaled.
pub(super) fn run_entries(admin: u16) -> Result<Vec<String>> {
    let (_, answer) = http(
        admin,
        "POST",
        "/query",
        &json!({ "query": "SELECT name FROM sys_journal WHERE entry_type = 'Command: Run'" }),
    )?;
    Ok(serde_json::from_str::<Value>(&answer)
        .ok()
        .and_then(|v| v["rows"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|r| r["name"].as_str().unwrap_or_default().to_string())
        .collect())
}

impl Setup {
    /// Clones of `remote` for two workers and the client.
    pub(super) fn three_clones(&self, remote: &Path) -> Result<(PathBuf, PathBuf, PathBuf)> {
        Ok((
            self.clone_of(remote, "worker-a")?,
            self.clone_of(remote, "worker-b")?,
            self.clone_of(remote, "client")?,
        ))
    }

    /// Starts worker-a and worker-b in `clones`, each reaching the server's ingress at its port
    /// of `ingress`, with its `env`, and `bmad-host balance` in front of them, registered with
    /// the server whose admin API is on `admin`; the workers' pids.
    pub(super) fn start_pair(
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

    /// Starts the server, and worker-a and worker-b in `clones` behind the balancer, each with
    /// `env` and reaching the ingress directly; the server's ingress and admin ports, and the
    /// workers' pids.
    pub(super) fn start_all(
        &self,
        procs: &mut Procs,
        clones: [&Path; 2],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Result<(u16, u16, [u32; 2])> {
        let (ingress, admin) = self.start_server(procs)?;
        let pids = self.start_pair(procs, clones, [ingress, ingress], admin, [env, env])?;
        Ok((ingress, admin, pids))
    }

    /// `run --engine restate --json --jobs 2` (stories of one epic side by side) from `project`
    /// to its end, tagged `tag` (`trust`: the project's bmad-host.toml); its output, and its
    /// NDJSON lines (kept in `client.ndjson`).
    pub(super) fn run_two_jobs(
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
pub(super) fn register(admin: u16, uri: &str) -> Result<()> {
    let (status, body) = http(admin, "POST", "/deployments", &json!({ "uri": uri }))?;
    ensure!(
        status / 100 == 2,
        "registering {uri}: HTTP {status}: {body}"
    );
    Ok(())
}

/// The fake Claude of one check: its script, the log of its calls, the folder of its locks (a
/// call that finds its story's and role's lock taken logs `overlap`), and the tag its
/// processes carry (to find any left).
pub(super) struct Fake {
    pub(super) log: PathBuf,
    pub(super) tag: String,
    pub(super) script: PathBuf,
    pub(super) exclusive: PathBuf,
}

impl Fake {
    /// The fake of check `name` in `work`, following `calls`.
    pub(super) fn new(work: &Path, name: &str, calls: &[Value]) -> Result<Fake> {
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
    pub(super) fn env(&self) -> Vec<(&'static str, &std::ffi::OsStr)> {
        vec![
            ("FAKE_CLAUDE_SCRIPT", self.script.as_os_str()),
            ("FAKE_CLAUDE_LOG", self.log.as_os_str()),
            ("FAKE_CLAUDE_EXCLUSIVE", self.exclusive.as_os_str()),
            ("E2E_RESTATE_TAG", std::ffi::OsStr::new(&self.tag)),
        ]
    }
}

/// The script entries of the first Dev calls of 1.1 and 1.2, held by `hold` ([`holds`]).
pub(super) fn held_dev_calls(hold: &[PathBuf; 2]) -> [Value; 2] {
    [
        held_dev_call("1.1", &hold[0]),
        held_dev_call("1.2", &hold[1]),
    ]
}

/// The script entry of `story`'s first Dev call, held until `fifo` is closed (`held_by`).
pub(super) fn held_dev_call(story: &str, fifo: &Path) -> Value {
    json!({ "role": "dev", "story": story, "occurrence": 1, "do": "play", "held_by": fifo })
}

/// The FIFOs that hold the Dev calls of 1.1 and 1.2 (`held_by`), made in `work`.
pub(super) fn holds(work: &Path) -> Result<[PathBuf; 2]> {
    let hold = [work.join("hold-1.1"), work.join("hold-1.2")];
    for fifo in &hold {
        let status = Command::new("mkfifo").arg(fifo).status()?;
        ensure!(status.success(), "mkfifo {}", fifo.display());
    }
    Ok(hold)
}

/// On a thread: holds the Dev calls of 1.1 and 1.2 until both run, each on its own worker
/// ([`both_held`]), so that both stories start from the same shared branch.
pub(super) fn side_by_side(
    hold: [PathBuf; 2],
    log: PathBuf,
    workers: [u32; 2],
) -> std::thread::JoinHandle<Result<()>> {
    std::thread::spawn(move || both_held(&hold, &log, Hosts::Apart(&workers), || Ok(())))
}

/// `git ARGS` in `dir`, its output trimmed.
pub(super) fn git_out(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git").current_dir(dir).args(args).output()?;
    ensure!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The server at `dir/node_modules/.bin/restate-server`, installed with npm unless there.
pub(super) fn ensure_server(dir: &Path) -> Result<PathBuf> {
    let bin = dir.join("node_modules/.bin/restate-server");
    let installed = Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(SERVER_VERSION));
    if installed {
        return Ok(bin);
    }
    fs::create_dir_all(dir)?;
    crate::run(Command::new("npm").current_dir(dir).args([
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
pub(super) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Reads `from` until a line contains `needle`; keeps what it read in `copy`, and the rest of
/// the stream too (on a thread, so the writer never blocks on a full pipe).
pub(super) fn wait_for_line(
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
pub(super) fn http(port: u16, method: &str, path: &str, body: &Value) -> Result<(u16, String)> {
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
pub(super) fn dechunk(mut rest: &str) -> String {
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

pub(super) fn read_calls(log: &Path) -> Result<Vec<Value>> {
    Ok(fs::read_to_string(log)
        .with_context(|| format!("reading {}", log.display()))?
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

pub(super) fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Waits (by pidfd, up to `limit`) until each of `pids` has ended; those still alive.
pub(super) fn wait_gone(pids: &[u32], limit: Duration) -> Vec<u32> {
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
pub(super) fn processes_with(entry: &str) -> Vec<u32> {
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
pub(super) struct Procs(Vec<(String, Child, bool)>);

impl Procs {
    pub(super) fn add(&mut self, name: &str, child: Child) {
        self.0.push((name.to_string(), child, false));
    }

    pub(super) fn add_group(&mut self, name: &str, child: Child) {
        self.0.push((name.to_string(), child, true));
    }

    pub(super) fn kill(&mut self, name: &str) {
        for (n, child, group) in &mut self.0 {
            if n == name {
                stop(child, *group);
            }
        }
    }

    pub(super) fn stop_all(&mut self) {
        for (_, child, group) in &mut self.0 {
            stop(child, *group);
        }
        self.0.clear();
    }
}

/// SIGKILL to `child` (to its process group when `group`), then reaps it.
pub(super) fn stop(child: &mut Child, group: bool) {
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
