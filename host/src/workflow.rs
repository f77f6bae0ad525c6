//! The story state machine: pure, synchronous, no I/O.
//!
//! For one story, [`Flow::next`] takes what the host observed in the story file (its parsed
//! status) and says which role runs next, or how the story ends. [`Flow::step_ended`] records
//! what the role's policy decided. Everything else (reading files, calling policies, running the
//! agent, journaling) happens outside, in [`crate::run`].
//!
//! Rules:
//! - No story file → SM drafts it. A story SM already attempted and that still does not exist
//!   fails.
//! - `drafted` → Dev when `approve_drafts` (the default), else escalate; `ready-for-dev`,
//!   `in-progress`, `changes-requested` → Dev; `review` → QA; `done` → finished; `blocked`
//!   → escalated. A status that is missing, doubtful or in conflict is escalated, never guessed.
//! - Review is never skipped (`require_review`, the default): `done` finishes the story only
//!   when QA's step completed it in this run ([`Flow::step_ended`]) or the host accepted it as
//!   done before ([`Flow::accept_done`]: it was already done the first time the project's
//!   journal saw it). A `done` that appeared any other way (a Dev agent that wrote `Done`
//!   itself) is treated as `review`: QA runs.
//! - One Dev + QA round is a cycle. The first Dev (or QA) step opens cycle 1; a Dev step that
//!   follows a QA step opens the next cycle; opening a cycle beyond `max_cycles` escalates.
//! - A step that leaves the story where it found it (same role would run again on the same
//!   state) is a stall and escalates, so nothing loops forever.
//! - A step that was started and not ended (the host crashed) is issued again, flagged as
//!   in flight, so the journal can tell the policy it is a retry.
//! - Every send-back is kept as a round (its cycle, who sent it, its findings), so the
//!   policies see the whole history ([`Flow::rounds`], `story.rounds` in the WIT): a QA step's
//!   send-back is a review round, any other role's (Dev's, after its gates) a gates round.
//!
//! The build flow of BMAD 6.11+ ([`StoryFlow::Build`]): `bmad-build` writes a story's spec and
//! implements it in one step, so that step runs in the Dev slot: no spec (or a `backlog` or
//! `draft` one) → Dev, whatever `approve_drafts` says (a `draft` spec is a plan `bmad-build`
//! resumes, not a story waiting for a person's approval); SM never runs. Everything else is the
//! story flow's: the build opens the cycle, gates follow it inside the Dev step, `in-review`
//! (and an unreviewed `done`, which `bmad-build` writes itself) → QA (`bmad-code-review`), a
//! review's send-back → Dev again in a new cycle, `max_cycles` escalates. The Dev slot, rather
//! than SM's or a new kind of step, keeps one machine for both flows: the same cycle rule (the
//! step that implements opens the cycle), the same stall rule, the same gates, and the same
//! roles in the WIT and the journal's step keys.

use serde::{Deserialize, Serialize};

pub use crate::policy::{ALL_STATES, role_name, state_name};
use crate::policy::{Finding, Role, Round, RoundKind, StoryState};

/// Workflow settings from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Dev+QA rounds allowed per story.
    pub max_cycles: u32,
    /// Whether a `Draft` story goes straight to Dev.
    pub approve_drafts: bool,
    /// Whether `done` needs QA's completion (or an earlier acceptance) to finish a story.
    #[serde(default = "yes")]
    pub require_review: bool,
    /// The project's flow (detected from its installation, not configured).
    #[serde(default)]
    pub flow: StoryFlow,
}

/// Which steps a story goes through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoryFlow {
    /// SM drafts the story, Dev implements it, QA reviews it (BMAD v4, v6 story workflows).
    #[default]
    Stories,
    /// The build step (Dev slot) writes the spec and implements it, QA reviews it (BMAD 6.11+).
    Build,
}

fn yes() -> bool {
    true
}

/// The configuration's defaults (`[workflow]` in [`crate::config`]).
impl Default for Settings {
    fn default() -> Self {
        Settings::from(&crate::config::WorkflowConfig::default())
    }
}

impl From<&crate::config::WorkflowConfig> for Settings {
    fn from(w: &crate::config::WorkflowConfig) -> Self {
        Settings {
            max_cycles: w.max_cycles.value,
            approve_drafts: w.approve_drafts.value,
            require_review: w.require_review.value,
            flow: StoryFlow::Stories,
        }
    }
}

/// What the host read from the story before asking for the next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// The story file does not exist yet.
    NotDrafted,
    /// The parsed canonical state.
    State(StoryState),
    /// The status cannot be trusted (missing, doubtful, conflicting): why, for the operator.
    Unusable(String),
}

