//! [`Journal`] (the run loop's read-write handle, holding the run lock) and [`JournalReader`]
//! (read-only, lock-free, for `status` and `log` while a run may be going).

use std::fs;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;

use super::lock::RunLock;
use super::model::{from_ms, story_order, to_ms};
use super::paths::{LOCK_FILE, journal_path, state_dir};
use super::schema::{self, Access};
use super::{
    JournalError, PluginFingerprint, RunFingerprint, RunId, RunInfo, RunRecord, RunStatus,
    Sighting, StepId, StepKey, StepKind, StepRow, StepStart, StoryRecord, StoryResult,
    StorySummary, Usage,
};
use crate::policy::{StoryState, parse_state, state_name};

/// Read access to a journal: every query. Obtained with [`Journal::open_read_only`], or through a
/// [`Journal`] (which dereferences to its reader).
#[derive(Debug)]
pub struct JournalReader {
    pub(super) conn: Connection,
    path: PathBuf,
}

/// The run loop's journal: read-write, holding the project's run lock for its whole life.
#[derive(Debug)]
pub struct Journal {
    /// Dropped first: its thread and connection end before the main connection closes (the
    /// last connection to close checkpoints the WAL into the database and removes it).
    checkpointer: Option<Checkpointer>,
    reader: JournalReader,
    /// Commits since the checkpointer was last asked to run.
    commits: u32,
    _lock: RunLock,
}

impl Deref for Journal {
    type Target = JournalReader;

    fn deref(&self) -> &JournalReader {
        &self.reader
    }
}

impl Journal {
    /// Opens (creating `.bmad-host/` and the journal if needed) the journal of the project at
    /// `project_root` for a run: takes the run lock (refused with [`JournalError::Locked`], naming
    /// the holder's pid, if another process has it), migrates an older schema, and refuses a
    /// corrupt, foreign or newer journal without touching it.
    pub fn open(project_root: &Path) -> Result<Journal, JournalError> {
        let dir = state_dir(project_root);
        fs::create_dir_all(&dir).map_err(|source| JournalError::Io {
            action: "create",
            path: dir.clone(),
            source,
        })?;
        let lock = RunLock::acquire(&dir.join(LOCK_FILE))?;
        let path = journal_path(project_root);
        match fs::symlink_metadata(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => schema::create(&path)?,
            Err(source) => {
                return Err(JournalError::Io {
                    action: "inspect",
                    path,
                    source,
                });
            }
        }
        let conn = schema::open_existing(&path, Access::ReadWrite)?;
        let checkpointer = Checkpointer::start(&path);
        if checkpointer.is_some() {
            // The WAL is copied into the database by the checkpointer's thread, never by a
            // commit of the run loop.
            conn.pragma_update(None, "wal_autocheckpoint", 0)
                .map_err(sql_err(&path))?;
        }
        Ok(Journal {
            checkpointer,
            reader: JournalReader { conn, path },
            commits: 0,
            _lock: lock,
        })
    }

