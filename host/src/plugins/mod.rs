//! Plugins: the wasmtime engine, the compiled-component cache, manifests, capabilities, limits.
//!
//! A plugin folder holds a `plugin.toml` ([`Manifest`]) and a WebAssembly component built for
//! one of the `bmad:policy` worlds ([`SUPPORTED_WIT`] lists the versions this host accepts: the
//! version a component was built for is read from the `bmad:policy` names it imports, and a
//! 0.1.0 agent policy runs through the frozen 0.1.0 bindings and the conversions of `adapt.rs`).
//! The default plugins are embedded in the binary ([`EMBEDDED`]) and loaded exactly like
//! folders; a plugins folder adds to them and overrides them by name ([`PluginSources`]).
//! [`PluginSet::load_from`] loads every plugin of its sources, refuses any that is broken,
//! and picks the plugin of each role (the one `[roles]` or `--policy` names, else the one the
//! top layer offers: see [`PluginSources`]). Calls run synchronously, each under fuel, a memory cap, a wasm
//! stack cap and an output cap ([`Limits`]); a call that breaks one fails with a
//! [`PluginError`] naming the plugin, the call and the limit, and its instance is discarded.
//! Guests can reach nothing but `log` and the `read-file` of paths their manifest requests and
//! the operator grants. [`inspect`] reports on every folder for `plugins list|check`.
//!
//! The scheduler of a parallel run ([`Scheduler`], the `scheduler` world of 0.2.0) is a role
//! like the others, but optional: [`PluginSet::scheduler`] gives it when a plugin serves it
//! (the embedded default does, `[roles] scheduler = "NAME"` chooses another).

mod access;
mod adapt;
mod cache;
mod embedded;
mod engine;
mod error;
mod limits;
mod manifest;
mod sandbox;
mod source;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde::Serialize;
use wasmtime::Store;

pub use access::normalise as normalise_read_path;
pub use cache::{LoadKind, default_cache_dir};
pub use embedded::{EMBEDDED, EmbeddedPlugin, Exported, export};
pub use error::PluginError;
pub use limits::{
    LOG_MAX_MESSAGE_BYTES, LOG_MAX_PER_CALL, Limits, MAX_WASM_STACK, OUTPUT_ITEM_OVERHEAD,
    READ_MAX_FILE_BYTES, READ_MAX_PER_CALL,
};
pub use manifest::{Capabilities, MANIFEST_FILE, Manifest, ManifestLimits, PluginRole};
pub use source::{PluginSource, PluginSources};

use access::ReadAccess;
use cache::ComponentCache;
use engine::Runtime;
use sandbox::State;
use source::{Candidate, Known};

use crate::bindings::agent::{AgentPolicy, AgentPolicyPre};
use crate::bindings::scheduler::SchedulerPre;
use crate::bindings::status::{StatusParser, StatusParserPre};
use crate::bindings::v0_1;
use crate::policy::{
    self as policy, AgentEvent, Decision, Directive, ParseOutcome, Role, Running, StatusValue,
    StepReport, Story,
};

/// The `bmad:policy` WIT versions this host can run, oldest first; the last is the one the SDK
/// and the default plugins are built on. A component built for another is refused.
pub const SUPPORTED_WIT: &[&str] = &["0.1.0", "0.2.0"];

/// [`SUPPORTED_WIT`] for messages: `bmad:policy@0.1.0, bmad:policy@0.2.0`.
fn supported_wit() -> String {
    SUPPORTED_WIT
        .iter()
        .map(|v| format!("bmad:policy@{v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the plugin host needs from the configuration.
#[derive(Debug, Clone, Default)]
pub struct PluginConfig {
    /// `[roles]` and `--policy`: role name (`status`, `sm`, `dev`, `qa`, `scheduler`) → plugin
    /// name. A role not listed is served by the plugin named like the role.
    pub roles: BTreeMap<String, String>,
    /// `[plugins.NAME] grant_read`: plugin name → globs the operator lets it read.
    pub grants: BTreeMap<String, Vec<String>>,
    /// The project root `read-file` paths are relative to.
    pub project_root: PathBuf,
    /// The compiled-component cache directory; `None` means [`default_cache_dir`].
    pub cache_dir: Option<PathBuf>,
    /// The host's limits (a manifest may only lower them). Defaults to [`Limits::HOST`].
    pub limits: Limits,
}

/// How long a component took to load, and whether it came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LoadInfo {
    /// Compiled now, or loaded from the cache.
    pub kind: LoadKind,
    /// Reading, hashing and compiling or deserializing the component, in microseconds.
    pub micros: u64,
}

/// One plugin as `plugins list|check` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PluginInfo {
    /// The folder (`(embedded)/NAME` for an embedded plugin).
    pub dir: PathBuf,
    /// Whether it is embedded in the binary or comes from the plugins folder.
    pub source: PluginSource,
    /// The manifest's name (the folder's name when the manifest cannot be read).
    pub name: String,
    /// The role its manifest declares.
    pub role: Option<PluginRole>,
    /// Its version, from its manifest.
    pub version: Option<String>,
    /// The `bmad:policy` version its manifest declares.
    pub wit: Option<String>,
    /// What it does, from its manifest.
    pub description: String,
    /// `[capabilities] read` of the manifest.
    pub requested_read: Vec<String>,
    /// `[plugins.NAME] grant_read` of the operator.
    pub granted_read: Vec<String>,
    /// The limits its calls run under.
    pub limits: Option<Limits>,
    /// blake3 of the `.wasm`, hex.
    pub wasm_blake3: Option<String>,
    /// How its component loaded, when it did.
    pub load: Option<LoadInfo>,
    /// The roles the current configuration gives it.
    pub serves: Vec<PluginRole>,
    /// Why it cannot be used, if it cannot.
    pub problem: Option<String>,
}

/// Which plugin serves a role, as `plugins list|check` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RoleInfo {
    /// The role.
    pub role: PluginRole,
    /// The plugin name the configuration asks for.
    pub wanted: String,
    /// Whether `[roles]` / `--policy` chose it (rather than the default, the role's name).
    pub configured: bool,
    /// Why the role cannot be served, if it cannot.
    pub problem: Option<String>,
}

