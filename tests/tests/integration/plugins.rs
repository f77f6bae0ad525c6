//! The plugin host against real components: a well-behaved one (`bmad-test-good`), an
//! adversarial one (`bmad-test-evil`), one built for another WIT version (`bmad-test-wit9`),
//! and a truncated `.wasm`. Each misbehaviour must end in the right `PluginError`, and a call on
//! a fresh instance afterwards must still work: the run goes on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bmad_host::plugins::{
    Limits, LoadKind, PluginConfig, PluginError, PluginRole, PluginSet, SUPPORTED_WIT, inspect,
    inspect_roles,
};
use bmad_host::policy::{
    AgentEvent, CallOutcome, Decision, Directive, Layout, MissingReason, OutcomeKind, ParseOutcome,
    Role, StepReport, Story, StoryState,
};
use bmad_host_tests::components::{self, Folder, plugin_dir, plugin_folder, wasm};
use tempfile::TempDir;

/// A plugin directory, a project root and a compiled-component cache: the one every test
/// shares (each test component is compiled once per target dir, not once per test), or a
/// private one for a test that watches the cache itself.
struct Env {
    plugins: TempDir,
    project: TempDir,
    cache: Option<TempDir>,
}

impl Env {
    fn new() -> Env {
        let tmp = || tempfile::tempdir().expect("tempdir");
        let env = Env {
            plugins: tmp(),
            project: tmp(),
            cache: None,
        };
        let root = env.project.path();
        std::fs::create_dir_all(root.join("docs/qa")).expect("mkdir");
        std::fs::write(root.join("docs/qa/gate.yml"), "gate: PASS\n").expect("write");
        std::fs::write(root.join("docs/notes.md"), "private notes\n").expect("write");
        env
    }

    /// With a cache of its own, empty at the start.
    fn with_private_cache() -> Env {
        Env {
            cache: Some(tempfile::tempdir().expect("tempdir")),
            ..Env::new()
        }
    }
    fn cache_dir(&self) -> PathBuf {
        self.cache
            .as_ref()
            .map_or_else(bmad_host_tests::harness::cache_dir, |c| {
                c.path().to_path_buf()
            })
    }
    /// A plugin directory whose four role folders are all `krate`.
    fn with_all(krate: &str) -> Env {
        let env = Env::new();
        plugin_dir(env.plugins.path(), krate);
        env
    }

    fn dir(&self) -> &Path {
        self.plugins.path()
    }

    fn config(&self) -> PluginConfig {
        PluginConfig {
            project_root: self.project.path().to_path_buf(),
            cache_dir: Some(self.cache_dir()),
            ..PluginConfig::default()
        }
    }

    fn load(&self) -> PluginSet {
        PluginSet::load(self.dir(), &self.config()).unwrap_or_else(|e| panic!("load: {e}"))
    }

    fn load_err(&self, cfg: &PluginConfig) -> PluginError {
        match PluginSet::load(self.dir(), cfg) {
            Ok(_) => panic!("the plugin directory loaded, but it should have been refused"),
            Err(e) => e,
        }
    }
}

fn story() -> Story {
    Story {
        id: "1.2".to_string(),
        epic: 1,
        title: "Login form".to_string(),
        path: "docs/stories/1.2.login-form.md".to_string(),
        exists: true,
        state: Some(StoryState::ReadyForDev),
        raw_status: Some("Approved".to_string()),
        cycle: 1,
        max_cycles: 3,
        retry: false,
        layout: Layout::V4,
        bmad_version: "4.44.3".to_string(),
        epic_path: String::new(),
        gate_path: String::new(),
        sprint_status_path: String::new(),
        previous_findings: Vec::new(),
        findings_history: Vec::new(),
        rounds: Vec::new(),
    }
}

fn report(document: &str, kind: OutcomeKind) -> StepReport {
    StepReport {
        outcome: Some(CallOutcome {
            kind,
            message: "agent said so".to_string(),
            num_turns: 3,
            cost_usd: 0.01,
            duration_ms: 1200,
        }),
        document: document.to_string(),
        status: ParseOutcome::Missing(MissingReason::NoStatus),
        gates: Vec::new(),
        qa_gate: None,
    }
}

