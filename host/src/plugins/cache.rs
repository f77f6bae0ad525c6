//! The compiled-component cache on disk.
//!
//! Compiling a component takes tens of milliseconds; loading a compiled one takes a fraction of
//! one. An entry lives at `DIR/<engine>/<wasm>.cwasm`, where `<engine>` is a hash of wasmtime's
//! compatibility hash (version, target, engine settings) and `<wasm>` the blake3 of the `.wasm`
//! bytes, so a new wasmtime, other settings or another component never meet an old entry. Each
//! entry ends with a trailer (the blake3 of the compiled bytes and a magic tag) that is checked
//! before the bytes reach wasmtime. Entries are written atomically (a temporary file renamed into
//! place). A missing, truncated, corrupt or incompatible entry is a miss: the component is
//! compiled again and the entry rewritten. A cache that cannot be written is only a warning.
//!
//! Compiled code is trusted as machine code, so the cache is used only from a directory no one
//! else can write: the cache directory and its engine folder are created readable by the user
//! alone (0700), and each must be owned by the effective user and not group- or
//! world-writable, else the cache is bypassed (every component compiled, nothing read or
//! written) with a warning that names the directory and the fix. An entry file owned by another
//! user is a miss.

use std::hash::{Hash as _, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// The tag closing every entry (with a format version).
const MAGIC: &[u8; 8] = b"bmadcw01";
/// Trailer: 32 bytes of blake3, then [`MAGIC`].
const TRAILER: usize = 32 + MAGIC.len();

/// Where the cache lives when no directory is configured: `$BMAD_HOST_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/bmad-host/components`, else `~/.cache/bmad-host/components`; `None` when
/// none of these is set.
pub fn default_cache_dir() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("BMAD_HOST_CACHE_DIR") {
        return Some(dir);
    }
    if let Some(xdg) = var("XDG_CACHE_HOME") {
        return Some(xdg.join("bmad-host").join("components"));
    }
    var("HOME").map(|home| home.join(".cache").join("bmad-host").join("components"))
}

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadKind {
    /// Compiled from the `.wasm` (no usable cache entry).
    Cold,
    /// Loaded from a cache entry.
    Cached,
}

/// The cache of one engine.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    /// `DIR/<engine>`, or `None` when caching is off.
    dir: Option<PathBuf>,
}