/// What identifies the plugins of a run (for the journal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginFingerprint {
    /// The role the plugin serves.
    pub role: PluginRole,
    /// The plugin's name.
    pub name: String,
    /// Its version, from its manifest.
    pub version: String,
    /// The `bmad:policy` version it was built for.
    pub wit: String,
    /// blake3 of the `.wasm`, hex.
    pub wasm_blake3: String,
}

/// How the journal records the plugin serving a role.
impl From<PluginFingerprint> for crate::journal::PluginFingerprint {
    fn from(p: PluginFingerprint) -> Self {
        crate::journal::PluginFingerprint {
            name: p.name,
            version: p.version,
            role: p.role.as_str().to_string(),
            wasm_hash: p.wasm_blake3,
        }
    }
}

enum Pre {
    Status(StatusParserPre<State>),
    Policy(AgentPolicyPre<State>),
    /// An agent policy built for `bmad:policy@0.1.0`.
    PolicyV0_1(v0_1::agent::AgentPolicyPre<State>),
    Scheduler(SchedulerPre<State>),
}

/// A loaded plugin: its manifest, its compiled and type-checked component, its access.
struct Plugin {
    manifest: Manifest,
    name: Arc<str>,
    wasm_hash: blake3::Hash,
    limits: Limits,
    /// The host's limits, for error messages.
    host_limits: Limits,
    access: Arc<ReadAccess>,
    pre: Pre,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("role", &self.manifest.role)
            .finish_non_exhaustive()
    }
}

/// The plugins of a plugin directory, with one chosen for each role.
#[derive(Debug)]
pub struct PluginSet {
    plugins: Vec<Arc<Plugin>>,
    /// Index into `plugins` of each role, in [`PluginRole::ALL`] order.
    roles: [usize; 4],
    /// Index into `plugins` of the scheduler, when one serves the role.
    scheduler: Option<usize>,
    /// The status parser's instance, reused between calls until one fails.
    status: Mutex<Option<StatusInstance>>,
}

struct StatusInstance {
    store: Store<State>,
    bindings: StatusParser,
}

impl std::fmt::Debug for StatusInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusInstance").finish_non_exhaustive()
    }
}

/// The index of a required role in [`PluginSet::roles`]; `None` for the scheduler.
fn role_index(role: PluginRole) -> Option<usize> {
    match role {
        PluginRole::Status => Some(0),
        PluginRole::Sm => Some(1),
        PluginRole::Dev => Some(2),
        PluginRole::Qa => Some(3),
        PluginRole::Scheduler => None,
    }
}

impl PluginSet {
    /// Loads every plugin folder under `dir` (folders whose name starts with `.` are skipped),
    /// and only those, and chooses the plugin of each role. Any broken folder, duplicate name,
    /// unserved role, or bad grant is an error.
    pub fn load(dir: &Path, cfg: &PluginConfig) -> Result<PluginSet, PluginError> {
        PluginSet::load_from(&PluginSources::folder(dir), cfg)
    }

