//! `bmad-host trust`: records that the operator trusts the project's `bmad-host.toml` as it is
//! now, so its commands and grants take effect (see [`crate::trust`]).

use std::cell::RefCell;
use std::io::Write;
use std::path::Path;

use crate::config::{Config, FILE_NAME, Layers, Overrides};
use crate::context::{Options, project_root};
use crate::error::Error;
use crate::exit;
use crate::trust::{TrustError, TrustStore};

/// Checks the project's file (a broken one cannot be trusted), trusts exactly the text it
/// checked, and prints what that lets the file do.
pub(super) fn trust(options: Options) -> Result<u8, Error> {
    let root = project_root(&options.project)?;
    let path = root.join(FILE_NAME);
    if !path.is_file() {
        return Err(Error::Usage(format!(
            "there is no {} to trust (a project without one needs no trust)",
            path.display()
        )));
    }
    let store = TrustStore::user().ok_or(TrustError::NoUserDir)?;
    let read: RefCell<Option<String>> = RefCell::new(None);
    let config = Config::load_layers(&Layers {
        user_file: None,
        root: &root,
        env: &|_| None,
        overrides: &Overrides::default(),
        trusted: &|_: &Path, text: &str| {
            *read.borrow_mut() = Some(text.to_string());
            true
        },
    })?;
    let text = read.into_inner().unwrap_or_default();
    let entry = store.trust(&path, &text)?;
    let mut out = std::io::stdout().lock();
    let restricted = &config.trust.restricted;
    if options.json {
        serde_json::to_writer(
            &mut out,
            &serde_json::json!({
                "file": path.display().to_string(),
                "entry": entry.display().to_string(),
                "restricted": restricted,
            }),
        )?;
        writeln!(out).map_err(Error::Output)?;
        return Ok(exit::OK);
    }
    if restricted.is_empty() {
        writeln!(
            out,
            "trusted {} (it runs no command and grants nothing beyond the defaults)",
            path.display()
        )
        .map_err(Error::Output)?;
    } else {
        writeln!(out, "trusted {}; it may now:", path.display()).map_err(Error::Output)?;
        for r in restricted {
            writeln!(out, "  - {} ({} = {})", r.effect, r.key, r.value).map_err(Error::Output)?;
        }
    }
    writeln!(
        out,
        "any edit of the file needs `bmad-host trust` again (entry: {})",
        entry.display()
    )
    .map_err(Error::Output)?;
    Ok(exit::OK)
}
