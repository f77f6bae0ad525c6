//! `bmad-host run --dry-run`: each selected story, its state and what would run next. Changes
//! nothing.

use std::io::Write;

use crate::context::Plan;
use crate::error::{Error, Report};
use crate::exit;
use crate::policy::Role;
use crate::ui::Ui;
use crate::workflow::{self, Flow, Next, Observed, Settings, StoryFlow};

/// `run --dry-run`: each story, its state and what would run next. Changes nothing.
pub(super) fn print(plan: &Plan, ui: &mut Ui) -> Result<u8, Error> {
    let Plan {
        context,
        project,
        stories,
        plugins,
    } = plan;
    let mut settings = Settings::from(&context.config.workflow);
    settings.flow = crate::run::flow_of(project);
    let choice = project.flow()?;
    let mut out = std::io::stdout().lock();
    ui.say(&format!(
        "{} (dry run: nothing is changed)",
        project.describe()
    ));
    ui.say(&format!("flow: {}: {}", choice.flow, choice.why));
    // Whether a `done` counts (see `workflow`): the journal's sightings, when it has them. A
    // dry run reads the journal only if it can; without one, a story done now is done at its
    // first sighting.
    let journal = crate::journal::Journal::open_read_only(&context.root)
        .ok()
        .flatten();
    if context.config.workflow.retrospective.value == crate::config::Retrospective::Run
        && project.sprint_status_path().is_some()
    {
        let files = project.retrospective_files();
        ui.say(&if files.is_empty() {
            "retrospective = \"run\", but no bmad-retrospective workflow is installed: no retrospective would run".to_owned()
        } else {
            format!(
                "retrospective = \"run\": an epic whose last story the run takes to done gets its retrospective ({})",
                files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
    }
    for entry in stories {
        let mut status = None;
        let observed = if !entry.exists {
            Observed::NotDrafted
        } else {
            match project.read_story(entry) {
                Ok(t) => {
                    let parse = plugins.parse_status(&t.text)?;
                    let observed = crate::run::observed(&entry.path, &parse);
                    if let crate::policy::ParseOutcome::Found(v) = parse {
                        status = Some(v);
                    }
                    observed
                }
                Err(e) => Observed::Unusable(Report(&e).to_string()),
            }
        };
        // v6: sprint-status disagreeing with the story file; a run repairs it first.
        if let Some(drift) = project.drift(entry, status.as_ref()) {
            ui.say(&format!("  drift: {drift} (a run repairs it)"));
        }
        let state = match &observed {
            Observed::NotDrafted => "not drafted".to_string(),
            Observed::State(s) => workflow::state_name(*s).to_string(),
            Observed::Unusable(_) => "unreadable".to_string(),
        };
        let mut flow = Flow::new(settings);
        if observed == Observed::State(crate::policy::StoryState::Done) {
            let sighting = journal.as_ref().map(|j| j.sighting(&entry.id.to_string()));
            match sighting {
                None | Some(Ok(None)) => flow.accept_done(),
                Some(Ok(Some(s))) if s.done_run.is_some() => flow.accept_done(),
                Some(_) => {}
            }
        }
        let next = match flow.next(&observed) {
            Next::Run { role: Role::Sm, .. } => "sm (draft the story)".to_string(),
            Next::Run {
                role: Role::Dev,
                cycle,
                ..
            } if settings.flow == StoryFlow::Build => format!("dev: build (cycle {cycle})"),
            Next::Run {
                role: Role::Qa,
                cycle,
                ..
            } if settings.flow == StoryFlow::Build => format!("qa: code-review (cycle {cycle})"),
            Next::Run { role, cycle, .. } => {
                format!("{} (cycle {cycle})", workflow::role_name(role))
            }
            Next::Finish(r) => match r.reason() {
                Some(reason) => format!("nothing: {} ({reason})", r.word()),
                None => format!("nothing: {}", r.word()),
            },
        };
        if ui.json() {
            let line = serde_json::json!({
                "event": "plan", "ts": crate::ui::timestamp(), "story": entry.id.to_string(),
                "title": entry.title, "file": entry.path.display().to_string(), "exists": entry.exists,
                "state": state, "next": next, "flow": choice.flow.name(),
                "flow_why": choice.why,
            });
            serde_json::to_writer(&mut out, &line)?;
            writeln!(out).map_err(Error::Output)?;
        } else {
            writeln!(
                out,
                "{:<6} {:<14} next: {:<24} {}  {}",
                entry.id.to_string(),
                state,
                next,
                entry.title,
                entry.path.display()
            )
            .map_err(Error::Output)?;
        }
    }
    Ok(exit::OK)
}
