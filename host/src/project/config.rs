//! Finding the BMAD layout and reading its configuration: v4 `.bmad-core/core-config.yaml`
//! (+ `install-manifest.yaml`), v6 `_bmad/bmm/config.yaml` (+ `_bmad/_config/manifest.yaml`).

use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};

use super::error::{ProjectError, Warning};
use super::fs::{outside, read_capped_if_exists};
use super::text::{numbered_lines, yaml_key_line};

/// The v4 config file, relative to the root.
pub(crate) const V4_CONFIG: &str = ".bmad-core/core-config.yaml";
/// The v4 install manifest, relative to the root.
pub(crate) const V4_MANIFEST: &str = ".bmad-core/install-manifest.yaml";
/// The v6 BMM module config, relative to the root.
pub(crate) const V6_CONFIG: &str = "_bmad/bmm/config.yaml";
/// The v6 install manifest, relative to the root.
pub(crate) const V6_MANIFEST: &str = "_bmad/_config/manifest.yaml";
/// The v6 core module config, relative to the root (a fallback for the version comment).
pub(crate) const V6_CORE_CONFIG: &str = "_bmad/core/config.yaml";

/// Config files larger than this are refused (they are a few hundred bytes in practice).
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Where a v4 project keeps its PRD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrdSource {
    /// One file (`prd.prdFile`).
    Monolithic {
        /// The PRD file, relative to the root.
        file: PathBuf,
    },
    /// A folder of shards (`prd.prdSharded: true`, `prdShardedLocation`, `epicFilePattern`).
    Sharded {
        /// The shard folder, relative to the root.
        dir: PathBuf,
        /// The epic file name pattern, `{n}` standing for the epic number (`epic-{n}*.md`).
        pattern: String,
    },
}

/// A v4 project's configuration, paths relative to the root.
#[derive(Debug, Clone)]
pub(crate) struct V4Config {
    pub version: Option<String>,
    pub story_dir: PathBuf,
    pub prd: PrdSource,
    pub qa_dir: PathBuf,
}

/// A v6 project's configuration, paths relative to the root.
#[derive(Debug, Clone)]
pub(crate) struct V6Config {
    pub version: Option<String>,
    pub planning: PathBuf,
    pub implementation: PathBuf,
}

/// Reads a small text file; `Ok(None)` when it does not exist.
pub(crate) fn read_small(path: &Path, what: &'static str) -> Result<Option<String>, ProjectError> {
    read_capped_if_exists(path, MAX_CONFIG_BYTES, what)
}

fn parse_mapping(path: &Path, text: &str, fix: &str) -> Result<Mapping, ProjectError> {
    let value: Value =
        serde_yaml_ng::from_str(text).map_err(|e| ProjectError::yaml(path, &e, fix))?;
    match value {
        Value::Mapping(m) => Ok(m),
        Value::Null => Ok(Mapping::new()),
        _ => Err(ProjectError::Yaml {
            at: super::error::FileLoc::new(path, Some(1)),
            detail: "the file is not a mapping of keys to values".to_owned(),
            fix: fix.to_owned(),
        }),
    }
}

/// A typed view of one mapping in a config file, for precise key errors.
struct Keys<'a> {
    path: &'a Path,
    text: &'a str,
    map: &'a Mapping,
    /// The key path of `map` (`["prd"]`), empty at the top.
    parents: Vec<&'a str>,
}

impl<'a> Keys<'a> {
    fn dotted(&self, key: &str) -> String {
        let mut parts = self.parents.clone();
        parts.push(key);
        parts.join(".")
    }

    fn line(&self, key: &str) -> Option<u32> {
        let mut parts = self.parents.clone();
        parts.push(key);
        yaml_key_line(self.text, &parts)
    }

    fn err(&self, key: &str, problem: impl Into<String>, fix: impl Into<String>) -> ProjectError {
        ProjectError::key(self.path, self.line(key), &self.dotted(key), problem, fix)
    }