/// A hex string identifying the engine's compiled-code compatibility.
pub fn engine_key(engine: &Engine) -> String {
    struct Blake3Hasher(blake3::Hasher);
    impl Hasher for Blake3Hasher {
        fn finish(&self) -> u64 {
            let hash = self.0.finalize();
            let mut first = [0u8; 8];
            first.copy_from_slice(&hash.as_bytes()[..8]);
            u64::from_le_bytes(first)
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut h = Blake3Hasher(blake3::Hasher::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    h.0.finalize().to_hex()[..16].to_string()
}

impl ComponentCache {
    /// A cache under `root` (if any) for `engine`; off, with a warning, when `root` or its
    /// engine folder cannot be made private to this user (see the module's docs).
    pub fn new(root: Option<&Path>, engine: &Engine) -> ComponentCache {
        let dir = root.and_then(|r| {
            let dir = r.join(engine_key(engine));
            match private_dir(r).and_then(|()| private_dir(&dir)) {
                Ok(()) => Some(dir),
                Err(reason) => {
                    tracing::warn!(
                        "not using the component cache: {reason}; components are compiled on every \
                         start (use a directory of your own: BMAD_HOST_CACHE_DIR, or fix its owner and mode)"
                    );
                    None
                }
            }
        });
        ComponentCache { dir }
    }

    /// The entry's path for a `.wasm` with this hash.
    pub fn entry_path(&self, wasm_hash: &blake3::Hash) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{}.cwasm", wasm_hash.to_hex())))
    }

    /// The compiled component for `wasm`: from the cache when a valid entry exists, compiled
    /// (and stored) otherwise. Only compilation errors are errors.
    pub fn load(
        &self,
        engine: &Engine,
        wasm: &[u8],
        wasm_hash: &blake3::Hash,
    ) -> wasmtime::Result<(Component, LoadKind)> {
        let entry = self.entry_path(wasm_hash);
        if let Some(path) = &entry {
            match read_entry(engine, path) {
                Ok(Some(component)) => return Ok((component, LoadKind::Cached)),
                Ok(None) => {}
                Err(reason) => {
                    tracing::debug!(entry = %path.display(), %reason, "component cache miss: recompiling")
                }
            }
        }
        let component = Component::new(engine, wasm)?;
        if let Some(path) = &entry
            && let Err(e) = write_entry(&component, path)
        {
            tracing::warn!(entry = %path.display(), error = %e, "cannot write the component cache entry (continuing without it)");
        }
        Ok((component, LoadKind::Cold))
    }
}

/// Creates `dir` (and missing parents) as 0700 if it is missing, then checks that it is a
/// directory owned by the effective user and writable by no one else (after symlinks).
fn private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let meta = std::fs::metadata(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(format!(
            "{} is owned by uid {}, not by this user (uid {me})",
            dir.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is writable by its group or by everyone (mode {:o})",
            dir.display(),
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// `Ok(None)`: no entry. `Err`: an entry that cannot be used (a miss, with the reason).
fn read_entry(engine: &Engine, path: &Path) -> Result<Option<Component>, String> {
    use std::io::Read as _;
    use std::os::unix::fs::MetadataExt as _;
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("unreadable: {e}")),
    };
    let owner = file
        .metadata()
        .map_err(|e| format!("unreadable: {e}"))?
        .uid();
    if owner != rustix::process::geteuid().as_raw() {
        return Err(format!("owned by uid {owner}, not by this user"));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| format!("unreadable: {e}"))?;
    let code = verified_code(&bytes)?;
    deserialize(engine, code)
        .map(Some)
        .map_err(|e| format!("rejected by wasmtime: {e}"))
}

/// The compiled bytes of an entry whose trailer matches them.
fn verified_code(entry: &[u8]) -> Result<&[u8], String> {
    if entry.len() < TRAILER {
        return Err("truncated".to_string());
    }
    let (code, trailer) = entry.split_at(entry.len() - TRAILER);
    let (sum, magic) = trailer.split_at(32);
    if magic != MAGIC {
        return Err("not a bmad-host cache entry (or truncated)".to_string());
    }
    if blake3::hash(code).as_bytes() != sum {
        return Err("checksum mismatch (corrupt)".to_string());
    }
    Ok(code)
}

// SAFETY: `Component::deserialize` trusts its input to be machine code that wasmtime itself
// produced for this engine. The bytes come only from our own cache entry: its path is keyed by
// this engine's compatibility hash and the blake3 of the source `.wasm`; it was written by
// `write_entry` from `Component::serialize` of the same engine, atomically (temp file + rename),
// so a reader never sees a partial file; and `verified_code` has just checked the blake3 of
// exactly these bytes against the entry's trailer, so a truncated or corrupted entry never
// gets here. Wasmtime checks the version and engine settings in the header again itself.
#[expect(
    unsafe_code,
    reason = "deserializing our own cache entry, verified as the SAFETY comment says"
)]
fn deserialize(engine: &Engine, code: &[u8]) -> wasmtime::Result<Component> {
    unsafe { Component::deserialize(engine, code) }
}

fn write_entry(component: &Component, path: &Path) -> std::io::Result<()> {
    let code = component.serialize().map_err(std::io::Error::other)?;
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("cache entry has no directory"))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(&code)?;
    tmp.write_all(blake3::hash(&code).as_bytes())?;
    tmp.write_all(MAGIC)?;
    tmp.as_file().sync_data()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(component)`: the magic, component-model version 0x0d, layer 1. wasmtime is built
    /// without the `wat` feature, so tests use the binary form.
    const EMPTY_COMPONENT: &[u8] = &[0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

    fn setup() -> (
        Engine,
        tempfile::TempDir,
        ComponentCache,
        Vec<u8>,
        blake3::Hash,
    ) {
        let engine = super::super::engine::engine().expect("engine").clone();
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = ComponentCache::new(Some(dir.path()), &engine);
        let wasm = EMPTY_COMPONENT.to_vec();
        let hash = blake3::hash(&wasm);
        (engine, dir, cache, wasm, hash)
    }

    fn load_kind(
        engine: &Engine,
        cache: &ComponentCache,
        wasm: &[u8],
        hash: &blake3::Hash,
    ) -> LoadKind {
        cache.load(engine, wasm, hash).expect("compiles").1
    }

    #[test]
    fn second_load_hits_the_cache() {
        let (engine, _dir, cache, wasm, hash) = setup();
        assert_eq!(load_kind(&engine, &cache, &wasm, &hash), LoadKind::Cold);
        assert!(cache.entry_path(&hash).is_some_and(|p| p.is_file()));
        assert_eq!(load_kind(&engine, &cache, &wasm, &hash), LoadKind::Cached);
    }

    #[test]
    fn corrupt_truncated_and_foreign_entries_are_misses_that_rewrite() {
        let (engine, _dir, cache, wasm, hash) = setup();
        assert_eq!(load_kind(&engine, &cache, &wasm, &hash), LoadKind::Cold);
        let path = cache.entry_path(&hash).expect("entry");
        let good = std::fs::read(&path).expect("read");

        let mut flipped = good.clone();
        flipped[good.len() / 2] ^= 0x40;
        let damage: Vec<(&str, Vec<u8>)> = vec![
            ("flipped byte", flipped),
            ("truncated", good[..good.len() / 3].to_vec()),
            ("empty", Vec::new()),
            (
                "garbage",
                b"not a compiled component at all, not even close".to_vec(),
            ),
        ];
        for (what, bytes) in damage {
            std::fs::write(&path, bytes).expect("damage");
            assert_eq!(
                load_kind(&engine, &cache, &wasm, &hash),
                LoadKind::Cold,
                "{what}"
            );
            assert_eq!(
                std::fs::read(&path).expect("rewritten"),
                good,
                "{what}: entry rewritten"
            );
            assert_eq!(
                load_kind(&engine, &cache, &wasm, &hash),
                LoadKind::Cached,
                "{what}"
            );
        }
    }

    #[test]
    fn a_valid_checksum_over_foreign_code_is_still_a_miss() {
        let (engine, _dir, cache, wasm, hash) = setup();
        let path = cache.entry_path(&hash).expect("entry");
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        let code = b"\x7fELF but not wasmtime's".to_vec();
        let mut entry = code.clone();
        entry.extend_from_slice(blake3::hash(&code).as_bytes());
        entry.extend_from_slice(MAGIC);
        std::fs::write(&path, entry).expect("write");
        assert_eq!(load_kind(&engine, &cache, &wasm, &hash), LoadKind::Cold);
        assert_eq!(load_kind(&engine, &cache, &wasm, &hash), LoadKind::Cached);
    }

    #[test]
    fn an_unwritable_cache_is_not_an_error() {
        let (engine, dir, _cache, wasm, hash) = setup();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"x").expect("write");
        let cache = ComponentCache::new(Some(&file), &engine);
        assert_eq!(load_kind(&engine, &cache, &wasm, &hash), LoadKind::Cold);
        assert_eq!(load_kind(&engine, &cache, &wasm, &hash), LoadKind::Cold);
    }

    #[test]
    fn a_directory_others_can_write_is_bypassed() {
        use std::os::unix::fs::PermissionsExt as _;
        let (engine, dir, _cache, wasm, hash) = setup();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).expect("mkdir");
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let cache = ComponentCache::new(Some(&shared), &engine);
        assert_eq!(cache.entry_path(&hash), None, "bypassed");
        assert_eq!(load_kind(&engine, &cache, &wasm, &hash), LoadKind::Cold);
        assert_eq!(load_kind(&engine, &cache, &wasm, &hash), LoadKind::Cold);
        // A new cache directory is the user's alone.
        let fresh = dir.path().join("a/b");
        let cache = ComponentCache::new(Some(&fresh), &engine);
        assert!(cache.entry_path(&hash).is_some());
        let mode = std::fs::metadata(&fresh)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn engine_keys_are_stable_hex() {
        let (engine, ..) = setup();
        let key = engine_key(&engine);
        assert_eq!(key.len(), 16);
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(key, engine_key(&engine));
    }
}