/// How a story ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", content = "reason", rename_all = "snake_case")]
pub enum StoryResult {
    /// The story is done.
    Done,
    /// It failed, and why.
    Failed(String),
    /// It needs a person, and why.
    Escalated(String),
}

impl StoryResult {
    /// The word the NDJSON events and the summary use.
    pub fn word(&self) -> &'static str {
        match self {
            StoryResult::Done => "done",
            StoryResult::Failed(_) => "failed",
            StoryResult::Escalated(_) => "escalated",
        }
    }

    /// The reason, for failed and escalated stories.
    pub fn reason(&self) -> Option<&str> {
        match self {
            StoryResult::Done => None,
            StoryResult::Failed(r) | StoryResult::Escalated(r) => Some(r),
        }
    }
}

/// The journal records only how a story ended; the reason goes to its `last_outcome`.
impl From<&StoryResult> for crate::journal::StoryResult {
    fn from(result: &StoryResult) -> Self {
        match result {
            StoryResult::Done => crate::journal::StoryResult::Done,
            StoryResult::Failed(_) => crate::journal::StoryResult::Failed,
            StoryResult::Escalated(_) => crate::journal::StoryResult::Escalated,
        }
    }
}

/// What to do next for the story.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Run this role's step in this cycle. `resumed` is true when the same step was started
    /// before and never ended (a crash): the policy must be told it is a retry.
    Run {
        /// Whose step it is.
        role: Role,
        /// The Dev/QA cycle it belongs to (0 for SM).
        cycle: u32,
        /// The same step was started before and never ended.
        resumed: bool,
    },
    /// The story is finished.
    Finish(StoryResult),
}

/// How a role's step ended, as decided by its policy (after the host applied any state write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepEnd {
    /// The step finished; the host re-reads the story.
    Completed,
    /// QA (or a gate) sent the story back to Dev with findings.
    SentBack(Vec<String>),
    /// The policy failed the story.
    Failed(String),
    /// The policy escalated the story to a person.
    Escalated(String),
}

/// A step that was started: its role, the state it started from, and whether it sent the
/// story back to Dev.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepMark {
    /// Whose step it was.
    pub role: Role,
    /// The state it started from, when the story had one.
    pub from: Option<StoryState>,
    /// Whether it sent the story back to Dev.
    #[serde(default)]
    pub sent_back: bool,
}

/// One send-back as the journal keeps it (the fingerprints are computed when handed over).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SentRound {
    /// The cycle it ended.
    cycle: u32,
    /// Who sent it.
    #[serde(with = "round_kind")]
    kind: RoundKind,
    /// Its findings' texts.
    findings: Vec<String>,
}

/// A [`RoundKind`] in the journal: its WIT name (`review`, `gates`).
mod round_kind {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::policy::RoundKind;

    pub fn serialize<S: Serializer>(kind: &RoundKind, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match kind {
            RoundKind::Review => "review",
            RoundKind::Gates => "gates",
        })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<RoundKind, D::Error> {
        match String::deserialize(d)?.as_str() {
            "review" => Ok(RoundKind::Review),
            "gates" => Ok(RoundKind::Gates),
            other => Err(serde::de::Error::unknown_variant(
                other,
                &["review", "gates"],
            )),
        }
    }
}

