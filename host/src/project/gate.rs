//! BMAD v4 QA gate files (`{qaLocation}/gates/{epic}.{story}-{slug}.yml`): a tolerant reader,
//! and [`GateIndex`], which finds a story's gate files without listing the gates folder each
//! time (the folder gains a file per story, so listing it per lookup made a story's cost grow
//! with the epic).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fmt;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, InotifyEvent};
use serde_yaml_ng::Value;

use super::error::{ProjectError, Warning};
use super::fs::read_inside;
use super::id::StoryId;
use super::text::{numbered_lines, yaml_key_line};

/// Gate files larger than this are refused (they are a few KiB).
pub(crate) const MAX_GATE_BYTES: u64 = 1024 * 1024;

/// The four gate decisions of the BMAD QA gate schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum GateVerdict {
    /// `PASS`.
    Pass,
    /// `CONCERNS`.
    Concerns,
    /// `FAIL`.
    Fail,
    /// `WAIVED`.
    Waived,
}

impl GateVerdict {
    /// The value as the schema spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            GateVerdict::Pass => "PASS",
            GateVerdict::Concerns => "CONCERNS",
            GateVerdict::Fail => "FAIL",
            GateVerdict::Waived => "WAIVED",
        }
    }

    fn exact(s: &str) -> Option<GateVerdict> {
        match s {
            "PASS" => Some(GateVerdict::Pass),
            "CONCERNS" => Some(GateVerdict::Concerns),
            "FAIL" => Some(GateVerdict::Fail),
            "WAIVED" => Some(GateVerdict::Waived),
            _ => None,
        }
    }
}

impl fmt::Display for GateVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A QA gate file as read by the host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QaGate {
    /// The gate file, relative to the project root.
    pub path: PathBuf,
    /// The `gate:` value as written (trimmed, unquoted); empty when the key is missing.
    pub gate: String,
    /// The value when it is one of `PASS|CONCERNS|FAIL|WAIVED` (any case); `None` otherwise
    /// (`PASSED` is not guessed to be `PASS`).
    pub verdict: Option<GateVerdict>,
    /// The whole file (lossy UTF-8).
    pub text: String,
    /// What was tolerated (bad values, bad YAML).
    pub warnings: Vec<Warning>,
}

impl QaGate {
    /// The WIT record handed to the QA policy.
    pub fn to_policy(&self) -> crate::policy::QaGate {
        crate::policy::QaGate {
            path: self.path.to_string_lossy().into_owned(),
            gate: self.gate.clone(),
            text: self.text.clone(),
        }
    }
}

/// Reads and checks the gate file at `root/rel`.
pub(crate) fn read_gate(root: &Path, rel: &Path) -> Result<QaGate, ProjectError> {
    let path = root.join(rel);
    let bytes = read_inside(root, &path, MAX_GATE_BYTES, "a QA gate")?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (gate, warnings) = parse_gate(&path, &text);
    let verdict = GateVerdict::exact(&gate.to_ascii_uppercase());
    Ok(QaGate {
        path: rel.to_owned(),
        gate,
        verdict,
        text,
        warnings,
    })
}

/// The `gate:` value and the warnings about the file. Never fails: bad YAML falls back to the
/// `gate:` line.
pub(crate) fn parse_gate(path: &Path, text: &str) -> (String, Vec<Warning>) {
    let mut warnings = Vec::new();
    let line_of = |key: &[&str]| yaml_key_line(text, key);
    let doc = match serde_yaml_ng::from_str::<Value>(text) {
        Ok(v) => Some(v),
        Err(e) => {
            let line = e.location().and_then(|l| u32::try_from(l.line()).ok());
            warnings.push(Warning::new(
                path,
                line,
                format!("not valid YAML ({e}): the gate was read from the `gate:` line"),
            ));
            None
        }
    };
    let gate = match &doc {
        Some(doc) => match doc.get("gate") {
            Some(Value::String(s)) => Some(s.trim().to_owned()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::Bool(b)) => Some(b.to_string()),
            Some(Value::Null) | None => None,
            Some(_) => {
                warnings.push(Warning::new(
                    path,
                    line_of(&["gate"]),
                    "`gate` is a list or mapping: read as empty",
                ));
                Some(String::new())
            }
        },
        None => gate_line(text),
    };
    let gate = match gate {
        Some(g) => g,
        None => {
            warnings.push(Warning::new(
                path,
                None,
                "no `gate:` value: expected PASS|CONCERNS|FAIL|WAIVED",
            ));
            String::new()
        }
    };
    if !gate.is_empty() {
        match GateVerdict::exact(&gate) {
            Some(_) => {}
            None => match GateVerdict::exact(&gate.to_ascii_uppercase()) {
                Some(v) => warnings.push(Warning::new(
                    path,
                    line_of(&["gate"]),
                    format!("gate `{gate}` is not upper case: read as {v}"),
                )),
                None => warnings.push(Warning::new(
                    path,
                    line_of(&["gate"]),
                    format!("gate `{gate}` is not one of PASS|CONCERNS|FAIL|WAIVED: passed on as written, with no verdict"),
                )),
            },
        }
    }
    if let Some(doc) = &doc {
        check_schema(path, text, doc, &mut warnings);
    }
    (gate, warnings)
}

