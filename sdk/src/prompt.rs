//! Prompt composition: what each role's Claude call is told, for BMAD v4 and v6.
//!
//! v4 drives the installed personas (`.bmad-core/agents/{sm,dev,qa}.md`) and their tasks
//! (`create-next-story`, `develop-story` / `apply-qa-fixes`, `review-story` + `qa-gate`). v6
//! drives the installed workflows (`create-story`, `dev-story`, `code-review`) through
//! `_bmad/core/tasks/workflow.xml`, or the installed `bmad-*` skill where the workflow file is
//! gone (6.12). The build flow of BMAD 6.11+ ([`is_build`]: the host names a `bmad-build` spec,
//! `spec-*.md`, as the story's file) drives `bmad-build-auto` (the unattended `bmad-build`) in
//! the Dev slot and `bmad-code-review` in the QA slot, through their installed Claude Code skills
//! ([`BUILD_AUTO_SKILL`], [`BUILD_SKILL`], [`CODE_REVIEW_SKILL`]). Every prompt names the story file and the cycle, says what failed last time on a
//! retry or a later cycle, and warns of half-edited files after an interrupted attempt. Nobody
//! answers questions in a headless run, so each prompt says which menu choice to take.

use std::fmt::Write as _;

use crate::types::{AgentRequest, Layout, Story};

/// Appended to Claude's system prompt for every call.
pub const SYSTEM_PROMPT: &str = "You are running headless under bmad-host, an orchestrator that \
drives a BMAD project story by story. No person is watching this session: never wait for input, \
never ask for confirmation, and never stop at a menu. Where a BMAD task or workflow would halt to \
ask the user, take the choice the orchestrator's prompt names, or else the choice that keeps the \
work going without losing anything, and note the decision in the story's log section. Work only on \
the story you are given.";

/// The story and cycle header shared by every prompt, with the retry and findings notes.
pub fn context(story: &Story) -> String {
    let mut s = String::new();
    let title = if story.title.is_empty() {
        String::new()
    } else {
        format!(" \"{}\"", story.title)
    };
    let _ = writeln!(s, "Story: {}{} (epic {})", story.id, title, story.epic);
    let _ = writeln!(s, "Story file: `{}`", story.path);
    if !story.epic_path.is_empty() {
        let _ = writeln!(s, "Epic file: `{}`", story.epic_path);
    }
    if !story.sprint_status_path.is_empty() {
        let _ = writeln!(s, "Sprint status: `{}`", story.sprint_status_path);
    }
    if story.max_cycles > 0 {
        let _ = writeln!(s, "Cycle: {} of {}", story.cycle, story.max_cycles);
    } else {
        let _ = writeln!(s, "Cycle: {}", story.cycle);
    }
    if let Some(raw) = &story.raw_status {
        let _ = writeln!(s, "Current status in the file: {raw}");
    }
    if story.retry {
        s.push_str(
            "\nThe previous attempt at this step was interrupted before it finished. Files, the \
story file included, may be half-edited: check the story file and the working tree (git status, \
git diff) first, keep what is sound, repair what is broken, and finish the step rather than \
starting over.\n",
        );
    }
    if !story.previous_findings.is_empty() {
        let when = if story.retry && story.cycle <= 1 {
            "the previous attempt"
        } else {
            "the previous cycle"
        };
        let _ = writeln!(s, "\nWhat failed in {when} (address every item):");
        for f in &story.previous_findings {
            let _ = writeln!(s, "- {}", f.replace('\n', "\n  "));
        }
    } else if story.cycle > 1 {
        s.push_str(
            "\nA review sent this story back in the previous cycle: its findings are recorded in \
the story file (QA Results / review sections) and, for v4, in the QA gate file.\n",
        );
    }
    s
}

fn request(prompt: String) -> AgentRequest {
    AgentRequest {
        prompt,
        append_system_prompt: Some(SYSTEM_PROMPT.to_owned()),
        ..AgentRequest::default()
    }
}

/// The installed `bmad-build-auto` skill (BMAD 6.11+, for Claude Code).
pub const BUILD_AUTO_SKILL: &str = ".claude/skills/bmad-build-auto/SKILL.md";
/// The installed `bmad-build` skill.
pub const BUILD_SKILL: &str = ".claude/skills/bmad-build/SKILL.md";
/// The installed `bmad-code-review` skill.
pub const CODE_REVIEW_SKILL: &str = ".claude/skills/bmad-code-review/SKILL.md";