    /// Loads the plugins of `sources` (the folder's, then the embedded ones the folder does not
    /// override by name) and chooses the plugin of each role. Any broken plugin, duplicate name
    /// in the folder, unserved role, or bad grant is an error.
    pub fn load_from(
        sources: &PluginSources,
        cfg: &PluginConfig,
    ) -> Result<PluginSet, PluginError> {
        let rt = engine::runtime()?;
        let cache = ComponentCache::new(cache_root(cfg).as_deref(), &rt.engine);
        let mut folder: Vec<(Plugin, PathBuf)> = Vec::new();
        if let Some(dir) = &sources.folder {
            for path in plugin_folders(dir)? {
                let mut info = PluginInfo::empty(&path, PluginSource::Folder);
                let plugin =
                    load_candidate(rt, &cache, &Candidate::Folder(path.clone()), cfg, &mut info)?;
                if let Some((_, first)) = folder.iter().find(|(p, _)| p.name == plugin.name) {
                    return Err(PluginError::DuplicateName {
                        name: plugin.name.to_string(),
                        first: first.clone(),
                        second: path,
                    });
                }
                folder.push((plugin, path));
            }
        }
        let taken: Vec<&str> = folder.iter().map(|(p, _)| &*p.name).collect();
        let mut plugins: Vec<(Arc<Plugin>, PluginSource)> = Vec::new();
        for candidate in sources.embedded_candidates(&taken) {
            let mut info = PluginInfo::empty(&candidate.location(), PluginSource::Embedded);
            let plugin = load_candidate(rt, &cache, &candidate, cfg, &mut info)?;
            plugins.push((Arc::new(plugin), PluginSource::Embedded));
        }
        plugins.extend(
            folder
                .into_iter()
                .map(|(p, _)| (Arc::new(p), PluginSource::Folder)),
        );
        for name in cfg.grants.keys() {
            if !plugins.iter().any(|(p, _)| &*p.name == name) {
                tracing::warn!(plugin = %name, plugins = %sources.describe(), "bmad-host.toml grants read access to a plugin that is not among the plugins");
            }
        }
        let known: Vec<Known> = plugins
            .iter()
            .map(|(p, source)| Known {
                name: p.name.to_string(),
                role: Some(p.manifest.role),
                source: *source,
            })
            .collect();
        check_role_keys(cfg)?;
        let mut roles = [0usize; 4];
        let mut scheduler = None;
        for info in resolve_roles(cfg, &known, sources) {
            if let Some(problem) = info.problem {
                return Err(PluginError::Role {
                    role: info.role.to_string(),
                    problem,
                });
            }
            let i = known
                .iter()
                .position(|k| k.name == info.wanted)
                .ok_or_else(|| PluginError::Role {
                    role: info.role.to_string(),
                    problem: format!("no plugin named `{}`", info.wanted),
                })?;
            match role_index(info.role) {
                Some(r) => roles[r] = i,
                None => scheduler = Some(i),
            }
        }
        Ok(PluginSet {
            plugins: plugins.into_iter().map(|(p, _)| p).collect(),
            roles,
            scheduler,
            status: Mutex::new(None),
        })
    }

    /// The plugin serving `role` (`None` only for a scheduler no plugin serves).
    fn served(&self, role: PluginRole) -> Option<&Arc<Plugin>> {
        let i = match role_index(role) {
            Some(r) => self.roles[r],
            None => self.scheduler?,
        };
        self.plugins.get(i)
    }

    /// The plugin serving a required role ([`PluginRole::required`]: every set has one).
    fn plugin(&self, role: PluginRole) -> &Arc<Plugin> {
        &self.plugins[self.roles[role_index(role).unwrap_or(0)]]
    }

    /// The name of the plugin serving `role`; empty for the scheduler when no plugin serves it
    /// (see [`PluginSet::scheduler`]).
    pub fn plugin_for(&self, role: PluginRole) -> &str {
        self.served(role).map_or("", |p| &p.name)
    }

    /// The scheduler of a parallel run: the plugin serving the `scheduler` role (the embedded
    /// default, or the one `[roles] scheduler` names). An error when no plugin serves it.
    pub fn scheduler(&self) -> Result<Scheduler, PluginError> {
        let role = PluginRole::Scheduler;
        let Some(plugin) = self.served(role) else {
            return Err(PluginError::Role {
                role: role.to_string(),
                problem: "no plugin plays it: give one with [roles] scheduler = \"NAME\" (a plugin with role = \"scheduler\", wit 0.2.0 or later), or keep the embedded plugins".to_string(),
            });
        };
        match &plugin.pre {
            Pre::Scheduler(_) => Ok(Scheduler {
                plugin: plugin.clone(),
            }),
            _ => Err(PluginError::Role {
                role: role.to_string(),
                problem: format!("plugin `{}` is not a scheduler", plugin.name),
            }),
        }
    }

    /// Parses a story document's status with the status plugin. The instance is reused between
    /// calls until a call fails; a failed one is discarded and the next call gets a new one.
    pub fn parse_status(&self, document: &str) -> Result<ParseOutcome, PluginError> {
        let plugin = self.plugin(PluginRole::Status);
        let Pre::Status(pre) = &plugin.pre else {
            return Err(PluginError::Role {
                role: "status".to_string(),
                problem: format!("plugin `{}` is not a status parser", plugin.name),
            });
        };
        let mut slot = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        let mut instance = match slot.take() {
            Some(instance) => instance,
            None => {
                let mut store = plugin.new_store("parse")?;
                let bindings = pre
                    .instantiate(&mut store)
                    .map_err(|e| plugin.instance_error(&store, "parse", e))?;
                StatusInstance { store, bindings }
            }
        };
        let bindings = &instance.bindings;
        let outcome = plugin.run(
            &mut instance.store,
            "parse",
            |s| bindings.call_parse(s, document),
            parse_size,
        )?;
        *slot = Some(instance);
        Ok(outcome)
    }

