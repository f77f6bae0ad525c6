//! An adversarial test component: a `status-parser` and an `agent-policy` that misbehaves on
//! request, so the plugin host's tests can prove each sandbox limit holds.
//!
//! The misbehaviour is chosen by the text it is given: `parse`'s and `begin`'s document,
//! `on-event`'s assistant text, `end`'s document-after. A text that starts with one of these
//! commands triggers it; any other text gets a harmless answer.
//!
//! | command | what it does | the host should answer |
//! | --- | --- | --- |
//! | `EVIL:loop` | spins forever | out of fuel |
//! | `EVIL:membomb` | allocates 1 MiB blocks forever | memory limit |
//! | `EVIL:recurse` | unbounded recursion with small frames | stack overflow (wasm stack) |
//! | `EVIL:deep-frames` | unbounded recursion with 128-byte locals | trap: out of bounds (the shadow stack in linear memory overflows first) |
//! | `EVIL:bigstring` | builds and returns a 100 MB string | memory limit (cannot be built) |
//! | `EVIL:bigoutput` | returns a 2 MiB string | output too large |
//! | `EVIL:manyfindings` | returns 100,000 one-byte findings | output too large |
//! | `EVIL:read-passwd` | `read-file("/etc/passwd")` | an error string to the guest |
//! | `EVIL:read-dotdot` | `read-file("../secret")` | an error string to the guest |
//! | `EVIL:trap` | panics (`unreachable` under `panic = "abort"`) | trap, with the panic message |
//! | `EVIL:exit` | `std::process::exit(3)` | trap (WASI reports it as `exit(1)`) |
//! | `EVIL:sleep` | `std::thread::sleep` | trap: plugins cannot block |
//! | `EVIL:fs` | `std::fs::read_to_string("/etc/passwd")` | fails inside the guest: no filesystem |
//! | `EVIL:ambient` | reports env var count, the wall clock and 8 random bytes | all fixed |
//! | `EVIL:print` | writes 1 MiB to stdout and stderr, then answers normally | a normal answer |
//! | `EVIL:logspam` | calls `log` 100,000 times with 10 KiB messages | out of fuel: host calls are metered |
//!
//! `begin` also asks the host for more than it should when its document has `ask.KEY: VALUE`
//! lines anywhere (a story file with them at its end): `ask.prompt` (the prompt),
//! `ask.tool` (an `allowed_tools` entry, repeatable), `ask.model`, `ask.system` (the appended
//! system prompt), `ask.prompt-bytes` / `ask.system-bytes` (that many bytes of `p` / `s`).
//!
//! Answers that carry text (the read commands, `EVIL:fs`, `EVIL:ambient`) come back as
//! `escalate(text)` from `begin`/`end`, and as a `doubtful` status whose `raw` is the text from
//! `parse`.
//!
//! It speaks the raw generated bindings of the policy SDK (`bmad_policy::bindings`, the
//! wit-bindgen `Guest` traits and `export!` macros) rather than `export_policy!`: what crosses the
//! boundary is exactly what the commands build, with no SDK glue (and no debug log) around it.

use std::hint::black_box;
use std::io::Write as _;

use bmad_policy::bindings::{agent_policy, status_parser};
use bmad_policy::host::{self, Level};
use bmad_policy::types::{
    AgentEvent, AgentRequest, Decision, Directive, MissingReason, ParseOutcome, StatusSource,
    StatusValue, StepReport, Story,
};

struct Evil;

/// What a command produced when it returned at all.
enum Answer {
    /// Text to hand back (an escalation reason, a status `raw`, a prompt).
    Text(String),
    /// Many small strings (findings).
    Many(Vec<String>),
    /// Not a command: behave.
    Normal,
}

/// Recursion whose frames live on the wasm stack only (no address taken, nothing spilled to
/// the shadow stack in linear memory).
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    recurse(depth + 1)
        .wrapping_mul(31)
        .wrapping_add(depth)
        .rotate_left(7)
}

/// Recursion with 128 bytes of locals per frame, kept in the shadow stack in linear memory.
#[inline(never)]
fn deep_frames(depth: u64, pad: [u64; 16]) -> u64 {
    let pad = black_box(pad);
    if black_box(depth) == u64::MAX {
        return 0;
    }
    black_box(deep_frames(depth + 1, pad)) + pad[(depth % 16) as usize]
}

