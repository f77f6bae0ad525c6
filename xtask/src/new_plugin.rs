//! `cargo xtask new-plugin`: a new plugin crate from the template.

use std::path::Path;

/// Creates `plugins/NAME` for `role`.
pub fn run(name: &str, role: &str, _root: &Path) -> anyhow::Result<()> {
    anyhow::bail!("new-plugin {name} --role {role}: not available yet")
}
