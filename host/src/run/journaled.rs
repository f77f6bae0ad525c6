//! Journaled steps: every host action of a role step (a policy decision, an agent call, a gate
//! run, a status write) is keyed from a [`StepCtx`] and committed to the journal as a typed
//! intent before it runs and a typed result after ([`StepIntent`]). Opening a step
//! that already finished gives its recorded result back instead, so a resumed run never does a
//! step twice.

use std::marker::PhantomData;

use super::driver::{Driver, StepCtx};
use crate::journal::{
    AfterStoryIntent, AgentCallIntent, DecisionIntent, GatesIntent, JournalError, LaneIntent,
    SprintSyncIntent, StatusWriteIntent, StepId, StepIntent, StepKey, StepKind, StepStart,
    TeardownIntent,
};

/// What opening a journaled step found.
#[derive(Debug)]
pub(super) enum Begun<I: StepIntent> {
    /// The step finished before (in the run being resumed): its result.
    Done(I::Result),
    /// The step is to run now; finish it with its result.
    Run(Open<I>),
}

/// A journaled step whose intent is committed and whose result is not.
#[derive(Debug)]
pub(super) struct Open<I> {
    id: StepId,
    /// 1 for a fresh step; more when an interrupted attempt is redone.
    pub attempt: u32,
    intent: PhantomData<I>,
}

impl Driver<'_> {
    /// The journal key of `ctx`'s step of kind `I::KIND` at decision `seq`.
    fn step_key<I: StepIntent>(&self, ctx: &StepCtx<'_>, seq: u32) -> StepKey {
        StepKey {
            run: self.run.clone(),
            story: ctx.story.to_string(),
            cycle: ctx.cycle,
            role: ctx.role_name().to_string(),
            kind: I::KIND,
            seq,
        }
    }

    /// Commits `intent` for `ctx`'s step at `seq`, or finds that it already finished. A
    /// recorded result that does not decode is [`JournalError::Undecodable`]: the journal fails
    /// closed, never reading it as "nothing happened".
    pub(super) fn begin<I: StepIntent>(
        &mut self,
        ctx: &StepCtx<'_>,
        seq: u32,
        intent: &I,
    ) -> Result<Begun<I>, JournalError> {
        let key = self.step_key::<I>(ctx, seq);
        // The journal is borrowed for the call only (the lanes of a parallel run share it).
        let start = self.steps.borrow_mut().begin_step(&key, &to_json(intent))?;
        begun(start).map_err(|detail| JournalError::Undecodable {
            path: self.steps.borrow().path().to_owned(),
            run: key.run.clone(),
            story: key.story.clone(),
            step: step_name(&key, "result"),
            detail,
        })
    }

    /// Commits the result of a step opened with [`Driver::begin`].
    pub(super) fn finish<I: StepIntent>(
        &mut self,
        step: Open<I>,
        result: &I::Result,
    ) -> Result<(), JournalError> {
        self.steps
            .borrow_mut()
            .finish_step(step.id, &to_json(result))
    }

    /// Records a step that has nothing to redo (a policy decision): intent and result in one
    /// commit.
    pub(super) fn record<I: StepIntent>(
        &mut self,
        ctx: &StepCtx<'_>,
        seq: u32,
        intent: &I,
        result: &I::Result,
    ) -> Result<(), JournalError> {
        let key = self.step_key::<I>(ctx, seq);
        self.steps
            .borrow_mut()
            .record_step(&key, &to_json(intent), &to_json(result))?;
        Ok(())
    }
}

/// How an error names a journaled step: `cycle 1 dev gates #2 result`.
pub(super) fn step_name(key: &StepKey, part: &str) -> String {
    format!(
        "cycle {} {} {} #{} {part}",
        key.cycle,
        key.role,
        key.kind.as_str(),
        key.seq
    )
}

/// Whether a stored step's intent and result decode as the payloads of its kind: the check a
/// resumed run makes of every step before it writes anything. The error says what is wrong.
pub(super) fn check_step(
    kind: StepKind,
    intent: &serde_json::Value,
    result: Option<&serde_json::Value>,
) -> Result<(), (&'static str, String)> {
    fn check<I: StepIntent + serde::de::DeserializeOwned>(
        intent: &serde_json::Value,
        result: Option<&serde_json::Value>,
    ) -> Result<(), (&'static str, String)> {
        serde_json::from_value::<I>(intent.clone()).map_err(|e| ("intent", e.to_string()))?;
        if let Some(r) = result {
            serde_json::from_value::<I::Result>(r.clone())
                .map_err(|e| ("result", e.to_string()))?;
        }
        Ok(())
    }
    match kind {
        StepKind::AgentCall => check::<AgentCallIntent>(intent, result),
        StepKind::Decision => check::<DecisionIntent>(intent, result),
        StepKind::Gates => check::<GatesIntent>(intent, result),
        StepKind::StatusWrite => check::<StatusWriteIntent>(intent, result),
        StepKind::Teardown => check::<TeardownIntent>(intent, result),
        StepKind::SprintSync => check::<SprintSyncIntent>(intent, result),
        StepKind::Lane => check::<LaneIntent>(intent, result),
        StepKind::AfterStory => check::<AfterStoryIntent>(intent, result),
        // Not written by this host's run loop.
        StepKind::StatusParse => Ok(()),
    }
}

