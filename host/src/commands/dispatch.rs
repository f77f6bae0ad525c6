//! From the process's arguments to its exit code: parse, set up logging, resolve the arguments,
//! run the command, and map the result (or the error, printed with its causes) to an exit code.

use std::process::ExitCode;

use clap::Parser as _;

use crate::cli::{Cli, Command, Common, Engine, PluginsCommand};
use crate::config::Overrides;
use crate::context::Context;
use crate::engine::EngineError;
use crate::error::{Error, Report};
use crate::exit;

/// Parses the command line, runs the command and maps the result to an exit code.
pub fn main() -> ExitCode {
    let mut args = std::env::args_os();
    if args
        .nth(1)
        .is_some_and(|a| a == crate::process::keeper::KEEPER_ARG)
    {
        return crate::process::keeper::main(args.collect());
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    init_tracing(cli.command.common());
    match dispatch(cli.command) {
        Ok(code) => ExitCode::from(code),
        // The reader went away (`bmad-host status | head`): not an error.
        Err(e) if e.is_broken_pipe() => ExitCode::from(exit::OK),
        Err(e) => {
            eprintln!("error: {}", Report(&e));
            ExitCode::from(e.exit_code())
        }
    }
}

fn init_tracing(common: Option<&Common>) {
    let level = match common {
        Some(c) if c.quiet => "error",
        Some(c) if c.verbose >= 2 => "debug",
        Some(c) if c.verbose == 1 => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BMAD_HOST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours for a terminal only: a worker's log file gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// Resolves each command's arguments the way it needs them, then runs it.
fn dispatch(command: Command) -> Result<u8, Error> {
    match command {
        Command::Completions { shell } => super::completions::print(shell),
        Command::Config(args) => {
            let context = Context::resolve(
                trusting(args.common.options(), args.settings.trust),
                &args.settings.overrides(),
            )?;
            context.warn_untrusted();
            super::config::print(&context)
        }
        Command::Status(args) if args.restate_admin.is_some() => {
            let root = crate::context::project_root(&args.common.project)?;
            let admin = args.restate_admin.as_deref().unwrap_or_default();
            crate::engine::restate::status(&root, admin, args.common.json)
        }
        Command::Log(args) if args.restate_admin.is_some() => {
            let root = crate::context::project_root(&args.common.project)?;
            let admin = args.restate_admin.as_deref().unwrap_or_default();
            crate::engine::restate::log(&root, admin, args.story.as_deref(), args.common.json)
        }
        Command::Status(args) => {
            let context = Context::resolve(args.common.options(), &Overrides::default())?;
            context.warn_untrusted();
            super::status::print(&context, args.epic)
        }
        Command::Trust(args) => super::trust::trust(args.common.options()),
        Command::Log(args) => {
            // `log` reads only the journal: a broken configuration does not hide it.
            let root = crate::context::project_root(&args.common.project)?;
            super::log::print(&root, args.common.json, args.story.as_deref())
        }
        Command::Report(args) => {
            // Like `log`, `report` reads only the journal.
            let root = crate::context::project_root(&args.common.project)?;
            super::report::write(
                &root,
                args.run.as_deref(),
                args.output.as_deref(),
                args.common.json,
            )
        }
        Command::Plugins(PluginsCommand::List(args)) => {
            let context = Context::resolve_lenient(args.common.options(), &Overrides::default())?;
            context.warn_untrusted();
            super::plugins::print(&context, false)
        }
        Command::Plugins(PluginsCommand::Check(args)) => {
            let context = Context::resolve_lenient(args.common.options(), &Overrides::default())?;
            context.warn_untrusted();
            super::plugins::print(&context, true)
        }
        Command::Plugins(PluginsCommand::Export(args)) => {
            super::plugins::export(&args.dir, args.common.json, args.common.verbosity())
        }
        Command::Run(args) => {
            let context = Context::resolve(
                trusting(args.common.options(), args.settings.trust),
                &args.settings.overrides(),
            )?;
            // What the project's file would run or grant is in force only once it is trusted.
            context.config.require_trust()?;
            match (args.engine, args.restate.as_deref()) {
                (Engine::Restate, Some(url)) if !args.dry_run => {
                    crate::engine::restate::run(context, args.epic, args.story.as_deref(), url)
                }
                _ => super::run::run(
                    context,
                    args.epic,
                    args.story.as_deref(),
                    args.dry_run,
                    args.fresh,
                ),
            }
        }
        Command::Worker(args) => {
            if args.engine != Engine::Restate {
                return Err(EngineError::LocalWorker.into());
            }
            crate::engine::restate::worker(worker_spec(&args)?, args.listen)
        }
        Command::Balance(args) => crate::engine::restate::balance(args.listen, &args.workers),
    }
}

/// `bmad-host worker`'s [`WorkerSpec`](crate::engine::WorkerSpec), from its arguments.
fn worker_spec(args: &crate::cli::WorkerArgs) -> Result<crate::engine::WorkerSpec, Error> {
    let options = trusting(args.common.options(), args.settings.trust);
    Ok(crate::engine::WorkerSpec {
        root: crate::context::project_root(&options.project)?,
        options,
        overrides: args.settings.overrides(),
        ingress: args.restate.trim_end_matches('/').to_string(),
        lease_ttl: args.lease_ttl,
    })
}

/// `options` with `--trust` added.
fn trusting(mut options: crate::context::Options, trust: bool) -> crate::context::Options {
    options.trust |= trust;
    options
}