    /// A fresh instance of the policy of `role`, for one step of a story. The session owns its
    /// instance (and shares the plugin): it does not borrow the set, and it is `Send`.
    pub fn begin_step(&self, role: Role) -> Result<PolicySession, PluginError> {
        let plugin = self.plugin(PluginRole::of_policy(role));
        let mut store = plugin.new_store("begin")?;
        let bindings = match &plugin.pre {
            Pre::Policy(pre) => pre.instantiate(&mut store).map(Bindings::Current),
            Pre::PolicyV0_1(pre) => pre.instantiate(&mut store).map(Bindings::V0_1),
            Pre::Status(_) | Pre::Scheduler(_) => {
                return Err(PluginError::Role {
                    role: PluginRole::of_policy(role).to_string(),
                    problem: format!("plugin `{}` is not an agent policy", plugin.name),
                });
            }
        }
        .map_err(|e| plugin.instance_error(&store, "begin", e))?;
        Ok(PolicySession {
            plugin: plugin.clone(),
            instance: Some((store, bindings)),
            failure: None,
        })
    }

    /// Name, version, WIT version and wasm hash of the plugin serving each role (the
    /// scheduler's when one serves it).
    pub fn fingerprints(&self) -> Vec<PluginFingerprint> {
        PluginRole::EVERY
            .into_iter()
            .filter_map(|role| Some((role, self.served(role)?)))
            .map(|(role, p)| PluginFingerprint {
                role,
                name: p.name.to_string(),
                version: p.manifest.version.clone(),
                wit: p.manifest.wit.clone(),
                wasm_blake3: p.wasm_hash.to_hex().to_string(),
            })
            .collect()
    }
}

/// One role step's policy instance. Calls run under the plugin's limits; after a failed call
/// the instance is gone and every later call is refused ([`PluginError::Discarded`]).
///
/// It owns its store and shares its plugin, so it borrows nothing and can move between threads.
pub struct PolicySession {
    plugin: Arc<Plugin>,
    instance: Option<(Store<State>, Bindings)>,
    failure: Option<String>,
}

/// An agent policy instance's exports, in the version it was built for.
enum Bindings {
    Current(AgentPolicy),
    /// Built for `bmad:policy@0.1.0`: arguments and answers go through `adapt.rs`.
    V0_1(v0_1::agent::AgentPolicy),
}

impl std::fmt::Debug for PolicySession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySession")
            .field("plugin", &self.plugin.name)
            .field("failure", &self.failure)
            .finish_non_exhaustive()
    }
}

impl PolicySession {
    /// The plugin's name.
    pub fn plugin(&self) -> &str {
        &self.plugin.name
    }

    /// The step starts: what should happen?
    pub fn begin(&mut self, story: &Story, document: &str) -> Result<Decision, PluginError> {
        self.call(
            "begin",
            |b, s| match b {
                Bindings::Current(b) => b.call_begin(s, story, document),
                Bindings::V0_1(b) => b.call_begin(s, &story.into(), document).map(Decision::from),
            },
            decision_size,
        )
    }

    /// A line of the agent's stream arrived: keep going or stop?
    pub fn on_event(
        &mut self,
        story: &Story,
        event: &AgentEvent,
    ) -> Result<Directive, PluginError> {
        self.call(
            "on-event",
            |b, s| match b {
                Bindings::Current(b) => b.call_on_event(s, story, event),
                Bindings::V0_1(b) => b
                    .call_on_event(s, &story.into(), &event.into())
                    .map(Directive::from),
            },
            |_| 0,
        )
    }

    /// The agent call (or the gates) ended: what now?
    pub fn end(&mut self, story: &Story, report: &StepReport) -> Result<Decision, PluginError> {
        self.call(
            "end",
            |b, s| match b {
                Bindings::Current(b) => b.call_end(s, story, report),
                Bindings::V0_1(b) => b
                    .call_end(s, &story.into(), &report.into())
                    .map(Decision::from),
            },
            decision_size,
        )
    }

    fn call<R>(
        &mut self,
        call: &'static str,
        f: impl FnOnce(&Bindings, &mut Store<State>) -> wasmtime::Result<R>,
        size: fn(&R) -> u64,
    ) -> Result<R, PluginError> {
        let Some((store, bindings)) = self.instance.as_mut() else {
            return Err(PluginError::Discarded {
                plugin: self.plugin.name.to_string(),
                call,
                earlier: self.failure.clone().unwrap_or_default(),
            });
        };
        let result = self.plugin.run(store, call, |s| f(bindings, s), size);
        if let Err(e) = &result {
            self.instance = None;
            self.failure = Some(e.to_string());
        }
        result
    }
}

/// The scheduler of a parallel run (the `scheduler` world): which candidate stories start now.
/// Each [`Scheduler::admit`] runs in a fresh instance under the plugin's limits (fuel, memory,
/// stack, output), like a policy's call. It shares its plugin and owns nothing else: clone it
/// into each task that needs it.
#[derive(Clone)]
pub struct Scheduler {
    plugin: Arc<Plugin>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("plugin", &self.plugin.name)
            .finish()
    }
}