    /// Opens the project's journal read-only, without the lock (a run may be writing it), creating
    /// nothing: `Ok(None)` if there is no journal yet. Refuses a corrupt, foreign, older or newer
    /// journal.
    pub fn open_read_only(project_root: &Path) -> Result<Option<JournalReader>, JournalError> {
        let path = journal_path(project_root);
        match fs::symlink_metadata(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(JournalError::Io {
                    action: "inspect",
                    path,
                    source,
                });
            }
        }
        let conn = schema::open_existing(&path, Access::ReadOnly)?;
        Ok(Some(JournalReader { conn, path }))
    }

    /// Starts a run: resumes the latest run if it is unfinished ([`RunStatus::is_unfinished`])
    /// and `fresh` is false; otherwise starts a new one, marking any unfinished runs
    /// [`RunStatus::Abandoned`] (they and their steps are kept). Records the fingerprint's plugins.
    pub fn start_run(
        &mut self,
        fresh: bool,
        fingerprint: &RunFingerprint,
    ) -> Result<RunInfo, JournalError> {
        let path = self.reader.path.clone();
        let err = sql_err(&path);
        let now = to_ms(SystemTime::now());
        let tx = self.reader.conn.transaction().map_err(&err)?;
        let latest: Option<(String, i64, String, String)> = tx
            .query_row(
                "SELECT id, started_at, status, config_fingerprint FROM runs
                 ORDER BY rowid DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(&err)?;
        let resumable = match latest {
            Some((id, started_at, status, config)) if !fresh => {
                let status = RunStatus::parse(&status).ok_or_else(|| bad(&path, "run status"))?;
                status.is_unfinished().then_some((id, started_at, config))
            }
            _ => None,
        };

        let info = if let Some((id, started_at, config)) = resumable {
            let mut original: Vec<PluginFingerprint> =
                plugins_of(&tx, &id, Some(false)).map_err(&err)?;
            original.sort();
            let mut current = fingerprint.plugins.clone();
            current.sort();
            current.dedup();
            let changed = config != fingerprint.config || original != current;
            tx.execute(
                "UPDATE runs SET status = 'running', finished_at = NULL WHERE id = ?1",
                params![id],
            )
            .map_err(&err)?;
            insert_plugins(&tx, &id, &fingerprint.plugins, true, now).map_err(&err)?;
            if changed {
                tracing::warn!(run = %id, "resuming a run whose configuration or plugins changed");
            }
            RunInfo {
                id: id.parse()?,
                resumed: true,
                started_at: from_ms(started_at),
                fingerprint_changed: changed,
            }
        } else {
            tx.execute(
                "UPDATE runs SET status = 'abandoned', finished_at = ?1
                 WHERE status IN ('running', 'interrupted')",
                params![now],
            )
            .map_err(&err)?;
            let started = SystemTime::now();
            let id = RunId::generate(started);
            let args = serde_json::to_string(&fingerprint.args)
                .map_err(|e| data(&path, "run arguments", e))?;
            tx.execute(
                "INSERT INTO runs (id, started_at, finished_at, status, config_fingerprint, args)
                 VALUES (?1, ?2, NULL, 'running', ?3, ?4)",
                params![id.as_str(), to_ms(started), fingerprint.config, args],
            )
            .map_err(&err)?;
            insert_plugins(&tx, id.as_str(), &fingerprint.plugins, false, now).map_err(&err)?;
            RunInfo {
                id,
                resumed: false,
                started_at: from_ms(to_ms(started)),
                fingerprint_changed: false,
            }
        };
        tx.commit().map_err(&err)?;
        tracing::info!(run = %info.id, resumed = info.resumed, "run started");
        Ok(info)
    }

    /// Records how a run ended ([`RunStatus::Running`] reopens it). A durable commit: every
    /// relaxed record before it is on disk when this returns.
    pub fn finish_run(&mut self, run: &RunId, status: RunStatus) -> Result<(), JournalError> {
        let finished_at = (status != RunStatus::Running).then(|| to_ms(SystemTime::now()));
        let changed = self
            .reader
            .conn
            .prepare_cached("UPDATE runs SET status = ?2, finished_at = ?3 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![run.as_str(), status.as_str(), finished_at]))
            .map_err(sql_err(&self.reader.path))?;
        if changed == 0 {
            return Err(JournalError::UnknownRun(run.clone()));
        }
        Ok(())
    }

    /// Creates or replaces a story's record in a run.
    pub fn save_story(&mut self, run: &RunId, rec: &StoryRecord) -> Result<(), JournalError> {
        self.relaxed(|journal| journal.save_story_now(run, rec))
    }

    fn save_story_now(&mut self, run: &RunId, rec: &StoryRecord) -> Result<(), JournalError> {
        let path = &self.reader.path;
        let findings =
            serde_json::to_string(&rec.findings).map_err(|e| data(path, "findings", e))?;
        let usage = &rec.usage;
        self.reader
            .conn
            .prepare_cached(
                "INSERT INTO stories (run_id, story_id, title, state, cycle, result, cost_usd,
                     input_tokens, output_tokens, turns, duration_ms, findings, last_outcome,
                     updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
                 ON CONFLICT (run_id, story_id) DO UPDATE SET
                     title = excluded.title, state = excluded.state, cycle = excluded.cycle,
                     result = excluded.result, cost_usd = excluded.cost_usd,
                     input_tokens = excluded.input_tokens, output_tokens = excluded.output_tokens,
                     turns = excluded.turns, duration_ms = excluded.duration_ms,
                     findings = excluded.findings, last_outcome = excluded.last_outcome,
                     updated_at = excluded.updated_at",
            )
            .and_then(|mut s| {
                s.execute(params![
                    run.as_str(),
                    rec.story_id,
                    rec.title,
                    state_name(rec.state),
                    rec.cycle,
                    rec.result.map(StoryResult::as_str),
                    usage.cost_usd,
                    clamp(usage.input_tokens),
                    clamp(usage.output_tokens),
                    usage.turns,
                    clamp_duration(usage.duration),
                    findings,
                    rec.last_outcome,
                    to_ms(SystemTime::now()),
                ])
            })
            .map_err(sql_err(path))?;
        Ok(())
    }

    /// Records the first sighting of a story by this project's journal (`state`: its state then,
    /// `None` when it had none readable), unless one is recorded already; a story first seen
    /// `done` is accepted as done. Returns the sighting as recorded.
    pub fn sight_story(
        &mut self,
        run: &RunId,
        story: &str,
        state: Option<StoryState>,
    ) -> Result<Sighting, JournalError> {
        if let Some(seen) = self.sighting(story)? {
            return Ok(seen);
        }
        let path = self.reader.path.clone();
        let done_run = (state == Some(StoryState::Done)).then(|| run.clone());
        let now = to_ms(SystemTime::now());
        self.relaxed(|journal| {
            journal
                .reader
                .conn
                .prepare_cached(
                    "INSERT INTO sightings (story_id, first_state, first_run, first_at, done_run)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        story,
                        state.map(state_name),
                        run.as_str(),
                        now,
                        done_run.as_ref().map(RunId::as_str)
                    ])
                })
                .map(drop)
                .map_err(sql_err(&path))
        })?;
        Ok(Sighting {
            story_id: story.to_owned(),
            first_state: state,
            first_run: run.clone(),
            first_at: from_ms(now),
            done_run,
        })
    }

    /// Records that `run` accepted the story's `done` (QA completed it), or with `None` that the
    /// story is no longer done, so its next `done` needs a review again.
    pub fn set_done_run(&mut self, story: &str, run: Option<&RunId>) -> Result<(), JournalError> {
        let path = self.reader.path.clone();
        self.relaxed(|journal| {
            journal
                .reader
                .conn
                .prepare_cached("UPDATE sightings SET done_run = ?2 WHERE story_id = ?1")
                .and_then(|mut s| s.execute(params![story, run.map(RunId::as_str)]))
                .map(drop)
                .map_err(sql_err(&path))
        })
    }

    /// Journals the intent of the step `key` before it runs, or reports that it already ran:
    /// - no row for `key`: inserts the intent, [`StepStart::Fresh`];
    /// - a row with a result: [`StepStart::Done`] with that result (nothing is written; do not
    ///   run the step again);
    /// - a row without a result (an attempt was interrupted): replaces the intent, counts the
    ///   attempt, [`StepStart::Retry`].
    ///
    /// The intent is written when this returns (a host killed from then on finds it). How it
    /// reaches the disk depends on the step (see [`Commit::for_intent`]): an agent call's intent
    /// is fsynced, and being the last commit before the agent starts, it makes every record
    /// before it durable too (the WAL is written in order); the other intents are relaxed.
    pub fn begin_step(&mut self, key: &StepKey, intent: &Value) -> Result<StepStart, JournalError> {
        match Commit::for_intent(key.kind) {
            Commit::Durable => {
                let start = self.begin_step_now(key, intent)?;
                self.commits = self.commits.saturating_add(1);
                // The agent starts next and runs for a while: the time to copy the WAL into
                // the database, off the run loop's path.
                if self.commits >= CHECKPOINT_EVERY
                    && let Some(checkpointer) = &self.checkpointer
                {
                    checkpointer.poke();
                    self.commits = 0;
                }
                Ok(start)
            }
            Commit::Relaxed => self.relaxed(|journal| journal.begin_step_now(key, intent)),
        }
    }

    fn begin_step_now(&mut self, key: &StepKey, intent: &Value) -> Result<StepStart, JournalError> {
        let path = &self.reader.path;
        let err = sql_err(path);
        let conn = &self.reader.conn;
        let intent = serde_json::to_string(intent).map_err(|e| data(path, "step intent", e))?;
        let existing: Option<(i64, u32, Option<String>)> = conn
            .prepare_cached(
                "SELECT id, attempt, result FROM steps WHERE run_id = ?1 AND story_id = ?2
                 AND cycle = ?3 AND role = ?4 AND kind = ?5 AND seq = ?6",
            )
            .and_then(|mut s| {
                s.query_row(
                    params![
                        key.run.as_str(),
                        key.story,
                        key.cycle,
                        key.role,
                        key.kind.as_str(),
                        key.seq
                    ],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
            })
            .map_err(&err)?;
        let now = to_ms(SystemTime::now());
        match existing {
            Some((_, _, Some(result))) => Ok(StepStart::Done(
                serde_json::from_str(&result).map_err(|e| data(path, "step result", e))?,
            )),
            Some((id, attempt, None)) => {
                let attempt = attempt.saturating_add(1);
                conn.prepare_cached(
                    "UPDATE steps SET attempt = ?2, intent = ?3, intent_at = ?4 WHERE id = ?1",
                )
                .and_then(|mut s| s.execute(params![id, attempt, intent, now]))
                .map_err(&err)?;
                Ok(StepStart::Retry {
                    id: StepId(id),
                    attempt,
                })
            }
            None => {
                conn.prepare_cached(
                    "INSERT INTO steps (run_id, story_id, cycle, role, kind, seq, attempt,
                         intent_at, intent, result_at, result)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8, NULL, NULL)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        key.run.as_str(),
                        key.story,
                        key.cycle,
                        key.role,
                        key.kind.as_str(),
                        key.seq,
                        now,
                        intent
                    ])
                })
                .map_err(&err)?;
                Ok(StepStart::Fresh(StepId(conn.last_insert_rowid())))
            }
        }
    }

    /// Journals a step that has no outcome to wait for (a policy decision, with the status it
    /// was taken on): intent and result in one commit, so it costs one fsync, not two. Replaying
    /// the same key after a crash leaves a recorded result as it was.
    pub fn record_step(
        &mut self,
        key: &StepKey,
        intent: &Value,
        result: &Value,
    ) -> Result<(), JournalError> {
        self.relaxed(|journal| journal.record_step_now(key, intent, result))
    }

    /// Runs `write` with `synchronous=NORMAL`: its commit is written to the WAL (so a host killed
    /// after it, however, finds it) without an fsync of its own. The next durable commit (an
    /// agent call's intent, the last commit before an agent starts; or the run's end) fsyncs the
    /// WAL and, the WAL being written in order, every relaxed commit before it: a gap between two
    /// agent calls waits for one journal fsync, however many records it writes. Only a power
    /// loss (or an OS crash) can lose relaxed commits, those since the last durable one; replay
    /// then redoes what they recorded: the status write and the gates check what is on disk, and
    /// at most the last agent call, whose result was among them, runs again.
    fn relaxed<T>(
        &mut self,
        write: impl FnOnce(&mut Self) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        let path = self.reader.path.clone();
        self.commits = self.commits.saturating_add(1);
        set_synchronous(&self.reader.conn, Commit::Relaxed).map_err(sql_err(&path))?;
        let result = write(self);
        let restored = set_synchronous(&self.reader.conn, Commit::Durable).map_err(sql_err(&path));
        let value = result?;
        restored?;
        Ok(value)
    }

    fn record_step_now(
        &mut self,
        key: &StepKey,
        intent: &Value,
        result: &Value,
    ) -> Result<(), JournalError> {
        let path = &self.reader.path;
        let err = sql_err(path);
        let intent = serde_json::to_string(intent).map_err(|e| data(path, "step intent", e))?;
        let result = serde_json::to_string(result).map_err(|e| data(path, "step result", e))?;
        let now = to_ms(SystemTime::now());
        self.reader
            .conn
            .prepare_cached(
                "INSERT INTO steps (run_id, story_id, cycle, role, kind, seq, attempt,
                     intent_at, intent, result_at, result)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8, ?7, ?9)
                 ON CONFLICT (run_id, story_id, cycle, role, kind, seq) DO UPDATE
                     SET result = excluded.result, result_at = excluded.result_at
                     WHERE steps.result IS NULL",
            )
            .and_then(|mut s| {
                s.execute(params![
                    key.run.as_str(),
                    key.story,
                    key.cycle,
                    key.role,
                    key.kind.as_str(),
                    key.seq,
                    now,
                    intent,
                    result
                ])
            })
            .map_err(&err)?;
        Ok(())
    }

    /// Journals a step's result: written when this returns (a host killed from then on finds
    /// it), and from then on [`Journal::begin_step`] for its key answers [`StepStart::Done`] with
    /// this result. A relaxed commit: the next durable one (before the next agent starts, or at
    /// the run's end) fsyncs it.
    pub fn finish_step(&mut self, id: StepId, result: &Value) -> Result<(), JournalError> {
        self.relaxed(|journal| journal.finish_step_now(id, result))
    }

    fn finish_step_now(&mut self, id: StepId, result: &Value) -> Result<(), JournalError> {
        let path = &self.reader.path;
        let err = sql_err(path);
        let result = serde_json::to_string(result).map_err(|e| data(path, "step result", e))?;
        let conn = &self.reader.conn;
        let changed = conn
            .prepare_cached(
                "UPDATE steps SET result = ?2, result_at = ?3 WHERE id = ?1 AND result IS NULL",
            )
            .and_then(|mut s| s.execute(params![id.0, result, to_ms(SystemTime::now())]))
            .map_err(&err)?;
        if changed == 1 {
            return Ok(());
        }
        let exists = conn
            .query_row("SELECT 1 FROM steps WHERE id = ?1", params![id.0], |_| {
                Ok(())
            })
            .optional()
            .map_err(&err)?
            .is_some();
        Err(if exists {
            JournalError::StepAlreadyFinished(id)
        } else {
            JournalError::UnknownStep(id)
        })
    }
}

