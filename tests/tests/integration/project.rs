//! `bmad_host::project` against copies of the shared BMAD corpus (the vendored copy in `tests/corpus`, never
//! edited: every test works on a temp copy) and the repo's sample projects: discovery of every
//! story, the malformed non-story files as `malformed/MANIFEST.tsv` says, and byte-exact status
//! writes with sprint-status kept in step.

use std::fs;
use std::path::{Path, PathBuf};

use bmad_host::policy::{Layout, StatusSource, StatusValue, StoryState};
use bmad_host::project::{
    GateVerdict, Project, ProjectError, SprintSync, StoryEntry, StoryId, Written,
};
use bmad_host_tests::harness::{copy_dir, copy_of, corpus, fixtures};
use tempfile::TempDir;

fn discover(root: &Path) -> Project {
    Project::discover(root).unwrap_or_else(|e| panic!("discover {}: {e}", root.display()))
}

fn discover_err(root: &Path) -> String {
    match Project::discover(root) {
        Ok(p) => panic!("expected an error, got {}", p.describe()),
        Err(e) => e.to_string(),
    }
}

fn id(s: &str) -> StoryId {
    s.parse().expect("story id")
}

fn story<'a>(p: &'a Project, s: &str) -> &'a StoryEntry {
    p.story(id(s))
        .unwrap_or_else(|| panic!("story {s} missing"))
}

fn warnings(p: &Project) -> Vec<String> {
    p.warnings().iter().map(ToString::to_string).collect()
}

fn path(s: &str) -> PathBuf {
    PathBuf::from(s)
}

/// v6 rows: id, title, path, exists, sprint key, sprint value, gate path.
type V6Row = (
    String,
    String,
    PathBuf,
    bool,
    Option<String>,
    Option<String>,
    Option<PathBuf>,
);

/// Sample rows: id, path, exists, sprint key, sprint value.
type SampleRow = (String, String, bool, Option<String>, Option<String>);

/// One row per story: id, title, path, exists, gate path, gate exists.
type Row = (String, String, PathBuf, bool, Option<PathBuf>, bool);

fn rows(p: &Project) -> Vec<Row> {
    p.stories()
        .iter()
        .map(|s| {
            (
                s.id.to_string(),
                s.title.clone(),
                s.path.clone(),
                s.exists,
                s.gate_path.clone(),
                s.gate_exists,
            )
        })
        .collect()
}

fn row(
    id: &str,
    title: &str,
    file: &str,
    exists: bool,
    gate: Option<&str>,
    gate_exists: bool,
) -> Row {
    (
        id.into(),
        title.into(),
        path(file),
        exists,
        gate.map(path),
        gate_exists,
    )
}

fn v4_corpus_rows() -> Vec<Row> {
    vec![
        row(
            "1.1",
            "Project Setup and Health Check",
            "docs/stories/1.1.story.md",
            true,
            Some("docs/qa/gates/1.1-project-setup-and-health-check.yml"),
            true,
        ),
        row(
            "1.2",
            "User Registration",
            "docs/stories/1.2.story.md",
            true,
            Some("docs/qa/gates/1.2-user-registration.yml"),
            true,
        ),
        row(
            "1.3",
            "Sign In and Session",
            "docs/stories/1.3.story.md",
            true,
            Some("docs/qa/gates/1.3-sign-in-and-session.yml"),
            false,
        ),
        row(
            "1.4",
            "Add a Plant",
            "docs/stories/1.4.story.md",
            false,
            Some("docs/qa/gates/1.4-add-a-plant.yml"),
            false,
        ),
        row(
            "2.1",
            "Watering Schedule",
            "docs/stories/2.1.story.md",
            false,
            Some("docs/qa/gates/2.1-watering-schedule.yml"),
            false,
        ),
    ]
}

#[test]
fn v4_corpus_sharded_prd() {
    let tmp = copy_of(&corpus().join("v4"));
    let p = discover(tmp.path());
    assert_eq!(p.layout(), Layout::V4);
    assert_eq!(p.version(), Some("4.44.3"));
    assert_eq!(
        p.describe(),
        "BMAD v4 4.44.3 (.bmad-core/core-config.yaml), sharded PRD docs/prd"
    );
    assert_eq!(rows(&p), v4_corpus_rows());
    assert_eq!(
        p.epic_files(),
        [
            path("docs/prd/epic-1-user-accounts-plant-catalogue.md"),
            path("docs/prd/epic-2-care-reminders.md")
        ]
    );
    let epics: Vec<(u32, &str, Option<&Path>)> = p
        .epics()
        .iter()
        .map(|e| (e.number, e.title.as_str(), e.path.as_deref()))
        .collect();
    assert_eq!(
        epics,
        [
            (
                1,
                "User Accounts & Plant Catalogue",
                Some(Path::new(
                    "docs/prd/epic-1-user-accounts-plant-catalogue.md"
                ))
            ),
            (
                2,
                "Care Reminders",
                Some(Path::new("docs/prd/epic-2-care-reminders.md"))
            ),
        ]
    );
    let s = story(&p, "1.3");
    assert_eq!(
        s.epic_path.as_deref(),
        Some(Path::new(
            "docs/prd/epic-1-user-accounts-plant-catalogue.md"
        ))
    );
    assert_eq!(
        (s.plan_line, s.in_plan, s.slug.as_str()),
        (Some(32), true, "sign-in-and-session")
    );
    assert_eq!(s.sprint_key, None);
    assert!(warnings(&p).is_empty(), "{:#?}", warnings(&p));
}

#[test]
fn v4_corpus_monolithic_prd_gives_the_same_stories() {
    let tmp = copy_of(&corpus().join("v4"));
    let config = tmp.path().join(".bmad-core/core-config.yaml");
    let text = fs::read_to_string(&config).expect("config");
    fs::write(
        &config,
        text.replace("prdSharded: true", "prdSharded: false"),
    )
    .expect("write");
    let p = discover(tmp.path());
    assert_eq!(
        p.describe(),
        "BMAD v4 4.44.3 (.bmad-core/core-config.yaml), PRD docs/prd.md"
    );
    assert_eq!(rows(&p), v4_corpus_rows());
    assert_eq!(p.epic_files(), [path("docs/prd.md")]);
    assert!(
        p.stories()
            .iter()
            .all(|s| s.epic_path.as_deref() == Some(Path::new("docs/prd.md")))
    );
    // The `### Story 1.1:` heading of the monolithic PRD, not the list of epics above it.
    assert_eq!(story(&p, "1.1").plan_line, Some(42));
    let titles: Vec<&str> = p.epics().iter().map(|e| e.title.as_str()).collect();
    assert_eq!(
        titles,
        ["User Accounts & Plant Catalogue", "Care Reminders"]
    );
}