/// Schema checks that only warn: the QA policy still gets the whole text.
fn check_schema(path: &Path, text: &str, doc: &Value, warnings: &mut Vec<Warning>) {
    if let Some(story) = doc.get("story")
        && !matches!(story, Value::String(_))
    {
        warnings.push(Warning::new(
            path,
            yaml_key_line(text, &["story"]),
            "`story` is not a quoted string (YAML reads 1.10 as 1.1): quote it, e.g. story: \"1.2\"",
        ));
    }
    if let Some(waiver) = doc.get("waiver")
        && !matches!(waiver, Value::Mapping(_) | Value::Null)
    {
        warnings.push(Warning::new(
            path,
            yaml_key_line(text, &["waiver"]),
            "`waiver` is not a mapping: expected `waiver: { active: false }`",
        ));
    }
    if let Some(issues) = doc.get("top_issues").and_then(Value::as_sequence) {
        for issue in issues {
            if let Some(sev) = issue.get("severity").and_then(Value::as_str)
                && !matches!(sev, "low" | "medium" | "high")
            {
                let line = numbered_lines(text)
                    .find(|(_, l)| l.trim_start().starts_with("severity:") && l.contains(sev))
                    .map(|(n, _)| n);
                warnings.push(Warning::new(
                    path,
                    line,
                    format!("severity `{sev}` is not one of low|medium|high"),
                ));
            }
        }
    }
}

/// The story a gate file name belongs to: `{epic}.{story}-*.yml` (or `.yaml`), the id in
/// dotted form (`1.2-…`, never `1-2-…`) and followed by a dash.
fn gate_story(name: &str) -> Option<StoryId> {
    if !(name.ends_with(".yml") || name.ends_with(".yaml")) {
        return None;
    }
    let (id, used) = StoryId::parse_prefix(name)?;
    let dotted = name.bytes().find(|b| matches!(b, b'.' | b'-')) == Some(b'.');
    (dotted && name[used..].starts_with('-')).then_some(id)
}

/// The gate files of a gates folder, by story: every regular file or symlink whose (UTF-8) name
/// is a gate file name. `Ok(empty)` when the folder does not exist.
fn list_gates(dir: &Path) -> Result<BTreeMap<StoryId, BTreeSet<String>>, ProjectError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(ProjectError::io("list", dir, e)),
    };
    let mut gates: BTreeMap<StoryId, BTreeSet<String>> = BTreeMap::new();
    for entry in rd {
        let entry = entry.map_err(|e| ProjectError::io("list", dir, e))?;
        let name = entry.file_name();
        let Some((id, name)) = name.to_str().and_then(|n| Some((gate_story(n)?, n))) else {
            continue;
        };
        if entry
            .file_type()
            .is_ok_and(|t| t.is_file() || t.is_symlink())
        {
            gates.entry(id).or_default().insert(name.to_owned());
        }
    }
    Ok(gates)
}

/// Finds a story's gate files in the gates folder. The folder is listed once; after that the
/// kernel's change notifications for it (inotify: files created, deleted, moved in or out) keep
/// the index current, so a lookup costs a `stat` of the folder and a read of the (usually
/// empty) notification queue however many gate files there are. Exact, not a cache that may
/// be stale: an agent's writes are queued by the kernel before the agent's process is reaped,
/// so the lookup after a call sees them. The folder is listed again when it is replaced or
/// moved (its inode changes), when the queue overflowed, and whenever notifications cannot be
/// had (then every lookup lists it, as before the index).
#[derive(Debug, Default)]
pub(crate) struct GateIndex {
    watched: Mutex<Option<Watched>>,
}

impl Clone for GateIndex {
    /// A clone starts empty: it lists the folder on its first lookup and watches it itself.
    fn clone(&self) -> Self {
        GateIndex::default()
    }
}