/// `begin` of the dev policy on `document`, in a fresh step.
fn begin(set: &PluginSet, document: &str) -> Result<Decision, PluginError> {
    set.begin_step(Role::Dev)?.begin(&story(), document)
}

/// The run goes on: a fresh instance of the same plugin answers normally.
fn assert_run_goes_on(set: &PluginSet) {
    match begin(set, "a normal document") {
        Ok(Decision::InvokeAgent(_)) => {}
        other => panic!("a fresh instance should answer normally, got {other:?}"),
    }
    assert!(matches!(
        set.parse_status("nothing special"),
        Ok(ParseOutcome::Missing(_))
    ));
}

fn escalation(d: Result<Decision, PluginError>) -> String {
    match d {
        Ok(Decision::Escalate(reason)) => reason,
        other => panic!("expected an escalation, got {other:?}"),
    }
}

#[test]
fn a_good_plugin_answers_every_call() {
    let env = Env::with_all("bmad-test-good");
    let set = env.load();

    let parsed = set
        .parse_status("# Story 1.2\n\nStatus: Done\n")
        .expect("parse");
    let ParseOutcome::Found(v) = parsed else {
        panic!("expected found, got {parsed:?}")
    };
    assert_eq!(
        (v.state, v.raw.as_str(), v.line),
        (Some(StoryState::Done), "Done", 3)
    );
    assert!(matches!(
        set.parse_status(""),
        Ok(ParseOutcome::Missing(MissingReason::EmptyFile))
    ));

    let mut step = set.begin_step(Role::Dev).expect("step");
    assert_eq!(step.plugin(), "dev");
    let Decision::InvokeAgent(req) = step.begin(&story(), "# doc").expect("begin") else {
        panic!("not invoke-agent")
    };
    assert_eq!(req.prompt, "Work on story 1.2: Login form (cycle 1)");
    assert_eq!(req.max_turns, Some(10));
    let text = |t: &str| AgentEvent::Text(t.to_string());
    assert_eq!(
        step.on_event(&story(), &text("working")).expect("event"),
        Directive::Continue
    );
    assert_eq!(
        step.on_event(&story(), &text("please STOP now"))
            .expect("event"),
        Directive::Stop
    );
    let end = step
        .end(&story(), &report("", OutcomeKind::Success))
        .expect("end");
    assert!(matches!(end, Decision::Complete), "{end:?}");
    let end = step
        .end(&story(), &report("", OutcomeKind::TimedOut))
        .expect("end");
    assert!(
        matches!(&end, Decision::Fail(m) if m == "agent said so"),
        "{end:?}"
    );
}

#[test]
fn fingerprints_name_each_role_and_hash_the_wasm() {
    let env = Env::with_all("bmad-test-good");
    let set = env.load();
    let expected = blake3::hash(&std::fs::read(wasm("bmad-test-good")).expect("read"))
        .to_hex()
        .to_string();
    let prints = set.fingerprints();
    let roles: Vec<PluginRole> = prints.iter().map(|p| p.role).collect();
    assert_eq!(roles, PluginRole::ALL.to_vec());
    for p in &prints {
        assert_eq!(p.name, p.role.as_str());
        assert_eq!((p.version.as_str(), p.wit.as_str()), ("0.1.0", "0.2.0"));
        assert_eq!(p.wasm_blake3, expected);
    }
}

#[test]
fn a_compiled_component_is_cached_and_a_corrupt_entry_recompiles() {
    let env = Env::with_private_cache();
    plugin_folder(
        env.dir(),
        "status",
        "status",
        &wasm("bmad-test-good"),
        &Folder::default(),
    );
    let kinds = || -> Vec<LoadKind> {
        inspect(env.dir(), &env.config())
            .iter()
            .map(|i| i.load.expect("loaded").kind)
            .collect()
    };
    assert_eq!(kinds(), vec![LoadKind::Cold]);
    assert_eq!(kinds(), vec![LoadKind::Cached]);
    let entries: Vec<PathBuf> = walk(&env.cache_dir())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let len = std::fs::metadata(&entries[0]).expect("entry").len();
    std::fs::write(&entries[0], b"garbage").expect("corrupt");
    assert_eq!(kinds(), vec![LoadKind::Cold], "a corrupt entry is a miss");
    assert_eq!(
        std::fs::metadata(&entries[0]).expect("rewritten").len(),
        len
    );
    assert_eq!(kinds(), vec![LoadKind::Cached]);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p))
        } else {
            out.push(p)
        }
    }
    out
}

