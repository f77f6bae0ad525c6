//! The journal's schema, its migrations, and opening a journal file safely: a new journal is built
//! under a temporary name and renamed into place (so a half-created journal never exists); an
//! existing one is checked (SQLite header, application id, schema version, `quick_check`) with
//! reads only before anything may write to it.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::JournalError;

/// `PRAGMA application_id` of a bmad-host journal ("BMAH").
const APPLICATION_ID: i32 = 0x424D_4148;

/// The migrations, in order: migration `i` takes the schema from version `i` to `i + 1`. Append
/// only; never edit a released one.
const MIGRATIONS: &[&str] = &[
    // 1: runs, plugins, stories, steps. Times are Unix milliseconds; JSON is stored as text.
    r#"
CREATE TABLE runs (
    id                 TEXT PRIMARY KEY,
    started_at         INTEGER NOT NULL,
    finished_at        INTEGER,
    status             TEXT NOT NULL,
    config_fingerprint TEXT NOT NULL,
    args               TEXT NOT NULL
) STRICT;
CREATE TABLE plugins (
    run_id          TEXT NOT NULL REFERENCES runs(id),
    role            TEXT NOT NULL,
    name            TEXT NOT NULL,
    version         TEXT NOT NULL,
    wasm_hash       TEXT NOT NULL,
    added_on_resume INTEGER NOT NULL,
    seen_at         INTEGER NOT NULL,
    PRIMARY KEY (run_id, role, name, version, wasm_hash)
) STRICT;
CREATE TABLE stories (
    run_id        TEXT NOT NULL REFERENCES runs(id),
    story_id      TEXT NOT NULL,
    title         TEXT NOT NULL,
    state         TEXT NOT NULL,
    cycle         INTEGER NOT NULL,
    result        TEXT,
    cost_usd      REAL NOT NULL,
    input_tokens  INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    turns         INTEGER NOT NULL,
    duration_ms   INTEGER NOT NULL,
    findings      TEXT NOT NULL,
    last_outcome  TEXT,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (run_id, story_id)
) STRICT;
CREATE TABLE steps (
    id        INTEGER PRIMARY KEY,
    run_id    TEXT NOT NULL REFERENCES runs(id),
    story_id  TEXT NOT NULL,
    cycle     INTEGER NOT NULL,
    role      TEXT NOT NULL,
    kind      TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    attempt   INTEGER NOT NULL,
    intent_at INTEGER NOT NULL,
    intent    TEXT NOT NULL,
    result_at INTEGER,
    result    TEXT,
    UNIQUE (run_id, story_id, cycle, role, kind, seq)
) STRICT;
"#,
    // 2: the project's ledger of stories: the state each had when the journal first saw it, and
    // the run that accepted its `done` (done at that first sighting, or completed by QA).
    r#"
CREATE TABLE sightings (
    story_id    TEXT PRIMARY KEY,
    first_state TEXT,
    first_run   TEXT NOT NULL,
    first_at    INTEGER NOT NULL,
    done_run    TEXT
) STRICT;
"#,
];

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// How long a statement waits for another connection's lock (SQLite retries internally with
/// backoff). Only readers (`status`, `log`) share the file with the single writer, so this is
/// reached only in pathological cases.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    ReadWrite,
    ReadOnly,
}

fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> JournalError + '_ {
    move |source| JournalError::Sqlite {
        path: path.to_owned(),
        source,
    }
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl Fn(std::io::Error) -> JournalError + 'a {
    move |source| JournalError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

fn corrupt(path: &Path, detail: impl Into<String>) -> JournalError {
    JournalError::Corrupt {
        path: path.to_owned(),
        detail: detail.into(),
    }
}

/// During validation, SQLite's "this is not a database" and "malformed" mean corruption.
fn validation_error(path: &Path) -> impl Fn(rusqlite::Error) -> JournalError + '_ {
    move |source| match source.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
            corrupt(path, source.to_string())
        }
        _ => JournalError::Sqlite {
            path: path.to_owned(),
            source,
        },
    }
}

/// Creates a journal at `path` (which must not exist) at the current schema, atomically: built as
/// `<path>.new`, synced, then renamed. Requires the run lock (the temporary name is fixed).
pub(super) fn create(path: &Path) -> Result<(), JournalError> {
    let tmp = sibling(path, ".new");
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let leftover = sibling(&tmp, suffix);
        match fs::remove_file(&leftover) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove the leftover", &leftover)(e)),
        }
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(&tmp, flags).map_err(sqlite(&tmp))?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sqlite(&tmp))?;
    conn.pragma_update(None, "application_id", APPLICATION_ID)
        .map_err(sqlite(&tmp))?;
    migrate(&mut conn, &tmp, 0)?;
    set_wal(&conn, &tmp)?;
    // Closing the last connection checkpoints the WAL into the file and removes it.
    conn.close().map_err(|(_, e)| sqlite(&tmp)(e))?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io("sync", &tmp))?;
    fs::rename(&tmp, path).map_err(io("rename into place", path))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("sync", dir))?;
    }
    tracing::debug!(path = %path.display(), version = SCHEMA_VERSION, "created journal");
    Ok(())
}

