//! A hostile repository against the real binary: a project's own `bmad-host.toml` runs nothing
//! and grants nothing until the operator trusted that exact content; the user's configuration
//! is a layer of its own that needs no trust; the compiled-component cache is never read from a
//! directory someone else can write.

use std::path::Path;

use bmad_host_tests::fake_log;
use bmad_host_tests::harness::{Project, Run, copy_dir, fake_claude, warm_cache_dir};
use serde_json::Value;
use tempfile::TempDir;

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `bmad-host run --json --story 1.1 --project P ARGS`, with the user's configuration in
/// `home` and the fake's log: no `--claude-bin`, so the configuration chooses the CLI.
fn run(project: &Project, home: &TempDir, args: &[&str], env: &[(&str, &str)]) -> Run {
    let log = fake_log::env_value(project);
    let mut all = vec![
        "run",
        "--json",
        "--story",
        "1.1",
        "--project",
        path_str(project.path()),
    ];
    all.extend_from_slice(args);
    let mut env: Vec<(&str, &str)> = env.to_vec();
    env.push(("FAKE_CLAUDE_LOG", &log));
    env.push(("XDG_CONFIG_HOME", path_str(home.path())));
    Run::bmad_host(&all, &env)
}

#[test]
fn a_project_file_runs_nothing_until_its_exact_content_is_trusted() {
    let project = Project::fixture("v4-sample");
    let home = tempfile::tempdir().expect("tempdir");
    let fake = fake_claude();
    let text = format!(
        "[claude]\nbin = {:?}\nextra_args = [\"--debug\"]\npermission_mode = \"bypassPermissions\"\n\
         [[gates]]\nname = \"owned\"\ncommand = \"touch gate-ran\"\n\
         [plugins.qa]\ngrant_read = [\"**\"]\n",
        path_str(&fake)
    );
    project.write("bmad-host.toml", &text);

    // Untrusted: exit 2 before anything runs, listing every command and grant, and the fix.
    let untrusted = run(&project, &home, &[], &[]);
    assert_eq!(untrusted.code(), 2, "{}", untrusted.stderr());
    let err = untrusted.stderr();
    let dir = path_str(project.path());
    for part in [
        "is not trusted",
        path_str(&fake),
        "--debug",
        "bypassPermissions",
        "touch gate-ran",
        "grant_read",
        "\"**\"",
        &format!("bmad-host trust --project {dir}"),
        "--trust",
    ] {
        assert!(err.contains(part), "{part} missing in:\n{err}");
    }
    assert!(fake_log::calls(&project).is_empty(), "no agent may run");
    assert!(!project.path().join("gate-ran").exists(), "no gate may run");
    assert!(
        !project.path().join(".bmad-host").exists(),
        "no run may start"
    );

    // `config` shows them, not in force.
    let config = Run::bmad_host(
        &["config", "--project", dir],
        &[("XDG_CONFIG_HOME", path_str(home.path()))],
    );
    assert_eq!(config.code(), 0, "{}", config.stderr());
    let out = String::from_utf8_lossy(&config.output.stdout).into_owned();
    assert!(out.contains("claude.bin = claude "), "{out}");
    assert!(
        out.contains("gates.owned") && out.contains("not trusted"),
        "{out}"
    );
    assert!(
        config.stderr().contains("is not trusted"),
        "{}",
        config.stderr()
    );

    // `bmad-host trust` trusts exactly this content, in the user's configuration directory.
    let trust = Run::bmad_host(
        &["trust", "--project", dir],
        &[("XDG_CONFIG_HOME", path_str(home.path()))],
    );
    assert_eq!(trust.code(), 0, "{}", trust.stderr());
    let said = String::from_utf8_lossy(&trust.output.stdout).into_owned();
    assert!(said.contains("touch gate-ran"), "{said}");
    let entries = std::fs::read_dir(home.path().join("bmad-host/trusted"))
        .expect("trust store")
        .count();
    assert_eq!(entries, 1);
    let trusted = run(&project, &home, &[], &[]);
    assert_eq!(trusted.code(), 0, "{}", trusted.stderr());
    assert!(!fake_log::calls(&project).is_empty());
    assert!(project.path().join("gate-ran").exists());
    let call = &fake_log::calls(&project)[0];
    assert_eq!(call["permission_mode"], "bypassPermissions");

    // Any edit undoes the trust; --trust and BMAD_HOST_TRUST=1 trust it for one command.
    project.write("bmad-host.toml", &format!("{text}# edited\n"));
    let edited = run(&project, &home, &["--fresh"], &[]);
    assert_eq!(edited.code(), 2, "{}", edited.stderr());
    let flag = run(&project, &home, &["--fresh", "--trust"], &[]);
    assert_eq!(flag.code(), 0, "{}", flag.stderr());
    let env = run(&project, &home, &["--fresh"], &[("BMAD_HOST_TRUST", "1")]);
    assert_eq!(env.code(), 0, "{}", env.stderr());

    // A project file that runs and grants nothing needs no trust.
    project.write(
        "bmad-host.toml",
        "[workflow]\nmax_cycles = 2\n[roles]\nqa = \"qa\"\n",
    );
    let plain = run(
        &project,
        &home,
        &["--fresh", "--claude-bin", path_str(&fake)],
        &[],
    );
    assert_eq!(plain.code(), 0, "{}", plain.stderr());
}