#[test]
fn an_endless_loop_runs_out_of_fuel_and_the_instance_is_discarded() {
    let env = Env::with_all("bmad-test-evil");
    let set = env.load();
    let mut step = set.begin_step(Role::Dev).expect("step");
    let e = step.begin(&story(), "EVIL:loop").expect_err("loops");
    assert!(
        matches!(&e, PluginError::OutOfFuel { plugin, call: "begin", limit, .. } if plugin == "dev" && *limit == Limits::HOST.fuel),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("plugin `dev` ran out of fuel in `begin`"),
        "{e}"
    );
    assert!(e.is_call_failure());
    // The trapped instance is never used again.
    let again = step
        .on_event(&story(), &AgentEvent::Text("hi".to_string()))
        .expect_err("discarded");
    assert!(
        matches!(
            &again,
            PluginError::Discarded {
                call: "on-event",
                ..
            }
        ),
        "{again:?}"
    );
    assert_run_goes_on(&set);
}

#[test]
fn a_plugin_can_tighten_its_own_fuel() {
    let env = Env::with_all("bmad-test-evil");
    std::fs::remove_dir_all(env.dir().join("dev")).expect("rm");
    let extra = "[limits]\nfuel = 1_000_000\n";
    plugin_folder(
        env.dir(),
        "dev",
        "dev",
        &wasm("bmad-test-evil"),
        &Folder {
            extra,
            ..Folder::default()
        },
    );
    let set = env.load();
    let e = begin(&set, "EVIL:loop").expect_err("loops");
    assert!(
        matches!(
            &e,
            PluginError::OutOfFuel {
                limit: 1_000_000,
                ..
            }
        ),
        "{e:?}"
    );
    assert_run_goes_on(&set);
}

#[test]
fn a_memory_bomb_hits_the_memory_limit() {
    let env = Env::with_all("bmad-test-evil");
    let set = env.load();
    let e = begin(&set, "EVIL:membomb").expect_err("bomb");
    assert!(
        matches!(&e, PluginError::MemoryLimit { plugin, call: "begin", limit_mb: 64, .. } if plugin == "dev"),
        "{e:?}"
    );
    assert!(e.to_string().contains("memory limit"), "{e}");
    assert_run_goes_on(&set);
}

#[test]
fn a_100_mb_string_cannot_even_be_built() {
    let env = Env::with_all("bmad-test-evil");
    let set = env.load();
    let e = begin(&set, "EVIL:bigstring").expect_err("big");
    assert!(
        matches!(&e, PluginError::MemoryLimit { wanted_mb, .. } if *wanted_mb > 64),
        "{e:?}"
    );
    let e = set.parse_status("EVIL:bigstring").expect_err("big");
    assert!(
        matches!(&e, PluginError::MemoryLimit { call: "parse", .. }),
        "{e:?}"
    );
    assert_run_goes_on(&set);
}