#[test]
fn v4_corpus_stories_and_gates_are_read() {
    let tmp = copy_of(&corpus().join("v4"));
    let p = discover(tmp.path());
    let text = p.read_story(story(&p, "1.2")).expect("read 1.2");
    assert_eq!(text.path, path("docs/stories/1.2.story.md"));
    assert!(
        text.text
            .starts_with("# Story 1.2: User Registration\n\n## Status\n\nReview\n")
    );
    assert!(!text.lossy);
    assert_eq!(
        text.bytes,
        fs::read(tmp.path().join("docs/stories/1.2.story.md")).expect("bytes")
    );

    let gate = p
        .read_qa_gate(story(&p, "1.1"))
        .expect("gate")
        .expect("1.1 has a gate");
    assert_eq!(
        (gate.gate.as_str(), gate.verdict),
        ("PASS", Some(GateVerdict::Pass))
    );
    assert_eq!(
        gate.path,
        path("docs/qa/gates/1.1-project-setup-and-health-check.yml")
    );
    assert!(
        gate.text
            .contains("status_reason: \"All three acceptance criteria")
    );
    assert!(gate.warnings.is_empty(), "{:?}", gate.warnings);
    let policy = gate.to_policy();
    assert_eq!(
        (policy.path.as_str(), policy.gate.as_str()),
        (
            "docs/qa/gates/1.1-project-setup-and-health-check.yml",
            "PASS"
        )
    );
    let gate = p
        .read_qa_gate(story(&p, "1.2"))
        .expect("gate")
        .expect("1.2 has a gate");
    assert_eq!(gate.verdict, Some(GateVerdict::Concerns));

    // QA writes a gate for 1.3 after discovery: it is found by `1.3-*.yml`, not by the slug.
    let s13 = story(&p, "1.3");
    assert!(p.read_qa_gate(s13).expect("no gate yet").is_none());
    fs::write(
        tmp.path().join("docs/qa/gates/1.3-sign-in.yml"),
        "schema: 1\ngate: FAIL\n",
    )
    .expect("gate");
    fs::write(
        tmp.path().join("docs/qa/gates/1.30-other.yml"),
        "gate: PASS\n",
    )
    .expect("gate");
    let gate = p.read_qa_gate(s13).expect("gate").expect("found now");
    assert_eq!(
        (gate.path, gate.verdict),
        (
            path("docs/qa/gates/1.3-sign-in.yml"),
            Some(GateVerdict::Fail)
        )
    );
}

#[test]
fn v6_corpus() {
    let tmp = copy_of(&corpus().join("v6"));
    let p = discover(tmp.path());
    assert_eq!((p.layout(), p.version()), (Layout::V6, Some("6.0.4")));
    assert_eq!(
        p.describe(),
        "BMAD v6 6.0.4 (_bmad/bmm/config.yaml), epics _bmad-output/planning-artifacts/epics.md, stories _bmad-output/implementation-artifacts"
    );
    assert_eq!(
        p.sprint_status_path(),
        Some(Path::new(
            "_bmad-output/implementation-artifacts/sprint-status.yaml"
        ))
    );
    let ia = "_bmad-output/implementation-artifacts/";
    let got: Vec<V6Row> = p
        .stories()
        .iter()
        .map(|s| {
            (
                s.id.to_string(),
                s.title.clone(),
                s.path.clone(),
                s.exists,
                s.sprint_key.clone(),
                s.sprint_value.clone(),
                s.gate_path.clone(),
            )
        })
        .collect();
    let expect = |i: &str, t: &str, key: &str, exists: bool, v: &str| {
        (
            i.to_owned(),
            t.to_owned(),
            path(&format!("{ia}{key}.md")),
            exists,
            Some(key.to_owned()),
            Some(v.to_owned()),
            None,
        )
    };
    assert_eq!(
        got,
        [
            expect(
                "1.1",
                "Project Setup and Health Check",
                "1-1-project-setup-and-health-check",
                true,
                "done"
            ),
            expect(
                "1.2",
                "User Registration",
                "1-2-user-registration",
                true,
                "review"
            ),
            expect(
                "1.3",
                "Sign In and Session",
                "1-3-sign-in-and-session",
                true,
                "ready-for-dev"
            ),
            expect("1.4", "Add a Plant", "1-4-add-a-plant", false, "backlog"),
            expect(
                "2.1",
                "Watering Schedule",
                "2-1-watering-schedule",
                false,
                "backlog"
            ),
        ]
    );
    assert_eq!(story(&p, "1.2").sprint_line, Some(45));
    let epics: Vec<(u32, &str, Option<&str>, Option<u32>)> = p
        .epics()
        .iter()
        .map(|e| {
            (
                e.number,
                e.title.as_str(),
                e.sprint_value.as_deref(),
                e.line,
            )
        })
        .collect();
    // The epic's own section (`## Epic 1:`), not its entry in the Epic List.
    assert_eq!(
        epics,
        [
            (
                1,
                "User Accounts & Plant Catalogue",
                Some("in-progress"),
                Some(50)
            ),
            (2, "Care Reminders", Some("backlog"), Some(106))
        ]
    );
    assert!(p.read_qa_gate(story(&p, "1.1")).expect("v6").is_none());
    assert!(warnings(&p).is_empty(), "{:#?}", warnings(&p));
}

fn status(raw: &str, line: u32, source: StatusSource, state: Option<StoryState>) -> StatusValue {
    StatusValue {
        raw: raw.to_owned(),
        line,
        source,
        state,
    }
}

