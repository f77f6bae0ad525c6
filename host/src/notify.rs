//! Notifiers (`[[notify]]`): word of the run's notable events (a story escalated or failed, a
//! usage limit, a limit warning, the run's end) to wherever the operator is, through a command
//! (the event's JSON on its stdin, under the gates' supervision: [`crate::gates::run_beside`])
//! or a webhook (the event's JSON POSTed, one retry).
//!
//! They run beside the run loop and never stop or slow it: the loop's [`Ui`] copies each event
//! to a channel (never blocking), a task reads it and starts each notifier the event concerns as
//! a task of its own, bounded by its timeout. A notifier that fails is reported (a warning and a
//! `notify_failed` event) and nothing else. At the end of the run, [`Notifiers::finish`] closes
//! the channel and waits for the notifiers still running, each at most its timeout.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::config::{GateConfig, NotifyConfig, NotifyTarget};
use crate::process::Interrupt;
use crate::ui::{Event, Reporter, Ui};

/// The notifiers of a run: the task that reads the events and runs them.
#[derive(Debug)]
pub struct Notifiers {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Notifiers {
    /// Starts the notifiers of `config` for the events `ui` emits from now on; with none
    /// configured, nothing is started.
    pub fn start(config: &[NotifyConfig], root: PathBuf, run_id: String, ui: &mut Ui) -> Self {
        if config.is_empty() {
            return Notifiers { task: None };
        }
        let (tx, rx) = mpsc::unbounded_channel();
        ui.set_tap(Some(tx));
        let shared = Arc::new(Shared {
            notifiers: config.to_vec(),
            root,
            run_id,
            reporter: ui.reporter(),
        });
        Notifiers {
            task: Some(tokio::spawn(dispatch(shared, rx))),
        }
    }

    /// Stops copying events from `ui`, and waits until every notification started (the last
    /// events' included) has ended: each is bounded by its own timeout.
    pub async fn finish(self, ui: &mut Ui) {
        ui.set_tap(None);
        if let Some(task) = self.task {
            let _ = task.await;
        }
    }
}

/// What every notification needs.
#[derive(Debug)]
struct Shared {
    notifiers: Vec<NotifyConfig>,
    root: PathBuf,
    run_id: String,
    reporter: Reporter,
}

/// Reads the events until the channel closes, starting the notifications each concerns; then
/// waits for those still running.
async fn dispatch(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Event>) {
    let mut running = JoinSet::new();
    loop {
        tokio::select! {
            event = rx.recv() => {
                let Some(event) = event else { break };
                let Some(name) = event.notify_name() else { continue };
                let body = event.to_json().to_string().into_bytes();
                for (i, notifier) in shared.notifiers.iter().enumerate() {
                    if notifier.on.iter().any(|on| on == name) {
                        running.spawn(notify(shared.clone(), i, name, body.clone()));
                    }
                }
            }
            // Finished ones are collected as they end, so the set stays small.
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
    }
    while running.join_next().await.is_some() {}
}

/// Tells notifier `index` of the event `name` (JSON `body`); reports a failure.
async fn notify(shared: Arc<Shared>, index: usize, name: &'static str, body: Vec<u8>) {
    let notifier = &shared.notifiers[index];
    let result = match &notifier.target {
        NotifyTarget::Command(command) => {
            run_command(&shared, index, command, notifier.timeout, name, body).await
        }
        NotifyTarget::Webhook(url) => post(url, &body, notifier.timeout).await,
    };
    match result {
        Ok(()) => tracing::debug!(notifier = index, event = name, "notified"),
        Err(error) => {
            let what = format!("notify[{index}] ({})", notifier.describe());
            tracing::warn!(notifier = %what, event = name, %error, "a notifier failed");
            shared.reporter.report(
                &Event::NotifyFailed {
                    on: name.to_string(),
                    notifier: notifier.describe(),
                    error: error.clone(),
                },
                &format!("{what} failed on `{name}`: {error} (the run goes on)"),
            );
        }
    }
}

/// Runs a notifier's command under the gates' supervision, beside the run, the event's JSON on
/// its stdin, with `BMAD_HOST_EVENT` and `BMAD_HOST_RUN_ID` in its environment.
async fn run_command(
    shared: &Shared,
    index: usize,
    command: &str,
    timeout: Duration,
    name: &str,
    body: Vec<u8>,
) -> Result<(), String> {
    let gate = GateConfig {
        name: format!("notify[{index}]"),
        command: command.to_string(),
        timeout,
        enabled: true,
    };
    let env = [
        ("BMAD_HOST_EVENT".to_string(), name.to_string()),
        ("BMAD_HOST_RUN_ID".to_string(), shared.run_id.clone()),
    ];
    // Its own interrupts: the operator's Ctrl-C stops the run, whose end waits for this at
    // most its timeout.
    let (_never, interrupts) = watch::channel(Interrupt::None);
    let run = crate::gates::run_beside(&gate, &shared.root, &env, body, interrupts).await;
    if !run.clean {
        let list: Vec<String> = run.survivors.iter().map(ToString::to_string).collect();
        return Err(format!(
            "its end cannot be proven: {}",
            if list.is_empty() {
                "its output is held open".to_string()
            } else {
                list.join(", ")
            }
        ));
    }
    if run.report.passed {
        return Ok(());
    }
    let tail = run.report.output_tail.trim();
    let tail = tail
        .char_indices()
        .rev()
        .nth(300)
        .map_or(tail, |(i, _)| &tail[i..]);
    Err(if run.report.timed_out {
        format!(
            "timed out after {}; its process tree was torn down",
            humantime::format_duration(timeout)
        )
    } else {
        match run.report.exit_code {
            Some(code) => format!("exit code {code}: {tail}"),
            None => format!("killed by a signal: {tail}"),
        }
    })
}

/// POSTs `body` to `url` as JSON: one attempt and, when it fails, one retry, both within
/// `timeout`. A 2xx status is success.
async fn post(url: &str, body: &[u8], timeout: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::new();
    for attempt in 1..=2 {
        match tokio::time::timeout_at(deadline, crate::http::post_json(url, body)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => {
                tracing::debug!(url, attempt, error = %e, "webhook attempt failed");
                last = e;
            }
            Err(_) => {
                return Err(format!(
                    "no answer within {}{}",
                    humantime::format_duration(timeout),
                    if last.is_empty() {
                        String::new()
                    } else {
                        format!(" (the first attempt: {last})")
                    }
                ));
            }
        }
    }
    Err(format!("{last} (after one retry)"))
}
