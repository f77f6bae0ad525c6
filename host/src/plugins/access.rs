//! Capabilities, deny by default: which project files a plugin may read with `read-file`.
//!
//! A read is allowed only when the path, relative to the project root, matches a glob the
//! plugin's manifest requests AND a glob the operator grants (`[plugins.NAME] grant_read`).
//! Paths are normalised lexically first (absolute paths and `..` that leaves the root are
//! refused), then resolved on disk: the real path, symlinks followed, must still be inside the
//! root and still match both globs. Anything else is an error string for the guest.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use super::limits::READ_MAX_FILE_BYTES;

/// Checks that a glob is relative to the project root, stays inside it, and compiles.
pub fn validate_glob(glob: &str) -> Result<(), String> {
    compile(glob).map(|_| ())
}

fn compile(glob: &str) -> Result<Glob, String> {
    if glob.is_empty() {
        return Err("an empty glob".to_string());
    }
    if glob.starts_with('/') || glob.starts_with('\\') || glob.contains(':') {
        return Err(format!("`{glob}` must be relative to the project root"));
    }
    if glob.split(['/', '\\']).any(|part| part == "..") {
        return Err(format!("`{glob}` must not contain `..`"));
    }
    GlobBuilder::new(glob)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| format!("`{glob}` is not a valid glob: {e}"))
}

fn compile_set(globs: &[String]) -> Result<GlobSet, String> {
    let mut builder = GlobSetBuilder::new();
    for glob in globs {
        builder.add(compile(glob)?);
    }
    builder.build().map_err(|e| e.to_string())
}

/// Normalises a guest-supplied path lexically: `/`-separated, relative, without `.`, empty
/// or `..` parts. `a/../b` becomes `b`; a `..` that would leave the root is refused.
pub fn normalise(path: &str) -> Result<String, String> {
    if path.is_empty() {
        return Err("empty path".to_string());
    }
    if path.contains('\0') {
        return Err("path contains a NUL byte".to_string());
    }
    if path.starts_with('/') || path.starts_with('\\') || path.as_bytes().get(1) == Some(&b':') {
        return Err(
            "absolute paths are not allowed: use a path relative to the project root".to_string(),
        );
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err("the path leaves the project root (`..`)".to_string());
                }
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err("the path names the project root itself, not a file".to_string());
    }
    Ok(parts.join("/"))
}

/// One plugin's read access: its requests, the operator's grants, the project root.
#[derive(Debug, Clone)]
pub struct ReadAccess {
    root: PathBuf,
    requested: GlobSet,
    granted: GlobSet,
    requested_globs: Vec<String>,
    granted_globs: Vec<String>,
    plugin: String,
}

impl ReadAccess {
    /// Builds the access of `plugin`. The manifest's globs were validated when it loaded; a bad
    /// grant is an error naming the glob.
    pub fn new(
        plugin: &str,
        root: &Path,
        requested: &[String],
        granted: &[String],
    ) -> Result<ReadAccess, String> {
        Ok(ReadAccess {
            root: root.to_path_buf(),
            requested: compile_set(requested)?,
            granted: compile_set(granted)?,
            requested_globs: requested.to_vec(),
            granted_globs: granted.to_vec(),
            plugin: plugin.to_string(),
        })
    }