#[test]
fn v612_build_spec_files_and_drift() {
    let tmp = copy_of(&corpus().join("v6.12-build"));
    let p = discover(tmp.path());
    assert_eq!((p.layout(), p.version()), (Layout::V6, Some("6.12.0")));
    let ia = "_bmad-output/implementation-artifacts/";
    let got: Vec<(String, String, PathBuf, bool, Option<String>)> = p
        .stories()
        .iter()
        .map(|s| {
            (
                s.id.to_string(),
                s.title.clone(),
                s.path.clone(),
                s.exists,
                s.sprint_value.clone(),
            )
        })
        .collect();
    let e = |i: &str, t: &str, f: &str, exists: bool, v: &str| {
        (
            i.to_owned(),
            t.to_owned(),
            path(&format!("{ia}{f}")),
            exists,
            Some(v.to_owned()),
        )
    };
    assert_eq!(
        got,
        [
            e(
                "1.1",
                "Project Setup and Health Check",
                "spec-1-1-project-setup-and-health-check.md",
                true,
                "done"
            ),
            e(
                "1.2",
                "User Registration",
                "spec-1-2-user-registration.md",
                true,
                "in-progress"
            ),
            // The build flow (#14): a story not built yet gets the spec `bmad-build` writes.
            e(
                "1.3",
                "Sign In and Session",
                "spec-1-3-sign-in-and-session.md",
                false,
                "backlog"
            ),
            e(
                "1.4",
                "Add a Plant",
                "spec-1-4-add-a-plant.md",
                false,
                "backlog"
            ),
            e(
                "2.1",
                "Watering Schedule",
                "spec-2-1-watering-schedule.md",
                false,
                "backlog"
            ),
        ]
    );
    // The spec says in-review, sprint-status says in-progress: the spec file wins.
    let s12 = story(&p, "1.2");
    let current = status(
        "in-review",
        5,
        StatusSource::Frontmatter,
        Some(StoryState::Review),
    );
    let drift = p.drift(s12, Some(&current)).expect("drift");
    assert_eq!(
        drift.to_string(),
        "_bmad-output/implementation-artifacts/sprint-status.yaml:48: story 1.2 is `in-progress` in sprint-status but its story file says `in-review`; the story file wins: sprint-status should say `review`"
    );
    let done = status("done", 5, StatusSource::Frontmatter, Some(StoryState::Done));
    assert_eq!(p.drift(story(&p, "1.1"), Some(&done)), None);
    // A story without a file is in the backlog: no drift while sprint-status says backlog.
    assert_eq!(p.drift(story(&p, "1.3"), None), None);
}

#[test]
fn samples_discover() {
    let tmp = copy_of(&fixtures().join("v4-sample"));
    let p = discover(tmp.path());
    assert_eq!(
        p.describe(),
        "BMAD v4 4.44.3 (.bmad-core/core-config.yaml), PRD docs/prd.md"
    );
    assert_eq!(
        rows(&p),
        [
            row(
                "1.1",
                "Hello Command",
                "docs/stories/1.1.story.md",
                true,
                Some("docs/qa/gates/1.1-hello-command.yml"),
                false
            ),
            row(
                "1.2",
                "Greet By Name",
                "docs/stories/1.2.story.md",
                true,
                Some("docs/qa/gates/1.2-greet-by-name.yml"),
                false
            ),
            row(
                "1.3",
                "Shout Option",
                "docs/stories/1.3.story.md",
                false,
                Some("docs/qa/gates/1.3-shout-option.yml"),
                false
            ),
        ]
    );
    assert!(warnings(&p).is_empty(), "{:#?}", warnings(&p));
    for f in [
        "agents/sm.md",
        "agents/dev.md",
        "agents/qa.md",
        "tasks/create-next-story.md",
        "tasks/develop-story.md",
        "tasks/review-story.md",
        "tasks/qa-gate.md",
        "tasks/apply-qa-fixes.md",
    ] {
        assert!(tmp.path().join(".bmad-core").join(f).is_file(), "{f}");
    }
    assert!(tmp.path().join("docs/qa/gates/.gitkeep").is_file());

    let tmp = copy_of(&fixtures().join("v6-sample"));
    let p = discover(tmp.path());
    assert_eq!(
        p.describe(),
        "BMAD v6 6.0.4 (_bmad/bmm/config.yaml), epics _bmad-output/planning-artifacts/epics.md, stories _bmad-output/implementation-artifacts"
    );
    let got: Vec<SampleRow> = p
        .stories()
        .iter()
        .map(|s| {
            (
                s.id.to_string(),
                s.path.display().to_string(),
                s.exists,
                s.sprint_key.clone(),
                s.sprint_value.clone(),
            )
        })
        .collect();
    let ia = "_bmad-output/implementation-artifacts";
    assert_eq!(
        got,
        [
            (
                "1.1".into(),
                format!("{ia}/1-1-count-lines.md"),
                true,
                Some("1-1-count-lines".into()),
                Some("ready-for-dev".into())
            ),
            (
                "1.2".into(),
                format!("{ia}/1-2-count-words.md"),
                false,
                Some("1-2-count-words".into()),
                Some("backlog".into())
            ),
            (
                "1.3".into(),
                format!("{ia}/1-3-count-characters.md"),
                false,
                Some("1-3-count-characters".into()),
                Some("backlog".into())
            ),
        ]
    );
    for wf in ["create-story", "dev-story", "code-review"] {
        let dir = tmp
            .path()
            .join("_bmad/bmm/workflows/4-implementation")
            .join(wf);
        assert!(
            dir.join("workflow.yaml").is_file() && dir.join("instructions.md").is_file(),
            "{wf}"
        );
    }
    assert!(warnings(&p).is_empty(), "{:#?}", warnings(&p));
}