#[test]
fn the_user_configuration_is_a_layer_of_its_own_and_needs_no_trust() {
    let project = Project::fixture("v4-sample");
    let home = tempfile::tempdir().expect("tempdir");
    let user_file = home.path().join("bmad-host/config.toml");
    std::fs::create_dir_all(user_file.parent().expect("dir")).expect("mkdir");
    let fake = fake_claude();
    std::fs::write(
        &user_file,
        format!(
            "[claude]\nbin = {:?}\ntimeout = \"20m\"\nmax_turns = 9\n\
             [[gates]]\nname = \"mine\"\ncommand = \"touch user-gate-ran\"\n",
            path_str(&fake)
        ),
    )
    .expect("write config.toml");
    project.write("bmad-host.toml", "[claude]\nmax_turns = 5\n");
    let dir = path_str(project.path());
    let config = Run::bmad_host(
        &["config", "--json", "--project", dir],
        &[("XDG_CONFIG_HOME", path_str(home.path()))],
    );
    assert_eq!(config.code(), 0, "{}", config.stderr());
    let row = |key: &str| -> Value {
        config
            .events
            .iter()
            .find(|r| r["key"] == key)
            .cloned()
            .unwrap_or_else(|| panic!("no row {key}: {:?}", config.events))
    };
    let user = format!("file {}", path_str(&user_file));
    let own = format!("file {}", path_str(&project.path().join("bmad-host.toml")));
    assert_eq!(row("claude.timeout")["value"], "20m");
    assert_eq!(row("claude.timeout")["source"], user.as_str());
    assert_eq!(row("claude.max_turns")["value"], "5");
    assert_eq!(row("claude.max_turns")["source"], own.as_str());
    assert_eq!(row("claude.bin")["source"], user.as_str());
    assert_eq!(row("gates.mine")["source"], user.as_str());
    assert_eq!(row("claude.idle_timeout")["source"], "default");

    // The operator wrote it: its CLI and its gate run without any trust.
    let ran = run(&project, &home, &[], &[]);
    assert_eq!(ran.code(), 0, "{}", ran.stderr());
    assert!(!fake_log::calls(&project).is_empty());
    assert!(project.path().join("user-gate-ran").exists());
}

/// The load kind of every plugin `plugins list --json` shows, with the cache at `cache`.
fn load_kinds(cache: &Path) -> (Vec<String>, String) {
    let run = Run::bmad_host(
        &["plugins", "list", "--json"],
        &[("BMAD_HOST_CACHE_DIR", path_str(cache))],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let kinds = run
        .events
        .iter()
        .filter_map(|p| p["load"]["kind"].as_str().map(str::to_owned))
        .collect();
    (kinds, run.stderr())
}

/// A private copy of the tests' warm cache (every embedded component compiled), at `dir`: the
/// entries a bypassed cache holds, without compiling them again.
fn copy_of_warm_cache(dir: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    copy_dir(&warm_cache_dir(), dir);
    for entry in [dir.to_path_buf()]
        .into_iter()
        .chain(
            std::fs::read_dir(dir)
                .expect("read")
                .flatten()
                .map(|e| e.path()),
        )
        .filter(|p| p.is_dir())
    {
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    }
    // The copy is a cache this user may use: every component loads from it.
    let (kinds, stderr) = load_kinds(dir);
    assert!(
        !kinds.is_empty() && kinds.iter().all(|k| k == "cached"),
        "{kinds:?}: {stderr}"
    );
}

// Each case compiles every embedded component once with a debug build of cranelift (about 40
// CPU-seconds): one test each, so that they run side by side.

#[test]
fn the_component_cache_is_the_users_alone_and_read_on_the_second_start() {
    use std::os::unix::fs::PermissionsExt as _;
    let base = tempfile::tempdir().expect("tempdir");

    // Our own directory: the second start loads from the cache.
    let own = base.path().join("own");
    let (first, _) = load_kinds(&own);
    assert!(
        !first.is_empty() && first.iter().all(|k| k == "cold"),
        "{first:?}"
    );
    let (second, _) = load_kinds(&own);
    assert!(second.iter().all(|k| k == "cached"), "{second:?}");
    let mode = std::fs::metadata(&own).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "a new cache is the user's alone");
}

#[test]
fn the_component_cache_is_never_read_from_a_directory_others_can_write() {
    use std::os::unix::fs::PermissionsExt as _;
    let base = tempfile::tempdir().expect("tempdir");
    let own = base.path().join("own");
    copy_of_warm_cache(&own);

    // The same entries in a directory everyone can write: bypassed, with a warning.
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let (kinds, stderr) = load_kinds(&own);
    assert!(kinds.iter().all(|k| k == "cold"), "{kinds:?}");
    assert!(
        stderr.contains("not using the component cache") && stderr.contains("writable"),
        "{stderr}"
    );
}

#[test]
fn the_component_cache_is_never_read_from_a_directory_another_user_owns() {
    use std::os::unix::fs::PermissionsExt as _;
    let base = tempfile::tempdir().expect("tempdir");
    // Owned by someone else (as root, hand it to nobody): bypassed too.
    let me = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(base.path()).expect("meta"));
    if me != 0 {
        return;
    }
    let own = base.path().join("own");
    copy_of_warm_cache(&own);
    std::os::unix::fs::chown(&own, Some(65534), None).expect("chown");
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (kinds, stderr) = load_kinds(&own);
    assert!(kinds.iter().all(|k| k == "cold"), "{kinds:?}");
    assert!(stderr.contains("owned by uid 65534"), "{stderr}");
}
