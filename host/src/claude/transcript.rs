//! The on-disk transcript of a call: every stdout line as printed, stderr lines and the host's own
//! notes (attempt start, over-long lines, teardown steps, exit) as JSON objects with a
//! `"bmad_host"` key, one per line. Appended to, so all attempts of a call share one file.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use serde_json::{Map, Value, json};

#[derive(Debug)]
pub(crate) struct Transcript {
    out: Option<BufWriter<File>>,
    started: Instant,
}

impl Transcript {
    /// Opens (creates, appends to) the transcript, creating its parent directories.
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            out: Some(BufWriter::with_capacity(64 * 1024, file)),
            started: Instant::now(),
        })
    }

    fn write(&mut self, bytes: &[&[u8]]) {
        let Some(out) = self.out.as_mut() else { return };
        let result = bytes.iter().try_for_each(|b| out.write_all(b));
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot write the transcript; the rest of this call is not recorded");
            self.out = None;
        }
    }

    /// A stdout line, verbatim.
    pub(crate) fn stdout(&mut self, line: &[u8]) {
        self.write(&[line, b"\n"]);
    }

    /// A stderr line, wrapped.
    pub(crate) fn stderr(&mut self, line: &[u8]) {
        self.note("stderr", json!({ "text": String::from_utf8_lossy(line) }));
    }

    /// A host note: `{"bmad_host": kind, "t_ms": <since open>, ...fields}`.
    pub(crate) fn note(&mut self, kind: &str, fields: Value) {
        let mut obj = Map::new();
        obj.insert("bmad_host".into(), Value::from(kind));
        obj.insert(
            "t_ms".into(),
            Value::from(u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)),
        );
        if let Value::Object(extra) = fields {
            obj.extend(extra);
        }
        let line = Value::Object(obj).to_string();
        self.write(&[line.as_bytes(), b"\n"]);
    }

    pub(crate) fn flush(&mut self) {
        if let Some(out) = self.out.as_mut()
            && let Err(e) = out.flush()
        {
            tracing::warn!(error = %e, "cannot write the transcript");
            self.out = None;
        }
    }
}

impl Drop for Transcript {
    fn drop(&mut self) {
        self.flush();
    }
}
