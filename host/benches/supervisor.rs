//! The Claude supervisor's own costs, with tiny shell scripts standing in for the CLI:
//! - per-call overhead: a supervised call of a CLI that prints `system/init` and a `result`,
//!   against the bare spawn + read-to-EOF + wait of the same script (the difference is the host's
//!   overhead: transcript, parsing, process-tree proof);
//! - cooperative teardown: Ctrl-C (graceful) to a CLI that dies on SIGINT, measured from the
//!   interrupt to the proven end of the call;
//! - forced teardown: the same for a CLI that ignores SIGINT and SIGTERM and has a `setsid`
//!   grandchild holding its stdout, with 100 ms graces (the floor is 200 ms).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bmad_host::claude::{self, CallSpec, Directive, Event, Interrupt, Limits};
use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use tokio::sync::watch;

const LINES: &str = r#"cat <<'EOF'
{"type":"system","subtype":"init","model":"bench","session_id":"s-bench"}
{"type":"result","subtype":"success","is_error":false,"num_turns":1,"result":"ok","session_id":"s-bench","total_cost_usd":0}
EOF
"#;

const INIT: &str = r#"echo '{"type":"system","subtype":"init","model":"bench","session_id":"s-bench"}'
"#;

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

fn spec(bin: &Path, dir: &Path) -> CallSpec {
    CallSpec {
        bin: bin.to_path_buf(),
        prompt: "bench".into(),
        cwd: dir.to_path_buf(),
        env: vec![],
        model: None,
        permission_mode: "acceptEdits".into(),
        allowed_tools: vec![],
        append_system_prompt: None,
        extra_args: vec![],
        transcript: dir.join("transcript.ndjson"),
        keeper: None,
    }
}

fn limits() -> Limits {
    Limits {
        retries: 0,
        interrupt_grace: Duration::from_millis(100),
        term_grace: Duration::from_millis(100),
        ..Limits::default()
    }
}

/// One supervised call, interrupted (gracefully) at its first event; returns the time from the
/// interrupt to the proven end.
async fn teardown_once(spec: &CallSpec, limits: &Limits) -> Duration {
    let (tx, rx) = watch::channel(Interrupt::None);
    let mut sent_at = None;
    let mut on_event = |e: &Event| {
        if matches!(e, Event::Init { .. }) && sent_at.is_none() {
            sent_at = Some(Instant::now());
            let _ = tx.send(Interrupt::Graceful);
        }
        Directive::Continue
    };
    let report = claude::run(spec, limits, &mut on_event, &mut |_| {}, rx).await;
    assert!(report.clean, "{report:?}");
    sent_at.map_or(Duration::ZERO, |t| t.elapsed())
}

fn supervisor(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let quick = script(dir.path(), "quick", LINES);
    let cooperative = script(
        dir.path(),
        "cooperative",
        &format!("{INIT}exec sleep 3600\n"),
    );
    let stubborn = script(
        dir.path(),
        "stubborn",
        &format!("trap '' INT TERM\nsetsid sleep 3600 &\n{INIT}while :; do sleep 3600; done\n"),
    );
    let limits = limits();

    let mut g = c.benchmark_group("claude call");
    g.sample_size(30);
    g.bench_function("supervised (init + result)", |b| {
        let spec = spec(&quick, dir.path());
        b.iter(|| {
            rt.block_on(async {
                let (_tx, rx) = watch::channel(Interrupt::None);
                let r = claude::run(
                    &spec,
                    &limits,
                    &mut |_| Directive::Continue,
                    &mut |_| {},
                    rx,
                )
                .await;
                assert!(r.clean && r.outcome == claude::Outcome::Success, "{r:?}");
            })
        });
    });
    g.bench_function("bare spawn + read + wait (baseline)", |b| {
        b.iter(|| {
            rt.block_on(async {
                let out = tokio::process::Command::new(&quick)
                    .current_dir(dir.path())
                    .stdin(std::process::Stdio::null())
                    .output()
                    .await
                    .expect("run the script");
                assert!(out.status.success());
            })
        });
    });
    g.finish();

    let mut g = c.benchmark_group("teardown");
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    g.bench_function("cooperative (dies on SIGINT)", |b| {
        let spec = spec(&cooperative, dir.path());
        b.iter_custom(|iters| {
            rt.block_on(async { sum(iters, || teardown_once(&spec, &limits)).await })
        });
    });
    g.bench_function(
        "forced (ignores INT/TERM, setsid grandchild), graces 100+100 ms",
        |b| {
            let spec = spec(&stubborn, dir.path());
            b.iter_custom(|iters| {
                rt.block_on(async { sum(iters, || teardown_once(&spec, &limits)).await })
            });
        },
    );
    g.finish();
}

async fn sum<F, Fut>(iters: u64, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Duration>,
{
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        total += f().await;
    }
    total
}

criterion_group!(benches, supervisor);
criterion_main!(benches);
