//! `bmad-host plugins list|check|export`: each plugin (embedded, or from `--plugins DIR`) with
//! its role, versions, capabilities and load time, then which plugin serves each role; or the
//! embedded plugins written out as folders.

use std::io::Write;
use std::path::Path;

use crate::context::Context;
use crate::error::Error;
use crate::exit;
use crate::plugins::{PluginInfo, PluginSource};
use crate::ui::Verbosity;

/// Lists the plugins (embedded, and those of `--plugins DIR`) and the role each serves; with `check`, exits 2 when
/// any of them cannot be used as configured.
pub(super) fn print(context: &Context, check: bool) -> Result<u8, Error> {
    let sources = context.plugin_sources();
    let cfg = context.plugin_config();
    let infos = crate::plugins::inspect_from(&sources, &cfg);
    let mut out = std::io::stdout().lock();
    let mut problems = 0;
    for info in &infos {
        if info.problem.is_some() {
            problems += 1;
        }
        if context.json {
            serde_json::to_writer(&mut out, info)?;
            writeln!(out).map_err(Error::Output)?;
        } else {
            let role = info.role.map_or("?".to_string(), |r| r.to_string());
            let load = info
                .load
                .map(|l| format!("{:?} load {:.1} ms", l.kind, l.micros as f64 / 1000.0))
                .unwrap_or_default();
            writeln!(
                out,
                "{:<12} role {:<7} v{:<8} wit {:<7} {}",
                info.name,
                role,
                info.version.as_deref().unwrap_or("?"),
                info.wit.as_deref().unwrap_or("?"),
                load
            )
            .map_err(Error::Output)?;
            writeln!(out, "             from {}", source_text(info)).map_err(Error::Output)?;
            writeln!(
                out,
                "             read requested {:?}, granted {:?}{}",
                info.requested_read,
                info.granted_read,
                if info.serves.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", serves {:?}",
                        info.serves
                            .iter()
                            .map(|r| r.to_string())
                            .collect::<Vec<_>>()
                    )
                }
            )
            .map_err(Error::Output)?;
            if let Some(p) = &info.problem {
                writeln!(out, "             problem: {p}").map_err(Error::Output)?;
            }
        }
    }
    for role in crate::plugins::inspect_roles_from(&sources, &infos, &cfg) {
        if role.problem.is_some() {
            problems += 1;
        }
        if context.json {
            let line = serde_json::json!({
                "role": role.role.to_string(),
                "plugin": role.wanted,
                "configured": role.configured,
                "problem": role.problem,
            });
            serde_json::to_writer(&mut out, &line)?;
            writeln!(out).map_err(Error::Output)?;
        } else {
            writeln!(
                out,
                "role {:<7} -> {}{}{}",
                role.role.to_string(),
                role.wanted,
                if role.configured { " (configured)" } else { "" },
                role.problem
                    .as_deref()
                    .map(|p| format!("  problem: {p}"))
                    .unwrap_or_default()
            )
            .map_err(Error::Output)?;
        }
    }
    if check && problems > 0 {
        eprintln!("{problems} problem(s): these plugins cannot be used as configured");
        return Ok(exit::USAGE);
    }
    Ok(exit::OK)
}

/// Where a plugin of `plugins list` comes from, for people.
fn source_text(info: &PluginInfo) -> String {
    match info.source {
        PluginSource::Embedded => "the plugins embedded in bmad-host".to_string(),
        PluginSource::Folder => info.dir.display().to_string(),
    }
}

/// `bmad-host plugins export DIR`: the embedded plugins, written out as plugin folders.
pub(super) fn export(dir: &Path, json: bool, verbosity: Verbosity) -> Result<u8, Error> {
    let written = crate::plugins::export(dir)?;
    let mut out = std::io::stdout().lock();
    for plugin in &written {
        if json {
            serde_json::to_writer(&mut out, plugin)?;
            writeln!(out).map_err(Error::Output)?;
        } else {
            writeln!(out, "{:<12} -> {}", plugin.name, plugin.dir.display())
                .map_err(Error::Output)?;
        }
    }
    if !json && verbosity != Verbosity::Quiet {
        eprintln!(
            "use them with --plugins {} (a folder's plugin replaces the embedded one of the same name)",
            dir.display()
        );
    }
    Ok(exit::OK)
}
