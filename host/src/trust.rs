//! The operator's own directory and what they trust.
//!
//! The user's configuration lives in `$XDG_CONFIG_HOME/bmad-host/` (else `~/.config/bmad-host/`;
//! found with `etcetera`): `config.toml` is a configuration layer below every project's
//! `bmad-host.toml`, and `trusted/` holds one file per project file the operator trusted, named
//! by the blake3 of the file's canonical path and its exact content (as `direnv allow` does), so
//! an edit, or the same content at another path, is not trusted until `bmad-host trust` is run
//! again. This module imports nothing of the crate.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use etcetera::BaseStrategy as _;

/// The user's configuration file's name, in [`user_dir`].
pub const USER_FILE_NAME: &str = "config.toml";

/// `$XDG_CONFIG_HOME/bmad-host` (else `~/.config/bmad-host`); `None` when no home is known.
pub fn user_dir() -> Option<PathBuf> {
    etcetera::choose_base_strategy()
        .ok()
        .map(|s| s.config_dir().join("bmad-host"))
}

/// The user's configuration file, `<user_dir>/config.toml` (it may not exist).
pub fn user_file() -> Option<PathBuf> {
    user_dir().map(|d| d.join(USER_FILE_NAME))
}

/// Errors recording trust.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// No configuration directory: neither `XDG_CONFIG_HOME` nor `HOME` is set.
    #[error("no user configuration directory: set HOME or XDG_CONFIG_HOME")]
    NoUserDir,
    /// The trust entry cannot be written.
    #[error("cannot record the trust in {}", path.display())]
    Write {
        /// The entry's path.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
}

/// The project files the operator trusts: `<user_dir>/trusted/<key>`.
#[derive(Debug, Clone)]
pub struct TrustStore {
    dir: PathBuf,
}

impl TrustStore {
    /// The store in the user's configuration directory, if there is one.
    pub fn user() -> Option<TrustStore> {
        user_dir().map(|d| TrustStore::in_dir(&d))
    }

    /// The store under `dir` (`dir/trusted/`).
    pub fn in_dir(dir: &Path) -> TrustStore {
        TrustStore {
            dir: dir.join("trusted"),
        }
    }

    /// The entry that says `path` with exactly `text` is trusted.
    pub fn entry(&self, path: &Path, text: &str) -> PathBuf {
        self.dir.join(key(path, text))
    }

    /// True when the operator trusted `path` with exactly this `text`.
    pub fn is_trusted(&self, path: &Path, text: &str) -> bool {
        self.entry(path, text).is_file()
    }

    /// Records that `path` with exactly this `text` is trusted; returns the entry written.
    pub fn trust(&self, path: &Path, text: &str) -> Result<PathBuf, TrustError> {
        let entry = self.entry(path, text);
        let write = || -> std::io::Result<()> {
            create_private_dir(&self.dir)?;
            let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
            writeln!(tmp, "{}", canonical(path).display())?;
            tmp.as_file().sync_data()?;
            tmp.persist(&entry).map_err(|e| e.error)?;
            Ok(())
        };
        write().map_err(|source| TrustError::Write {
            path: entry.clone(),
            source,
        })?;
        Ok(entry)
    }
}

/// `path`, canonical when it can be resolved.
fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The entry name of `path` with `text`: blake3 of the canonical path, a NUL and the text.
pub fn key(path: &Path, text: &str) -> String {
    let mut h = blake3::Hasher::new();
    h.update(canonical(path).as_os_str().as_encoded_bytes());
    h.update(b"\0");
    h.update(text.as_bytes());
    h.finalize().to_hex().to_string()
}

/// Creates `dir` (and its missing parents) readable by the user alone.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_is_for_this_path_and_this_content() {
        let home = tempfile::tempdir().expect("tempdir");
        let project = tempfile::tempdir().expect("tempdir");
        let other = tempfile::tempdir().expect("tempdir");
        let store = TrustStore::in_dir(home.path());
        let file = project.path().join("bmad-host.toml");
        let text = "[[gates]]\nname = \"t\"\ncommand = \"make test\"\n";
        std::fs::write(&file, text).expect("write");
        assert!(!store.is_trusted(&file, text));
        let entry = store.trust(&file, text).expect("trust");
        assert!(entry.starts_with(home.path().join("trusted")));
        assert!(store.is_trusted(&file, text));
        assert!(!store.is_trusted(&file, &format!("{text}# edited\n")));
        let elsewhere = other.path().join("bmad-host.toml");
        std::fs::write(&elsewhere, text).expect("write");
        assert!(!store.is_trusted(&elsewhere, text));
    }
}