#[test]
fn ids_sort_numerically_and_files_outside_the_prd_are_included() {
    let tmp = copy_of(&fixtures().join("v4-sample"));
    let prd = tmp.path().join("docs/prd.md");
    let text = fs::read_to_string(&prd).expect("prd");
    let extra = "### Story 1.10: Tenth\n\nAs a user.\n\n### Story 1.9: Ninth\n\nAs a user.\n\n## Next Steps";
    fs::write(&prd, text.replace("## Next Steps", extra)).expect("write");
    fs::write(
        tmp.path().join("docs/stories/2.1.story.md"),
        "# Story 2.1: Written By Hand\n\n## Status\n\nDraft\n",
    )
    .expect("w");
    fs::write(
        tmp.path().join("docs/stories/1.11.story.md"),
        "no heading\n",
    )
    .expect("w");
    fs::write(
        tmp.path().join("docs/stories/notes.md"),
        "# Story 7.7: Not A Story File\n",
    )
    .expect("w");
    let p = discover(tmp.path());
    let ids: Vec<String> = p.stories().iter().map(|s| s.id.to_string()).collect();
    assert_eq!(ids, ["1.1", "1.2", "1.3", "1.9", "1.10", "1.11", "2.1"]);
    let s21 = story(&p, "2.1");
    assert_eq!(
        (s21.title.as_str(), s21.in_plan, s21.exists, s21.epic),
        ("Written By Hand", false, true, 2)
    );
    assert_eq!(story(&p, "1.11").title, "");
    assert_eq!(story(&p, "1.10").path, path("docs/stories/1.10.story.md"));

    // --epic and --story selection.
    let sel: Vec<String> = p
        .select(Some(1), None)
        .expect("epic 1")
        .iter()
        .map(|s| s.id.to_string())
        .collect();
    assert_eq!(sel, ["1.1", "1.2", "1.3", "1.9", "1.10", "1.11"]);
    assert_eq!(p.select(None, Some(id("1-10"))).expect("story").len(), 1);
    assert_eq!(p.find_story("1-10").expect("dash form").id, id("1.10"));
    assert_eq!(p.select(None, None).expect("all").len(), 7);
    let e = p
        .select(Some(2), Some(id("1.2")))
        .expect_err("mismatch")
        .to_string();
    assert_eq!(
        e,
        "story 1.2 is not in epic 2: drop --epic or pick a story of epic 2"
    );
    let e = p.select(Some(9), None).expect_err("no epic 9").to_string();
    assert_eq!(e, "epic 9 not found in this project; known epics: 1, 2");
    let e = p.find_story("3.1").expect_err("no 3.1").to_string();
    assert_eq!(
        e,
        "story 3.1 not found in this project; known stories: 1.1, 1.2, 1.3, 1.9, 1.10, 1.11, 2.1"
    );
    let e = p.find_story("one").expect_err("bad id").to_string();
    assert!(e.contains("invalid story id `one`"), "{e}");
}

#[test]
fn no_layout_says_what_was_looked_for() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let e = discover_err(tmp.path());
    assert_eq!(
        e,
        format!(
            "no BMAD project at {}: looked for .bmad-core/core-config.yaml (BMAD v4) and _bmad/bmm/config.yaml (BMAD v6); run bmad-host in the project root or pass --project DIR",
            tmp.path().display()
        )
    );
    fs::create_dir_all(tmp.path().join(".bmad-core")).expect("dir");
    fs::create_dir_all(tmp.path().join("_bmad")).expect("dir");
    let e = discover_err(tmp.path());
    assert!(
        e.contains(".bmad-core/ exists but has no core-config.yaml: reinstall BMAD v4"),
        "{e}"
    );
    assert!(
        e.contains("_bmad/ exists but has no bmm/config.yaml: install the BMM module"),
        "{e}"
    );
    let e = discover_err(&tmp.path().join("nope"));
    assert!(
        e.contains("nope is not a directory: pass --project DIR"),
        "{e}"
    );
}

#[test]
fn both_layouts_use_v6_with_a_warning() {
    let tmp = copy_of(&fixtures().join("v6-sample"));
    copy_dir(
        &fixtures().join("v4-sample/.bmad-core"),
        &tmp.path().join(".bmad-core"),
    );
    let p = discover(tmp.path());
    assert_eq!(p.layout(), Layout::V6);
    assert!(
        warnings(&p)[0]
            .contains("both BMAD v4 (.bmad-core/) and v6 (_bmad/) are installed: using v6")
    );
}

/// malformed/core-config-broken.yaml: bad indentation, empty devStoryLocation, qa not a mapping.
/// Each problem is an error naming the file, line and key; fixing one shows the next.
#[test]
fn malformed_core_config() {
    let tmp = copy_of(&fixtures().join("v4-sample"));
    let config = tmp.path().join(".bmad-core/core-config.yaml");
    let broken =
        fs::read_to_string(corpus().join("malformed/core-config-broken.yaml")).expect("corpus");
    fs::write(&config, &broken).expect("write");
    let e = discover_err(tmp.path());
    let file = config.display().to_string();
    assert!(
        e.starts_with(&format!(
            "{file}:4: invalid YAML: mapping values are not allowed in this context"
        )),
        "{e}"
    );
    assert!(
        e.ends_with("fix the indentation (two spaces per level, no tabs) or reinstall BMAD"),
        "{e}"
    );

    let indented = broken.replace("   prdSharded", "  prdSharded");
    fs::write(&config, &indented).expect("write");
    let e = discover_err(tmp.path());
    assert_eq!(
        e,
        format!(
            "{file}:5: `devStoryLocation` is empty; set it to a path, for example `devStoryLocation: docs/stories`"
        )
    );

    fs::write(
        &config,
        indented.replace("devStoryLocation:", "devStoryLocation: docs/stories"),
    )
    .expect("write");
    let e = discover_err(tmp.path());
    assert_eq!(
        e,
        format!(
            "{file}:6: `qa` must be a mapping, not `docs/qa`; write it as a block, for example `qa:` then `  qaLocation: docs/qa` on the next line"
        )
    );
}

fn with_sprint_status(malformed: &str) -> (TempDir, Result<Project, ProjectError>) {
    let tmp = copy_of(&fixtures().join("v6-sample"));
    let target = tmp
        .path()
        .join("_bmad-output/implementation-artifacts/sprint-status.yaml");
    fs::copy(corpus().join("malformed").join(malformed), &target).expect("copy");
    let result = Project::discover(tmp.path());
    (tmp, result)
}

