//! Driving `bmad_host::claude::run` against the fake Claude CLI: one [`FakeCall`] per call, with a
//! unique `FAKE_CLAUDE_TAG` (so tests can prove none of its processes survive), its own temp
//! project directory, call log and transcript.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bmad_host::claude::{CallSpec, Limits};
use serde_json::Value;

/// A tag unique to this process and call: `<prefix>-<pid>-<seq>-<nanos>`.
pub fn unique_tag(prefix: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// One call of the fake: its directory, tag, session id and spec.
#[derive(Debug)]
pub struct FakeCall {
    pub dir: tempfile::TempDir,
    pub tag: String,
    pub session: String,
    pub spec: CallSpec,
}

impl FakeCall {
    /// A call of the fake at `bin` (an integration test passes `env!("CARGO_BIN_EXE_fake-claude")`,
    /// which cargo defines only there) whose behaviour is `behaviour` (a fake behaviour object, see
    /// the fake's docs), playing `role` on story `1.1` of an empty project.
    pub fn new(bin: &str, prefix: &str, role: &str, behaviour: &Value) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let tag = unique_tag(prefix);
        let session = format!("session-{tag}");
        let root = dir.path().to_path_buf();
        let spec = CallSpec {
            bin: PathBuf::from(bin),
            prompt: format!("act as {role}"),
            cwd: root.clone(),
            env: vec![
                ("FAKE_CLAUDE_TAG".into(), tag.clone()),
                ("FAKE_CLAUDE_SESSION".into(), session.clone()),
                ("FAKE_CLAUDE_BEHAVIOUR".into(), behaviour.to_string()),
                (
                    "FAKE_CLAUDE_LOG".into(),
                    root.join("calls.ndjson").display().to_string(),
                ),
                ("BMAD_HOST_ROLE".into(), role.into()),
                ("BMAD_HOST_STORY_ID".into(), "1.1".into()),
                (
                    "BMAD_HOST_STORY_PATH".into(),
                    root.join("docs/stories/1.1.story.md").display().to_string(),
                ),
                ("BMAD_HOST_CYCLE".into(), "1".into()),
                ("BMAD_HOST_RUN_ID".into(), "run-test".into()),
            ],
            model: Some("claude-test".into()),
            permission_mode: "acceptEdits".into(),
            allowed_tools: vec!["Read".into(), "Edit".into()],
            append_system_prompt: None,
            extra_args: vec![],
            transcript: root.join("runs/r1/transcript.ndjson"),
            keeper: None,
        };
        Self {
            dir,
            tag,
            session,
            spec,
        }
    }

    /// Uses a script file instead of an inline behaviour.
    pub fn with_script(mut self, script: &Value) -> Self {
        let path = self.dir.path().join("script.json");
        std::fs::write(&path, script.to_string()).expect("write script");
        self.spec.env.retain(|(k, _)| k != "FAKE_CLAUDE_BEHAVIOUR");
        self.spec
            .env
            .push(("FAKE_CLAUDE_SCRIPT".into(), path.display().to_string()));
        self
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The fake's call log: one JSON object per process started.
    pub fn log(&self) -> Vec<Value> {
        crate::fake_log::read(&self.root().join("calls.ndjson"))
    }

    pub fn transcript(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.spec.transcript).unwrap_or_default())
            .into_owned()
    }

    /// Live processes of this call (any that carries its tag).
    pub fn live(&self) -> Vec<u32> {
        crate::procs::live_processes_with_marker(&self.tag)
    }
}

/// Short limits for tests: timers that matter are set per test.
pub fn quick_limits() -> Limits {
    Limits {
        timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(30),
        tool_idle_timeout: Duration::from_secs(30),
        max_turns: 20,
        max_budget_usd: None,
        retries: 0,
        retry_backoff: Duration::from_millis(10),
        interrupt_grace: Duration::from_millis(300),
        term_grace: Duration::from_millis(300),
        exit_grace: Duration::from_secs(5),
        max_line_bytes: 1024 * 1024,
    }
}