/// A watched gates folder and its gate files.
#[derive(Debug)]
struct Watched {
    dir: PathBuf,
    /// Device and inode of the folder when it was listed.
    inode: (u64, u64),
    inotify: Inotify,
    gates: BTreeMap<StoryId, BTreeSet<String>>,
}

/// What the watch reports: names created in or moved into the folder, names deleted from or
/// moved out of it, the folder itself going away, a lost queue.
const WATCH_MASK: AddWatchFlags = AddWatchFlags::IN_CREATE
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_MOVE_SELF)
    .union(AddWatchFlags::IN_ONLYDIR);

impl GateIndex {
    /// The gate files of story `id` in the folder `dir` (absolute), sorted by name; empty when
    /// the folder does not exist.
    pub(crate) fn files(&self, dir: &Path, id: StoryId) -> Result<Vec<String>, ProjectError> {
        let mut watched = self.watched.lock().unwrap_or_else(PoisonError::into_inner);
        let inode = match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => (meta.dev(), meta.ino()),
            Ok(_) => {
                // Not a folder: listing it reports the error as it always did.
                *watched = None;
                return Ok(of_story(list_gates(dir)?, id));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                *watched = None;
                return Ok(Vec::new());
            }
            Err(e) => return Err(ProjectError::io("list", dir, e)),
        };
        let current = watched
            .as_mut()
            .filter(|w| w.dir == dir && w.inode == inode)
            .is_some_and(Watched::catch_up);
        if !current {
            *watched = Watched::start(dir, inode)?;
        }
        match watched.as_ref() {
            Some(w) => Ok(w
                .gates
                .get(&id)
                .map(|names| names.iter().cloned().collect())
                .unwrap_or_default()),
            // No notifications to be had: list the folder every time.
            None => Ok(of_story(list_gates(dir)?, id)),
        }
    }
}

fn of_story(mut gates: BTreeMap<StoryId, BTreeSet<String>>, id: StoryId) -> Vec<String> {
    gates
        .remove(&id)
        .map(|names| names.into_iter().collect())
        .unwrap_or_default()
}

impl Watched {
    /// Watches `dir`, then lists it (in that order, so that nothing created in between is
    /// missed), then applies what the watch saw meanwhile. `Ok(None)` when the kernel gives no
    /// watch (no inotify, or the per-user limit reached).
    fn start(dir: &Path, inode: (u64, u64)) -> Result<Option<Watched>, ProjectError> {
        let inotify = match Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .and_then(|i| i.add_watch(dir, WATCH_MASK).map(|_| i))
        {
            Ok(i) => i,
            Err(e) => {
                tracing::debug!(dir = %dir.display(), error = %e, "no inotify watch: gate lookups list the folder");
                return Ok(None);
            }
        };
        let mut watched = Watched {
            dir: dir.to_owned(),
            inode,
            inotify,
            gates: list_gates(dir)?,
        };
        Ok(watched.catch_up().then_some(watched))
    }

    /// Applies the queued notifications. False when the index can no longer be trusted (the
    /// folder was deleted or moved, the queue overflowed, the queue cannot be read): the
    /// caller lists the folder again.
    fn catch_up(&mut self) -> bool {
        loop {
            match self.inotify.read_events() {
                Ok(events) if events.is_empty() => return true,
                Ok(events) => {
                    for event in events {
                        if !self.apply(event) {
                            return false;
                        }
                    }
                }
                Err(Errno::EAGAIN) => return true,
                Err(Errno::EINTR) => {}
                Err(e) => {
                    tracing::debug!(dir = %self.dir.display(), error = %e, "inotify read failed: listing the gates folder again");
                    return false;
                }
            }
        }
    }

    fn apply(&mut self, event: InotifyEvent) -> bool {
        let gone = AddWatchFlags::IN_Q_OVERFLOW
            | AddWatchFlags::IN_IGNORED
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF
            | AddWatchFlags::IN_UNMOUNT;
        if event.mask.intersects(gone) {
            return false;
        }
        let Some((id, name)) = event
            .name
            .as_deref()
            .and_then(OsStr::to_str)
            .and_then(|n| Some((gate_story(n)?, n)))
        else {
            return true;
        };
        if event
            .mask
            .intersects(AddWatchFlags::IN_DELETE | AddWatchFlags::IN_MOVED_FROM)
        {
            if let Some(names) = self.gates.get_mut(&id) {
                names.remove(name);
                if names.is_empty() {
                    self.gates.remove(&id);
                }
            }
        } else if event
            .mask
            .intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO)
        {
            // What the name is now (a later event in the queue settles any change after this):
            // only regular files and symlinks count, as in a listing.
            let counts = std::fs::symlink_metadata(self.dir.join(name))
                .is_ok_and(|m| m.file_type().is_file() || m.file_type().is_symlink());
            if counts {
                self.gates.entry(id).or_default().insert(name.to_owned());
            }
        }
        true
    }
}

