//! The seam between the run loop's journaled steps and where they are kept: the project's
//! SQLite journal ([`Journal`]), or the journal of a durable-execution engine's workflow (a
//! Restate worker's, feature `restate`).

use std::path::Path;

use super::{Journal, JournalError, JournalReader, StepId, StepKey, StepStart};

/// Where a run keeps its journaled steps: the project's SQLite journal, or (a worker of a
/// durable-execution engine) the engine's journal of the story's workflow. Intents and results
/// are the typed payloads of [`super::StepIntent`], as JSON.
pub trait StepStore {
    /// Commits `intent` for `key`, or finds the step finished (its result) or interrupted (an
    /// attempt to redo).
    fn begin_step(
        &mut self,
        key: &StepKey,
        intent: &serde_json::Value,
    ) -> Result<StepStart, JournalError>;
    /// Commits the result of a step [`StepStore::begin_step`] opened.
    fn finish_step(&mut self, id: StepId, result: &serde_json::Value) -> Result<(), JournalError>;
    /// Commits a step that has nothing to redo (a policy decision): intent and result at once.
    fn record_step(
        &mut self,
        key: &StepKey,
        intent: &serde_json::Value,
        result: &serde_json::Value,
    ) -> Result<(), JournalError>;
    /// What errors name as the journal.
    fn path(&self) -> &Path;
}

impl StepStore for Journal {
    fn begin_step(
        &mut self,
        key: &StepKey,
        intent: &serde_json::Value,
    ) -> Result<StepStart, JournalError> {
        Journal::begin_step(self, key, intent)
    }

    fn finish_step(&mut self, id: StepId, result: &serde_json::Value) -> Result<(), JournalError> {
        Journal::finish_step(self, id, result)
    }

    fn record_step(
        &mut self,
        key: &StepKey,
        intent: &serde_json::Value,
        result: &serde_json::Value,
    ) -> Result<(), JournalError> {
        Journal::record_step(self, key, intent, result)
    }

    fn path(&self) -> &Path {
        JournalReader::path(self)
    }
}
