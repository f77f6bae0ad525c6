//! Where plugins come from: the default ones embedded in the binary, and a plugins folder
//! (`--plugins DIR`, `BMAD_HOST_PLUGINS`) that adds to them and overrides them.
//!
//! The two are layers. A folder's plugin replaces the embedded plugin of the same name; a role
//! that the configuration does not assign goes to the top layer that can serve it (see
//! [`default_for_role`]). Both kinds of plugin are loaded the same way, from a [`Candidate`].

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::embedded::{EMBEDDED, EmbeddedPlugin};
use super::error::PluginError;
use super::limits::Limits;
use super::manifest::{Manifest, PluginRole};

/// Where one plugin comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginSource {
    /// Compiled into the binary.
    Embedded,
    /// A folder of the plugins folder.
    Folder,
}

impl PluginSource {
    /// `embedded` or `folder`.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginSource::Embedded => "embedded",
            PluginSource::Folder => "folder",
        }
    }
}

/// The plugins a command uses: the embedded ones, a plugins folder, or the folder over the
/// embedded ones (what the commands do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSources {
    /// Whether the embedded plugins are included (below the folder's).
    pub embedded: bool,
    /// A folder of plugin folders.
    pub folder: Option<PathBuf>,
}

impl PluginSources {
    /// Only the plugins of `dir`.
    pub fn folder(dir: &Path) -> PluginSources {
        PluginSources {
            embedded: false,
            folder: Some(dir.to_path_buf()),
        }
    }

    /// The embedded plugins, with `folder`'s (if any) added and overriding them: what
    /// `bmad-host` uses, `folder` being `--plugins DIR`.
    pub fn embedded_and(folder: Option<&Path>) -> PluginSources {
        PluginSources {
            embedded: true,
            folder: folder.map(Path::to_path_buf),
        }
    }

    /// Where the plugins were looked for, for messages.
    pub fn describe(&self) -> String {
        match (&self.folder, self.embedded) {
            (Some(dir), false) => dir.display().to_string(),
            (Some(dir), true) => format!("{} or the embedded plugins", dir.display()),
            (None, true) => "the embedded plugins".to_string(),
            (None, false) => "no plugin source".to_string(),
        }
    }

    /// The embedded plugins whose names `taken` (the folder's plugins) does not override.
    pub(super) fn embedded_candidates(&self, taken: &[&str]) -> Vec<Candidate> {
        if !self.embedded {
            return Vec::new();
        }
        EMBEDDED
            .iter()
            .filter(|p| !taken.contains(&p.name))
            .map(Candidate::Embedded)
            .collect()
    }
}

/// One plugin to load: a folder with a `plugin.toml` and a component, or an embedded plugin.
#[derive(Debug, Clone)]
pub(super) enum Candidate {
    Folder(PathBuf),
    Embedded(&'static EmbeddedPlugin),
}

impl Candidate {
    /// The folder, or the embedded plugin's pseudo-folder, for messages.
    pub(super) fn location(&self) -> PathBuf {
        match self {
            Candidate::Folder(dir) => dir.clone(),
            Candidate::Embedded(p) => p.location(),
        }
    }

    pub(super) fn source(&self) -> PluginSource {
        match self {
            Candidate::Folder(_) => PluginSource::Folder,
            Candidate::Embedded(_) => PluginSource::Embedded,
        }
    }

    /// Reads, parses and validates the manifest (the same checks for both kinds).
    pub(super) fn manifest(&self, host: &Limits) -> Result<Manifest, PluginError> {
        match self {
            Candidate::Folder(dir) => Manifest::load(dir, host),
            Candidate::Embedded(p) => {
                Manifest::parse_with(p.manifest, &p.location(), host, &|file| file == p.component)
            }
        }
    }

    /// The component's path (for messages) and its bytes.
    pub(super) fn component(
        &self,
        manifest: &Manifest,
    ) -> (PathBuf, std::io::Result<Cow<'static, [u8]>>) {
        match self {
            Candidate::Folder(dir) => {
                let path = manifest.component_path(dir);
                let bytes = std::fs::read(&path).map(Cow::Owned);
                (path, bytes)
            }
            Candidate::Embedded(p) => (
                manifest.component_path(&p.location()),
                Ok(Cow::Borrowed(p.wasm)),
            ),
        }
    }
}

/// A plugin as role resolution sees it: its name, its role when it is usable, its layer.
#[derive(Debug, Clone)]
pub(super) struct Known {
    pub name: String,
    pub role: Option<PluginRole>,
    pub source: PluginSource,
}

/// The plugin serving `role` when the configuration does not name one. From the top layer (the
/// folder) down: the plugin named like the role, else the layer's only usable plugin playing
/// the role; else the next layer. When no layer has either, the role's name (which then names
/// no plugin, and the caller reports it).
pub(super) fn default_for_role(role: PluginRole, plugins: &[Known]) -> String {
    for layer in [PluginSource::Folder, PluginSource::Embedded] {
        let in_layer = || plugins.iter().filter(move |p| p.source == layer);
        if in_layer().any(|p| p.name == role.as_str()) {
            return role.as_str().to_string();
        }
        let mut players = in_layer().filter(|p| p.role == Some(role));
        if let (Some(only), None) = (players.next(), players.next()) {
            return only.name.clone();
        }
    }
    role.as_str().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(name: &str, role: PluginRole, source: PluginSource) -> Known {
        Known {
            name: name.to_string(),
            role: Some(role),
            source,
        }
    }

    #[test]
    fn a_role_goes_to_the_top_layer_that_can_serve_it() {
        use PluginRole::*;
        use PluginSource::*;
        let base = vec![
            known("qa", Qa, Embedded),
            known("qa-strict", Qa, Embedded),
            known("dev", Dev, Embedded),
        ];
        assert_eq!(default_for_role(Qa, &base), "qa");
        // The folder's only QA plugin takes the role from the embedded `qa`.
        let mut over = base.clone();
        over.push(known("review", Qa, Folder));
        assert_eq!(default_for_role(Qa, &over), "review");
        assert_eq!(default_for_role(Dev, &over), "dev");
        // Two QA plugins in the folder and none named `qa`: the layer has no default.
        over.push(known("review-2", Qa, Folder));
        assert_eq!(default_for_role(Qa, &over), "qa");
        // The folder's plugin named like the role wins over the folder's others.
        over.push(known("qa", Qa, Folder));
        assert_eq!(default_for_role(Qa, &over), "qa");
        // An unusable plugin plays no role; nothing serves `sm`.
        let broken = vec![Known {
            name: "mine".to_string(),
            role: None,
            source: Folder,
        }];
        assert_eq!(default_for_role(Sm, &broken), "sm");
    }

    #[test]
    fn sources_describe_themselves() {
        let dir = Path::new("/p");
        assert_eq!(PluginSources::folder(dir).describe(), "/p");
        assert_eq!(
            PluginSources::embedded_and(Some(dir)).describe(),
            "/p or the embedded plugins"
        );
        assert_eq!(
            PluginSources::embedded_and(None).describe(),
            "the embedded plugins"
        );
        let taken = ["qa", "sm"];
        let names: Vec<PathBuf> = PluginSources::embedded_and(None)
            .embedded_candidates(&taken)
            .iter()
            .map(Candidate::location)
            .collect();
        assert_eq!(
            names,
            ["dev", "qa-strict", "scheduler", "status"]
                .map(|n| PathBuf::from(format!("(embedded)/{n}")))
        );
        assert!(
            PluginSources::folder(dir)
                .embedded_candidates(&[])
                .is_empty()
        );
    }
}