/// The malformed sprint-status files, as MANIFEST.tsv says.
#[test]
fn malformed_sprint_status() {
    let sprint = "_bmad-output/implementation-artifacts/sprint-status.yaml";
    for (file, expected) in [
        (
            "sprint-status-invalid-yaml.yaml",
            ":2: invalid YAML: found character that cannot start any token",
        ),
        (
            "sprint-status-empty.yaml",
            ": the file is empty: no development_status; run the sprint-planning workflow",
        ),
        (
            "sprint-status-not-a-mapping.yaml",
            ":1: development_status is a list, not a mapping of story keys to statuses",
        ),
    ] {
        let (tmp, result) = with_sprint_status(file);
        let e = result.map(|p| p.describe()).expect_err(file).to_string();
        let named = format!("{}{expected}", tmp.path().join(sprint).display());
        assert!(e.starts_with(&named), "{file}: {e}");
    }

    // Duplicate keys: lenient, the last one counts.
    let (_tmp, result) = with_sprint_status("sprint-status-duplicate-keys.yaml");
    let p = result.expect("duplicates are tolerated");
    let s = p
        .sprint_status()
        .expect("sprint-status")
        .story(id("1.1"))
        .expect("1.1");
    assert_eq!(
        (s.key.as_str(), s.value.as_str(), s.line),
        ("1-1-project-setup", "done", Some(4))
    );
    assert_eq!(story(&p, "1.1").sprint_value.as_deref(), Some("done"));
    assert!(warnings(&p).iter().any(|w| w.ends_with(":4: duplicate key `1-1-project-setup` (line 3): the last one (`done`) counts, as lenient YAML readers do; delete the other line")));

    // Unknown values: read as unknown with warnings; 1-10 is story 1.10, not 1.1.
    let (_tmp, result) = with_sprint_status("sprint-status-unknown-values.yaml");
    let p = result.expect("unknown values are tolerated");
    assert_eq!(story(&p, "1.1").sprint_value.as_deref(), Some("Done"));
    assert_eq!(story(&p, "1.10").sprint_value.as_deref(), Some("backlog"));
    assert_eq!(
        story(&p, "1.10").sprint_key.as_deref(),
        Some("1-10-late-story")
    );
    assert!(!story(&p, "1.10").exists);
    let sprint_status = p.sprint_status().expect("sprint");
    assert_eq!(sprint_status.story(id("1.2")).map(|e| e.state), Some(None));
    let w = warnings(&p).join("\n");
    for needle in [
        ":4: illegal status `started` for `epic-1`",
        ":5: `1-1-project-setup: Done` is not an exact sprint-status value: read as `done`",
        ":6: illegal status `wip`",
        ":7: illegal status `ready-for-review`",
        ":9: story key `1-1` has no slug",
        ":10: unrecognised key `not-a-key`: ignored",
        ":11: illegal status `completed` for `epic-1-retrospective`",
    ] {
        assert!(w.contains(needle), "{needle} not in\n{w}");
    }
}

fn v6_with_epics(doc: &str) -> Project {
    let tmp = copy_of(&fixtures().join("v6-sample"));
    let epics = tmp.path().join("_bmad-output/planning-artifacts/epics.md");
    fs::copy(corpus().join("malformed").join(doc), &epics).expect("copy");
    let p = discover(tmp.path());
    // The temp dir is dropped here; the project keeps only what discovery read.
    drop(tmp);
    p
}

/// malformed/epic-duplicate-and-odd-headings.md, read as a v6 epics.md.
#[test]
fn malformed_epic_odd_headings() {
    let p = v6_with_epics("epic-duplicate-and-odd-headings.md");
    let planned: Vec<(String, String, Option<u32>)> = p
        .stories()
        .iter()
        .filter(|s| s.in_plan)
        .map(|s| (s.id.to_string(), s.title.clone(), s.plan_line))
        .collect();
    let e = |i: &str, t: &str, l: u32| (i.to_owned(), t.to_owned(), Some(l));
    assert_eq!(
        planned,
        [
            e("4.1", "Share a Plant", 3),
            e("4.2", "Revoke a Share", 11),
            e("4.4a", "Split Story With Letter Suffix", 23),
            e("4.5", "Dash Instead Of Dot", 27),
            e("4.6", "", 29),
            e("4.7", "Bold Heading", 31),
            e("4.8", "No Space After Hashes", 33),
        ]
    );
    assert!(
        p.story(id("4.3")).is_none(),
        "4.3 is only inside a code fence"
    );
    let s = story(&p, "4.4a");
    assert_eq!(
        s.sprint_key.as_deref(),
        Some("4-4a-split-story-with-letter-suffix")
    );
    assert_eq!(
        s.path,
        path("_bmad-output/implementation-artifacts/4-4a-split-story-with-letter-suffix.md")
    );
    assert_eq!(story(&p, "4.6").slug, "untitled");
    let epics: Vec<(u32, &str)> = p
        .epics()
        .iter()
        .map(|e| (e.number, e.title.as_str()))
        .collect();
    assert_eq!(
        epics,
        [(1, ""), (4, "Sharing")],
        "epic 1 comes from sprint-status and the story files"
    );
    let w = warnings(&p).join("\n");
    assert!(
        w.contains(
            "epics.md:15: duplicate heading for story 4.2 (first at line 11): the first is kept"
        ),
        "{w}"
    );
    assert!(w.contains("epics.md:29: story 4.6 has no title"), "{w}");
}

/// malformed/epic-no-stories.md, read as a v4 PRD shard: an epic with zero stories.
#[test]
fn malformed_epic_no_stories() {
    let tmp = copy_of(&fixtures().join("v4-sample"));
    let config = tmp.path().join(".bmad-core/core-config.yaml");
    let text = fs::read_to_string(&config).expect("config");
    fs::write(
        &config,
        text.replace("prdSharded: false", "prdSharded: true"),
    )
    .expect("write");
    fs::create_dir_all(tmp.path().join("docs/prd")).expect("dir");
    fs::copy(
        corpus().join("malformed/epic-no-stories.md"),
        tmp.path().join("docs/prd/epic-3-notifications.md"),
    )
    .expect("copy");
    let p = discover(tmp.path());
    assert_eq!(
        p.epics().len(),
        2,
        "epic 3 and epic 1 (from the story files)"
    );
    let e3 = p.epics().iter().find(|e| e.number == 3).expect("epic 3");
    assert_eq!((e3.title.as_str(), e3.line), ("Notifications", Some(1)));
    assert!(p.epic_stories(3).expect("epic 3 exists").is_empty());
    let ids: Vec<String> = p.stories().iter().map(|s| s.id.to_string()).collect();
    assert_eq!(
        ids,
        ["1.1", "1.2"],
        "only the story files: the shard plans nothing"
    );
}

/// malformed/qa-gate-bad-values.yml: the gate is read tolerantly, with warnings.
#[test]
fn malformed_qa_gate() {
    let tmp = copy_of(&fixtures().join("v4-sample"));
    let p = discover(tmp.path());
    let s12 = story(&p, "1.2");
    fs::copy(
        corpus().join("malformed/qa-gate-bad-values.yml"),
        tmp.path().join("docs/qa/gates/1.2-greet-by-name.yml"),
    )
    .expect("copy");
    let gate = p.read_qa_gate(s12).expect("read").expect("present");
    assert_eq!((gate.gate.as_str(), gate.verdict), ("PASSED", None));
    let w: Vec<String> = gate.warnings.iter().map(|w| w.message.clone()).collect();
    assert_eq!(
        w,
        [
            "gate `PASSED` is not one of PASS|CONCERNS|FAIL|WAIVED: passed on as written, with no verdict",
            "`story` is not a quoted string (YAML reads 1.10 as 1.1): quote it, e.g. story: \"1.2\"",
            "`waiver` is not a mapping: expected `waiver: { active: false }`",
            "severity `critical` is not one of low|medium|high",
        ]
    );
    assert_eq!(gate.to_policy().gate, "PASSED");
}

