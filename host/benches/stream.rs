//! Stream-json reading throughput: a recorded-style transcript of 50,000 lines shaped like the
//! real CLI's (`../shared/claude-mock/PROTOCOL.md`: `system/init`, assistant text and `tool_use`,
//! user `tool_result` with `tool_use_result`, `system/task_started`/`task_notification`, a final
//! `result`) played by a stand-in CLI that is `exec cat <file>`, read by the whole supervisor
//! (`bmad_host::claude::run`: pipe, line cap, JSON parse by key, event summary, the policy
//! callback, the on-disk transcript copy, process-tree proof). The bare `cat` through a pipe is
//! the floor. Criterion reports bytes/s; `cargo xtask bench` derives MB/s and lines/s.

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bmad_host::claude::{self, CallSpec, Directive, Interrupt, Limits, Outcome};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::sync::watch;

/// Lines in the generated transcript.
const LINES: usize = 50_000;

const SESSION: &str = "4f88799b-010d-408a-b371-bfe0b9f42903";

/// A transcript of exactly `lines` lines (at least 2) in the real CLI's shapes.
fn transcript(lines: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"{{"type":"system","subtype":"init","cwd":"/tmp/rt","session_id":"{SESSION}","tools":["Task","Bash","Glob","Grep","Read","Edit","Write","TodoWrite"],"mcp_servers":[],"model":"claude-opus-5-5","permissionMode":"acceptEdits","slash_commands":["compact","review"],"apiKeySource":"none","claude_code_version":"2.1.330","output_style":"default","agents":["general-purpose"],"skills":[],"plugins":[],"uuid":"2b804249-e0c1-46f4-8c1e-8db224220b3c"}}"#
    );
    let mut n = 1;
    let mut i = 0usize;
    while n < lines - 1 {
        let tool = format!("toolu_{i:024x}");
        let uuid = format!("{i:08x}-e0c1-46f4-8c1e-8db224220b3c");
        let block = [
            format!(
                r#"{{"type":"assistant","message":{{"id":"msg_{i:024x}","type":"message","role":"assistant","model":"claude-opus-5-5","content":[{{"type":"text","text":"I'll run the test suite for story 1.{i} and then update the File List in the Dev Agent Record with every file I changed, following the coding standards in docs/architecture/coding-standards.md."}}],"stop_reason":null,"stop_sequence":null,"usage":{{"input_tokens":12304,"output_tokens":58,"cache_creation_input_tokens":0,"cache_read_input_tokens":11890}},"context_management":null}},"parent_tool_use_id":null,"session_id":"{SESSION}","uuid":"{uuid}","timestamp":"2026-11-23T05:20:01.257Z","request_id":"req_{i:024x}"}}"#
            ),
            format!(
                r#"{{"type":"assistant","message":{{"id":"msg_{i:024x}","type":"message","role":"assistant","model":"claude-opus-5-5","content":[{{"type":"tool_use","id":"{tool}","name":"Bash","input":{{"command":"cargo test --workspace 2>&1 | tail -n 40","description":"Run the tests"}}}}],"stop_reason":null,"stop_sequence":null,"usage":{{"input_tokens":12304,"output_tokens":41,"cache_creation_input_tokens":0,"cache_read_input_tokens":11890}},"context_management":null}},"parent_tool_use_id":null,"session_id":"{SESSION}","uuid":"{uuid}"}}"#
            ),
            format!(
                r#"{{"type":"system","subtype":"task_started","task_id":"t{i:x}","tool_use_id":"{tool}","description":"Run the tests","is_backgrounded":false,"task_type":"local_bash","uuid":"{uuid}","session_id":"{SESSION}"}}"#
            ),
            format!(
                r#"{{"type":"system","subtype":"task_notification","task_id":"t{i:x}","tool_use_id":"{tool}","status":"completed","output_file":"","summary":"Run the tests","uuid":"{uuid}","session_id":"{SESSION}"}}"#
            ),
            format!(
                r#"{{"type":"user","message":{{"role":"user","content":[{{"tool_use_id":"{tool}","type":"tool_result","content":"running 42 tests\ntest parse::found ... ok\ntest parse::missing ... ok\ntest run::two_cycles ... ok\n\ntest result: ok. 42 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.41s","is_error":false}}]}},"parent_tool_use_id":null,"session_id":"{SESSION}","uuid":"{uuid}","timestamp":"2026-11-23T05:20:02.310Z","tool_use_result":{{"stdout":"running 42 tests\ntest result: ok. 42 passed","stderr":"","interrupted":false,"isImage":false,"noOutputExpected":false}}}}"#
            ),
        ];
        for line in block {
            if n >= lines - 1 {
                break;
            }
            out.push_str(&line);
            out.push('\n');
            n += 1;
        }
        i += 1;
    }
    let _ = writeln!(
        out,
        r#"{{"type":"result","subtype":"success","is_error":false,"api_error_status":null,"duration_ms":219000,"duration_api_ms":45000,"num_turns":{i},"result":"Story implemented; all tests pass.","stop_reason":"end_turn","session_id":"{SESSION}","total_cost_usd":4.100212,"usage":{{"input_tokens":24718,"output_tokens":6700,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}},"permission_denials":[],"terminal_reason":"completed","uuid":"2eb2a198-0000-0000-0000-000000000000"}}"#
    );
    out
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

fn stream(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let text = transcript(LINES);
    assert_eq!(text.lines().count(), LINES);
    let file = dir.path().join("recorded.ndjson");
    std::fs::write(&file, &text).expect("write the transcript");
    let cli = script(
        dir.path(),
        "claude",
        &format!("exec cat '{}'", file.display()),
    );
    let spec = CallSpec {
        bin: cli.clone(),
        prompt: "bench".into(),
        cwd: dir.path().to_path_buf(),
        env: vec![],
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
        ..Limits::default()
    };

    let mut group = c.benchmark_group("stream");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function(format!("claude::run ({LINES} lines)"), |b| {
        b.iter(|| {
            // A fresh transcript per call, as in a run.
            let _ = std::fs::remove_file(&spec.transcript);
            let mut events = 0u64;
            let report = rt.block_on(async {
                let (_tx, rx) = watch::channel(Interrupt::None);
                claude::run(
                    &spec,
                    &limits,
                    &mut |e| {
                        events += 1;
                        black_box(e);
                        Directive::Continue
                    },
                    &mut |_| {},
                    rx,
                )
                .await
            });
            assert!(
                report.clean && report.outcome == Outcome::Success,
                "{report:?}"
            );
            assert!(events > 0);
        })
    });
    group.bench_function(format!("bare cat through a pipe ({LINES} lines)"), |b| {
        b.iter(|| {
            let out = std::process::Command::new(&cli)
                .stdin(std::process::Stdio::null())
                .output()
                .expect("run cat");
            assert_eq!(out.stdout.len(), text.len());
        })
    });
    group.finish();
}

criterion_group!(benches, stream);
criterion_main!(benches);