/// What the journal found for a step of kind `I`, typed; the decoding error when its recorded
/// result is not one.
fn begun<I: StepIntent>(start: StepStart) -> Result<Begun<I>, String> {
    Ok(match start {
        StepStart::Done(result) => {
            Begun::Done(serde_json::from_value(result).map_err(|e| e.to_string())?)
        }
        StepStart::Fresh(id) => Begun::Run(Open {
            id,
            attempt: 1,
            intent: PhantomData,
        }),
        StepStart::Retry { id, attempt } => Begun::Run(Open {
            id,
            attempt,
            intent: PhantomData,
        }),
    })
}

/// A payload as the journal stores it. The payloads are plain records, strings and numbers:
/// encoding them cannot fail (a non-finite number is stored as `null`).
pub(super) fn to_json<T: serde::Serialize>(payload: &T) -> serde_json::Value {
    serde_json::to_value(payload).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::journal::{Journal, RunFingerprint};

    /// `bmad-host log --json` of a run by bmad-host 0.1.0, which wrote its payloads with `json!`.
    const OLD_LOG: &str = include_str!("../journal/testdata/log-0.1.0.ndjson");

    fn done<I: StepIntent>(start: StepStart) -> I::Result {
        match begun::<I>(start) {
            Ok(Begun::Done(result)) => result,
            Err(e) => panic!("the old result does not decode: {e}"),
            Ok(Begun::Run(_)) => panic!("a finished step is to run again"),
        }
    }

    #[test]
    fn steps_an_old_journal_finished_are_found_done_with_their_results() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut journal = Journal::open(dir.path()).expect("journal");
        let run = journal
            .start_run(false, &RunFingerprint::default())
            .expect("run");
        for line in OLD_LOG.lines() {
            let step: Value = serde_json::from_str(line).expect("a log line");
            let text = |k: &str| step[k].as_str().expect(k).to_string();
            let number = |k: &str| u32::try_from(step[k].as_u64().expect(k)).expect(k);
            let kind = match text("kind").as_str() {
                "agent-call" => StepKind::AgentCall,
                "decision" => StepKind::Decision,
                "gates" => StepKind::Gates,
                "status-write" => StepKind::StatusWrite,
                other => panic!("unexpected kind {other}"),
            };
            let key = StepKey {
                run: run.id.clone(),
                story: text("story"),
                cycle: number("cycle"),
                role: text("role"),
                kind,
                seq: number("seq"),
            };
            let StepStart::Fresh(id) = journal.begin_step(&key, &step["intent"]).expect("begin")
            else {
                panic!("a new step");
            };
            journal.finish_step(id, &step["result"]).expect("finish");
            let again = journal
                .begin_step(&key, &step["intent"])
                .expect("begin again");
            let result = &step["result"];
            match kind {
                StepKind::AgentCall => {
                    let r = done::<AgentCallIntent>(again);
                    assert_eq!(r.outcome.message, result["outcome"]["message"]);
                    assert_eq!(r.outcome.num_turns, result["outcome"]["num_turns"]);
                }
                StepKind::Gates => {
                    let r = done::<GatesIntent>(again);
                    assert_eq!(
                        r.reports.len(),
                        result["reports"].as_array().expect("reports").len()
                    );
                    assert_eq!(r.reports[0].passed, result["reports"][0]["passed"]);
                }
                StepKind::StatusWrite => {
                    let r = done::<StatusWriteIntent>(again);
                    assert_eq!(crate::policy::state_name(r.written), result["written"]);
                }
                StepKind::Decision => {
                    let decision = done::<DecisionIntent>(again);
                    assert_eq!(serde_json::to_value(decision).expect("encodes"), *result);
                }
                StepKind::StatusParse
                | StepKind::Teardown
                | StepKind::SprintSync
                | StepKind::Lane
                | StepKind::AfterStory => {
                    unreachable!()
                }
            }
        }
    }
}
