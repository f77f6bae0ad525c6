//! `bmad-host report`: writes a run's HTML report (see [`crate::report`]) to
//! `.bmad-host/reports/<run-id>.html` in the project, or to `-o FILE`, and prints its path.
//! Reads the journal only, without the run lock.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::exit;
use crate::journal::{Journal, RunId, journal_path, state_dir};
use crate::report::{self, ReportError};

/// Writes the report of `run` (default: the latest) of the project at `root` to `output`
/// (default: inside the project) and prints where.
pub(super) fn write(
    root: &Path,
    run: Option<&str>,
    output: Option<&Path>,
    json: bool,
) -> Result<u8, Error> {
    let reader = Journal::open_read_only(root)?.ok_or_else(|| ReportError::NoJournal {
        path: journal_path(root),
    })?;
    let run: Option<RunId> = run.map(str::parse).transpose()?;
    let id = match &run {
        Some(id) => id.clone(),
        None => reader.latest_run()?.ok_or_else(|| ReportError::NoRun {
            path: reader.path().to_path_buf(),
        })?,
    };
    let path = match output {
        Some(path) => absolute(path)?,
        None => state_dir(root)
            .join("reports")
            .join(format!("{}.html", id.as_str())),
    };
    let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    if output.is_none() {
        std::fs::create_dir_all(&dir).map_err(|source| Error::Write {
            path: dir.clone(),
            source,
        })?;
    }
    // Links are relative to the folder as the OS resolves it (symlinks followed).
    let page_path = std::fs::canonicalize(&dir)
        .map(|d| d.join(path.file_name().unwrap_or_default()))
        .unwrap_or_else(|_| path.clone());
    let (id, html) = report::render(&reader, root, Some(&id), &page_path)?;
    write_atomic(&path, &dir, html.as_bytes())?;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer(
            &mut out,
            &serde_json::json!({"run": id.as_str(), "report": path.display().to_string(), "bytes": html.len()}),
        )?;
        writeln!(out).map_err(Error::Output)?;
    } else {
        writeln!(out, "{}", path.display()).map_err(Error::Output)?;
    }
    Ok(exit::OK)
}

/// `path` made absolute against the current directory (as the operator typed it).
fn absolute(path: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(path).map_err(|source| Error::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `bytes` to `path` through a temp file in `dir`, renamed over it: a reader (a browser
/// reloading the page) sees the old page or the new one, never half of one.
fn write_atomic(path: &Path, dir: &Path, bytes: &[u8]) -> Result<(), Error> {
    let err = |source: std::io::Error| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".report-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    // A page like any other file: the temp file is private until it is renamed in.
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}
