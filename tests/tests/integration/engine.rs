//! `--engine restate` in the default build (without the `restate` feature), through the real
//! binary: `run --engine restate`, `worker`, `balance` and `status`/`log --restate-admin` exit 2 saying
//! how to get the feature, before they touch anything; `--engine restate` needs `--restate`; a worker serves only an engine.
//! (With the feature, `cargo xtask e2e-restate` drives them against a real Restate server.)

use bmad_host_tests::harness::{Project, Run};

#[test]
fn without_the_feature_the_engine_commands_say_how_to_get_it() {
    let project = Project::fixture("v4-sample");
    let dir = project.path().to_str().expect("utf-8");
    let before = project.read("docs/stories/1.1.story.md");
    for args in [
        &[
            "run",
            "--project",
            dir,
            "--engine",
            "restate",
            "--restate",
            "http://127.0.0.1:1",
        ][..],
        &[
            "worker",
            "--project",
            dir,
            "--engine",
            "restate",
            "--listen",
            "127.0.0.1:0",
            "--restate",
            "http://127.0.0.1:1",
        ],
        &[
            "status",
            "--project",
            dir,
            "--restate-admin",
            "http://127.0.0.1:1",
        ],
        &[
            "log",
            "--project",
            dir,
            "--restate-admin",
            "http://127.0.0.1:1",
        ],
        &["balance", "--listen", "127.0.0.1:0", "http://127.0.0.1:1"],
    ] {
        let run = Run::bmad_host(args, &[]);
        assert_eq!(run.code(), 2, "{args:?}: {}", run.stderr());
        assert!(
            run.stderr()
                .contains("built without the `restate` feature: install one with it (`cargo install --path host --features restate`)"),
            "{args:?}: {}",
            run.stderr()
        );
    }
    assert_eq!(project.read("docs/stories/1.1.story.md"), before);
    assert!(!project.path().join(".bmad-host").exists());
}

#[test]
fn the_engine_flags_are_checked() {
    let project = Project::fixture("v4-sample");
    let dir = project.path().to_str().expect("utf-8");
    let missing = Run::bmad_host(&["run", "--project", dir, "--engine", "restate"], &[]);
    assert_eq!(missing.code(), 2);
    assert!(
        missing.stderr().contains("--restate <URL>"),
        "{}",
        missing.stderr()
    );
    let local = Run::bmad_host(
        &[
            "worker",
            "--project",
            dir,
            "--engine",
            "local",
            "--listen",
            "127.0.0.1:0",
            "--restate",
            "http://127.0.0.1:1",
        ],
        &[],
    );
    assert_eq!(local.code(), 2);
    assert!(
        local
            .stderr()
            .contains("a worker serves an engine's workflows"),
        "{}",
        local.stderr()
    );
}
