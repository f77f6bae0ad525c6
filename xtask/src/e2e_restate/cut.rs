//! Check 3: a worker cut off from the ingress while its call runs, through a link the check
//! can cut ([`Link`]).

use std::fs;

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use serde_json::Value;

use super::Checks;
use super::harness::*;

/// The third check: the worker running story 1.1's Dev call is cut off from the server's
/// ingress (where it renews the story's lease) while the call runs. Asserts: the worker takes
/// its lease for lost and tears the call down by itself (it says so; the call's process ends);
/// the other worker redoes the call, and never while the first copy was alive (the fake's lock);
/// the story is done; nothing left.
pub(super) fn cut_off_worker(setup: &Setup) -> Result<()> {
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

/// A TCP link to 127.0.0.1:`to` that the check can cut: from then on, every connection through
/// it is shut, and each new one closed at once.
pub(super) struct Link {
    pub(super) port: u16,
    pub(super) cut: Arc<AtomicBool>,
    pub(super) open: Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

impl Link {
    pub(super) fn start(to: u16) -> Result<Link> {
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

    pub(super) fn cut(&self) {
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
pub(super) fn pipe(a: TcpStream, b: TcpStream) {
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