#[test]
fn runaway_recursion_overflows_the_stack() {
    let env = Env::with_all("bmad-test-evil");
    let set = env.load();
    let e = begin(&set, "EVIL:recurse").expect_err("recursion");
    assert!(
        matches!(&e, PluginError::StackOverflow { call: "begin", .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("overflowed its stack"), "{e}");
    // Big frames overflow the guest's own stack in its linear memory first: a trap, with a hint.
    let e = begin(&set, "EVIL:deep-frames").expect_err("recursion");
    assert!(
        matches!(&e, PluginError::Trap { message, .. } if message.contains("stack overflow")),
        "{e:?}"
    );
    assert_run_goes_on(&set);
}

#[test]
fn returning_too_much_is_refused() {
    let env = Env::with_all("bmad-test-evil");
    let set = env.load();
    let e = begin(&set, "EVIL:bigoutput").expect_err("2 MiB");
    assert!(
        matches!(&e, PluginError::OutputTooLarge { call: "begin", size, limit, .. } if *size > 2 << 20 && *limit == 1 << 20),
        "{e:?}"
    );
    let e = begin(&set, "EVIL:manyfindings").expect_err("100k findings");
    assert!(matches!(&e, PluginError::OutputTooLarge { .. }), "{e:?}");
    let e = set
        .parse_status("EVIL:manyfindings")
        .expect_err("100k values");
    assert!(
        matches!(&e, PluginError::OutputTooLarge { call: "parse", .. }),
        "{e:?}"
    );
    // In `end` too.
    let mut step = set.begin_step(Role::Qa).expect("step");
    let e = step
        .end(&story(), &report("EVIL:bigoutput", OutcomeKind::Success))
        .expect_err("big");
    assert!(
        matches!(&e, PluginError::OutputTooLarge { call: "end", .. }),
        "{e:?}"
    );
    assert_run_goes_on(&set);
}

#[test]
fn a_trap_names_the_plugin_the_call_and_the_panic_message() {
    let env = Env::with_all("bmad-test-evil");
    let set = env.load();
    let e = begin(&set, "EVIL:trap").expect_err("trap");
    let PluginError::Trap {
        plugin,
        call,
        message,
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!((plugin.as_str(), *call), ("dev", "begin"));
    assert!(message.contains("unreachable"), "{message}");
    assert!(
        message.contains("evil component asked to trap"),
        "the panic message from stderr: {message}"
    );
    // The status parser's instance is dropped after a trap and replaced.
    assert!(matches!(
        set.parse_status("EVIL:trap"),
        Err(PluginError::Trap { call: "parse", .. })
    ));
    assert_run_goes_on(&set);
}

#[test]
fn exit_and_sleep_trap() {
    let env = Env::with_all("bmad-test-evil");
    let set = env.load();
    let e = begin(&set, "EVIL:exit").expect_err("exit");
    assert!(
        matches!(&e, PluginError::Trap { message, .. } if message.contains("the plugin called exit(")),
        "{e:?}"
    );
    let e = begin(&set, "EVIL:sleep").expect_err("sleep");
    assert!(
        matches!(&e, PluginError::Trap { message, .. } if message.contains("cannot block")),
        "{e:?}"
    );
    assert_run_goes_on(&set);
}

#[test]
fn reads_outside_the_grant_are_denied_to_the_guest() {
    let env = Env::with_all("bmad-test-evil");
    let mut cfg = env.config();
    cfg.grants.insert("dev".to_string(), vec!["**".to_string()]);
    let set = PluginSet::load(env.dir(), &cfg).expect("load");
    let passwd = escalation(begin(&set, "EVIL:read-passwd"));
    assert!(
        passwd.starts_with("READ DENIED") && passwd.contains("absolute paths are not allowed"),
        "{passwd}"
    );
    let dotdot = escalation(begin(&set, "EVIL:read-dotdot"));
    assert!(
        dotdot.starts_with("READ DENIED") && dotdot.contains("leaves the project root"),
        "{dotdot}"
    );
    // The guest's own filesystem access finds nothing at all.
    let fs = escalation(begin(&set, "EVIL:fs"));
    assert!(fs.starts_with("fs read failed"), "{fs}");
    assert_run_goes_on(&set);
}

#[test]
fn a_read_needs_the_manifest_request_and_the_operator_grant() {
    let env = Env::new();
    plugin_dir(env.dir(), "bmad-test-good");
    std::fs::remove_dir_all(env.dir().join("qa")).expect("rm");
    let read = ["docs/qa/**"];
    plugin_folder(
        env.dir(),
        "qa",
        "qa",
        &wasm("bmad-test-good"),
        &Folder {
            read: &read,
            ..Folder::default()
        },
    );
    let qa_begin =
        |set: &PluginSet, doc: &str| set.begin_step(Role::Qa).expect("step").begin(&story(), doc);

    // Requested, not granted.
    let set = env.load();
    let denied = escalation(qa_begin(&set, "READ:docs/qa/gate.yml"));
    assert!(
        denied.contains("not granted") && denied.contains("[plugins.qa] grant_read"),
        "{denied}"
    );

    // Requested and granted.
    let mut cfg = env.config();
    cfg.grants.insert(
        "qa".to_string(),
        vec!["docs/qa/**".to_string(), "docs/*.md".to_string()],
    );
    let set = PluginSet::load(env.dir(), &cfg).expect("load");
    match qa_begin(&set, "READ:docs/qa/gate.yml") {
        Ok(Decision::InvokeAgent(req)) => assert_eq!(req.prompt, "gate: PASS\n"),
        other => panic!("expected the file's text, got {other:?}"),
    }
    // Granted, not requested.
    let denied = escalation(qa_begin(&set, "READ:docs/notes.md"));
    assert!(denied.contains("did not request"), "{denied}");
    // A plugin without a grant of its own gets nothing.
    let denied = escalation(
        set.begin_step(Role::Dev)
            .expect("step")
            .begin(&story(), "READ:docs/qa/gate.yml"),
    );
    assert!(denied.contains("did not request"), "{denied}");
}

#[test]
fn no_ambient_environment_clock_or_randomness() {
    let env = Env::with_all("bmad-test-evil");
    let set = env.load();
    let first = escalation(begin(&set, "EVIL:ambient"));
    assert!(first.starts_with("vars=0 args=0 now=0 random="), "{first}");
    let second = escalation(begin(&set, "EVIL:ambient"));
    assert_eq!(first, second, "two instances see the same 'random' bytes");
}

#[test]
fn chatty_plugins_keep_working_even_on_a_tokio_worker() {
    let env = Env::with_all("bmad-test-evil");
    let set = env.load();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .expect("runtime");
    let (print, logs, trap) = rt.block_on(async {
        // Calls made directly on a worker thread, as the run loop does.
        tokio::spawn(async move {
            let print = begin(&set, "EVIL:print");
            let logs = begin(&set, "EVIL:logspam");
            let trap = begin(&set, "EVIL:trap");
            (print, logs, trap)
        })
        .await
        .expect("the task must not panic")
    });
    assert!(matches!(print, Ok(Decision::InvokeAgent(_))), "{print:?}");
    // Host calls cost the guest fuel: a flood of log calls runs out of it instead of keeping
    // the host busy.
    assert!(
        matches!(logs, Err(PluginError::OutOfFuel { .. })),
        "{logs:?}"
    );
    assert!(matches!(trap, Err(PluginError::Trap { .. })), "{trap:?}");
}

#[test]
fn a_component_built_for_another_wit_version_is_refused_naming_both() {
    let env = Env::with_all("bmad-test-good");
    std::fs::remove_dir_all(env.dir().join("qa")).expect("rm");
    // The manifest claims 0.1.0; the component's imports say 9.0.0.
    plugin_folder(
        env.dir(),
        "qa",
        "qa",
        &wasm("bmad-test-wit9"),
        &Folder::default(),
    );
    let e = env.load_err(&env.config());
    assert!(
        matches!(&e, PluginError::WitVersion { plugin, found, .. } if plugin == "qa" && found == "9.0.0"),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("bmad:policy@9.0.0")
            && msg.contains(&format!("bmad:policy@{}", SUPPORTED_WIT[0])),
        "{msg}"
    );

    // The manifest says 9.0.0 honestly: refused before the component is even compiled.
    plugin_folder(
        env.dir(),
        "qa",
        "qa",
        &wasm("bmad-test-wit9"),
        &Folder {
            wit: "9.0.0",
            ..Folder::default()
        },
    );
    let e = env.load_err(&env.config());
    assert!(
        matches!(&e, PluginError::WitVersion { what, .. } if what.contains("plugin.toml")),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("bmad:policy@9.0.0") && e.to_string().contains("bmad:policy@0.1.0"),
        "{e}"
    );
}

#[test]
fn a_truncated_wasm_is_refused() {
    let env = Env::with_all("bmad-test-good");
    let bytes = std::fs::read(wasm("bmad-test-good")).expect("read");
    std::fs::write(env.dir().join("sm/plugin.wasm"), &bytes[..bytes.len() / 2]).expect("truncate");
    let e = env.load_err(&env.config());
    assert!(
        matches!(&e, PluginError::Component { plugin, .. } if plugin == "sm"),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("not a valid WebAssembly component"),
        "{e}"
    );
}

#[test]
fn broken_manifests_are_refused_with_the_folder_named() {
    let env = Env::with_all("bmad-test-good");
    let manifest = env.dir().join("dev/plugin.toml");
    let good = std::fs::read_to_string(&manifest).expect("read");

    std::fs::write(&manifest, format!("{good}\nsecret_power = true\n")).expect("write");
    let e = env.load_err(&env.config());
    assert!(
        matches!(&e, PluginError::Manifest { dir, .. } if dir.ends_with("dev")),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("unknown field `secret_power`"),
        "{e}"
    );

    std::fs::remove_file(&manifest).expect("rm");
    let e = env.load_err(&env.config());
    assert!(e.to_string().contains("no plugin.toml"), "{e}");

    std::fs::write(
        &manifest,
        good.replace("role = \"dev\"", "role = \"status\""),
    )
    .expect("write");
    let e = env.load_err(&env.config());
    // `dev` now claims to be a status parser: the dev role has no plugin of its role.
    assert!(
        matches!(&e, PluginError::Role { role, .. } if role == "dev"),
        "{e:?}"
    );
}

#[test]
fn a_component_without_the_exports_of_its_role_is_refused() {
    let env = Env::with_all("bmad-test-good");
    std::fs::remove_dir_all(env.dir().join("status")).expect("rm");
    plugin_folder(
        env.dir(),
        "status",
        "status",
        &wasm("bmad-test-bare"),
        &Folder::default(),
    );
    let e = env.load_err(&env.config());
    assert!(
        matches!(&e, PluginError::Component { plugin, .. } if plugin == "status"),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("does not export `parse`") && msg.contains("status-parser"),
        "{msg}"
    );
}

#[test]
fn roles_can_be_swapped_through_the_configuration() {
    let env = Env::with_all("bmad-test-good");
    plugin_folder(
        env.dir(),
        "qa-strict",
        "qa",
        &wasm("bmad-test-good"),
        &Folder::default(),
    );
    let set = env.load();
    assert_eq!(set.plugin_for(PluginRole::Qa), "qa");

    let mut cfg = env.config();
    cfg.roles = BTreeMap::from([("qa".to_string(), "qa-strict".to_string())]);
    let set = PluginSet::load(env.dir(), &cfg).expect("load");
    assert_eq!(set.plugin_for(PluginRole::Qa), "qa-strict");
    assert_eq!(
        set.begin_step(Role::Qa).expect("step").plugin(),
        "qa-strict"
    );
    assert_eq!(set.fingerprints()[3].name, "qa-strict");

    cfg.roles = BTreeMap::from([("qa".to_string(), "dev".to_string())]);
    let e = env.load_err(&cfg);
    assert!(e.to_string().contains("plays role `dev`"), "{e}");

    cfg.roles = BTreeMap::from([("qa".to_string(), "qa-lenient".to_string())]);
    let e = env.load_err(&cfg);
    assert!(
        e.to_string().contains("no plugin named `qa-lenient`")
            && e.to_string().contains("qa-strict"),
        "{e}"
    );

    cfg.roles = BTreeMap::from([("architect".to_string(), "qa".to_string())]);
    assert!(env.load_err(&cfg).to_string().contains("unknown role"));
}

#[test]
fn a_missing_role_and_duplicate_names_are_refused() {
    let env = Env::with_all("bmad-test-good");
    std::fs::remove_dir_all(env.dir().join("sm")).expect("rm");
    let e = env.load_err(&env.config());
    assert!(
        matches!(&e, PluginError::Role { role, .. } if role == "sm"),
        "{e:?}"
    );
    assert!(e.to_string().contains("--policy sm=NAME"), "{e}");

    let env = Env::with_all("bmad-test-good");
    let copy = plugin_folder(
        env.dir(),
        "zz-copy",
        "qa",
        &wasm("bmad-test-good"),
        &Folder::default(),
    );
    let text = std::fs::read_to_string(copy.join("plugin.toml")).expect("read");
    std::fs::write(
        copy.join("plugin.toml"),
        text.replace("name = \"zz-copy\"", "name = \"qa\""),
    )
    .expect("write");
    assert!(matches!(
        env.load_err(&env.config()),
        PluginError::DuplicateName { .. }
    ));
}

#[test]
fn inspect_reports_every_folder_and_its_problem() {
    let env = Env::with_all("bmad-test-good");
    plugin_folder(
        env.dir(),
        "old",
        "qa",
        &wasm("bmad-test-wit9"),
        &Folder::default(),
    );
    let broken = plugin_folder(
        env.dir(),
        "broken",
        "qa",
        &wasm("bmad-test-good"),
        &Folder::default(),
    );
    std::fs::write(broken.join("plugin.toml"), "name = \"broken\"\n").expect("write");
    let read = ["docs/qa/**"];
    std::fs::remove_dir_all(env.dir().join("qa")).expect("rm");
    plugin_folder(
        env.dir(),
        "qa",
        "qa",
        &wasm("bmad-test-good"),
        &Folder {
            read: &read,
            ..Folder::default()
        },
    );
    let mut cfg = env.config();
    cfg.grants
        .insert("qa".to_string(), vec!["docs/qa/gates/**".to_string()]);

    let infos = inspect(env.dir(), &cfg);
    let names: Vec<&str> = infos.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["broken", "dev", "old", "qa", "sm", "status"]);
    let by = |n: &str| infos.iter().find(|i| i.name == n).expect("info");
    assert!(
        by("broken")
            .problem
            .as_deref()
            .is_some_and(|p| p.contains("missing field")),
        "{:?}",
        by("broken")
    );
    assert!(
        by("old")
            .problem
            .as_deref()
            .is_some_and(|p| p.contains("bmad:policy@9.0.0")),
        "{:?}",
        by("old")
    );
    let qa = by("qa");
    assert_eq!(qa.problem, None);
    assert_eq!(qa.serves, vec![PluginRole::Qa]);
    assert_eq!(qa.requested_read, vec!["docs/qa/**".to_string()]);
    assert_eq!(qa.granted_read, vec!["docs/qa/gates/**".to_string()]);
    assert_eq!(qa.wit.as_deref(), Some("0.2.0"));
    assert_eq!(qa.limits, Some(Limits::HOST));
    assert!(qa.load.is_some());
    assert!(by("old").serves.is_empty());

    let roles = inspect_roles(env.dir(), &infos, &cfg);
    assert!(roles.iter().all(|r| r.problem.is_none()), "{roles:?}");
    let json = serde_json::to_string(&infos).expect("serialize");
    assert!(
        json.contains("\"kind\":\"cold\"") || json.contains("\"kind\":\"cached\""),
        "{json}"
    );

    let empty = tempfile::tempdir().expect("tempdir");
    let infos = inspect(empty.path(), &cfg);
    assert!(
        infos[0]
            .problem
            .as_deref()
            .is_some_and(|p| p.contains("no plugin folders")),
        "{infos:?}"
    );
    let roles = inspect_roles(empty.path(), &[], &cfg);
    assert!(roles.iter().all(|r| r.problem.is_some()));
}

#[test]
fn the_test_components_are_built() {
    for krate in components::CRATES {
        assert!(wasm(krate).is_file());
    }
}

#[test]
fn a_session_is_owned_and_sendable_while_the_set_keeps_parsing() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<PluginSet>();
    let env = Env::with_all("bmad-test-good");
    let set = env.load();
    let mut session = set.begin_step(Role::Qa).expect("step");
    // The set is free while the session lives: parse a status in between.
    assert!(matches!(
        set.parse_status("Status: Review"),
        Ok(ParseOutcome::Found(_))
    ));
    let handle = std::thread::spawn(move || {
        session
            .begin(&story(), "# doc")
            .map(|d| matches!(d, Decision::InvokeAgent(_)))
    });
    assert!(matches!(handle.join().expect("thread"), Ok(true)));
    drop(set);
}