impl Scheduler {
    /// The plugin's name.
    pub fn plugin(&self) -> &str {
        &self.plugin.name
    }

    /// The ids of the `candidates` to start now, in the order to start them: at most `slots`
    /// of them, each one a candidate's, none twice (anything else is
    /// [`PluginError::BadAnswer`]). `candidates` in story order; `running` the stories in
    /// flight; `slots` the lanes free now (0 asks nothing and admits nothing). A trap or a
    /// broken limit is the plugin's [`PluginError`], as for a policy's call.
    pub fn admit(
        &self,
        candidates: &[policy::Candidate],
        running: &[Running],
        slots: u32,
    ) -> Result<Vec<String>, PluginError> {
        const CALL: &str = "admit";
        if slots == 0 || candidates.is_empty() {
            return Ok(Vec::new());
        }
        let plugin = &self.plugin;
        let Pre::Scheduler(pre) = &plugin.pre else {
            return Err(PluginError::Role {
                role: PluginRole::Scheduler.to_string(),
                problem: format!("plugin `{}` is not a scheduler", plugin.name),
            });
        };
        let mut store = plugin.new_store(CALL)?;
        let bindings = pre
            .instantiate(&mut store)
            .map_err(|e| plugin.instance_error(&store, CALL, e))?;
        let admitted = plugin.run(
            &mut store,
            CALL,
            |s| bindings.call_admit(s, candidates, running, slots),
            |ids: &Vec<String>| {
                ids.iter()
                    .map(|id| id.len() as u64 + OUTPUT_ITEM_OVERHEAD)
                    .sum()
            },
        )?;
        let bad = |problem: String| PluginError::BadAnswer {
            plugin: plugin.name.to_string(),
            call: CALL,
            problem,
        };
        if admitted.len() > slots as usize {
            return Err(bad(format!(
                "{} stories for {slots} free slots",
                admitted.len()
            )));
        }
        for (i, id) in admitted.iter().enumerate() {
            if !candidates.iter().any(|c| &c.id == id) {
                return Err(bad(format!("`{id}` is not one of the candidates")));
            }
            if admitted[..i].contains(id) {
                return Err(bad(format!("`{id}` is named twice")));
            }
        }
        Ok(admitted)
    }
}

impl Plugin {
    fn new_store(&self, call: &'static str) -> Result<Store<State>, PluginError> {
        let rt = engine::runtime()?;
        let state = State::new(
            self.name.clone(),
            self.access.clone(),
            self.limits.memory_bytes,
        );
        let mut store = Store::new(&rt.engine, state);
        store.limiter(|s| &mut s.limiter);
        store
            .set_fuel(self.limits.fuel)
            .map_err(|e| PluginError::Instance {
                plugin: self.name.to_string(),
                call,
                reason: e.to_string(),
            })?;
        Ok(store)
    }

    /// Runs one call with fresh fuel and budgets, classifies a failure, checks the output size.
    fn run<R>(
        &self,
        store: &mut Store<State>,
        call: &'static str,
        f: impl FnOnce(&mut Store<State>) -> wasmtime::Result<R>,
        size: fn(&R) -> u64,
    ) -> Result<R, PluginError> {
        store
            .set_fuel(self.limits.fuel)
            .map_err(|e| self.classify(store, call, e))?;
        store.data_mut().begin_call();
        let value = f(store).map_err(|e| self.classify(store, call, e))?;
        let size = size(&value);
        if size > self.limits.max_output_bytes {
            return Err(PluginError::OutputTooLarge {
                plugin: self.name.to_string(),
                call,
                size,
                limit: self.limits.max_output_bytes,
                host_limit_kib: self.host_limits.max_output_bytes >> 10,
            });
        }
        Ok(value)
    }

    fn instance_error(
        &self,
        store: &Store<State>,
        call: &'static str,
        e: wasmtime::Error,
    ) -> PluginError {
        match self.classify(store, call, e) {
            PluginError::Trap {
                plugin,
                call,
                message,
            } => PluginError::Instance {
                plugin,
                call,
                reason: message,
            },
            other => other,
        }
    }

    /// Names the limit a failed call broke.
    fn classify(
        &self,
        store: &Store<State>,
        call: &'static str,
        e: wasmtime::Error,
    ) -> PluginError {
        let plugin = self.name.to_string();
        if let Some(wanted) = store.data().limiter.exceeded {
            return PluginError::MemoryLimit {
                plugin,
                call,
                limit_mb: self.limits.memory_mb(),
                wanted_mb: (wanted as u64).div_ceil(1 << 20),
                host_limit_mb: self.host_limits.memory_mb(),
            };
        }
        let stderr = store.data().stderr_text();
        let with_stderr = |message: String| {
            if stderr.is_empty() {
                message
            } else {
                format!("{message}; the plugin's stderr: {stderr}")
            }
        };
        if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
            return match trap {
                wasmtime::Trap::OutOfFuel => PluginError::OutOfFuel {
                    plugin,
                    call,
                    limit: self.limits.fuel,
                    host_limit: self.host_limits.fuel,
                },
                wasmtime::Trap::StackOverflow => PluginError::StackOverflow {
                    plugin,
                    call,
                    limit_kib: MAX_WASM_STACK >> 10,
                },
                wasmtime::Trap::MemoryOutOfBounds => PluginError::Trap {
                    plugin,
                    call,
                    message: with_stderr(format!(
                        "{trap} (a stack overflow in the guest's own stack, from runaway recursion, looks like this too)"
                    )),
                },
                other => PluginError::Trap {
                    plugin,
                    call,
                    message: with_stderr(other.to_string()),
                },
            };
        }
        if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            return PluginError::Trap {
                plugin,
                call,
                message: with_stderr(format!("the plugin called exit({})", exit.0)),
            };
        }
        // The outer context of a host function's error is only the wasm backtrace.
        PluginError::Trap {
            plugin,
            call,
            message: with_stderr(e.root_cause().to_string()),
        }
    }
}