/// `gate: VALUE` at column 0, for files that are not valid YAML.
fn gate_line(text: &str) -> Option<String> {
    numbered_lines(text).find_map(|(_, l)| {
        let v = l.strip_prefix("gate:")?;
        let v = v
            .split(" #")
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches(['"', '\'']);
        Some(v.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::fs;
    use std::os::fd::{AsFd as _, AsRawFd as _};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn id(s: &str) -> StoryId {
        s.parse().expect("a story id")
    }

    /// What a fresh listing of the folder says: the index must always agree.
    fn listed(dir: &Path, story: StoryId) -> Vec<String> {
        of_story(list_gates(dir).expect("list"), story)
    }

    #[test]
    fn the_index_finds_gates_written_after_it_listed_the_folder() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("gates");
        let index = GateIndex::default();
        assert!(index.files(&dir, id("1.2"))?.is_empty(), "no folder yet");
        fs::create_dir(&dir)?;
        fs::write(dir.join("1.2-a.yml"), "gate: PASS\n")?;
        fs::write(dir.join("1.20-b.yml"), "gate: PASS\n")?;
        fs::write(dir.join("1-2-c.yml"), "gate: PASS\n")?;
        fs::create_dir(dir.join("1.2-folder.yml"))?;
        assert_eq!(index.files(&dir, id("1.2"))?, ["1.2-a.yml"]);
        fs::write(dir.join("1.2-b.yaml"), "gate: FAIL\n")?;
        assert_eq!(index.files(&dir, id("1.2"))?, ["1.2-a.yml", "1.2-b.yaml"]);
        fs::rename(dir.join("1.2-a.yml"), dir.join("1.2-z.yml"))?;
        fs::remove_file(dir.join("1.2-b.yaml"))?;
        assert_eq!(index.files(&dir, id("1.2"))?, ["1.2-z.yml"]);
        assert_eq!(index.files(&dir, id("1.20"))?, ["1.20-b.yml"]);
        // The folder replaced by another one: listed again.
        fs::rename(&dir, tmp.path().join("old"))?;
        fs::create_dir(&dir)?;
        fs::write(dir.join("1.2-new.yml"), "gate: PASS\n")?;
        assert_eq!(index.files(&dir, id("1.2"))?, ["1.2-new.yml"]);
        fs::remove_dir_all(&dir)?;
        assert!(index.files(&dir, id("1.2"))?.is_empty());
        Ok(())
    }

    #[test]
    fn the_index_does_not_list_the_folder_again_for_each_lookup() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("gates");
        fs::create_dir(&dir)?;
        let index = GateIndex::default();
        assert!(index.files(&dir, id("1.1"))?.is_empty());
        let watched = |index: &GateIndex| {
            index
                .watched
                .lock()
                .map(|w| w.as_ref().map(|w| w.inotify.as_fd().as_raw_fd()))
                .ok()
                .flatten()
        };
        let first = watched(&index);
        assert!(first.is_some(), "the folder is watched");
        for i in 1..50 {
            fs::write(dir.join(format!("1.{i}-story.yml")), "gate: PASS\n")?;
            assert_eq!(
                index.files(&dir, id(&format!("1.{i}")))?,
                [format!("1.{i}-story.yml")]
            );
        }
        assert_eq!(watched(&index), first, "the same watch all along");
        Ok(())
    }

    /// A change to the gates folder, for the property test.
    #[derive(Debug, Clone)]
    enum Change {
        Write(usize),
        Mkdir(usize),
        Symlink(usize),
        Remove(usize),
        Rename(usize, usize),
        MoveOut(usize),
        MoveIn(usize),
        ReplaceFolder,
        RemoveFolder,
    }

    const NAMES: [&str; 7] = [
        "1.2-a.yml",
        "1.2-b.yaml",
        "1.2-c.yml",
        "1.20-d.yml",
        "1.2.yml",
        "1.2-e.txt",
        "x.yml",
    ];

    fn change() -> impl Strategy<Value = Change> {
        let n = 0..NAMES.len();
        prop_oneof![
            4 => n.clone().prop_map(Change::Write),
            1 => n.clone().prop_map(Change::Mkdir),
            1 => n.clone().prop_map(Change::Symlink),
            3 => n.clone().prop_map(Change::Remove),
            3 => (n.clone(), n.clone()).prop_map(|(a, b)| Change::Rename(a, b)),
            1 => n.clone().prop_map(Change::MoveOut),
            1 => n.prop_map(Change::MoveIn),
            1 => Just(Change::ReplaceFolder),
            1 => Just(Change::RemoveFolder),
        ]
    }

    fn apply(root: &Path, dir: &Path, change: &Change, k: usize) {
        let at = |i: usize| dir.join(NAMES[i]);
        let outside = root.join(format!("outside-{k}"));
        // Changes that make no sense in the current state fail; that is fine.
        let _ = match change {
            Change::Write(i) => fs::write(at(*i), "gate: PASS\n"),
            Change::Mkdir(i) => fs::create_dir(at(*i)),
            Change::Symlink(i) => std::os::unix::fs::symlink("elsewhere.yml", at(*i)),
            Change::Remove(i) => fs::remove_file(at(*i)).or_else(|_| fs::remove_dir(at(*i))),
            Change::Rename(a, b) => fs::rename(at(*a), at(*b)),
            Change::MoveOut(i) => fs::rename(at(*i), &outside),
            Change::MoveIn(i) => {
                fs::write(&outside, "gate: FAIL\n").and_then(|()| fs::rename(&outside, at(*i)))
            }
            Change::ReplaceFolder => {
                fs::rename(dir, root.join(format!("old-{k}"))).and_then(|()| fs::create_dir(dir))
            }
            Change::RemoveFolder => fs::remove_dir_all(dir),
        };
        if !dir.exists() && k.is_multiple_of(2) {
            let _ = fs::create_dir(dir);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Whatever happens to the folder, and however many changes pile up between two
        /// lookups, the index answers what a fresh listing answers.
        #[test]
        fn the_index_always_agrees_with_a_listing(
            changes in proptest::collection::vec((change(), any::<bool>()), 1..40),
        ) {
            let tmp = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let dir = tmp.path().join("gates");
            fs::create_dir(&dir).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let index = GateIndex::default();
            for (k, (change, look)) in changes.iter().enumerate() {
                apply(tmp.path(), &dir, change, k);
                if *look || k + 1 == changes.len() {
                    for story in [id("1.2"), id("1.20")] {
                        let found = index.files(&dir, story)
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert_eq!(found, listed(&dir, story), "after {:?}", &changes[..=k]);
                    }
                }
            }
        }
    }

    #[test]
    fn bad_values_are_tolerated_with_warnings() {
        let text = "schema: 1\nstory: 1.2\ngate: PASSED\nstatus_reason: Looks fine\ntop_issues:\n  - id: SEC-001\n    severity: critical\nwaiver: true\n";
        let (gate, warnings) = parse_gate(Path::new("g.yml"), text);
        assert_eq!(gate, "PASSED");
        let shown: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 4, "{shown:#?}");
        assert!(
            shown[0].starts_with("g.yml:3: gate `PASSED` is not one of"),
            "{shown:#?}"
        );
        assert!(
            shown
                .iter()
                .any(|w| w.starts_with("g.yml:2: `story` is not a quoted string"))
        );
        assert!(
            shown
                .iter()
                .any(|w| w.starts_with("g.yml:8: `waiver` is not a mapping"))
        );
        assert!(
            shown
                .iter()
                .any(|w| w.starts_with("g.yml:7: severity `critical`"))
        );
    }

    #[test]
    fn broken_yaml_falls_back_to_the_gate_line() {
        let (gate, warnings) = parse_gate(Path::new("g.yml"), "gate: 'FAIL'  # x\n\tbad: [\n");
        assert_eq!(gate, "FAIL");
        assert!(warnings[0].message.contains("not valid YAML"));
        let (gate, warnings) = parse_gate(Path::new("g.yml"), "schema: 1\n");
        assert_eq!(gate, "");
        assert!(warnings[0].message.contains("no `gate:` value"));
    }

    #[test]
    fn verdicts() {
        for (text, verdict, warns) in [
            ("gate: PASS\n", Some(GateVerdict::Pass), 0),
            ("gate: \"CONCERNS\"\n", Some(GateVerdict::Concerns), 0),
            ("gate: waived\n", Some(GateVerdict::Waived), 1),
            ("gate: PASSED\n", None, 1),
        ] {
            let (gate, warnings) = parse_gate(Path::new("g.yml"), text);
            assert_eq!(
                GateVerdict::exact(&gate.to_ascii_uppercase()),
                verdict,
                "{text}"
            );
            assert_eq!(warnings.len(), warns, "{text}: {warnings:?}");
        }
    }
}