    /// `path`, the value of the location `key`, when it stays inside the project at `root`
    /// (after `..` and symlinks); an error naming the file and the key when it leads outside.
    fn inside(&self, root: &Path, key: &str, path: PathBuf) -> Result<PathBuf, ProjectError> {
        match outside(root, &path) {
            None => Ok(path),
            Some(target) => Err(self.err(
                key,
                format!(
                    "leads outside the project root (`{}` is {}); bmad-host reads and writes nothing outside the project",
                    path.display(),
                    target.display()
                ),
                "use a folder inside the project, relative to its root",
            )),
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    /// A string value: `Ok(None)` when absent; an error when null, empty or not a scalar.
    fn string(&self, key: &str, example: &str) -> Result<Option<String>, ProjectError> {
        let fix = || format!("set it to a path, for example `{}: {example}`", key);
        match self.get(key) {
            None => Ok(None),
            Some(Value::Null) => Err(self.err(key, "is empty", fix())),
            Some(Value::String(s)) if s.trim().is_empty() => Err(self.err(key, "is empty", fix())),
            Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
            Some(Value::Mapping(_) | Value::Sequence(_)) => {
                Err(self.err(key, "must be a single value, not a list or mapping", fix()))
            }
            Some(other) => Err(self.err(
                key,
                format!("must be a path, not `{}`", scalar(other)),
                fix(),
            )),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, ProjectError> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.err(
                key,
                format!("must be true or false, not `{}`", scalar(other)),
                format!("write `{key}: true` or `{key}: false`"),
            )),
        }
    }

    /// A nested mapping: `Ok(None)` when absent or null; an error when it is something else.
    fn mapping(&self, key: &'a str, example: &str) -> Result<Option<Keys<'a>>, ProjectError> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Mapping(m)) => {
                let mut parents = self.parents.clone();
                parents.push(key);
                Ok(Some(Keys {
                    path: self.path,
                    text: self.text,
                    map: m,
                    parents,
                }))
            }
            Some(other) => Err(self.err(
                key,
                format!("must be a mapping, not `{}`", scalar(other)),
                format!(
                    "write it as a block, for example `{key}:` then `  {example}` on the next line"
                ),
            )),
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => "null".to_owned(),
        Value::Sequence(_) => "a list".to_owned(),
        Value::Mapping(_) => "a mapping".to_owned(),
        Value::Tagged(t) => format!("{}", t.tag),
    }
}

/// Reads `.bmad-core/core-config.yaml` and the install manifest's version.
pub(crate) fn read_v4(root: &Path, warnings: &mut Vec<Warning>) -> Result<V4Config, ProjectError> {
    let path = root.join(V4_CONFIG);
    let text = read_small(&path, "a BMAD config")?.unwrap_or_default();
    let map = parse_mapping(
        &path,
        &text,
        "fix the indentation (two spaces per level, no tabs) or reinstall BMAD",
    )?;
    let top = Keys {
        path: &path,
        text: &text,
        map: &map,
        parents: Vec::new(),
    };

    let story_dir = match top.string("devStoryLocation", "docs/stories")? {
        Some(dir) => top.inside(root, "devStoryLocation", PathBuf::from(dir))?,
        None => {
            return Err(top.err(
                "devStoryLocation",
                "is missing",
                "add `devStoryLocation: docs/stories` (the folder of story files)",
            ));
        }
    };

    // `prd:` block (4.x); older configs had the same keys at the top level.
    let prd_keys = top.mapping("prd", "prdFile: docs/prd.md")?;
    let prd_keys = prd_keys.as_ref().unwrap_or(&top);
    let prd_file = prd_keys
        .string("prdFile", "docs/prd.md")?
        .unwrap_or_else(|| "docs/prd.md".to_owned());
    let sharded = prd_keys.bool("prdSharded")?.unwrap_or(false);
    let prd = if sharded {
        let dir = prd_keys
            .string("prdShardedLocation", "docs/prd")?
            .unwrap_or_else(|| "docs/prd".to_owned());
        let pattern = prd_keys
            .string("epicFilePattern", "epic-{n}*.md")?
            .unwrap_or_else(|| "epic-{n}*.md".to_owned());
        PrdSource::Sharded {
            dir: prd_keys.inside(root, "prdShardedLocation", PathBuf::from(dir))?,
            pattern,
        }
    } else {
        PrdSource::Monolithic {
            file: prd_keys.inside(root, "prdFile", PathBuf::from(prd_file))?,
        }
    };

    let qa_dir = match top.mapping("qa", "qaLocation: docs/qa")? {
        Some(qa) => {
            let dir = qa
                .string("qaLocation", "docs/qa")?
                .unwrap_or_else(|| "docs/qa".to_owned());
            qa.inside(root, "qaLocation", PathBuf::from(dir))?
        }
        None => PathBuf::from("docs/qa"),
    };

    let version = v4_version(root, warnings);
    Ok(V4Config {
        version,
        story_dir,
        prd,
        qa_dir,
    })
}

