//! `bmad-host config`: every effective setting, its value and where it came from.

use std::io::Write;

use crate::context::Context;
use crate::error::Error;
use crate::exit;

/// Prints the configuration as `run` would see it with the same flags.
pub(super) fn print(context: &Context) -> Result<u8, Error> {
    let mut out = std::io::stdout().lock();
    let rows = context.config.describe();
    if context.json {
        for (key, value, source) in rows {
            serde_json::to_writer(
                &mut out,
                &serde_json::json!({"key": key, "value": value, "source": source}),
            )?;
            writeln!(out).map_err(Error::Output)?;
        }
    } else {
        let width = rows
            .iter()
            .map(|(k, v, _)| k.len() + v.len())
            .max()
            .unwrap_or(0)
            + 4;
        for (key, value, source) in rows {
            let pair = format!("{key} = {value}");
            writeln!(out, "{pair:<width$} # {source}").map_err(Error::Output)?;
        }
    }
    Ok(exit::OK)
}