/// Bytes a decision carries (strings plus a per-item overhead).
fn decision_size(d: &Decision) -> u64 {
    let s = |s: &str| s.len() as u64 + OUTPUT_ITEM_OVERHEAD;
    match d {
        Decision::InvokeAgent(r) => {
            s(&r.prompt)
                + r.allowed_tools.iter().map(|t| s(t)).sum::<u64>()
                + r.model.as_deref().map_or(0, s)
                + r.append_system_prompt.as_deref().map_or(0, s)
        }
        Decision::SendBack(findings) => findings.iter().map(|f| s(f)).sum(),
        Decision::Fail(reason) | Decision::Escalate(reason) => s(reason),
        Decision::RunGates | Decision::SetState(_) | Decision::Complete => 0,
    }
}

/// Bytes a parse outcome carries.
fn parse_size(p: &ParseOutcome) -> u64 {
    let v = |v: &StatusValue| v.raw.len() as u64 + OUTPUT_ITEM_OVERHEAD;
    match p {
        ParseOutcome::Found(value) | ParseOutcome::Doubtful(value) => v(value),
        ParseOutcome::Conflict(values) => values.iter().map(v).sum(),
        ParseOutcome::Missing(_) => 0,
    }
}

fn cache_root(cfg: &PluginConfig) -> Option<PathBuf> {
    cfg.cache_dir.clone().or_else(default_cache_dir)
}

/// The plugin folders of `dir`, sorted; hidden folders and plain files are skipped.
fn plugin_folders(dir: &Path) -> Result<Vec<PathBuf>, PluginError> {
    let bad = |reason: String| PluginError::Directory {
        dir: dir.to_path_buf(),
        reason,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| bad(e.to_string()))?;
    let mut folders = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| bad(e.to_string()))?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && entry.path().is_dir() {
            folders.push(entry.path());
        }
    }
    folders.sort();
    if folders.is_empty() {
        return Err(bad("no plugin folders in it (each plugin is a folder with a plugin.toml and its component)".to_string()));
    }
    Ok(folders)
}