#[test]
fn story_size_limit_and_binary_stories() {
    let tmp = copy_of(&fixtures().join("v4-sample"));
    let stories = tmp.path().join("docs/stories");
    fs::copy(
        corpus().join("malformed/huge-5mb.md"),
        stories.join("1.1.story.md"),
    )
    .expect("copy");
    fs::copy(
        corpus().join("malformed/binary-junk.md"),
        stories.join("1.2.story.md"),
    )
    .expect("copy");
    let p = discover(tmp.path());
    let huge = p
        .read_story(story(&p, "1.1"))
        .expect("5 MB is under the limit");
    assert!(huge.bytes.len() > 5_000_000);
    let e = p
        .read_story_with_limit(story(&p, "1.1"), 1 << 20)
        .expect_err("over 1 MiB")
        .to_string();
    assert!(
        e.contains("1.1.story.md is ")
            && e.ends_with("bytes, over the 1048576-byte limit for a story: shorten the file"),
        "{e}"
    );
    let junk = p
        .read_story(story(&p, "1.2"))
        .expect("binary is read; the parser rejects it");
    assert!(junk.lossy);
    assert_eq!(
        junk.bytes,
        fs::read(stories.join("1.2.story.md")).expect("bytes")
    );
    let e = p
        .read_story(story(&p, "1.3"))
        .expect_err("not drafted")
        .to_string();
    assert!(
        e.starts_with("story 1.3 has no file at ")
            && e.ends_with("docs/stories/1.3.story.md yet: the SM agent must create it first"),
        "{e}"
    );
}

/// Puts `bytes` at story `sid`'s path in a copy of `fixture` and returns the project and path.
fn project_with_story(fixture: &str, sid: &str, bytes: &[u8]) -> (TempDir, Project, PathBuf) {
    let tmp = copy_of(&fixtures().join(fixture));
    let p = discover(tmp.path());
    let file = p.abs(&story(&p, sid).path);
    fs::create_dir_all(file.parent().expect("parent")).expect("dir");
    fs::write(&file, bytes).expect("write story");
    let p = discover(tmp.path());
    (tmp, p, file)
}