/// Whether the story runs the BMAD 6.11+ build flow: a v6 story whose file, as the host names
/// it, is a `bmad-build` spec (`spec-{key}.md`). The host names a spec exactly when the
/// project's installation has `bmad-build` and not the `create-story` / `dev-story` shims.
pub fn is_build(story: &Story) -> bool {
    story.layout == Layout::V6
        && story
            .path
            .rsplit('/')
            .next()
            .is_some_and(|name| name.starts_with("spec-") && name.ends_with(".md"))
}

/// The build step (Dev slot of the build flow): `bmad-build-auto` writes the spec if there is
/// none and implements it; a later cycle resolves the review's findings.
fn build(story: &Story) -> String {
    let mut p = format!(
        "Run the BMAD `bmad-build-auto` skill: read `{BUILD_AUTO_SKILL}` and follow it exactly. It \
is the unattended form of `bmad-build`; if it is not installed, run `bmad-build` (`{BUILD_SKILL}`) \
instead, and at every checkpoint that waits for a person take the choice that approves the plan \
and keeps the work going.\n\n\
Work on story {id} exactly, and only on it. Its spec is `{path}`: ",
        id = story.id,
        path = story.path,
    );
    if story.exists {
        p.push_str(
            "it exists: resume it from its frontmatter `status:` as the skill says for an existing \
spec, and never start a second spec for this story.\n",
        );
    } else {
        let _ = writeln!(
            p,
            "it does not exist yet: derive the intent from story {id}{epics}, write the spec to \
exactly that path (not a `-2` variant), then implement it.",
            id = story.id,
            epics = if story.epic_path.is_empty() {
                String::new()
            } else {
                format!(" in `{}`", story.epic_path)
            },
        );
    }
    if story.cycle > 1 {
        p.push_str(
            "\nThe code review sent this story back: resolve every unchecked `[Review]` finding in \
the spec and every finding listed above, tick each one once it is fixed and tested, and note the \
fixes in the spec's `## Spec Change Log`.\n",
        );
    }
    let _ = write!(
        p,
        "\nWhen the work is implemented, verified and reviewed as the skill requires, leave the \
spec's frontmatter `status:` as the skill sets it at the end (`done`, or `in-review`). If you \
cannot finish, set it to `blocked` and say why under `## Auto Run Result`. The orchestrator keeps \
the spec, the story and {sprint} in step after this step: there is nothing else to update.\n",
        sprint = if story.sprint_status_path.is_empty() {
            "sprint-status".to_owned()
        } else {
            format!("`{}`", story.sprint_status_path)
        },
    );
    p
}

/// The review step (QA slot of the build flow): `bmad-code-review` on the spec.
fn build_review(story: &Story) -> String {
    let mut p = format!(
        "Run the BMAD `bmad-code-review` skill: read `{CODE_REVIEW_SKILL}` and follow it exactly, \
in full review mode with the spec `{path}` as its spec file (the diff is everything since the \
spec's `baseline_commit`).\n\n\
Nobody will answer its menus. When it asks what to do with the findings, choose to leave them as \
action items: record each one in the spec as an unchecked `- [ ] [Review][Severity] description \
[file:line]` item under `### Review Findings`. Do not fix the code yourself.\n\n\
Then set the spec's status yourself, in its YAML frontmatter (`status:`; do not add a `Status:` \
line): `done` if every acceptance criterion is implemented and no HIGH or MEDIUM finding is open, \
otherwise `in-progress`. Never leave it `in-review`. The orchestrator brings the story and \
sprint-status into line with the spec.\n",
        path = story.path,
    );
    if story.cycle > 1 {
        p.push_str(
            "\nThis is a re-review after the build addressed the findings listed above: check each \
of them and do not re-open findings that are fixed.\n",
        );
    }
    p
}

/// How to run a v6 workflow by name (`create-story`, `dev-story`, `code-review`).
fn v6_workflow(name: &str) -> String {
    format!(
        "Run the BMAD `{name}` workflow: read `_bmad/core/tasks/workflow.xml` completely and follow \
it exactly with workflow-config `_bmad/bmm/workflows/4-implementation/{name}/workflow.yaml`. If that \
file does not exist in this installation, use the installed `bmad-{name}` skill (or command) instead. \
Run it in #yolo mode: skip optional confirmations and elicitation."
    )
}