/// The per-story state machine. Serializable, so the journal can keep it across crashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    settings: Settings,
    /// The current cycle (0 before the first Dev or QA step).
    cycle: u32,
    /// The last step that ended.
    last: Option<StepMark>,
    /// The step started and not yet ended.
    in_flight: Option<StepMark>,
    /// The findings of the last send-back (for the next cycle's prompts).
    findings: Vec<String>,
    /// How many findings each send-back carried, oldest first.
    findings_history: Vec<u32>,
    /// Every send-back, oldest first (absent from a record journaled before 0.2.0).
    #[serde(default)]
    rounds: Vec<SentRound>,
    /// The final result, once known.
    result: Option<StoryResult>,
    /// Whether a `done` status finishes the story: QA's step completed it in this run, or the
    /// host accepted it as done before ([`Flow::accept_done`]).
    #[serde(default)]
    reviewed: bool,
    /// How many times the story's integration failed (a parallel run: a conflict, or a gate
    /// that failed on the integrated result). Not written while 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    integration_failures: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Flow {
    /// A story not yet started.
    pub fn new(settings: Settings) -> Self {
        Flow {
            settings,
            cycle: 0,
            last: None,
            in_flight: None,
            findings: Vec::new(),
            findings_history: Vec::new(),
            rounds: Vec::new(),
            result: None,
            reviewed: false,
            integration_failures: 0,
        }
    }

    /// How many times the story's integration failed (a parallel run).
    pub fn integration_failures(&self) -> u32 {
        self.integration_failures
    }

    /// A story done in its worktree whose integration failed (`why`: the conflict or the gate
    /// output): the first time it goes back to Dev with `findings`, in a new cycle (true); the
    /// second time it escalates (false). Either way the next [`Flow::next`] says what follows.
    pub fn integration_failed(&mut self, why: &str, findings: Vec<String>) -> bool {
        self.integration_failures += 1;
        if self.integration_failures > 1 {
            self.result = Some(StoryResult::Escalated(format!(
                "integration failed a second time: {why}"
            )));
            return false;
        }
        self.result = None;
        self.in_flight = None;
        self.reviewed = false;
        self.findings_history
            .push(u32::try_from(findings.len()).unwrap_or(u32::MAX));
        self.findings = findings;
        self.last = Some(StepMark {
            role: Role::Qa,
            from: Some(StoryState::Done),
            sent_back: true,
        });
        true
    }

    /// Accepts a `done` status as the story's end without a review in this run: the host
    /// found the story already done the first time its journal saw it (or QA completed it in
    /// an earlier run and nobody moved it since).
    pub fn accept_done(&mut self) {
        self.reviewed = true;
    }

    /// Whether the story's `done` was reviewed (QA completed it) or accepted before.
    pub fn reviewed(&self) -> bool {
        self.reviewed
    }

    /// Whether a `done` status finishes the story now (see [`Flow::accept_done`]).
    pub fn done_accepted(&self) -> bool {
        self.reviewed || !self.settings.require_review
    }

    /// The current cycle (0 before the first Dev or QA step).
    pub fn cycle(&self) -> u32 {
        self.cycle
    }

    /// The settings the flow runs under.
    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// Replaces the settings (e.g. a resumed run with a new `--max-cycles`).
    pub fn set_settings(&mut self, settings: Settings) {
        self.settings = settings;
    }

    /// The findings of the last send-back.
    pub fn findings(&self) -> &[String] {
        &self.findings
    }

    /// How many findings each send-back carried, oldest first.
    pub fn findings_history(&self) -> &[u32] {
        &self.findings_history
    }

    /// Every earlier send-back round, oldest first, as the policies see it (`story.rounds`),
    /// each finding with its fingerprint (`bmad_fingerprint::fingerprint`, the function the
    /// SDK's convergence rule uses too). Empty for a story whose journal record predates the
    /// rounds (fewer rounds kept than send-backs counted): its history is then only
    /// [`Flow::findings`] and [`Flow::findings_history`], as before.
    pub fn rounds(&self) -> Vec<Round> {
        if self.rounds.len() != self.findings_history.len() {
            return Vec::new();
        }
        self.rounds
            .iter()
            .map(|r| Round {
                cycle: r.cycle,
                kind: r.kind,
                findings: r
                    .findings
                    .iter()
                    .map(|text| Finding {
                        fingerprint: bmad_fingerprint::fingerprint(text),
                        text: text.clone(),
                    })
                    .collect(),
            })
            .collect()
    }

    /// The final result, once the story finished.
    pub fn result(&self) -> Option<&StoryResult> {
        self.result.as_ref()
    }

    /// Decides what happens next, given the story as observed now.
    pub fn next(&mut self, observed: &Observed) -> Next {
        if let Some(result) = &self.result {
            return Next::Finish(result.clone());
        }
        let from = match observed {
            Observed::State(state) => Some(*state),
            _ => None,
        };
        if let Some(mark) = self.in_flight {
            // A step was started and never ended: issue it again, as a retry.
            return Next::Run {
                role: mark.role,
                cycle: self.cycle,
                resumed: true,
            };
        }
        let role = match self.role_for(observed) {
            Ok(role) => role,
            Err(result) => return self.finish(result),
        };
        if let Some(last) = self.last
            && last.role == role
            && last.from == from
            && !(last.sent_back && role == Role::Dev)
        {
            let what =
                from.map_or_else(|| "not drafted".to_string(), |s| state_name(s).to_string());
            return self.finish(match role {
                Role::Sm => StoryResult::Failed(format!(
                    "SM ran but the story is still {what}; check the SM transcript"
                )),
                _ => StoryResult::Escalated(format!(
                    "no progress: {} left the story {what}",
                    role_name(role)
                )),
            });
        }
        let opens_cycle = match role {
            Role::Sm => false,
            Role::Dev => {
                self.cycle == 0 || self.last.is_some_and(|l| l.role == Role::Qa || l.sent_back)
            }
            Role::Qa => self.cycle == 0,
        };
        if opens_cycle {
            if self.cycle >= self.settings.max_cycles {
                return self.finish(StoryResult::Escalated(format!(
                    "max cycles reached ({} Dev/QA rounds) and the story is still {}",
                    self.settings.max_cycles,
                    from.map_or("unreadable", state_name)
                )));
            }
            self.cycle += 1;
        }
        if role != Role::Qa {
            // Anything but a review reopens the story: its next `done` needs a review again.
            self.reviewed = false;
        }
        self.in_flight = Some(StepMark {
            role,
            from,
            sent_back: false,
        });
        Next::Run {
            role,
            cycle: self.cycle,
            resumed: false,
        }
    }

    /// Records how the step that [`Flow::next`] issued ended.
    pub fn step_ended(&mut self, end: StepEnd) {
        let mark = self.in_flight.take();
        if mark.is_some() {
            self.last = mark;
        }
        match end {
            StepEnd::Completed => {
                if mark.is_some_and(|m| m.role == Role::Qa) {
                    // QA's policy completed the story: its `done` is a reviewed one.
                    self.reviewed = true;
                }
            }
            StepEnd::SentBack(findings) => {
                self.reviewed = false;
                self.findings_history
                    .push(u32::try_from(findings.len()).unwrap_or(u32::MAX));
                self.rounds.push(SentRound {
                    cycle: self.cycle,
                    kind: match mark.map(|m| m.role) {
                        Some(Role::Qa) => RoundKind::Review,
                        _ => RoundKind::Gates,
                    },
                    findings: findings.clone(),
                });
                self.findings = findings;
                // A send-back moves the story on even if its file reads the same (v4 writes
                // changes-requested as InProgress): the next Dev step opens a new cycle.
                if let Some(last) = &mut self.last {
                    last.sent_back = true;
                }
            }
            StepEnd::Failed(reason) => self.result = Some(StoryResult::Failed(reason)),
            StepEnd::Escalated(reason) => self.result = Some(StoryResult::Escalated(reason)),
        }
    }

    fn role_for(&self, observed: &Observed) -> Result<Role, StoryResult> {
        let build = self.settings.flow == StoryFlow::Build;
        match observed {
            Observed::NotDrafted if build => Ok(Role::Dev),
            Observed::NotDrafted => Ok(Role::Sm),
            Observed::Unusable(why) => Err(StoryResult::Escalated(why.clone())),
            Observed::State(StoryState::Backlog | StoryState::Drafted) if build => Ok(Role::Dev),
            Observed::State(state) => match state {
                StoryState::Backlog => Ok(Role::Sm),
                StoryState::Drafted if self.settings.approve_drafts => Ok(Role::Dev),
                StoryState::Drafted => Err(StoryResult::Escalated(
                    "the story is a Draft: approve it, or set [workflow] approve_drafts = true"
                        .into(),
                )),
                StoryState::ReadyForDev | StoryState::InProgress | StoryState::ChangesRequested => {
                    Ok(Role::Dev)
                }
                StoryState::Review => Ok(Role::Qa),
                StoryState::Done if self.done_accepted() => Err(StoryResult::Done),
                // A `done` nobody reviewed (a Dev agent wrote it): treated as `review`.
                StoryState::Done => Ok(Role::Qa),
                StoryState::Blocked => Err(StoryResult::Escalated(
                    "the story is Blocked: a person must unblock it".into(),
                )),
            },
        }
    }

    fn finish(&mut self, result: StoryResult) -> Next {
        self.result = Some(result.clone());
        Next::Finish(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow() -> Flow {
        Flow::new(Settings::default())
    }

    fn run(role: Role, cycle: u32) -> Next {
        Next::Run {
            role,
            cycle,
            resumed: false,
        }
    }

    fn st(state: StoryState) -> Observed {
        Observed::State(state)
    }

    #[test]
    fn every_state_maps_to_its_role_or_ending() {
        for state in ALL_STATES {
            let mut f = flow();
            let next = f.next(&st(state));
            let expected = match state {
                StoryState::Backlog => run(Role::Sm, 0),
                StoryState::Drafted
                | StoryState::ReadyForDev
                | StoryState::InProgress
                | StoryState::ChangesRequested => run(Role::Dev, 1),
                // Nobody reviewed this `done`: QA runs.
                StoryState::Review | StoryState::Done => run(Role::Qa, 1),
                StoryState::Blocked => Next::Finish(StoryResult::Escalated(
                    "the story is Blocked: a person must unblock it".into(),
                )),
            };
            assert_eq!(next, expected, "state {}", state_name(state));
        }
    }

    #[test]
    fn done_finishes_only_once_reviewed_or_accepted() {
        // Accepted (done at the journal's first sighting): finished, no QA.
        let mut f = flow();
        f.accept_done();
        assert_eq!(
            f.next(&st(StoryState::Done)),
            Next::Finish(StoryResult::Done)
        );
        // Without require_review, today's behaviour: done is done.
        let mut f = Flow::new(Settings {
            require_review: false,
            ..Settings::default()
        });
        assert_eq!(
            f.next(&st(StoryState::Done)),
            Next::Finish(StoryResult::Done)
        );
    }

    #[test]
    fn a_dev_that_writes_done_gets_reviewed() {
        let mut f = flow();
        assert_eq!(f.next(&st(StoryState::InProgress)), run(Role::Dev, 1));
        f.step_ended(StepEnd::Completed);
        // Dev wrote Done itself: QA runs, in the same cycle.
        assert_eq!(f.next(&st(StoryState::Done)), run(Role::Qa, 1));
        f.step_ended(StepEnd::Completed);
        assert_eq!(
            f.next(&st(StoryState::Done)),
            Next::Finish(StoryResult::Done)
        );
    }

    #[test]
    fn a_review_sent_back_needs_a_new_review() {
        let mut f = flow();
        f.next(&st(StoryState::Done));
        f.step_ended(StepEnd::SentBack(vec!["x".into()]));
        assert_eq!(f.next(&st(StoryState::InProgress)), run(Role::Dev, 2));
        f.step_ended(StepEnd::Completed);
        // Dev wrote Done again: another review.
        assert_eq!(f.next(&st(StoryState::Done)), run(Role::Qa, 2));
        // A QA step that fails or stalls on an unreviewed done never finishes it as done.
        f.step_ended(StepEnd::Failed("f".into()));
        assert_eq!(
            f.next(&st(StoryState::Done)),
            Next::Finish(StoryResult::Failed("f".into()))
        );
    }

    #[test]
    fn a_dev_step_reopens_an_accepted_story() {
        let mut f = flow();
        f.accept_done();
        assert_eq!(f.next(&st(StoryState::InProgress)), run(Role::Dev, 1));
        f.step_ended(StepEnd::Completed);
        assert_eq!(f.next(&st(StoryState::Done)), run(Role::Qa, 1));
        // QA that leaves an unreviewed done unreviewed again is a stall, not a done.
        let mut g = flow();
        g.next(&st(StoryState::Done));
        g.step_ended(StepEnd::SentBack(vec![]));
        g.next(&st(StoryState::Done));
        g.step_ended(StepEnd::Escalated("e".into()));
        assert!(matches!(
            g.next(&st(StoryState::Done)),
            Next::Finish(StoryResult::Escalated(_))
        ));
    }

    #[test]
    fn missing_story_goes_to_sm_then_dev() {
        let mut f = flow();
        assert_eq!(f.next(&Observed::NotDrafted), run(Role::Sm, 0));
        f.step_ended(StepEnd::Completed);
        assert_eq!(f.next(&st(StoryState::Drafted)), run(Role::Dev, 1));
    }

    #[test]
    fn sm_that_drafts_nothing_fails_the_story() {
        let mut f = flow();
        f.next(&Observed::NotDrafted);
        f.step_ended(StepEnd::Completed);
        let next = f.next(&Observed::NotDrafted);
        assert!(
            matches!(next, Next::Finish(StoryResult::Failed(_))),
            "{next:?}"
        );
        // The ending sticks.
        assert_eq!(f.next(&st(StoryState::Review)), next);
    }

    #[test]
    fn drafts_escalate_when_not_auto_approved() {
        let mut f = Flow::new(Settings {
            approve_drafts: false,
            ..Settings::default()
        });
        assert!(matches!(
            f.next(&st(StoryState::Drafted)),
            Next::Finish(StoryResult::Escalated(_))
        ));
    }

    #[test]
    fn unusable_status_escalates_with_the_reason() {
        let mut f = flow();
        assert_eq!(
            f.next(&Observed::Unusable("two Status sections".into())),
            Next::Finish(StoryResult::Escalated("two Status sections".into()))
        );
    }

    #[test]
    fn happy_path_is_one_cycle() {
        let mut f = flow();
        assert_eq!(f.next(&st(StoryState::ReadyForDev)), run(Role::Dev, 1));
        f.step_ended(StepEnd::Completed);
        assert_eq!(f.next(&st(StoryState::Review)), run(Role::Qa, 1));
        f.step_ended(StepEnd::Completed);
        assert_eq!(
            f.next(&st(StoryState::Done)),
            Next::Finish(StoryResult::Done)
        );
        assert_eq!(f.cycle(), 1);
    }

    #[test]
    fn every_send_back_is_a_round_that_survives_the_journal() {
        let mut f = flow();
        f.next(&st(StoryState::ReadyForDev));
        // Dev's step (its gates) sends back first, then QA's review.
        f.step_ended(StepEnd::SentBack(vec![
            "quality gate `unit` failed (exit 3); output tail:\nbroken".into(),
        ]));
        f.next(&st(StoryState::InProgress));
        f.step_ended(StepEnd::Completed);
        f.next(&st(StoryState::Review));
        f.step_ended(StepEnd::SentBack(vec![
            "[AI-Review][High] A is broken [src/a.rs:3]".into(),
            "low: B".into(),
        ]));
        let rounds = f.rounds();
        assert_eq!(rounds.len(), 2);
        assert_eq!((rounds[0].cycle, rounds[0].kind), (1, RoundKind::Gates));
        assert_eq!(rounds[0].findings[0].fingerprint, "gate unit: broken");
        assert_eq!((rounds[1].cycle, rounds[1].kind), (2, RoundKind::Review));
        let prints: Vec<&str> = rounds[1]
            .findings
            .iter()
            .map(|f| f.fingerprint.as_str())
            .collect();
        assert_eq!(prints, ["a is broken", "b"]);
        assert_eq!(rounds[1].findings[1].text, "low: B");
        // Kept in the journal's record of the flow, so a resumed run sees them.
        let json = serde_json::to_value(&f).expect("serialize");
        assert_eq!(json["rounds"][1]["kind"], "review");
        let back: Flow = serde_json::from_value(json.clone()).expect("deserialize");
        assert_eq!(back.rounds().len(), 2);
        assert_eq!(
            back.rounds()[1].findings[0].text,
            rounds[1].findings[0].text
        );
        // A record from before the rounds: its history is the old fields alone.
        let mut old = json;
        old.as_object_mut().expect("object").remove("rounds");
        let back: Flow = serde_json::from_value(old).expect("an old record decodes");
        assert!(back.rounds().is_empty());
        assert_eq!(back.findings_history(), [1, 2]);
    }

    #[test]
    fn send_back_opens_a_new_cycle_with_findings() {
        let mut f = flow();
        f.next(&st(StoryState::ReadyForDev));
        f.step_ended(StepEnd::Completed);
        f.next(&st(StoryState::Review));
        f.step_ended(StepEnd::SentBack(vec!["a".into(), "b".into()]));
        assert_eq!(f.next(&st(StoryState::InProgress)), run(Role::Dev, 2));
        assert_eq!(f.findings(), ["a", "b"]);
        assert_eq!(f.findings_history(), [2]);
        f.step_ended(StepEnd::Completed);
        assert_eq!(f.next(&st(StoryState::Review)), run(Role::Qa, 2));
        f.step_ended(StepEnd::Completed);
        assert_eq!(
            f.next(&st(StoryState::Done)),
            Next::Finish(StoryResult::Done)
        );
    }

    #[test]
    fn max_cycles_escalates_before_opening_another_cycle() {
        let mut f = Flow::new(Settings {
            max_cycles: 2,
            approve_drafts: true,
            require_review: true,
            flow: StoryFlow::Stories,
        });
        for cycle in 1..=2 {
            assert_eq!(f.next(&st(StoryState::InProgress)), run(Role::Dev, cycle));
            f.step_ended(StepEnd::Completed);
            assert_eq!(f.next(&st(StoryState::Review)), run(Role::Qa, cycle));
            f.step_ended(StepEnd::SentBack(vec!["x".into()]));
        }
        let next = f.next(&st(StoryState::InProgress));
        match next {
            Next::Finish(StoryResult::Escalated(reason)) => {
                assert!(reason.contains("max cycles reached (2"), "{reason}")
            }
            other => panic!("expected escalation, got {other:?}"),
        }
    }

    #[test]
    fn max_cycles_zero_never_runs_dev() {
        let mut f = Flow::new(Settings {
            max_cycles: 0,
            approve_drafts: true,
            require_review: true,
            flow: StoryFlow::Stories,
        });
        assert!(matches!(
            f.next(&st(StoryState::ReadyForDev)),
            Next::Finish(StoryResult::Escalated(_))
        ));
    }

    #[test]
    fn dev_that_does_not_move_the_story_stalls() {
        let mut f = flow();
        f.next(&st(StoryState::InProgress));
        f.step_ended(StepEnd::Completed);
        assert!(matches!(
            f.next(&st(StoryState::InProgress)),
            Next::Finish(StoryResult::Escalated(r)) if r.contains("no progress")
        ));
    }

    #[test]
    fn qa_send_back_without_state_change_is_not_a_stall() {
        // QA sends back; the host wrote changes-requested, read back as in-progress (v4).
        let mut f = flow();
        f.next(&st(StoryState::Review));
        f.step_ended(StepEnd::SentBack(vec![]));
        assert_eq!(f.next(&st(StoryState::InProgress)), run(Role::Dev, 2));
    }

    #[test]
    fn dev_send_back_for_failed_gates_opens_a_new_cycle() {
        let mut f = flow();
        assert_eq!(f.next(&st(StoryState::InProgress)), run(Role::Dev, 1));
        f.step_ended(StepEnd::SentBack(vec!["gate cargo-test failed".into()]));
        assert_eq!(f.next(&st(StoryState::InProgress)), run(Role::Dev, 2));
    }

    #[test]
    fn policy_failure_and_escalation_end_the_story() {
        for (end, result) in [
            (StepEnd::Failed("f".into()), StoryResult::Failed("f".into())),
            (
                StepEnd::Escalated("e".into()),
                StoryResult::Escalated("e".into()),
            ),
        ] {
            let mut f = flow();
            f.next(&st(StoryState::ReadyForDev));
            f.step_ended(end);
            assert_eq!(
                f.next(&st(StoryState::Review)),
                Next::Finish(result.clone())
            );
            assert_eq!(f.result(), Some(&result));
        }
    }

    #[test]
    fn a_step_in_flight_is_reissued_as_a_retry_after_a_crash() {
        let mut f = flow();
        f.next(&st(StoryState::Review));
        f.step_ended(StepEnd::SentBack(vec!["x".into()]));
        assert_eq!(f.next(&st(StoryState::InProgress)), run(Role::Dev, 2));
        // Crash: the flow as journaled is restored, the story file may have moved on.
        let json = serde_json::to_string(&f).expect("flow serializes");
        let mut restored: Flow = serde_json::from_str(&json).expect("flow deserializes");
        assert_eq!(
            restored.next(&st(StoryState::Review)),
            Next::Run {
                role: Role::Dev,
                cycle: 2,
                resumed: true
            }
        );
        restored.step_ended(StepEnd::Completed);
        assert_eq!(restored.next(&st(StoryState::Review)), run(Role::Qa, 2));
    }

    fn build() -> Flow {
        Flow::new(Settings {
            flow: StoryFlow::Build,
            ..Settings::default()
        })
    }

    #[test]
    fn build_flow_maps_every_state_to_build_review_or_ending() {
        for obs in ALL_STATES
            .iter()
            .map(|s| st(*s))
            .chain([Observed::NotDrafted])
        {
            for approve_drafts in [true, false] {
                let mut f = Flow::new(Settings {
                    flow: StoryFlow::Build,
                    approve_drafts,
                    ..Settings::default()
                });
                let expected = match &obs {
                    Observed::NotDrafted => run(Role::Dev, 1),
                    Observed::State(state) => match state {
                        // No spec yet, a backlog one, or a draft `bmad-build` resumes: build.
                        StoryState::Backlog
                        | StoryState::Drafted
                        | StoryState::ReadyForDev
                        | StoryState::InProgress
                        | StoryState::ChangesRequested => run(Role::Dev, 1),
                        // `in-review`, and a `done` nobody reviewed: code-review.
                        StoryState::Review | StoryState::Done => run(Role::Qa, 1),
                        StoryState::Blocked => Next::Finish(StoryResult::Escalated(
                            "the story is Blocked: a person must unblock it".into(),
                        )),
                    },
                    Observed::Unusable(_) => unreachable!(),
                };
                assert_eq!(
                    f.next(&obs),
                    expected,
                    "{obs:?} approve_drafts={approve_drafts}"
                );
            }
        }
    }

    #[test]
    fn build_flow_no_spec_build_review_done() {
        let mut f = build();
        assert_eq!(f.next(&Observed::NotDrafted), run(Role::Dev, 1));
        f.step_ended(StepEnd::Completed);
        // bmad-build marks its own spec `done`: unreviewed, so code-review runs.
        assert_eq!(f.next(&st(StoryState::Done)), run(Role::Qa, 1));
        f.step_ended(StepEnd::Completed);
        assert_eq!(
            f.next(&st(StoryState::Done)),
            Next::Finish(StoryResult::Done)
        );
        assert_eq!(f.cycle(), 1);
    }

    #[test]
    fn build_flow_review_sends_back_to_build_in_a_new_cycle() {
        let mut f = build();
        f.next(&Observed::NotDrafted);
        f.step_ended(StepEnd::Completed);
        assert_eq!(f.next(&st(StoryState::Review)), run(Role::Qa, 1));
        f.step_ended(StepEnd::SentBack(vec!["[Review][High] x".into()]));
        assert_eq!(f.next(&st(StoryState::InProgress)), run(Role::Dev, 2));
        assert_eq!(f.findings(), ["[Review][High] x"]);
        f.step_ended(StepEnd::Completed);
        assert_eq!(f.next(&st(StoryState::Review)), run(Role::Qa, 2));
        f.step_ended(StepEnd::Completed);
        assert_eq!(
            f.next(&st(StoryState::Done)),
            Next::Finish(StoryResult::Done)
        );
    }

    #[test]
    fn build_flow_escalates_at_max_cycles_and_stalls_without_a_spec() {
        let mut f = Flow::new(Settings {
            flow: StoryFlow::Build,
            max_cycles: 1,
            ..Settings::default()
        });
        f.next(&Observed::NotDrafted);
        f.step_ended(StepEnd::Completed);
        f.next(&st(StoryState::Review));
        f.step_ended(StepEnd::SentBack(vec!["x".into()]));
        assert!(matches!(
            f.next(&st(StoryState::InProgress)),
            Next::Finish(StoryResult::Escalated(r)) if r.contains("max cycles reached (1")
        ));
        // A build that wrote no spec is a stall, not a loop.
        let mut f = build();
        f.next(&Observed::NotDrafted);
        f.step_ended(StepEnd::Completed);
        assert!(matches!(
            f.next(&Observed::NotDrafted),
            Next::Finish(StoryResult::Escalated(r)) if r.contains("no progress")
        ));
    }

    #[test]
    fn an_old_journal_without_a_flow_is_the_story_flow() {
        let json = serde_json::json!({
            "max_cycles": 3, "approve_drafts": true, "require_review": true
        });
        let s: Settings = serde_json::from_value(json).expect("old settings decode");
        assert_eq!(s.flow, StoryFlow::Stories);
    }

    #[test]
    fn exhaustive_transitions_never_loop_forever() {
        // From every state, with every kind of step ending, the flow reaches an ending within a
        // bounded number of steps when the story never changes on its own.
        let ends = [
            StepEnd::Completed,
            StepEnd::SentBack(vec!["x".into()]),
            StepEnd::Failed("f".into()),
            StepEnd::Escalated("e".into()),
        ];
        let observations: Vec<Observed> = ALL_STATES
            .iter()
            .map(|s| st(*s))
            .chain([Observed::NotDrafted, Observed::Unusable("u".into())])
            .collect();
        let cases = (0..4).flat_map(|m| {
            [StoryFlow::Stories, StoryFlow::Build]
                .into_iter()
                .flat_map(move |flow| {
                    [(m, true, false), (m, true, true), (m, false, false)]
                        .map(|(m, r, a)| (m, r, a, flow))
                })
        });
        for (max_cycles, require_review, accepted, story_flow) in cases {
            let settings = Settings {
                max_cycles,
                approve_drafts: true,
                require_review,
                flow: story_flow,
            };
            for obs in &observations {
                for end in &ends {
                    let mut f = Flow::new(settings);
                    if accepted {
                        f.accept_done();
                    }
                    let mut steps = 0;
                    let mut qa_completed = false;
                    loop {
                        match f.next(obs) {
                            Next::Finish(result) => {
                                // Done only when allowed: accepted, reviewed, or not required.
                                if result == StoryResult::Done {
                                    assert!(
                                        !require_review || accepted || qa_completed,
                                        "{obs:?} {end:?}: done without a review"
                                    );
                                }
                                break;
                            }
                            Next::Run {
                                role: Role::Qa,
                                cycle,
                                ..
                            } => {
                                assert!(cycle <= max_cycles.max(1));
                                qa_completed |= *end == StepEnd::Completed;
                                f.step_ended(end.clone());
                            }
                            Next::Run { role, cycle, .. } => {
                                assert!(cycle <= max_cycles.max(1));
                                // The build flow has no SM step.
                                assert!(
                                    !(story_flow == StoryFlow::Build && role == Role::Sm),
                                    "{obs:?} {end:?}: SM in the build flow"
                                );
                                f.step_ended(end.clone());
                            }
                        }
                        steps += 1;
                        assert!(steps <= 2 * max_cycles as usize + 3, "{obs:?} {end:?}");
                    }
                }
            }
        }
    }
}