/// Writes `new` over `current` and checks the file is the old bytes with `from` → `to` once.
fn write_and_check(
    fixture: &str,
    original: &[u8],
    current: StatusValue,
    new: StoryState,
    from: &str,
    to: &str,
) -> Written {
    let (_tmp, p, file) = project_with_story(fixture, "1.1", original);
    let written = p
        .write_status(story(&p, "1.1"), &current, new)
        .expect("write");
    let after = fs::read(&file).expect("read back");
    let original_text = String::from_utf8_lossy(original);
    assert_eq!(
        original_text.matches(from).count(),
        1,
        "test setup: `{from}` must be unique"
    );
    let expected: Vec<u8> = {
        let at = find(original, from.as_bytes()).expect("from in original");
        [&original[..at], to.as_bytes(), &original[at + from.len()..]].concat()
    };
    assert_eq!(after, expected, "only the value changed");
    assert_eq!(
        (written.old.as_str(), written.changed),
        (current.raw.as_str(), true)
    );
    let dir = file.parent().expect("parent");
    let leftovers: Vec<String> = fs::read_dir(dir)
        .expect("list")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(".bmad-host-"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    written
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn corpus_bytes(rel: &str) -> Vec<u8> {
    fs::read(corpus().join(rel)).expect("corpus file")
}

#[test]
fn write_v4_section_value() {
    let original =
        fs::read(fixtures().join("v4-sample/docs/stories/1.1.story.md")).expect("sample");
    let w = write_and_check(
        "v4-sample",
        &original,
        status(
            "Approved",
            5,
            StatusSource::Section,
            Some(StoryState::ReadyForDev),
        ),
        StoryState::Done,
        "\n\nApproved\n",
        "\n\nDone\n",
    );
    assert_eq!(
        (w.new.as_str(), w.line, w.sprint.clone(), w.drift.clone()),
        ("Done", 5, SprintSync::NotApplicable, None)
    );
    assert_eq!(w.path, path("docs/stories/1.1.story.md"));
}

#[test]
fn write_keeps_bom_and_crlf() {
    let original = corpus_bytes("malformed/bom-crlf.md");
    assert!(original.starts_with(b"\xEF\xBB\xBF"));
    write_and_check(
        "v4-sample",
        &original,
        status("Review", 5, StatusSource::Section, Some(StoryState::Review)),
        StoryState::ChangesRequested,
        "\r\nReview\r\n",
        "\r\nInProgress\r\n",
    );
}

#[test]
fn write_keeps_cr_only_line_ends() {
    let original = corpus_bytes("malformed/cr-only.md");
    write_and_check(
        "v4-sample",
        &original,
        status(
            "Approved",
            5,
            StatusSource::Section,
            Some(StoryState::ReadyForDev),
        ),
        StoryState::InProgress,
        "\rApproved\r",
        "\rInProgress\r",
    );
}

#[test]
fn write_keeps_a_missing_final_newline() {
    write_and_check(
        "v4-sample",
        b"# Story 1.1: Hello\n\n## Status\n\nReview",
        status("Review", 5, StatusSource::Section, Some(StoryState::Review)),
        StoryState::Done,
        "Review",
        "Done",
    );
    // The 1 MiB line without a final newline after the status.
    let original = corpus_bytes("malformed/very-long-line-no-eol.md");
    assert_ne!(original.last(), Some(&b'\n'));
    write_and_check(
        "v4-sample",
        &original,
        status(
            "Approved",
            5,
            StatusSource::Section,
            Some(StoryState::ReadyForDev),
        ),
        StoryState::Blocked,
        "\nApproved\n",
        "\nBlocked\n",
    );
}

#[test]
fn write_keeps_invalid_utf8_elsewhere() {
    let original = corpus_bytes("malformed/invalid-utf8.md");
    assert!(std::str::from_utf8(&original).is_err());
    write_and_check(
        "v4-sample",
        &original,
        status("Done", 5, StatusSource::Section, Some(StoryState::Done)),
        StoryState::Review,
        "\nDone\n",
        "\nReview\n",
    );
}

#[test]
fn write_replaces_trailing_notes_and_keeps_wrappers() {
    // The whole raw value is replaced: the note described the old state.
    let original = corpus_bytes("v4/status-variants/14-trailing-note-dash.md");
    write_and_check(
        "v4-sample",
        &original,
        status(
            "Done - QA gate PASS (2025-09-20)",
            5,
            StatusSource::Section,
            Some(StoryState::Done),
        ),
        StoryState::ChangesRequested,
        "Done - QA gate PASS (2025-09-20)",
        "InProgress",
    );
    // Bold around the value, outside raw (as the parser reports it), stays.
    write_and_check(
        "v4-sample",
        b"# Story 1.1: X\n\n**Status:** **Done** <!-- Draft | Done -->\n",
        status("Done", 3, StatusSource::Line, Some(StoryState::Done)),
        StoryState::Review,
        "**Done**",
        "**Review**",
    );
    // v6 quoted and backticked values keep their quotes.
    let original = corpus_bytes("v6/status-variants/19-status-with-quotes.md");
    let w = write_and_check(
        "v6-sample",
        &original,
        status(
            "\"review\"",
            3,
            StatusSource::Line,
            Some(StoryState::Review),
        ),
        StoryState::Done,
        "Status: \"review\"",
        "Status: \"done\"",
    );
    assert_eq!(w.new, "\"done\"");
}

#[test]
fn write_frontmatter_keeps_quoting_and_uses_the_spec_vocabulary() {
    let tmp = copy_of(&corpus().join("v6.12-build"));
    let p = discover(tmp.path());
    let s12 = story(&p, "1.2");
    let file = p.abs(&s12.path);
    let sprint_file = p.abs(p.sprint_status_path().expect("v6"));
    let (story_before, sprint_before) = (
        fs::read_to_string(&file).expect("r"),
        fs::read_to_string(&sprint_file).expect("r"),
    );
    let current = status(
        "in-review",
        5,
        StatusSource::Frontmatter,
        Some(StoryState::Review),
    );
    let w = p
        .write_status(s12, &current, StoryState::Done)
        .expect("write");
    assert_eq!(
        fs::read_to_string(&file).expect("r"),
        story_before.replace("status: 'in-review'", "status: 'done'")
    );
    assert_eq!(w.new, "done");
    // Sprint-status had drifted (in-progress vs the spec's in-review) and is now in step.
    assert_eq!(
        w.drift.as_ref().map(|d| d.expected.as_str()),
        Some("review")
    );
    assert_eq!(
        w.sprint,
        SprintSync::Updated {
            key: "1-2-user-registration".into(),
            line: 48,
            from: "in-progress".into(),
            to: "done".into()
        }
    );
    assert_eq!(
        fs::read_to_string(&sprint_file).expect("r"),
        sprint_before.replace(
            "  1-2-user-registration: in-progress\n",
            "  1-2-user-registration: done\n"
        )
    );
    // Back to review: the frontmatter spells it `in-review`, sprint-status `review`.
    let current = status("done", 5, StatusSource::Frontmatter, Some(StoryState::Done));
    let w = p
        .write_status(s12, &current, StoryState::Review)
        .expect("write");
    assert_eq!(w.new, "in-review");
    assert!(
        fs::read_to_string(&file)
            .expect("r")
            .contains("\nstatus: 'in-review'\n")
    );
    assert!(
        matches!(w.sprint, SprintSync::Updated { ref to, .. } if to == "review"),
        "{:?}",
        w.sprint
    );
}

#[test]
fn write_v6_keeps_sprint_status_in_step_with_comments() {
    let tmp = copy_of(&fixtures().join("v6-sample"));
    let p = discover(tmp.path());
    let s11 = story(&p, "1.1");
    let sprint_file = p.abs(p.sprint_status_path().expect("v6"));
    let sprint_before = fs::read_to_string(&sprint_file).expect("r");
    let story_file = p.abs(&s11.path);
    let story_before = fs::read_to_string(&story_file).expect("r");

    let current = status(
        "ready-for-dev",
        3,
        StatusSource::Line,
        Some(StoryState::ReadyForDev),
    );
    let w = p
        .write_status(s11, &current, StoryState::InProgress)
        .expect("write");
    assert_eq!(
        fs::read_to_string(&story_file).expect("r"),
        story_before.replace("Status: ready-for-dev", "Status: in-progress")
    );
    assert_eq!(
        fs::read_to_string(&sprint_file).expect("r"),
        sprint_before.replace(
            "1-1-count-lines: ready-for-dev",
            "1-1-count-lines: in-progress"
        )
    );
    assert_eq!(w.drift, None);
    assert_eq!(
        w.sprint,
        SprintSync::Updated {
            key: "1-1-count-lines".into(),
            line: 34,
            from: "ready-for-dev".into(),
            to: "in-progress".into()
        }
    );

    // Changes requested is in-progress in v6: the story line changes nothing, sprint is in step.
    let current = status(
        "in-progress",
        3,
        StatusSource::Line,
        Some(StoryState::InProgress),
    );
    let w = p
        .write_status(s11, &current, StoryState::ChangesRequested)
        .expect("write");
    assert!(!w.changed);
    assert_eq!(
        w.sprint,
        SprintSync::InStep {
            key: "1-1-count-lines".into(),
            line: 34,
            value: "in-progress".into()
        }
    );

    // Blocked has no sprint-status value: the key is left alone.
    let w = p
        .write_status(s11, &current, StoryState::Blocked)
        .expect("write");
    assert!(
        fs::read_to_string(&story_file)
            .expect("r")
            .contains("\nStatus: blocked\n")
    );
    assert!(
        matches!(&w.sprint, SprintSync::NotUpdated { reason } if reason.contains("no `blocked` value")),
        "{:?}",
        w.sprint
    );
    assert!(
        fs::read_to_string(&sprint_file)
            .expect("r")
            .contains("1-1-count-lines: in-progress\n")
    );

    // The comment after a value survives an edit of that value.
    fs::write(
        p.abs(&path(
            "_bmad-output/implementation-artifacts/1-3-count-characters.md",
        )),
        "# Story 1.3: Count Characters\n\nStatus: backlog\n",
    )
    .expect("w");
    let p = discover(tmp.path());
    let current = status("backlog", 3, StatusSource::Line, Some(StoryState::Backlog));
    p.write_status(story(&p, "1.3"), &current, StoryState::ReadyForDev)
        .expect("write");
    assert!(
        fs::read_to_string(&sprint_file)
            .expect("r")
            .contains("  1-3-count-characters: ready-for-dev  # drafted after 1-2 is done\n")
    );
}

#[test]
fn drift_is_reported_and_fixed_on_the_next_write() {
    let tmp = copy_of(&corpus().join("v6"));
    let sprint_file = tmp
        .path()
        .join("_bmad-output/implementation-artifacts/sprint-status.yaml");
    let sprint = fs::read_to_string(&sprint_file).expect("r").replace(
        "1-3-sign-in-and-session: ready-for-dev",
        "1-3-sign-in-and-session: review",
    );
    fs::write(&sprint_file, &sprint).expect("w");
    let p = discover(tmp.path());
    let s13 = story(&p, "1.3");
    let current = status(
        "ready-for-dev",
        3,
        StatusSource::Line,
        Some(StoryState::ReadyForDev),
    );
    let drift = p.drift(s13, Some(&current)).expect("drift");
    assert_eq!(
        (
            drift.sprint_value.as_deref(),
            drift.expected.as_str(),
            drift.line
        ),
        (Some("review"), "ready-for-dev", Some(46))
    );
    // A story without a file whose key is not backlog is drift too.
    let sprint = sprint.replace("1-4-add-a-plant: backlog", "1-4-add-a-plant: ready-for-dev");
    fs::write(&sprint_file, &sprint).expect("w");
    let p = discover(tmp.path());
    let d14 = p.drift(story(&p, "1.4"), None).expect("drift for 1.4");
    assert!(
        d14.to_string()
            .contains("story 1.4 is `ready-for-dev` in sprint-status but it has no story file yet"),
        "{d14}"
    );

    let w = p
        .write_status(story(&p, "1.3"), &current, StoryState::InProgress)
        .expect("write");
    assert!(w.drift.is_some());
    assert_eq!(
        fs::read_to_string(&sprint_file).expect("r"),
        sprint.replace(
            "1-3-sign-in-and-session: review",
            "1-3-sign-in-and-session: in-progress"
        )
    );
    // sync_sprint_status brings a key into line without touching the story file.
    let story_file = p.abs(&story(&p, "1.1").path);
    let before = fs::read(&story_file).expect("r");
    fs::write(
        &sprint_file,
        fs::read_to_string(&sprint_file).expect("r").replace(
            "1-1-project-setup-and-health-check: done",
            "1-1-project-setup-and-health-check: review",
        ),
    )
    .expect("w");
    let done = status("done", 3, StatusSource::Line, Some(StoryState::Done));
    let sync = p.sync_sprint_status(story(&p, "1.1"), &done);
    assert!(
        matches!(&sync, SprintSync::Updated { from, to, .. } if from == "review" && to == "done"),
        "{sync:?}"
    );
    assert_eq!(fs::read(&story_file).expect("r"), before);
}

#[test]
fn write_refuses_a_changed_file_and_writes_nothing() {
    let tmp = copy_of(&fixtures().join("v4-sample"));
    let p = discover(tmp.path());
    let s11 = story(&p, "1.1");
    let file = p.abs(&s11.path);
    let before = fs::read(&file).expect("r");
    // The caller read "Draft" at line 5, but the file says Approved there now.
    let stale = status("Draft", 5, StatusSource::Section, Some(StoryState::Drafted));
    let e = p
        .write_status(s11, &stale, StoryState::ReadyForDev)
        .expect_err("changed");
    assert!(matches!(e, ProjectError::StatusChanged { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!(
            "{}:5: the story changed since it was read: `Draft` is no longer on this line (it reads `Approved`); re-read the story and decide again",
            file.display()
        )
    );
    // A line past the end of the file.
    let e = p
        .write_status(
            s11,
            &status("Approved", 500, StatusSource::Section, None),
            StoryState::Done,
        )
        .expect_err("gone");
    assert!(matches!(e, ProjectError::StatusChanged { .. }), "{e}");
    assert_eq!(fs::read(&file).expect("r"), before);
    // A story with no file yet.
    let e = p
        .write_status(story(&p, "1.3"), &stale, StoryState::Done)
        .expect_err("missing");
    assert!(matches!(e, ProjectError::StoryMissing { .. }), "{e}");
}

#[cfg(unix)]
#[test]
fn write_keeps_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = copy_of(&fixtures().join("v4-sample"));
    let p = discover(tmp.path());
    let s11 = story(&p, "1.1");
    let file = p.abs(&s11.path);
    fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).expect("chmod");
    let current = status(
        "Approved",
        5,
        StatusSource::Section,
        Some(StoryState::ReadyForDev),
    );
    p.write_status(s11, &current, StoryState::InProgress)
        .expect("write");
    assert_eq!(
        fs::metadata(&file).expect("meta").permissions().mode() & 0o777,
        0o640
    );
}

#[test]
fn sm_created_file_with_another_slug_is_found() {
    let tmp = copy_of(&fixtures().join("v6-sample"));
    let p = discover(tmp.path());
    let s12 = story(&p, "1.2");
    assert!(!s12.exists);
    // The SM agent picked another slug than sprint-status has.
    let made = tmp
        .path()
        .join("_bmad-output/implementation-artifacts/1-2-words.md");
    fs::write(&made, "# Story 1.2: Count Words\n\nStatus: ready-for-dev\n").expect("w");
    assert_eq!(
        p.locate_story_file(s12),
        Some(path("_bmad-output/implementation-artifacts/1-2-words.md"))
    );
    let text = p.read_story(s12).expect("found by id");
    assert_eq!(
        text.path,
        path("_bmad-output/implementation-artifacts/1-2-words.md")
    );
    // 1-20 is not 1-2.
    fs::remove_file(&made).expect("rm");
    fs::write(
        tmp.path()
            .join("_bmad-output/implementation-artifacts/1-20-other.md"),
        "x",
    )
    .expect("w");
    assert_eq!(p.locate_story_file(s12), None);
}