/// The SM prompt: draft this story at this path.
pub fn sm(story: &Story) -> AgentRequest {
    let mut p = context(story);
    p.push('\n');
    match story.layout {
        Layout::V4 => {
            let _ = write!(
                p,
                "Act as the BMAD Scrum Master: read `.bmad-core/agents/sm.md` and adopt that persona \
(load `.bmad-core/core-config.yaml` as it says). Then run its `*draft` command, the task \
`.bmad-core/tasks/create-next-story.md`, for story {id} exactly: do not choose another story \
number, and if the task asks whether to go on although an earlier story is not Done, go on (the \
orchestrator has decided that {id} is next).\n\n\
Write the story to `{path}` using `.bmad-core/templates/story-tmpl.yaml`, filling every section \
from the epic and the architecture documents as the task describes, with `## Status` set to \
`Draft`. If `{path}` already exists, do not modify or overwrite it: stop and say so. Then run \
`.bmad-core/tasks/execute-checklist.md` with `.bmad-core/checklists/story-draft-checklist.md` and \
fix what it finds in the new story.\n\n\
Do not write code and do not edit any other story.\n",
                id = story.id,
                path = story.path,
            );
        }
        Layout::V6 => {
            let _ = write!(
                p,
                "{wf}\n\n\
Create story {id} exactly, even if the sprint status lists another backlog story first. Write \
the story file to `{path}`; if that file already exists, do not modify or overwrite it: stop and \
say so. The new story's status is `ready-for-dev` (`Status: ready-for-dev` in the file{sprint}).\n\n\
Do not write code and do not edit any other story.\n",
                wf = v6_workflow("create-story"),
                id = story.id,
                path = story.path,
                sprint = sprint_clause(story, "ready-for-dev"),
            );
        }
    }
    request(p)
}

/// `", and this story's entry in `<sprint-status>`"`, when the path is known.
fn sprint_clause(story: &Story, value: &str) -> String {
    if story.sprint_status_path.is_empty() {
        String::new()
    } else {
        format!(
            ", and `{value}` for this story's key in `{}`",
            story.sprint_status_path
        )
    }
}

/// The Dev prompt: implement the story, or apply the review's fixes on a later cycle.
pub fn dev(story: &Story) -> AgentRequest {
    let mut p = context(story);
    p.push('\n');
    let fixing = story.cycle > 1;
    if is_build(story) {
        p.push_str(&build(story));
        return request(p);
    }
    match story.layout {
        Layout::V4 => {
            p.push_str(
                "Act as the BMAD Developer: read `.bmad-core/agents/dev.md` and adopt that persona \
(load `.bmad-core/core-config.yaml` and its `devLoadAlwaysFiles` as it says).\n\n",
            );
            if fixing {
                let gate = if story.gate_path.is_empty() {
                    "the story's QA gate file".to_owned()
                } else {
                    format!("the QA gate `{}`", story.gate_path)
                };
                let _ = write!(
                    p,
                    "QA sent this story back. Run `*review-qa`: the task \
`.bmad-core/tasks/apply-qa-fixes.md` for story {id}, reading {gate} and the story's `QA Results`. \
Fix every finding listed above (high severity first), add the missing tests, and run the full test \
suite and the linters. Update only the sections the persona allows (Tasks / Subtasks checkboxes, \
Dev Agent Record, File List, Change Log).\n\n\
When every finding is fixed and the tests pass, set the story's Status to `Ready for Review` \
(`Ready for Done` only if the gate was PASS and every gap is closed, as the task says). If \
something cannot be fixed, leave the Status as it is and explain why in the Completion Notes.\n",
                    id = story.id,
                );
            } else {
                let _ = write!(
                    p,
                    "Run `*develop-story` on `{path}`: implement the tasks in order, write the tests \
each task needs, run them, and tick a task's checkbox only when its tests pass. Update only the \
sections the persona allows (Tasks / Subtasks checkboxes, Dev Agent Record, File List, Change Log).\n\n\
When every task is done and the full test suite and linters pass, run the story DoD checklist \
(`.bmad-core/checklists/story-dod-checklist.md`) and set the story's Status to `Ready for \
Review`. If you cannot finish, leave the Status as it is and explain what blocks you in the \
Completion Notes.\n",
                    path = story.path,
                );
            }
        }
        Layout::V6 => {
            let _ = write!(
                p,
                "{wf}\n\nDevelop exactly the story in `{path}`; do not pick another story.\n\n",
                wf = v6_workflow("dev-story"),
                path = story.path,
            );
            if fixing {
                p.push_str(
                    "The code review sent this story back: resolve every open review item in the \
story file (unchecked `[AI-Review]` / `[Review]` follow-ups and action items) and every finding \
listed above, tick each item once it is fixed and tested, and note the fix in the Dev Agent Record.\n",
                );
            }
            let _ = write!(
                p,
                "\nWhen every task is done and the full test suite passes, set the status to \
`review` (`Status: review` in the story file{sprint}). If you cannot finish, leave the status as \
it is and explain what blocks you in the Completion Notes.\n",
                sprint = sprint_clause(story, "review"),
            );
        }
    }
    request(p)
}