/// Opens an existing journal, refusing a file that is not a healthy bmad-host journal of a schema
/// this build knows. The checks run on a read-only connection (see [`open_checker`]), so a refused
/// file is never written (not even a hot-journal rollback). Read-write then migrates an older schema and sets WAL,
/// `synchronous=FULL` and foreign keys; read-only keeps the checked read-only connection.
pub(super) fn open_existing(path: &Path, access: Access) -> Result<Connection, JournalError> {
    check_header(path)?;
    let version = {
        let checker = open_checker(path)?;
        let version = check_contents(&checker, path)?;
        checker.close().map_err(|(_, e)| sqlite(path)(e))?;
        version
    };
    match access {
        Access::ReadOnly if version < SCHEMA_VERSION => Err(JournalError::OlderSchema {
            path: path.to_owned(),
            found: version,
            supported: SCHEMA_VERSION,
        }),
        Access::ReadOnly => {
            let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let reader = Connection::open_with_flags(path, flags).map_err(sqlite(path))?;
            reader.busy_timeout(BUSY_TIMEOUT).map_err(sqlite(path))?;
            reader
                .pragma_update(None, "query_only", true)
                .map_err(sqlite(path))?;
            Ok(reader)
        }
        Access::ReadWrite => {
            let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let mut conn = Connection::open_with_flags(path, flags).map_err(sqlite(path))?;
            conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite(path))?;
            set_wal(&conn, path)?;
            conn.pragma_update(None, "synchronous", "FULL")
                .map_err(sqlite(path))?;
            conn.pragma_update(None, "foreign_keys", true)
                .map_err(sqlite(path))?;
            if version < SCHEMA_VERSION {
                migrate(&mut conn, path, version)?;
            }
            Ok(conn)
        }
    }
}

/// A second read-write connection to a journal already opened (and checked) by
/// [`open_existing`], for the background checkpoints: it writes nothing but the database pages
/// the WAL already holds, and never checkpoints on its own.
pub(super) fn open_checkpointer(path: &Path) -> Result<Connection, JournalError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(sqlite(path))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite(path))?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sqlite(path))?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(sqlite(path))?;
    Ok(conn)
}

/// A read-only connection for the checks. Without a `-wal` file beside it the database is all in
/// the main file, so it is opened `immutable` (no locks, no `-wal`/`-shm` created): a refused file
/// gets no companions. With one (a live run, or a crash), a plain read-only connection.
fn open_checker(path: &Path) -> Result<Connection, JournalError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = if sibling(path, "-wal").exists() {
        Connection::open_with_flags(path, flags & !OpenFlags::SQLITE_OPEN_URI)
    } else {
        Connection::open_with_flags(format!("{}?immutable=1", file_uri(path)), flags)
    }
    .map_err(sqlite(path))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite(path))?;
    conn.pragma_update(None, "query_only", true)
        .map_err(sqlite(path))?;
    Ok(conn)
}

/// `file:` URI of a path, every byte outside `[A-Za-z0-9/._~-]` percent-encoded.
fn file_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut uri = String::from("file:");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/._~-".contains(&b) {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri
}

/// Application id, schema version not newer, `quick_check`: returns the schema version.
fn check_contents(conn: &Connection, path: &Path) -> Result<u32, JournalError> {
    let checked = validation_error(path);
    let app_id: i32 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(&checked)?;
    if app_id != APPLICATION_ID {
        return Err(corrupt(
            path,
            "it is an SQLite database, but not a bmad-host journal",
        ));
    }
    let version: u32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(&checked)?;
    if version > SCHEMA_VERSION {
        return Err(JournalError::NewerSchema {
            path: path.to_owned(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    quick_check(conn, path)?;
    Ok(version)
}

/// An SQLite file starts with a 100-byte header whose first 16 bytes are fixed. Checked without
/// SQLite so that a foreign file is never even opened by it.
fn check_header(path: &Path) -> Result<(), JournalError> {
    let mut file = File::open(path).map_err(io("open", path))?;
    let mut header = Vec::with_capacity(100);
    (&mut file)
        .take(100)
        .read_to_end(&mut header)
        .map_err(io("read", path))?;
    if header.len() < 100 {
        return Err(corrupt(
            path,
            format!(
                "it is {} bytes long, too short to be an SQLite database",
                header.len()
            ),
        ));
    }
    if !header.starts_with(b"SQLite format 3\0") {
        return Err(corrupt(path, "it is not an SQLite database"));
    }
    Ok(())
}

fn quick_check(conn: &Connection, path: &Path) -> Result<(), JournalError> {
    let checked = validation_error(path);
    let mut stmt = conn.prepare("PRAGMA quick_check(5)").map_err(&checked)?;
    let problems = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(&checked)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(&checked)?;
    if problems.len() == 1 && problems[0] == "ok" {
        Ok(())
    } else {
        Err(corrupt(
            path,
            format!("SQLite's integrity check failed: {}", problems.join("; ")),
        ))
    }
}

fn set_wal(conn: &Connection, path: &Path) -> Result<(), JournalError> {
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(sqlite(path))?;
    if mode.eq_ignore_ascii_case("wal") {
        Ok(())
    } else {
        Err(JournalError::Data {
            path: path.to_owned(),
            what: "journal mode",
            detail: format!("SQLite kept journal_mode={mode} instead of WAL"),
        })
    }
}

/// Applies the migrations after `from` in one transaction, ending at [`SCHEMA_VERSION`].
fn migrate(conn: &mut Connection, path: &Path, from: u32) -> Result<(), JournalError> {
    let tx = conn.transaction().map_err(sqlite(path))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        tx.execute_batch(sql).map_err(sqlite(path))?;
        tracing::debug!(path = %path.display(), version = i + 1, "migrated journal");
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(sqlite(path))?;
    tx.commit().map_err(sqlite(path))
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