impl JournalReader {
    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every run, oldest first, with its plugins.
    pub fn runs(&self) -> Result<Vec<RunRecord>, JournalError> {
        let err = sql_err(&self.path);
        let rows: Vec<(String, i64, Option<i64>, String, String, String)> = self
            .conn
            .prepare_cached(
                "SELECT id, started_at, finished_at, status, config_fingerprint, args
                 FROM runs ORDER BY rowid",
            )
            .and_then(|mut s| {
                s.query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })?
                .collect()
            })
            .map_err(&err)?;
        rows.into_iter()
            .map(|(id, started, finished, status, config, args)| {
                Ok(RunRecord {
                    plugins: plugins_of(&self.conn, &id, None).map_err(&err)?,
                    id: id.parse()?,
                    started_at: from_ms(started),
                    finished_at: finished.map(from_ms),
                    status: RunStatus::parse(&status).ok_or_else(|| bad(&self.path, "status"))?,
                    config,
                    args: serde_json::from_str(&args)
                        .map_err(|e| data(&self.path, "run arguments", e))?,
                })
            })
            .collect()
    }

    /// The most recent run, if any.
    pub fn latest_run(&self) -> Result<Option<RunId>, JournalError> {
        let id: Option<String> = self
            .conn
            .query_row("SELECT id FROM runs ORDER BY rowid DESC LIMIT 1", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql_err(&self.path))?;
        id.map(|id| id.parse()).transpose()
    }

    /// A story's record in a run, if the run has one.
    pub fn story(&self, run: &RunId, story: &str) -> Result<Option<StoryRecord>, JournalError> {
        let row = self
            .conn
            .prepare_cached(&format!(
                "SELECT {STORY_COLUMNS} FROM stories WHERE run_id = ?1 AND story_id = ?2"
            ))
            .and_then(|mut s| {
                s.query_row(params![run.as_str(), story], read_story_row)
                    .optional()
            })
            .map_err(sql_err(&self.path))?;
        row.map(|r| r.decode(&self.path).map(|(rec, _)| rec))
            .transpose()
    }

    /// What the journal knows of a story across runs, if it saw it before. A row that does not
    /// decode is an error (the journal fails closed).
    pub fn sighting(&self, story: &str) -> Result<Option<Sighting>, JournalError> {
        type Raw = (Option<String>, String, i64, Option<String>);
        let row: Option<Raw> = self
            .conn
            .prepare_cached(
                "SELECT first_state, first_run, first_at, done_run FROM sightings
                 WHERE story_id = ?1",
            )
            .and_then(|mut s| {
                s.query_row(params![story], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .optional()
            })
            .map_err(sql_err(&self.path))?;
        let Some((first_state, first_run, first_at, done_run)) = row else {
            return Ok(None);
        };
        let first_state = match first_state {
            None => None,
            Some(s) => Some(parse_state(&s).ok_or_else(|| bad(&self.path, "sighting state"))?),
        };
        Ok(Some(Sighting {
            story_id: story.to_owned(),
            first_state,
            first_run: first_run.parse()?,
            first_at: from_ms(first_at),
            done_run: done_run.map(|r| r.parse()).transpose()?,
        }))
    }

    /// For `bmad-host status`: every story of `run` (default: the latest run), in story order
    /// (1.2 before 1.10). Empty if there is no run.
    pub fn story_summaries(&self, run: Option<&RunId>) -> Result<Vec<StorySummary>, JournalError> {
        let run = match run {
            Some(run) => run.clone(),
            None => match self.latest_run()? {
                Some(run) => run,
                None => return Ok(Vec::new()),
            },
        };
        let rows = self
            .conn
            .prepare_cached(&format!(
                "SELECT {STORY_COLUMNS} FROM stories WHERE run_id = ?1"
            ))
            .and_then(|mut s| {
                s.query_map(params![run.as_str()], read_story_row)?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(sql_err(&self.path))?;
        let mut out = rows
            .into_iter()
            .map(|row| {
                let (record, updated_at) = row.decode(&self.path)?;
                Ok(StorySummary {
                    run: run.clone(),
                    record,
                    updated_at,
                })
            })
            .collect::<Result<Vec<_>, JournalError>>()?;
        out.sort_by(|a, b| story_order(&a.record.story_id, &b.record.story_id));
        Ok(out)
    }

    /// For `bmad-host log [--story ID]`: the steps of `run` (default: the latest run), optionally
    /// of one story, in the order they were first begun.
    pub fn steps(
        &self,
        run: Option<&RunId>,
        story: Option<&str>,
    ) -> Result<Vec<StepRow>, JournalError> {
        let run = match run {
            Some(run) => run.clone(),
            None => match self.latest_run()? {
                Some(run) => run,
                None => return Ok(Vec::new()),
            },
        };
        type Raw = (
            i64,
            String,
            u32,
            String,
            String,
            u32,
            u32,
            i64,
            String,
            Option<i64>,
            Option<String>,
        );
        let rows: Vec<Raw> = self
            .conn
            .prepare_cached(
                "SELECT id, story_id, cycle, role, kind, seq, attempt, intent_at, intent,
                     result_at, result
                 FROM steps WHERE run_id = ?1 AND (?2 IS NULL OR story_id = ?2) ORDER BY id",
            )
            .and_then(|mut s| {
                s.query_map(params![run.as_str(), story], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                        r.get(9)?,
                        r.get(10)?,
                    ))
                })?
                .collect()
            })
            .map_err(sql_err(&self.path))?;
        rows.into_iter()
            .map(
                |(
                    id,
                    story,
                    cycle,
                    role,
                    kind,
                    seq,
                    attempt,
                    intent_at,
                    intent,
                    result_at,
                    result,
                )| {
                    Ok(StepRow {
                        id: StepId(id),
                        key: StepKey {
                            run: run.clone(),
                            story,
                            cycle,
                            role,
                            kind: StepKind::parse(&kind)
                                .ok_or_else(|| bad(&self.path, "step kind"))?,
                            seq,
                        },
                        attempt,
                        intent_at: from_ms(intent_at),
                        intent: serde_json::from_str(&intent)
                            .map_err(|e| data(&self.path, "step intent", e))?,
                        result_at: result_at.map(from_ms),
                        result: result
                            .map(|r| serde_json::from_str(&r))
                            .transpose()
                            .map_err(|e| data(&self.path, "step result", e))?,
                    })
                },
            )
            .collect()
    }
}