/// The QA prompt: review the story and record a decision.
pub fn qa(story: &Story) -> AgentRequest {
    let mut p = context(story);
    p.push('\n');
    let rereview = story.cycle > 1;
    if is_build(story) {
        p.push_str(&build_review(story));
        return request(p);
    }
    match story.layout {
        Layout::V4 => {
            let gate = if story.gate_path.is_empty() {
                "in the `qa.qaLocation` gates folder of `.bmad-core/core-config.yaml`".to_owned()
            } else {
                format!(
                    "exactly at `{}` (create the folder if needed)",
                    story.gate_path
                )
            };
            let _ = write!(
                p,
                "Act as the BMAD Test Architect: read `.bmad-core/agents/qa.md` and adopt that persona. \
Run `*review {id}`: the task `.bmad-core/tasks/review-story.md` on `{path}`. Review the code and \
the tests against every acceptance criterion, and write your results only into the story's \
`QA Results` section.\n\n\
Then record the gate decision with the task `.bmad-core/tasks/qa-gate.md`: write the gate file \
{gate}, with `gate:` one of PASS, CONCERNS, FAIL or WAIVED, a `status_reason`, and each issue \
under `top_issues` with `id`, `severity`, `finding` and `suggested_action`. Use FAIL for a \
missing acceptance criterion or a high-severity issue.\n\n\
Do NOT change the story's Status: the orchestrator sets it from your gate decision. Do not edit \
the other sections of the story.\n",
                id = story.id,
                path = story.path,
            );
            if rereview {
                p.push_str(
                    "\nThis is a re-review after Dev addressed the findings listed above: check \
each of them, overwrite the gate with the new decision, and append an entry to its `history`.\n",
                );
            }
        }
        Layout::V6 => {
            let _ = write!(
                p,
                "{wf}\n\nReview exactly the story in `{path}`.\n\n\
Nobody will answer the workflow's menu. When it asks what to do with the issues it found, \
choose \"Create action items\": add each issue to the story's Tasks / Subtasks under `Review \
Follow-ups (AI)` as an unchecked `- [ ] [AI-Review][Severity] description [file:line]` item (or, \
in a version that records `### Review Findings` with `[Review][...]` items, keep those unchecked \
the same way). Do not fix the code yourself.\n\n\
Then set the status yourself, in the story file (`Status:` line){sprint_any}: `done` if every \
acceptance criterion is implemented and no HIGH or MEDIUM issue is open, otherwise \
`in-progress`. Never leave the story in `review`.\n",
                wf = v6_workflow("code-review"),
                path = story.path,
                sprint_any = if story.sprint_status_path.is_empty() {
                    String::new()
                } else {
                    format!(" and in `{}`", story.sprint_status_path)
                },
            );
            if rereview {
                p.push_str(
                    "\nThis is a re-review after Dev addressed the findings listed above: check \
each of them and do not re-open items that are fixed.\n",
                );
            }
        }
    }
    request(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn story(layout: Layout) -> Story {
        Story {
            id: "1.2".into(),
            epic: 1,
            title: "User Registration".into(),
            path: "docs/stories/1.2.story.md".into(),
            cycle: 1,
            max_cycles: 3,
            layout,
            gate_path: "docs/qa/gates/1.2-user-registration.yml".into(),
            ..Story::default()
        }
    }

    #[test]
    fn every_prompt_names_the_story_file_and_cycle() {
        for layout in [Layout::V4, Layout::V6] {
            for req in [sm(&story(layout)), dev(&story(layout)), qa(&story(layout))] {
                assert!(
                    req.prompt.contains("`docs/stories/1.2.story.md`"),
                    "{}",
                    req.prompt
                );
                assert!(req.prompt.contains("Cycle: 1 of 3"), "{}", req.prompt);
                assert!(!req.prompt.contains("interrupted"), "{}", req.prompt);
                assert_eq!(req.append_system_prompt.as_deref(), Some(SYSTEM_PROMPT));
            }
        }
    }

    #[test]
    fn retry_and_findings_are_spelled_out() {
        let mut s = story(Layout::V4);
        s.retry = true;
        s.cycle = 2;
        s.previous_findings = vec!["medium: case-sensitive duplicate check".into()];
        let p = dev(&s).prompt;
        assert!(
            p.contains("interrupted") && p.contains("half-edited"),
            "{p}"
        );
        assert!(
            p.contains("- medium: case-sensitive duplicate check"),
            "{p}"
        );
        assert!(p.contains("apply-qa-fixes"), "{p}");
        assert!(p.contains("Cycle: 2 of 3"), "{p}");
    }

    #[test]
    fn v4_roles_use_their_personas_and_tasks() {
        let s = story(Layout::V4);
        let p = sm(&s).prompt;
        assert!(
            p.contains(".bmad-core/agents/sm.md") && p.contains("create-next-story"),
            "{p}"
        );
        assert!(p.contains("do not modify or overwrite"), "{p}");
        let p = dev(&s).prompt;
        assert!(
            p.contains(".bmad-core/agents/dev.md") && p.contains("*develop-story"),
            "{p}"
        );
        assert!(p.contains("`Ready for Review`"), "{p}");
        let p = qa(&s).prompt;
        assert!(p.contains("review-story") && p.contains("qa-gate"), "{p}");
        assert!(
            p.contains("exactly at `docs/qa/gates/1.2-user-registration.yml`"),
            "{p}"
        );
        assert!(p.contains("Do NOT change the story's Status"), "{p}");
    }

    #[test]
    fn build_flow_roles_use_the_build_skills() {
        let mut s = story(Layout::V6);
        s.path = "_bmad-output/implementation-artifacts/spec-1-2-user-registration.md".into();
        s.epic_path = "_bmad-output/planning-artifacts/epics.md".into();
        assert!(is_build(&s));
        let p = dev(&s).prompt;
        assert!(
            p.contains(BUILD_AUTO_SKILL) && p.contains(BUILD_SKILL),
            "{p}"
        );
        assert!(
            p.contains("does not exist yet") && p.contains("epics.md"),
            "{p}"
        );
        assert!(!p.contains("dev-story"), "{p}");
        s.exists = true;
        s.cycle = 2;
        let p = dev(&s).prompt;
        assert!(
            p.contains("resume it") && p.contains("sent this story back"),
            "{p}"
        );
        let p = qa(&s).prompt;
        assert!(
            p.contains(CODE_REVIEW_SKILL) && p.contains("### Review Findings"),
            "{p}"
        );
        assert!(p.contains("Never leave it `in-review`"), "{p}");
        // A story file, or v4, is not a spec.
        s.path = "_bmad-output/implementation-artifacts/1-2-user-registration.md".into();
        assert!(!is_build(&s));
        let mut v4 = story(Layout::V4);
        v4.path = "docs/stories/spec-1.2.md".into();
        assert!(!is_build(&v4));
    }

    #[test]
    fn v6_roles_use_their_workflows() {
        let mut s = story(Layout::V6);
        s.sprint_status_path = "_bmad-output/implementation-artifacts/sprint-status.yaml".into();
        assert!(
            sm(&s)
                .prompt
                .contains("4-implementation/create-story/workflow.yaml")
        );
        let p = dev(&s).prompt;
        assert!(
            p.contains("4-implementation/dev-story/workflow.yaml") && p.contains("`review`"),
            "{p}"
        );
        let p = qa(&s).prompt;
        assert!(
            p.contains("4-implementation/code-review/workflow.yaml"),
            "{p}"
        );
        assert!(
            p.contains("\"Create action items\"")
                && p.contains("Never leave the story in `review`")
        );
        assert!(p.contains("sprint-status.yaml"), "{p}");
    }
}
