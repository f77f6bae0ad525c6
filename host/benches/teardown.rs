//! Teardown latency of a supervised call, against the fake Claude CLI of the test crate playing
//! a hung call (`do: hang`: `system/init`, then silence), interrupted (Ctrl-C once) as soon as
//! its `system/init` line arrives; measured from the interrupt to the return of
//! `bmad_host::claude::run`, i.e. to the proven end of the call (process reaped, no descendant
//! alive, output at EOF):
//! - cooperative: the fake handles SIGINT like the real CLI (prints `[Request interrupted by
//!   user]`, exits 0). Target: under 20 ms.
//! - forced: the fake ignores SIGINT and SIGTERM and has spawned a `setsid sleep 3600`
//!   grandchild that holds its stdout; SIGKILL after the graces (100 ms + 100 ms), then the
//!   escaped grandchild. Target: within the graces + 50 ms.
//!
//! Not a criterion bench: it records every sample and writes them as JSON to the file named by
//! `BMAD_BENCH_TEARDOWN_OUT` (for `cargo xtask bench`), and prints p50/p99/max. The fake is
//! `FAKE_CLAUDE_BIN`, else `target/{release,debug}/fake-claude`; without one it says so and
//! skips (`cargo build -p bmad-host-tests --bins`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bmad_host::claude::{self, CallSpec, Directive, Event, Interrupt, Limits, Outcome};
use serde_json::json;
use tokio::sync::watch;

const COOPERATIVE_SAMPLES: usize = 100;
const FORCED_SAMPLES: usize = 15;
const GRACE: Duration = Duration::from_millis(100);

fn fake_claude() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("FAKE_CLAUDE_BIN") {
        return Some(PathBuf::from(bin));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    ["release", "debug"]
        .iter()
        .map(|p| target.join(p).join("fake-claude"))
        .find(|p| p.is_file())
}

/// One hung call interrupted at its `system/init`: the time from the interrupt to the end.
async fn once(spec: &CallSpec, limits: &Limits) -> Duration {
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
    let elapsed = sent_at.map(|t| t.elapsed());
    assert!(
        report.clean && report.outcome == Outcome::Cancelled,
        "{report:?}"
    );
    elapsed.expect("the fake printed system/init")
}

fn summary(name: &str, samples: &mut [Duration]) -> String {
    samples.sort();
    let pick = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i]
    };
    format!(
        "{name}: n={} p50={:.2?} p99={:.2?} max={:.2?}",
        samples.len(),
        pick(0.5),
        pick(0.99),
        samples[samples.len() - 1]
    )
}

fn main() {
    let Some(fake) = fake_claude() else {
        eprintln!("teardown: skipped, no fake-claude (cargo build -p bmad-host-tests --bins)");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let spec = |behaviour: &str| CallSpec {
        bin: fake.clone(),
        prompt: "bench".into(),
        cwd: dir.path().to_path_buf(),
        env: vec![("FAKE_CLAUDE_BEHAVIOUR".into(), behaviour.into())],
        model: None,
        permission_mode: "acceptEdits".into(),
        allowed_tools: vec![],
        append_system_prompt: None,
        extra_args: vec![],
        transcript: dir.path().join("transcript.ndjson"),
        keeper: None,
    };
    let limits = Limits {
        retries: 0,
        interrupt_grace: GRACE,
        term_grace: GRACE,
        ..Limits::default()
    };
    let cooperative = spec(r#"{"do":"hang"}"#);
    let forced = spec(r#"{"do":"hang","ignore_signals":true,"grandchild":true}"#);

    // One unmeasured call of each warms the page cache and the runtime.
    rt.block_on(once(&cooperative, &limits));
    let mut coop: Vec<Duration> = (0..COOPERATIVE_SAMPLES)
        .map(|_| rt.block_on(once(&cooperative, &limits)))
        .collect();
    let mut hard: Vec<Duration> = (0..FORCED_SAMPLES)
        .map(|_| rt.block_on(once(&forced, &limits)))
        .collect();

    println!("{}", summary("teardown cooperative", &mut coop));
    println!(
        "{} (graces {GRACE:?} + {GRACE:?})",
        summary("teardown forced", &mut hard)
    );
    if let Some(out) = std::env::var_os("BMAD_BENCH_TEARDOWN_OUT") {
        let micros = |v: &[Duration]| v.iter().map(|d| d.as_micros() as u64).collect::<Vec<_>>();
        let doc = json!({
            "fake": fake.display().to_string(),
            "grace_ms": [GRACE.as_millis() as u64, GRACE.as_millis() as u64],
            "cooperative_us": micros(&coop),
            "forced_us": micros(&hard),
        });
        std::fs::write(&out, doc.to_string())
            .unwrap_or_else(|e| panic!("{}: {e}", PathBuf::from(&out).display()));
    }
}