const STORY_COLUMNS: &str = "story_id, title, state, cycle, result, cost_usd, input_tokens, \
     output_tokens, turns, duration_ms, findings, last_outcome, updated_at";

/// A `stories` row as stored, before its text columns are decoded.
struct StoryRow {
    story_id: String,
    title: String,
    state: String,
    cycle: u32,
    result: Option<String>,
    cost_usd: f64,
    input_tokens: i64,
    output_tokens: i64,
    turns: u32,
    duration_ms: i64,
    findings: String,
    last_outcome: Option<String>,
    updated_at: i64,
}

fn read_story_row(r: &Row<'_>) -> rusqlite::Result<StoryRow> {
    Ok(StoryRow {
        story_id: r.get(0)?,
        title: r.get(1)?,
        state: r.get(2)?,
        cycle: r.get(3)?,
        result: r.get(4)?,
        cost_usd: r.get(5)?,
        input_tokens: r.get(6)?,
        output_tokens: r.get(7)?,
        turns: r.get(8)?,
        duration_ms: r.get(9)?,
        findings: r.get(10)?,
        last_outcome: r.get(11)?,
        updated_at: r.get(12)?,
    })
}

impl StoryRow {
    fn decode(self, path: &Path) -> Result<(StoryRecord, SystemTime), JournalError> {
        let result = match self.result {
            None => None,
            Some(s) => Some(StoryResult::parse(&s).ok_or_else(|| bad(path, "story result"))?),
        };
        let record = StoryRecord {
            state: parse_state(&self.state).ok_or_else(|| bad(path, "story state"))?,
            story_id: self.story_id,
            title: self.title,
            cycle: self.cycle,
            result,
            usage: Usage {
                cost_usd: self.cost_usd,
                input_tokens: u64::try_from(self.input_tokens).unwrap_or(0),
                output_tokens: u64::try_from(self.output_tokens).unwrap_or(0),
                turns: self.turns,
                duration: Duration::from_millis(u64::try_from(self.duration_ms).unwrap_or(0)),
            },
            findings: serde_json::from_str(&self.findings)
                .map_err(|e| data(path, "findings", e))?,
            last_outcome: self.last_outcome,
        };
        Ok((record, from_ms(self.updated_at)))
    }
}