fn v4_version(root: &Path, warnings: &mut Vec<Warning>) -> Option<String> {
    let path = root.join(V4_MANIFEST);
    let text = match read_small(&path, "a BMAD manifest") {
        Ok(Some(t)) => t,
        Ok(None) => return None,
        Err(e) => {
            warnings.push(Warning::new(&path, None, format!("version unknown: {e}")));
            return None;
        }
    };
    match serde_yaml_ng::from_str::<Value>(&text) {
        Ok(v) => v.get("version").map(scalar).filter(|s| !s.is_empty()),
        Err(e) => {
            let line = e.location().and_then(|l| u32::try_from(l.line()).ok());
            warnings.push(Warning::new(
                &path,
                line,
                format!("version unknown: invalid YAML: {e}"),
            ));
            None
        }
    }
}

/// Reads `_bmad/bmm/config.yaml` and the installed version.
pub(crate) fn read_v6(root: &Path, warnings: &mut Vec<Warning>) -> Result<V6Config, ProjectError> {
    let path = root.join(V6_CONFIG);
    let text = read_small(&path, "a BMAD config")?.unwrap_or_default();
    let map = parse_mapping(&path, &text, "fix the YAML or reinstall the BMM module")?;
    let top = Keys {
        path: &path,
        text: &text,
        map: &map,
        parents: Vec::new(),
    };
    let output = top.string("output_folder", "\"{project-root}/_bmad-output\"")?;

    let implementation_key = if top.get("implementation_artifacts").is_some() {
        "implementation_artifacts"
    } else {
        // 6.0 alphas called it sprint_artifacts.
        "sprint_artifacts"
    };
    let implementation = match top.string(
        implementation_key,
        "\"{project-root}/_bmad-output/implementation-artifacts\"",
    )? {
        Some(v) => resolve_v6(&top, implementation_key, &v, output.as_deref())?,
        None => {
            return Err(top.err(
                "implementation_artifacts",
                "is missing",
                "add `implementation_artifacts: \"{project-root}/_bmad-output/implementation-artifacts\"` or reinstall the BMM module",
            ));
        }
    };
    let planning = match top.string(
        "planning_artifacts",
        "\"{project-root}/_bmad-output/planning-artifacts\"",
    )? {
        Some(v) => resolve_v6(&top, "planning_artifacts", &v, output.as_deref())?,
        None => match &output {
            // 6.0 alphas kept epics.md in the output folder.
            Some(out) => resolve_v6(&top, "output_folder", out, None)?,
            None => {
                return Err(top.err(
                    "planning_artifacts",
                    "is missing",
                    "add `planning_artifacts: \"{project-root}/_bmad-output/planning-artifacts\"` or reinstall the BMM module",
                ));
            }
        },
    };
    let version = v6_version(root, &text, warnings);
    let implementation = top.inside(root, implementation_key, implementation)?;
    let planning = top.inside(root, "planning_artifacts", planning)?;
    Ok(V6Config {
        version,
        planning,
        implementation,
    })
}

/// Resolves `{project-root}` (and `{output_folder}`) in a v6 config path, relative to the root.
fn resolve_v6(
    keys: &Keys<'_>,
    key: &str,
    value: &str,
    output: Option<&str>,
) -> Result<PathBuf, ProjectError> {
    let mut v = value.to_owned();
    if v.contains("{output_folder}") {
        match output {
            Some(out) if !out.contains("{output_folder}") => v = v.replace("{output_folder}", out),
            _ => {
                return Err(keys.err(
                    key,
                    "uses `{output_folder}` but output_folder is not set",
                    "set `output_folder` or write the path with `{project-root}/`",
                ));
            }
        }
    }
    let v = match v.strip_prefix("{project-root}") {
        Some(rest) => rest.trim_start_matches(['/', '\\']).to_owned(),
        None => v,
    };
    if let Some(start) = v.find('{')
        && v[start..].contains('}')
    {
        return Err(keys.err(
            key,
            format!("contains a placeholder bmad-host does not know: `{value}`"),
            "use `{project-root}/...` or a path relative to the project root",
        ));
    }
    Ok(if v.is_empty() {
        PathBuf::from(".")
    } else {
        PathBuf::from(v)
    })
}

fn v6_version(root: &Path, config_text: &str, warnings: &mut Vec<Warning>) -> Option<String> {
    let manifest = root.join(V6_MANIFEST);
    match read_small(&manifest, "a BMAD manifest") {
        Ok(Some(text)) => match serde_yaml_ng::from_str::<Value>(&text) {
            Ok(v) => {
                let installed = v
                    .get("installation")
                    .and_then(|i| i.get("version"))
                    .map(scalar);
                let bmm = || {
                    v.get("modules")?
                        .as_sequence()?
                        .iter()
                        .find(|m| m.get("name").and_then(Value::as_str) == Some("bmm"))?
                        .get("version")
                        .map(scalar)
                };
                if let Some(ver) = installed.or_else(bmm).filter(|s| !s.is_empty()) {
                    return Some(ver);
                }
            }
            Err(e) => {
                let line = e.location().and_then(|l| u32::try_from(l.line()).ok());
                warnings.push(Warning::new(
                    &manifest,
                    line,
                    format!("ignored: invalid YAML: {e}"),
                ));
            }
        },
        Ok(None) => {}
        Err(e) => warnings.push(Warning::new(&manifest, None, format!("ignored: {e}"))),
    }
    if let Some(v) = version_in_config(config_text) {
        return Some(v);
    }
    match read_small(&root.join(V6_CORE_CONFIG), "a BMAD config") {
        Ok(Some(text)) => version_in_config(&text),
        _ => None,
    }
}