    /// Decides whether `path` may be read and returns its real location.
    pub fn resolve(&self, path: &str) -> Result<PathBuf, String> {
        let rel = normalise(path)?;
        self.allowed(&rel)?;
        let root = self.root.canonicalize().map_err(|e| {
            format!(
                "the project root {} is not available: {e}",
                self.root.display()
            )
        })?;
        let real = root.join(&rel).canonicalize().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("`{rel}` does not exist"),
            _ => format!("`{rel}` cannot be opened: {e}"),
        })?;
        let real_rel = real.strip_prefix(&root).map_err(|_| {
            format!("`{rel}` resolves (through a symlink) to a place outside the project root")
        })?;
        let real_rel = real_rel.to_string_lossy().replace('\\', "/");
        if real_rel != rel {
            self.allowed(&real_rel)
                .map_err(|e| format!("`{rel}` is a symlink to `{real_rel}`, and {e}"))?;
        }
        Ok(real)
    }

    fn allowed(&self, rel: &str) -> Result<(), String> {
        if !self.requested.is_match(rel) {
            return Err(format!(
                "read of `{rel}` denied: plugin `{}` did not request it (its plugin.toml [capabilities] read is {:?})",
                self.plugin, self.requested_globs
            ));
        }
        if !self.granted.is_match(rel) {
            return Err(format!(
                "read of `{rel}` denied: not granted to plugin `{}` (grant it in bmad-host.toml: [plugins.{}] grant_read = [...]; granted now: {:?})",
                self.plugin, self.plugin, self.granted_globs
            ));
        }
        Ok(())
    }

    /// Reads `path` as UTF-8 text if allowed, within [`READ_MAX_FILE_BYTES`].
    pub fn read(&self, path: &str) -> Result<String, String> {
        let real = self.resolve(path)?;
        let file =
            std::fs::File::open(&real).map_err(|e| format!("`{path}` cannot be opened: {e}"))?;
        let meta = file
            .metadata()
            .map_err(|e| format!("`{path}` cannot be read: {e}"))?;
        if !meta.is_file() {
            return Err(format!("`{path}` is not a regular file"));
        }
        if meta.len() > READ_MAX_FILE_BYTES {
            return Err(format!(
                "`{path}` is larger than the {READ_MAX_FILE_BYTES}-byte read limit"
            ));
        }
        let mut bytes = Vec::new();
        file.take(READ_MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("`{path}` cannot be read: {e}"))?;
        if bytes.len() as u64 > READ_MAX_FILE_BYTES {
            return Err(format!(
                "`{path}` is larger than the {READ_MAX_FILE_BYTES}-byte read limit"
            ));
        }
        String::from_utf8(bytes).map_err(|_| format!("`{path}` is not UTF-8 text"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(root: &Path, requested: &[&str], granted: &[&str]) -> ReadAccess {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        ReadAccess::new("qa", root, &own(requested), &own(granted)).expect("globs")
    }

    fn project() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("docs/qa/gates")).expect("mkdir");
        std::fs::create_dir_all(root.join("docs/stories")).expect("mkdir");
        std::fs::write(root.join("docs/qa/gates/1.1.yml"), "gate: PASS\n").expect("write");
        std::fs::write(root.join("docs/stories/1.1.md"), "# Story\n").expect("write");
        std::fs::write(root.join("secret.txt"), "hunter2\n").expect("write");
        dir
    }

    #[test]
    fn normalise_removes_dots_and_refuses_escapes() {
        assert_eq!(normalise("docs/qa/x.yml").as_deref(), Ok("docs/qa/x.yml"));
        assert_eq!(
            normalise("./docs//qa/./x.yml").as_deref(),
            Ok("docs/qa/x.yml")
        );
        assert_eq!(
            normalise("docs/stories/../qa/x.yml").as_deref(),
            Ok("docs/qa/x.yml")
        );
        assert_eq!(normalise("docs\\qa\\x.yml").as_deref(), Ok("docs/qa/x.yml"));
        for bad in [
            "",
            "/etc/passwd",
            "\\etc",
            "C:/x",
            "../secret",
            "docs/../../secret",
            ".",
            "a/..",
            "a\0b",
        ] {
            assert!(normalise(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn globs_must_be_relative_and_stay_inside() {
        assert!(validate_glob("docs/qa/**").is_ok());
        assert!(validate_glob("docs/*.md").is_ok());
        for bad in ["", "/etc/*", "../x/**", "docs/../../x", "C:/x", "docs/[x"] {
            assert!(validate_glob(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_read_needs_both_the_request_and_the_grant() {
        let p = project();
        let both = access(p.path(), &["docs/qa/**"], &["docs/qa/**"]);
        assert_eq!(
            both.read("docs/qa/gates/1.1.yml").as_deref(),
            Ok("gate: PASS\n")
        );

        let requested_only = access(p.path(), &["docs/qa/**"], &[]);
        let e = requested_only
            .read("docs/qa/gates/1.1.yml")
            .expect_err("not granted");
        assert!(
            e.contains("not granted") && e.contains("[plugins.qa] grant_read"),
            "{e}"
        );

        let granted_only = access(p.path(), &[], &["docs/qa/**"]);
        let e = granted_only
            .read("docs/qa/gates/1.1.yml")
            .expect_err("not requested");
        assert!(e.contains("did not request"), "{e}");

        let narrower_grant = access(p.path(), &["docs/**"], &["docs/qa/**"]);
        assert!(narrower_grant.read("docs/qa/gates/1.1.yml").is_ok());
        assert!(narrower_grant.read("docs/stories/1.1.md").is_err());
    }

    #[test]
    fn a_single_star_does_not_cross_directories() {
        let p = project();
        let a = access(p.path(), &["docs/*"], &["docs/*"]);
        assert!(a.read("docs/stories/1.1.md").is_err());
    }

    #[test]
    fn escapes_and_absolute_paths_are_denied_even_with_a_grant_of_everything() {
        let p = project();
        let a = access(p.path(), &["**"], &["**"]);
        assert_eq!(a.read("secret.txt").as_deref(), Ok("hunter2\n"));
        assert!(
            a.read("/etc/passwd")
                .expect_err("absolute")
                .contains("absolute")
        );
        assert!(
            a.read("../secret.txt")
                .expect_err("escape")
                .contains("leaves the project root")
        );
        assert!(a.read("docs/../../x").is_err());
        assert!(
            a.read("docs")
                .expect_err("dir")
                .contains("not a regular file")
        );
        assert!(
            a.read("nope.md")
                .expect_err("missing")
                .contains("does not exist")
        );
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_resolved_and_must_stay_inside_and_granted() {
        let p = project();
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("key"), "private").expect("write");
        let qa = p.path().join("docs/qa");
        std::os::unix::fs::symlink(outside.path().join("key"), qa.join("out.yml"))
            .expect("symlink");
        std::os::unix::fs::symlink(p.path().join("secret.txt"), qa.join("in.yml"))
            .expect("symlink");
        std::os::unix::fs::symlink(p.path().join("docs/qa/gates/1.1.yml"), qa.join("ok.yml"))
            .expect("symlink");
        let a = access(p.path(), &["docs/qa/**"], &["docs/qa/**"]);
        let e = a.read("docs/qa/out.yml").expect_err("outside");
        assert!(e.contains("outside the project root"), "{e}");
        let e = a.read("docs/qa/in.yml").expect_err("not granted target");
        assert!(e.contains("symlink to `secret.txt`"), "{e}");
        assert_eq!(a.read("docs/qa/ok.yml").as_deref(), Ok("gate: PASS\n"));
    }

    #[test]
    fn large_and_binary_files_are_refused() {
        let p = project();
        std::fs::write(p.path().join("docs/qa/bin.yml"), [0xff, 0xfe, 0x00]).expect("write");
        let big = vec![b'a'; (READ_MAX_FILE_BYTES + 1) as usize];
        std::fs::write(p.path().join("docs/qa/big.yml"), big).expect("write");
        let a = access(p.path(), &["docs/qa/**"], &["docs/qa/**"]);
        assert!(
            a.read("docs/qa/bin.yml")
                .expect_err("binary")
                .contains("not UTF-8")
        );
        assert!(
            a.read("docs/qa/big.yml")
                .expect_err("big")
                .contains("larger than")
        );
    }
}