impl PluginInfo {
    fn empty(dir: &Path, source: PluginSource) -> PluginInfo {
        PluginInfo {
            dir: dir.to_path_buf(),
            source,
            name: dir.file_name().map_or_else(
                || dir.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            role: None,
            version: None,
            wit: None,
            description: String::new(),
            requested_read: Vec::new(),
            granted_read: Vec::new(),
            limits: None,
            wasm_blake3: None,
            load: None,
            serves: Vec::new(),
            problem: None,
        }
    }
}

/// Loads one plugin (a folder or an embedded one, the same way), recording what it learns in
/// `info` as it goes.
fn load_candidate(
    rt: &Runtime,
    cache: &ComponentCache,
    candidate: &Candidate,
    cfg: &PluginConfig,
    info: &mut PluginInfo,
) -> Result<Plugin, PluginError> {
    let dir = &candidate.location();
    let manifest = candidate.manifest(&cfg.limits)?;
    let name: Arc<str> = manifest.name.as_str().into();
    let limits = manifest.limits(&cfg.limits);
    let granted = cfg.grants.get(&manifest.name).cloned().unwrap_or_default();
    info.name = manifest.name.clone();
    info.role = Some(manifest.role);
    info.version = Some(manifest.version.clone());
    info.wit = Some(manifest.wit.clone());
    info.description = manifest.description.clone();
    info.requested_read = manifest.capabilities.read.clone();
    info.granted_read = granted.clone();
    info.limits = Some(limits);

    let started = Instant::now();
    let (path, wasm) = candidate.component(&manifest);
    let component_error = |reason: String| PluginError::Component {
        plugin: name.to_string(),
        path: path.clone(),
        reason,
    };
    let wasm = wasm.map_err(|e| component_error(e.to_string()))?;
    let wasm_hash = blake3::hash(&wasm);
    info.wasm_blake3 = Some(wasm_hash.to_hex().to_string());
    let (component, kind) = cache
        .load(&rt.engine, &wasm, &wasm_hash)
        .map_err(|e| component_error(format!("not a valid WebAssembly component: {e:#}")))?;
    info.load = Some(LoadInfo {
        kind,
        micros: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
    });

    let versions = engine::policy_versions(&rt.engine, &component);
    if versions.is_empty() {
        return Err(component_error(
            "it does not use the bmad:policy package at all: is it a bmad-host policy component?"
                .to_string(),
        ));
    }
    for found in &versions {
        if !SUPPORTED_WIT.contains(&found.as_str()) {
            return Err(PluginError::WitVersion {
                plugin: name.to_string(),
                dir: dir.to_path_buf(),
                what: "its component is built for",
                found: if found.is_empty() {
                    "(no version)".to_string()
                } else {
                    found.clone()
                },
                supported: supported_wit(),
            });
        }
        if *found != manifest.wit {
            return Err(PluginError::Manifest {
                dir: dir.to_path_buf(),
                problem: format!(
                    "plugin.toml says wit = \"{}\" but the component is built for bmad:policy@{found}",
                    manifest.wit
                ),
            });
        }
    }
    let missing = engine::missing_exports(&rt.engine, &component, manifest.role);
    if !missing.is_empty() {
        return Err(component_error(format!(
            "it does not export {}: role = \"{}\" in plugin.toml needs the `{}` world",
            missing
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", "),
            manifest.role,
            manifest.role.world()
        )));
    }
    let instance_pre = rt.linker.instantiate_pre(&component).map_err(|e| {
        component_error(format!(
            "{e:#}; plugins may import only bmad:policy/host and the sandbox's WASI (clocks, random, cli, io)"
        ))
    })?;
    let world_error = |e: wasmtime::Error| {
        component_error(format!(
            "its exports do not match the `{}` world: {e:#}",
            manifest.role.world()
        ))
    };
    // The version the component was built for: the one every `bmad:policy` name it uses
    // carries (checked above to be the manifest's too).
    let built_for = versions
        .first()
        .map_or(manifest.wit.as_str(), String::as_str);
    let pre = match manifest.role {
        PluginRole::Status => Pre::Status(StatusParserPre::new(instance_pre).map_err(world_error)?),
        PluginRole::Sm | PluginRole::Dev | PluginRole::Qa if built_for == "0.1.0" => {
            Pre::PolicyV0_1(v0_1::agent::AgentPolicyPre::new(instance_pre).map_err(world_error)?)
        }
        PluginRole::Sm | PluginRole::Dev | PluginRole::Qa => {
            Pre::Policy(AgentPolicyPre::new(instance_pre).map_err(world_error)?)
        }
        PluginRole::Scheduler => {
            Pre::Scheduler(SchedulerPre::new(instance_pre).map_err(world_error)?)
        }
    };
    let access = ReadAccess::new(
        &manifest.name,
        &cfg.project_root,
        &manifest.capabilities.read,
        &granted,
    )
    .map_err(|problem| PluginError::Grant {
        plugin: name.to_string(),
        problem,
    })?;
    Ok(Plugin {
        manifest,
        name,
        wasm_hash,
        limits,
        host_limits: cfg.limits,
        access: Arc::new(access),
        pre,
    })
}

fn check_role_keys(cfg: &PluginConfig) -> Result<(), PluginError> {
    for role in cfg.roles.keys() {
        if PluginRole::from_name(role).is_none() {
            return Err(PluginError::Role {
                role: role.clone(),
                problem:
                    "unknown role in [roles] / --policy (the roles are status, sm, dev, qa, scheduler)"
                        .to_string(),
            });
        }
    }
    Ok(())
}

/// Which plugin serves each role, given the plugins found (name, role when usable, layer).
///
/// The optional scheduler role is left out when the configuration does not name its plugin and
/// no plugin plays it or bears its name.
fn resolve_roles(cfg: &PluginConfig, plugins: &[Known], sources: &PluginSources) -> Vec<RoleInfo> {
    PluginRole::EVERY
        .into_iter()
        .filter(|role| {
            role.required()
                || cfg.roles.contains_key(role.as_str())
                || plugins
                    .iter()
                    .any(|k| k.role == Some(*role) || k.name == role.as_str())
        })
        .map(|role| {
            let configured = cfg.roles.get(role.as_str());
            let wanted = configured
                .cloned()
                .unwrap_or_else(|| source::default_for_role(role, plugins));
            let problem = match plugins.iter().find(|k| k.name == wanted).map(|k| (&k.name, k.role)) {
                None => {
                    let available: Vec<&str> = plugins.iter().map(|k| k.name.as_str()).collect();
                    let how = if configured.is_some() {
                        "[roles] / --policy chose it".to_string()
                    } else {
                        format!("choose another with [roles] {role} = \"NAME\" in bmad-host.toml or --policy {role}=NAME")
                    };
                    Some(format!(
                        "no plugin named `{wanted}` in {} ({how}; plugins found: {})",
                        sources.describe(),
                        if available.is_empty() { "none".to_string() } else { available.join(", ") }
                    ))
                }
                Some((_, Some(its))) if its != role => {
                    Some(format!("plugin `{wanted}` plays role `{its}` (its plugin.toml), not `{role}`"))
                }
                Some((_, None)) => Some(format!("plugin `{wanted}` cannot be loaded")),
                Some(_) => None,
            };
            RoleInfo { role, wanted, configured: configured.is_some(), problem }
        })
        .collect()
}