/// The `# Version: 6.0.4` comment the installer writes, or a `Version:` / `version:` key.
fn version_in_config(text: &str) -> Option<String> {
    numbered_lines(text).find_map(|(_, line)| {
        let l = line.trim_start().trim_start_matches('#').trim_start();
        let rest = l
            .strip_prefix("Version:")
            .or_else(|| l.strip_prefix("version:"))?;
        let v = rest.trim().trim_matches(['"', '\'']);
        (!v.is_empty()).then(|| v.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(config: &str) -> Result<V4Config, ProjectError> {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(dir.path().join(".bmad-core")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join(V4_CONFIG), config).unwrap_or_else(|e| panic!("{e}"));
        read_v4(dir.path(), &mut Vec::new())
    }

    fn err_text(r: Result<V4Config, ProjectError>) -> String {
        match r {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn v4_defaults_and_sharding() {
        let c = v4("devStoryLocation: docs/stories\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.prd,
            PrdSource::Monolithic {
                file: "docs/prd.md".into()
            }
        );
        assert_eq!(c.qa_dir, PathBuf::from("docs/qa"));
        let c = v4("devStoryLocation: s\nprd:\n  prdSharded: true\n  prdShardedLocation: p\nqa:\n  qaLocation: q\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.prd,
            PrdSource::Sharded {
                dir: "p".into(),
                pattern: "epic-{n}*.md".into()
            }
        );
        assert_eq!(
            (c.story_dir, c.qa_dir),
            (PathBuf::from("s"), PathBuf::from("q"))
        );
    }

    #[test]
    fn v4_key_errors_name_the_key_and_line() {
        let e = err_text(v4("markdownExploder: true\ndevStoryLocation:\n"));
        assert!(
            e.contains("core-config.yaml:2: `devStoryLocation` is empty"),
            "{e}"
        );
        let e = err_text(v4("devStoryLocation: s\nqa: docs/qa\n"));
        assert!(
            e.contains("core-config.yaml:2: `qa` must be a mapping, not `docs/qa`"),
            "{e}"
        );
        let e = err_text(v4("devStoryLocation: s\nprd:\n  prdSharded: yes please\n"));
        assert!(
            e.contains(":3: `prd.prdSharded` must be true or false"),
            "{e}"
        );
        let e = err_text(v4("qa:\n  qaLocation: q\n"));
        assert!(e.contains("`devStoryLocation` is missing"), "{e}");
        let e = err_text(v4("- a\n- b\n"));
        assert!(e.contains("not a mapping"), "{e}");
    }

    #[test]
    fn v6_placeholders() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(dir.path().join("_bmad/bmm")).unwrap_or_else(|e| panic!("{e}"));
        let write = |t: &str| {
            std::fs::write(dir.path().join(V6_CONFIG), t).unwrap_or_else(|e| panic!("{e}"))
        };
        write(
            "# Version: 6.1.0\noutput_folder: \"{project-root}/out\"\nplanning_artifacts: \"{output_folder}/plan\"\nimplementation_artifacts: impl\n",
        );
        let c = read_v6(dir.path(), &mut Vec::new()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.planning, PathBuf::from("out/plan"));
        assert_eq!(c.implementation, PathBuf::from("impl"));
        assert_eq!(c.version.as_deref(), Some("6.1.0"));
        write("planning_artifacts: p\nimplementation_artifacts: \"{nope}/x\"\n");
        let e = read_v6(dir.path(), &mut Vec::new())
            .map(|_| ())
            .expect_err("placeholder");
        assert!(
            e.to_string()
                .contains("config.yaml:2: `implementation_artifacts` contains a placeholder"),
            "{e}"
        );
        write("planning_artifacts: p\n");
        let e = read_v6(dir.path(), &mut Vec::new())
            .map(|_| ())
            .expect_err("missing");
        assert!(
            e.to_string()
                .contains("`implementation_artifacts` is missing"),
            "{e}"
        );
    }
}
