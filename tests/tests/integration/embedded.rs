//! The plugins embedded in the binary, through the real `bmad-host`: a run with no `--plugins`
//! drives the sample to Done; a `--plugins` folder (or `BMAD_HOST_PLUGINS`) adds to them and
//! overrides them by role and by name, and `plugins list` says where each comes from;
//! `plugins export` writes them out as folders that load like any other.

use std::path::{Path, PathBuf};

use bmad_host_tests::harness::{Project, Run, fake_claude};
use serde_json::{Value, json};
use tempfile::TempDir;

/// `bmad-host run --json --project P --claude-bin <fake> ARGS`, with no `--plugins`.
fn run_without_plugins(project: &Project, args: &[&str], env: &[(&str, &str)]) -> Run {
    let fake = fake_claude();
    let mut all = vec![
        "run",
        "--json",
        "--project",
        path_str(project.path()),
        "--claude-bin",
        path_str(&fake),
    ];
    all.extend_from_slice(args);
    Run::bmad_host(&all, env)
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// The embedded plugins, exported by the binary into a temp dir.
fn exported() -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = Run::bmad_host(&["plugins", "export", path_str(dir.path())], &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    dir
}

/// A plugins folder holding one plugin: the embedded `qa-strict`'s component under another
/// manifest (`name`, role qa).
fn strict_qa_folder(name: &str) -> (TempDir, PathBuf) {
    let all = exported();
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = dir.path().join(name);
    std::fs::create_dir_all(&folder).expect("mkdir");
    std::fs::copy(
        all.path().join("qa-strict/qa-strict.wasm"),
        folder.join("review.wasm"),
    )
    .expect("copy component");
    std::fs::write(
        folder.join("plugin.toml"),
        format!(
            "name = \"{name}\"\nversion = \"1.0.0\"\nrole = \"qa\"\nwit = \"0.2.0\"\ncomponent = \"review.wasm\"\ndescription = \"The team's strict review\"\n"
        ),
    )
    .expect("write manifest");
    let path = dir.path().to_path_buf();
    (dir, path)
}

/// A CONCERNS review then a PASS: the default QA passes the first, a strict one does not.
fn concerns(project: &Project) -> String {
    let script = project.script(&json!({
        "calls": [{ "role": "qa", "story": "1.1", "verdicts": ["CONCERNS", "PASS"] }]
    }));
    path_str(&script).to_string()
}

fn dev_cycles(run: &Run) -> Vec<u64> {
    run.events_named("agent_started")
        .iter()
        .filter(|e| e["role"] == "dev")
        .filter_map(|e| e["cycle"].as_u64())
        .collect()
}

/// Pairs of strings: (name, source) of plugins, (role, plugin) of roles.
type Pairs = Vec<(String, String)>;

/// `plugins list --json`: (name, source) of each plugin and (role, plugin) of each role.
fn listing(args: &[&str], env: &[(&str, &str)]) -> (Pairs, Pairs) {
    let mut all = vec!["plugins", "list", "--json"];
    all.extend_from_slice(args);
    let run = Run::bmad_host(&all, env);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let plugins = run
        .events
        .iter()
        .filter(|e| e.get("name").is_some())
        .map(|e| {
            assert!(e["problem"].is_null(), "{e}");
            (text(&e["name"]), text(&e["source"]))
        })
        .collect();
    let roles = run
        .events
        .iter()
        .filter(|e| e.get("role").is_some() && e.get("plugin").is_some())
        .map(|e| (text(&e["role"]), text(&e["plugin"])))
        .collect();
    (plugins, roles)
}

fn pairs(items: &[(&str, &str)]) -> Pairs {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn with_no_plugins_folder_the_embedded_plugins_drive_the_sample_to_done() {
    let project = Project::fixture("v4-sample");
    let run = run_without_plugins(&project, &[], &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let stories = run.events_named("run_started")[0]["stories"]
        .as_array()
        .expect("stories")
        .clone();
    assert_eq!(stories, [json!("1.1"), json!("1.2"), json!("1.3")]);
    for story in &stories {
        let story = story.as_str().expect("id");
        assert_eq!(run.story_result(story)["result"], "done", "{story}");
    }

    let (plugins, roles) = listing(&[], &[]);
    assert_eq!(
        plugins,
        pairs(&[
            ("dev", "embedded"),
            ("qa", "embedded"),
            ("qa-strict", "embedded"),
            ("scheduler", "embedded"),
            ("sm", "embedded"),
            ("status", "embedded"),
        ])
    );
    assert_eq!(
        roles,
        pairs(&[
            ("status", "status"),
            ("sm", "sm"),
            ("dev", "dev"),
            ("qa", "qa"),
            ("scheduler", "scheduler")
        ])
    );
}

#[test]
fn a_folder_with_only_a_strict_qa_replaces_just_the_qa_role() {
    let (_keep, dir) = strict_qa_folder("team-review");
    let dir = path_str(&dir);
    let (plugins, roles) = listing(&["--plugins", dir], &[]);
    assert_eq!(
        plugins,
        pairs(&[
            ("dev", "embedded"),
            ("qa", "embedded"),
            ("qa-strict", "embedded"),
            ("scheduler", "embedded"),
            ("sm", "embedded"),
            ("status", "embedded"),
            ("team-review", "folder"),
        ])
    );
    assert_eq!(
        roles,
        pairs(&[
            ("status", "status"),
            ("sm", "sm"),
            ("dev", "dev"),
            ("qa", "team-review"),
            ("scheduler", "scheduler")
        ])
    );

    // The same review passes with the embedded QA and goes back to Dev with the folder's.
    let project = Project::fixture("v4-sample");
    let script = concerns(&project);
    let run = run_without_plugins(
        &project,
        &["--story", "1.1"],
        &[("FAKE_CLAUDE_SCRIPT", &script)],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(dev_cycles(&run), [1], "the embedded qa passes CONCERNS");

    let project = Project::fixture("v4-sample");
    let script = concerns(&project);
    let run = run_without_plugins(
        &project,
        &["--story", "1.1", "--plugins", dir],
        &[("FAKE_CLAUDE_SCRIPT", &script)],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(
        dev_cycles(&run),
        [1, 2],
        "the folder's QA must send it back"
    );

    // BMAD_HOST_PLUGINS is the same as --plugins.
    let project = Project::fixture("v4-sample");
    let script = concerns(&project);
    let run = run_without_plugins(
        &project,
        &["--story", "1.1"],
        &[("FAKE_CLAUDE_SCRIPT", &script), ("BMAD_HOST_PLUGINS", dir)],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(dev_cycles(&run), [1, 2], "BMAD_HOST_PLUGINS's QA");
}

#[test]
fn a_folder_plugin_replaces_the_embedded_one_of_the_same_name() {
    let (_keep, dir) = strict_qa_folder("qa");
    let dir = path_str(&dir);
    let (plugins, roles) = listing(&["--plugins", dir], &[]);
    assert_eq!(
        plugins,
        pairs(&[
            ("dev", "embedded"),
            ("qa-strict", "embedded"),
            ("scheduler", "embedded"),
            ("sm", "embedded"),
            ("status", "embedded"),
            ("qa", "folder"),
        ])
    );
    assert!(roles.contains(&("qa".to_string(), "qa".to_string())));

    let project = Project::fixture("v4-sample");
    let script = concerns(&project);
    let run = run_without_plugins(
        &project,
        &["--story", "1.1", "--plugins", dir],
        &[("FAKE_CLAUDE_SCRIPT", &script)],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(dev_cycles(&run), [1, 2], "the folder's `qa` must serve QA");
}

#[test]
fn plugins_export_writes_folders_that_load_and_refuses_to_overwrite() {
    let dir = exported();
    let mut folders: Vec<String> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    assert_eq!(
        folders,
        ["dev", "qa", "qa-strict", "scheduler", "sm", "status"]
    );
    for name in &folders {
        let manifest =
            std::fs::read_to_string(dir.path().join(name).join("plugin.toml")).expect("manifest");
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "{manifest}"
        );
        assert!(dir.path().join(name).join(format!("{name}.wasm")).is_file());
    }

    // Exported folders load like any other, and override every embedded plugin.
    let path = path_str(dir.path());
    let run = Run::bmad_host(&["plugins", "check", "--json", "--plugins", path], &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let sources: Vec<&str> = run
        .events
        .iter()
        .filter(|e| e.get("name").is_some())
        .filter_map(|e| e["source"].as_str())
        .collect();
    assert_eq!(sources, ["folder"; 6]);
    // With the same bytes as the embedded ones.
    let (embedded, _) = {
        let run = Run::bmad_host(&["plugins", "list", "--json"], &[]);
        (run.events, ())
    };
    let hashes = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .filter_map(|e| e["wasm_blake3"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(hashes(&run.events), hashes(&embedded));

    let again = Run::bmad_host(&["plugins", "export", path], &[]);
    assert_eq!(again.code(), 2);
    assert!(
        again.stderr().contains("refusing to overwrite"),
        "{}",
        again.stderr()
    );
}

/// The `status --json` lines of `project` (nothing has run there: no journal progress).
fn status_lines(project: &Project, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["status", "--json", "--project", path_str(project.path())];
    args.extend_from_slice(extra);
    let run = Run::bmad_host(&args, &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(!run.events.is_empty(), "no status lines");
    run.events
}

#[test]
fn status_reads_the_same_with_the_native_parser_and_the_status_component() {
    let plugins = exported();
    let folder = path_str(plugins.path());
    let v4 = Project::fixture("v4-sample");
    // One standard status, one that is not standard, one with the value missing, one not drafted.
    let story = v4.read("docs/stories/1.2.story.md");
    v4.write(
        "docs/stories/1.2.story.md",
        &story.replacen("## Status\n\nDraft", "## Status\n\nReady for Reviewish", 1),
    );
    let story = v4.read("docs/stories/1.1.story.md");
    v4.write(
        "docs/stories/1.1.story.md",
        &story.replacen("## Status\n\nApproved", "## Status\n\n", 1),
    );
    let v6 = Project::fixture("v6-sample");
    for project in [&v4, &v6] {
        let native = status_lines(project, &[]);
        let component = status_lines(project, &["--plugins", folder]);
        assert_eq!(native, component, "{}", project.path().display());
    }
    let v4_native = status_lines(&v4, &[]);
    let problems: Vec<&Value> = v4_native
        .iter()
        .filter(|s| !s["problem"].is_null())
        .collect();
    assert_eq!(
        problems.len(),
        2,
        "the doubtful and the missing status: {v4_native:?}"
    );
}
