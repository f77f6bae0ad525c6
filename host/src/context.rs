//! The arguments resolved once, before any command does its work.
//!
//! [`crate::cli`] holds what the user typed; [`crate::commands`] turns it into a [`Context`]
//! (the canonical project root, the layered configuration, where output goes and the plugins
//! folder) that every command uses, and `run` goes one step further into a [`Plan`]: the
//! discovered project, the selected stories in numeric order and the loaded plugins. Nothing
//! from here down sees a clap type, and each resolution step fails with the error that names
//! what to fix, in the same order for every command.

use std::path::{Path, PathBuf};

use crate::config::{Config, Layers, Overrides};
use crate::error::Error;
use crate::plugins::{PluginConfig, PluginSet, PluginSources};
use crate::project::{Project, StoryEntry, StoryId};
use crate::ui::Verbosity;

/// The common flags, as the library needs them.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--project DIR` as given.
    pub project: PathBuf,
    /// `--plugins DIR` (or `BMAD_HOST_PLUGINS`).
    pub plugins: Option<PathBuf>,
    /// `--json`: machine-readable output on stdout.
    pub json: bool,
    /// `-q` / `-v`.
    pub verbosity: Verbosity,
    /// `--trust` / `BMAD_HOST_TRUST=1`: the project's `bmad-host.toml` is trusted for this
    /// command, whatever the user's trust store says.
    pub trust: bool,
}

/// What every command works from: where the project is, its configuration, where output goes.
#[derive(Debug, Clone)]
pub struct Context {
    /// The project root, canonical.
    pub root: PathBuf,
    /// The effective configuration (defaults < user file < project file < environment <
    /// flags), the project file's restricted settings only when trusted.
    pub config: Config,
    /// The folder of plugin folders, when one was given (its plugins replace the embedded ones
    /// of the same name).
    pub plugins_dir: Option<PathBuf>,
    /// NDJSON (or JSON) on stdout.
    pub json: bool,
    /// How much people see on stderr.
    pub verbosity: Verbosity,
}

impl Context {
    /// Resolves the project root (it must exist) and loads the configuration with `overrides`
    /// on top, reading `BMAD_HOST_*` from the process environment.
    pub fn resolve(options: Options, overrides: &Overrides) -> Result<Context, Error> {
        let root = project_root(&options.project)?;
        Self::with_root(root, options, overrides)
    }

    /// [`Context::resolve`] for commands that work without a project (`plugins`): a root that
    /// cannot be opened is kept as given.
    pub fn resolve_lenient(options: Options, overrides: &Overrides) -> Result<Context, Error> {
        let root = project_root(&options.project).unwrap_or_else(|_| options.project.clone());
        Self::with_root(root, options, overrides)
    }

    fn with_root(root: PathBuf, options: Options, overrides: &Overrides) -> Result<Context, Error> {
        let user_file = crate::trust::user_file();
        let store = crate::trust::TrustStore::user();
        let trusted = |path: &Path, text: &str| {
            options.trust || store.as_ref().is_some_and(|s| s.is_trusted(path, text))
        };
        let config = Config::load_layers(&Layers {
            user_file: user_file.as_deref(),
            root: &root,
            env: &|k| std::env::var(k).ok(),
            overrides,
            trusted: &trusted,
        })?;
        Ok(Context {
            root,
            config,
            plugins_dir: options.plugins,
            json: options.json,
            verbosity: options.verbosity,
        })
    }

    /// Warns (on stderr) when the project's file has settings that need trust and is not
    /// trusted: they are not in force. For the commands that run nothing (`status`, `config`,
    /// `plugins`); `run` refuses instead ([`Config::require_trust`]).
    pub fn warn_untrusted(&self) {
        if let (Some(path), true) = (&self.config.file, self.config.trust.blocked()) {
            let keys: Vec<&str> = self
                .config
                .trust
                .restricted
                .iter()
                .map(|r| r.key.as_str())
                .collect();
            tracing::warn!(
                "{} is not trusted: {} not in force (`bmad-host trust --project {}` trusts it)",
                path.display(),
                keys.join(", "),
                self.root.display()
            );
        }
    }

    /// What the plugin host needs from the configuration.
    pub fn plugin_config(&self) -> PluginConfig {
        PluginConfig {
            roles: self
                .config
                .roles
                .iter()
                .map(|(k, v)| (k.clone(), v.value.clone()))
                .collect(),
            grants: self
                .config
                .plugins
                .iter()
                .map(|(k, v)| (k.clone(), v.grant_read.clone()))
                .collect(),
            project_root: self.root.clone(),
            ..PluginConfig::default()
        }
    }

    /// The plugins to load: the embedded ones, and those of `--plugins DIR` over them.
    pub fn plugin_sources(&self) -> PluginSources {
        PluginSources::embedded_and(self.plugins_dir.as_deref())
    }

    /// Finds the BMAD project at the root.
    pub fn project(&self) -> Result<Project, Error> {
        Ok(Project::discover(&self.root)?)
    }
}

/// Everything `run` (and `run --dry-run`) works on, resolved before the first story.
#[derive(Debug)]
pub struct Plan {
    /// The resolved common arguments; `config.claude.bin` is absolute when given with a folder.
    pub context: Context,
    /// The discovered project.
    pub project: Project,
    /// The selected stories, in numeric order; never empty.
    pub stories: Vec<StoryEntry>,
    /// The loaded plugins, one per role (embedded, or from `--plugins DIR`).
    pub plugins: PluginSet,
}

impl Plan {
    /// Discovers the project, selects the stories (`--epic`, `--story`) and loads the plugins.
    pub fn resolve(
        mut context: Context,
        epic: Option<u32>,
        story: Option<&str>,
    ) -> Result<Plan, Error> {
        resolve_bin(&mut context.config.claude.bin.value);
        let project = context.project()?;
        // A v6 installation with no flow bmad-host can run stops here, before anything runs.
        project.flow()?;
        let stories = select(&project, epic, story)?;
        let plugins = PluginSet::load_from(&context.plugin_sources(), &context.plugin_config())?;
        Ok(Plan {
            context,
            project,
            stories,
            plugins,
        })
    }
}

/// The stories `--epic` and `--story` select, in numeric order. A selection that matches
/// nothing is a usage error naming what exists.
pub fn select(
    project: &Project,
    epic: Option<u32>,
    story: Option<&str>,
) -> Result<Vec<StoryEntry>, Error> {
    let id = story
        .map(|s| {
            s.parse::<StoryId>()
                .map_err(|e| Error::Usage(format!("--story {s}: {e}")))
        })
        .transpose()?;
    let chosen: Vec<StoryEntry> = project.select(epic, id)?.into_iter().cloned().collect();
    if chosen.is_empty() {
        return Err(Error::Usage(format!(
            "{}: no stories found in the plan or the story folder",
            project.describe()
        )));
    }
    Ok(chosen)
}

/// The project root, canonical; it must exist.
pub fn project_root(dir: &Path) -> Result<PathBuf, Error> {
    std::fs::canonicalize(dir).map_err(|source| Error::ProjectDir {
        dir: dir.to_path_buf(),
        source,
    })
}

/// A relative CLI path with a directory part (`target/debug/fake-claude`) means relative to
/// where bmad-host was started, not to the project root the agent runs in; a bare name is
/// looked up on PATH.
fn resolve_bin(bin: &mut PathBuf) {
    if bin.is_relative()
        && bin.components().count() > 1
        && let Ok(cwd) = std::env::current_dir()
    {
        *bin = cwd.join(&*bin);
    }
}
