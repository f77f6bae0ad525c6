//! mock-anthropic: a scripted mock of the Anthropic Messages API on loopback, so the real
//! Claude Code CLI can run offline (`ANTHROPIC_BASE_URL=http://127.0.0.1:<port>`). It is what
//! `cargo xtask e2e` drives the real CLI against, and a Rust port of the shared Python mock
//! (`claude-mock/mock_anthropic.py`) with scripts chosen by the request, so one mock plays SM,
//! Dev and QA for a whole bmad-host run.
//!
//! ```text
//! mock-anthropic [--scenario FILE] [--host 127.0.0.1] [--port 0] [--port-file FILE]
//!                [--log FILE.jsonl] [--dump-bodies DIR]
//! ```
//! Once listening it prints `mock-anthropic listening on http://HOST:PORT` as its first stdout
//! line (and writes the port to `--port-file`): a caller waits for that line, then starts the CLI.
//!
//! Endpoints: `POST /v1/messages[?beta=true]` (SSE when the body has `"stream": true`, else
//! JSON), `POST /v1/messages/count_tokens`, `GET /v1/models[/<id>]`, `HEAD|GET /` (200),
//! control: `GET /_mock/health`, `GET /_mock/log`, `POST /_mock/scenario` (replace it, reset
//! the attempt counters), `POST /_mock/reset`; anything else is a 404 with an Anthropic error
//! body. Every request is logged as one JSON line in `--log` (API key redacted), with the
//! script, turn, attempts and the fault applied; a hung connection that the client closes adds
//! a `{"event": "hang_ended"}` line. The scenario format: `tests/e2e/README.md`.

mod compose;
mod request;
mod response;
mod scenario;
mod server;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "mock-anthropic",
    about = "Scripted mock of the Anthropic Messages API"
)]
struct Args {
    /// Scenario JSON file (default: one text turn).
    #[arg(long)]
    scenario: Option<PathBuf>,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// 0 picks a free port.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Write the bound port here (atomically) once listening.
    #[arg(long)]
    port_file: Option<PathBuf>,
    /// Append one JSON line per request to this file.
    #[arg(long)]
    log: Option<PathBuf>,
    /// Save every /v1/messages request body in this directory.
    #[arg(long)]
    dump_bodies: Option<PathBuf>,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mock-anthropic: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> Result<()> {
    let scenario = match &args.scenario {
        Some(path) => scenario::Scenario::load(path)
            .with_context(|| format!("scenario {}", path.display()))?,
        None => scenario::Scenario::from_json(r#"{"turns": [{"text": "Hello from the mock."}]}"#)?,
    };
    let log = match &args.log {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("cannot open the log {}", p.display()))?,
        ),
        None => None,
    };
    if let Some(dir) = &args.dump_bodies {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
        let port = listener.local_addr()?.port();
        if let Some(pf) = &args.port_file {
            let tmp = pf.with_extension("tmp");
            std::fs::write(&tmp, format!("{port}\n"))
                .and_then(|()| std::fs::rename(&tmp, pf))
                .with_context(|| format!("cannot write {}", pf.display()))?;
        }
        {
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "mock-anthropic listening on http://{}:{port}",
                args.host
            )?;
            out.flush()?;
        }
        let outputs = server::Outputs {
            log,
            dump_dir: args.dump_bodies.clone(),
        };
        server::serve(
            listener,
            Arc::new(server::Shared::new(scenario, outputs, port)),
        )
        .await;
        Ok(())
    })
}