/// The plugins recorded for a run: all of them (`None`), or only those it started with
/// (`Some(false)`) or first saw on a resume (`Some(true)`).
fn plugins_of(
    conn: &Connection,
    run: &str,
    added_on_resume: Option<bool>,
) -> rusqlite::Result<Vec<PluginFingerprint>> {
    conn.prepare_cached(
        "SELECT name, version, role, wasm_hash FROM plugins
         WHERE run_id = ?1 AND (?2 IS NULL OR added_on_resume = ?2)
         ORDER BY seen_at, role, name",
    )?
    .query_map(params![run, added_on_resume], |r| {
        Ok(PluginFingerprint {
            name: r.get(0)?,
            version: r.get(1)?,
            role: r.get(2)?,
            wasm_hash: r.get(3)?,
        })
    })?
    .collect()
}

fn insert_plugins(
    conn: &Connection,
    run: &str,
    plugins: &[PluginFingerprint],
    added_on_resume: bool,
    now: i64,
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT OR IGNORE INTO plugins
             (run_id, role, name, version, wasm_hash, added_on_resume, seen_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for p in plugins {
        stmt.execute(params![
            run,
            p.role,
            p.name,
            p.version,
            p.wasm_hash,
            added_on_resume,
            now
        ])?;
    }
    Ok(())
}

/// How many commits between two checkpoints (SQLite's own default is a checkpoint when the WAL
/// holds 1000 pages; a commit of the run loop adds two or three).
const CHECKPOINT_EVERY: u32 = 300;

/// Copies the WAL into the database file on a thread of its own, with its own connection, when
/// the run loop asks ([`Checkpointer::poke`], right before an agent starts). A checkpoint waits
/// for two fsyncs and writes every page changed since the last one: done by a commit of the run
/// loop (SQLite's automatic checkpoint), it landed in a gap between two agent calls, one gap in
/// fifty, and made the slowest gaps slower. `PASSIVE`: it never blocks the run loop's writes.
#[derive(Debug)]
struct Checkpointer {
    poke: Option<std::sync::mpsc::SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// `None` (SQLite then checkpoints as usual, in the commits) when the connection or the
    /// thread cannot be had.
    fn start(path: &Path) -> Option<Checkpointer> {
        let conn = match schema::open_checkpointer(path) {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "no background checkpoints for the journal");
                return None;
            }
        };
        let (poke, pokes) = std::sync::mpsc::sync_channel::<()>(1);
        let shown = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("journal-checkpoint".into())
            .spawn(move || {
                while pokes.recv().is_ok() {
                    let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                        Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                    });
                    match done {
                        Ok((frames, copied)) => {
                            tracing::debug!(journal = %shown, frames, copied, "checkpoint");
                        }
                        Err(e) => tracing::warn!(journal = %shown, error = %e, "checkpoint failed"),
                    }
                }
            });
        match thread {
            Ok(thread) => Some(Checkpointer {
                poke: Some(poke),
                thread: Some(thread),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "no background checkpoints for the journal");
                None
            }
        }
    }

    /// Asks for a checkpoint; a no-op when one is already asked for.
    fn poke(&self) {
        if let Some(poke) = &self.poke {
            let _ = poke.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Closing the channel ends the thread after the checkpoint in progress, if any.
        self.poke = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::warn!("the journal's checkpoint thread panicked");
        }
    }
}