fn misbehave(text: &str) -> Answer {
    let Some(cmd) = text.trim().strip_prefix("EVIL:") else {
        return Answer::Normal;
    };
    let cmd = cmd.split_whitespace().next().unwrap_or("");
    match cmd {
        "loop" => loop {
            black_box(());
        },
        "membomb" => {
            let mut blocks: Vec<Vec<u8>> = Vec::new();
            loop {
                blocks.push(black_box(vec![7u8; 1 << 20]));
            }
        }
        "recurse" => Answer::Text(recurse(black_box(0)).to_string()),
        "deep-frames" => Answer::Text(deep_frames(0, [1; 16]).to_string()),
        "bigstring" => Answer::Text("x".repeat(100 << 20)),
        "bigoutput" => Answer::Text("y".repeat(2 << 20)),
        "manyfindings" => Answer::Many(vec!["z".to_string(); 100_000]),
        "read-passwd" => Answer::Text(read("/etc/passwd")),
        "read-dotdot" => Answer::Text(read("../secret")),
        "trap" => panic!("evil component asked to trap"),
        "exit" => std::process::exit(3),
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(3600));
            Answer::Text("slept".to_string())
        }
        "fs" => Answer::Text(match std::fs::read_to_string("/etc/passwd") {
            Ok(text) => format!("fs read ok: {} bytes", text.len()),
            Err(e) => format!("fs read failed: {e}"),
        }),
        "ambient" => {
            let vars = std::env::vars().count();
            let args = std::env::args().count();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let mut bytes = [0u8; 8];
            let random = match getrandom(&mut bytes) {
                true => format!("{bytes:?}"),
                false => "none".to_string(),
            };
            Answer::Text(format!("vars={vars} args={args} now={now} random={random}"))
        }
        "print" => {
            let block = "p".repeat(64 << 10);
            for _ in 0..16 {
                let _ = std::io::stdout().write_all(block.as_bytes());
                let _ = std::io::stderr().write_all(block.as_bytes());
            }
            Answer::Normal
        }
        "logspam" => {
            let msg = "l".repeat(10 << 10);
            for _ in 0..100_000 {
                host::log(Level::Warn, &msg);
            }
            Answer::Normal
        }
        _ => Answer::Normal,
    }
}

/// Random bytes through `wasi:random` (via std's hash map keys, which are seeded from it).
fn getrandom(out: &mut [u8; 8]) -> bool {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    *out = h.finish().to_le_bytes();
    true
}

fn read(path: &str) -> String {
    match host::read_file(path) {
        Ok(text) => format!("READ OK: {text}"),
        Err(e) => format!("READ DENIED: {e}"),
    }
}

fn decision(answer: Answer) -> Decision {
    match answer {
        Answer::Text(t) => Decision::Escalate(t),
        Answer::Many(findings) => Decision::SendBack(findings),
        Answer::Normal => Decision::Complete,
    }
}

impl status_parser::Guest for Evil {
    fn parse(document: String) -> ParseOutcome {
        match misbehave(&document) {
            Answer::Text(raw) => ParseOutcome::Doubtful(StatusValue {
                raw,
                line: 1,
                source: StatusSource::Line,
                state: None,
            }),
            Answer::Many(raws) => ParseOutcome::Conflict(
                raws.into_iter()
                    .map(|raw| StatusValue {
                        raw,
                        line: 1,
                        source: StatusSource::Line,
                        state: None,
                    })
                    .collect(),
            ),
            Answer::Normal => ParseOutcome::Missing(MissingReason::NoStatus),
        }
    }
}

/// The request the document's `ask.KEY: VALUE` lines make, if it has any.
fn ask(document: &str) -> Option<AgentRequest> {
    let mut request = AgentRequest {
        prompt: "behave".to_string(),
        max_turns: None,
        allowed_tools: Vec::new(),
        model: None,
        append_system_prompt: None,
    };
    let mut asked = false;
    for line in document.lines() {
        let Some((key, value)) = line.strip_prefix("ask.").and_then(|l| l.split_once(": ")) else {
            continue;
        };
        asked = true;
        let bytes = || value.trim().parse::<usize>().unwrap_or(0);
        match key {
            "prompt" => request.prompt = value.to_string(),
            "tool" => request.allowed_tools.push(value.to_string()),
            "model" => request.model = Some(value.to_string()),
            "system" => request.append_system_prompt = Some(value.to_string()),
            "prompt-bytes" => request.prompt = "p".repeat(bytes()),
            "system-bytes" => request.append_system_prompt = Some("s".repeat(bytes())),
            _ => {}
        }
    }
    asked.then_some(request)
}

impl agent_policy::Guest for Evil {
    fn begin(_story: Story, document: String) -> Decision {
        if let Some(request) = ask(&document) {
            return Decision::InvokeAgent(request);
        }
        match misbehave(&document) {
            Answer::Normal => Decision::InvokeAgent(AgentRequest {
                prompt: "behave".to_string(),
                max_turns: None,
                allowed_tools: Vec::new(),
                model: None,
                append_system_prompt: None,
            }),
            other => decision(other),
        }
    }

    fn on_event(_story: Story, event: AgentEvent) -> Directive {
        if let AgentEvent::Text(t) = event {
            match misbehave(&t) {
                Answer::Normal => {}
                // Anything that returned: the host's limits were not hit, so stop loudly.
                _ => return Directive::Stop,
            }
        }
        Directive::Continue
    }

    fn end(_story: Story, report: StepReport) -> Decision {
        decision(misbehave(&report.document))
    }
}

agent_policy::export!(Evil);
status_parser::export!(Evil);