/// Reports on every plugin folder of `dir` without stopping at the first problem: for
/// `bmad-host plugins list|check`. Each entry's `problem` says why the plugin cannot be used;
/// [`inspect_roles`] says which plugin serves each role.
pub fn inspect(dir: &Path, cfg: &PluginConfig) -> Vec<PluginInfo> {
    inspect_from(&PluginSources::folder(dir), cfg)
}

/// Reports on every plugin of `sources` (the embedded ones the folder does not override, then
/// the folder's) without stopping at the first problem.
pub fn inspect_from(sources: &PluginSources, cfg: &PluginConfig) -> Vec<PluginInfo> {
    let location = sources
        .folder
        .clone()
        .unwrap_or_else(|| PathBuf::from("(embedded)"));
    let rt = match engine::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            let mut info = PluginInfo::empty(&location, PluginSource::Embedded);
            info.problem = Some(e.to_string());
            return vec![info];
        }
    };
    let cache = ComponentCache::new(cache_root(cfg).as_deref(), &rt.engine);
    let mut folder: Vec<PluginInfo> = Vec::new();
    if let Some(dir) = &sources.folder {
        match plugin_folders(dir) {
            Ok(paths) => {
                for path in paths {
                    let candidate = Candidate::Folder(path);
                    folder.push(inspect_one(rt, &cache, &candidate, cfg, &folder));
                }
            }
            Err(e) => {
                let mut info = PluginInfo::empty(dir, PluginSource::Folder);
                info.problem = Some(e.to_string());
                return vec![info];
            }
        }
    }
    let taken: Vec<&str> = folder.iter().map(|i| i.name.as_str()).collect();
    let mut infos: Vec<PluginInfo> = Vec::new();
    for candidate in sources.embedded_candidates(&taken) {
        let info = inspect_one(rt, &cache, &candidate, cfg, &infos);
        infos.push(info);
    }
    infos.extend(folder);
    let roles = inspect_roles_from(sources, &infos, cfg);
    for role in roles.iter().filter(|r| r.problem.is_none()) {
        if let Some(info) = infos
            .iter_mut()
            .find(|i| i.problem.is_none() && i.name == role.wanted)
        {
            info.serves.push(role.role);
        }
    }
    infos
}

/// Loads and instantiates one plugin for `inspect`, noting a name already used in `earlier`.
fn inspect_one(
    rt: &Runtime,
    cache: &ComponentCache,
    candidate: &Candidate,
    cfg: &PluginConfig,
    earlier: &[PluginInfo],
) -> PluginInfo {
    let mut info = PluginInfo::empty(&candidate.location(), candidate.source());
    match load_candidate(rt, cache, candidate, cfg, &mut info) {
        Ok(plugin) => {
            // Instantiate once, so that `check` also catches a component that fails to start.
            let started = plugin.new_store("instantiate").and_then(|mut store| {
                let result = match &plugin.pre {
                    Pre::Status(pre) => pre.instantiate(&mut store).map(|_| ()),
                    Pre::Policy(pre) => pre.instantiate(&mut store).map(|_| ()),
                    Pre::PolicyV0_1(pre) => pre.instantiate(&mut store).map(|_| ()),
                    Pre::Scheduler(pre) => pre.instantiate(&mut store).map(|_| ()),
                };
                result.map_err(|e| plugin.instance_error(&store, "instantiate", e))
            });
            if let Err(e) = started {
                info.problem = Some(e.to_string());
            }
        }
        Err(e) => info.problem = Some(e.to_string()),
    }
    if info.problem.is_none()
        && let Some(first) = earlier
            .iter()
            .find(|i| i.problem.is_none() && i.name == info.name)
    {
        info.problem = Some(
            PluginError::DuplicateName {
                name: info.name.clone(),
                first: first.dir.clone(),
                second: info.dir.clone(),
            }
            .to_string(),
        );
    }
    info
}

/// Which plugin serves each role given `inspect`'s results, and what is wrong if none can.
pub fn inspect_roles(dir: &Path, infos: &[PluginInfo], cfg: &PluginConfig) -> Vec<RoleInfo> {
    inspect_roles_from(&PluginSources::folder(dir), infos, cfg)
}

/// Which plugin serves each role given `inspect_from`'s results for `sources`.
pub fn inspect_roles_from(
    sources: &PluginSources,
    infos: &[PluginInfo],
    cfg: &PluginConfig,
) -> Vec<RoleInfo> {
    let known: Vec<Known> = infos
        .iter()
        .map(|i| Known {
            name: i.name.clone(),
            role: if i.problem.is_none() { i.role } else { None },
            source: i.source,
        })
        .collect();
    let mut roles = resolve_roles(cfg, &known, sources);
    // An unknown role name in the configuration is reported on the first role's line.
    if let Err(e) = check_role_keys(cfg)
        && let Some(first) = roles.first_mut()
    {
        first.problem.get_or_insert_with(|| e.to_string());
    }
    roles
}