/// How a commit reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Commit {
    /// `synchronous=FULL`: fsynced before the call returns.
    Durable,
    /// `synchronous=NORMAL`: written, fsynced by the next durable commit.
    Relaxed,
}

impl Commit {
    /// An agent call's intent is durable: it is the last commit before the agent starts, so at
    /// most one agent call's work is ever at stake, and it covers every record since the last
    /// call. The other steps are redone safely: the status write checks the file before writing,
    /// the gates are checks.
    fn for_intent(kind: StepKind) -> Commit {
        match kind {
            StepKind::AgentCall => Commit::Durable,
            StepKind::StatusParse
            | StepKind::Decision
            | StepKind::Gates
            | StepKind::StatusWrite
            | StepKind::SprintSync
            | StepKind::Teardown
            | StepKind::Lane
            | StepKind::AfterStory => Commit::Relaxed,
        }
    }
}

/// Sets how the connection's commits reach the disk, through the statement cache (this runs
/// twice per relaxed record).
fn set_synchronous(conn: &Connection, commit: Commit) -> rusqlite::Result<()> {
    let sql = match commit {
        Commit::Durable => "PRAGMA synchronous = FULL",
        Commit::Relaxed => "PRAGMA synchronous = NORMAL",
    };
    conn.prepare_cached(sql)?.raw_execute().map(drop)
}

fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> JournalError + '_ {
    move |source| JournalError::Sqlite {
        path: path.to_owned(),
        source,
    }
}

fn data(path: &Path, what: &'static str, e: impl std::fmt::Display) -> JournalError {
    JournalError::Data {
        path: path.to_owned(),
        what,
        detail: e.to_string(),
    }
}

fn bad(path: &Path, what: &'static str) -> JournalError {
    data(path, what, "unknown value")
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn clamp_duration(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
