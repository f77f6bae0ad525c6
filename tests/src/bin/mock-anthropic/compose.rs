//! Scenario files built from others: `include` and `patches`, resolved on the JSON before the
//! scenario is compiled.
//!
//! - `"include": ["roles-v4.json"]`: paths relative to the including file. The included
//!   file's `scripts` come after the including file's own (so own scripts win the match), and
//!   its other top-level keys are used where the including file has none.
//! - `"patches": [{"script": "dev", "turn": 2, "set": {"hang": true}}]`: after the includes,
//!   each patch sets keys on one existing turn (`"script": "default"` is the top-level
//!   `turns`), e.g. to add a fault to a shared role script.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// Deepest include chain followed (a loop of includes hits it).
const MAX_DEPTH: usize = 8;

/// Reads `path` with its includes resolved and its patches applied.
pub fn load(path: &Path) -> Result<Value, String> {
    load_at(path, 0)
}

fn load_at(path: &Path, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "{}: includes nested deeper than {MAX_DEPTH} (a loop?)",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut value: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?;
    let Value::Object(obj) = &mut value else {
        return Err(format!("{}: a scenario is a JSON object", path.display()));
    };
    let includes = match obj.remove("include") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(a)) => a
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                other => Err(format!(
                    "{}: `include` entries are paths, not {other}",
                    path.display()
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(format!(
                "{}: `include` is a path or a list of paths, not {other}",
                path.display()
            ));
        }
    };
    let dir = path.parent().map_or_else(PathBuf::new, Path::to_path_buf);
    for inc in includes {
        let included = load_at(&dir.join(&inc), depth + 1)?;
        merge(obj, included);
    }
    patch(obj).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(value)
}

/// Adds `included`'s scripts after `obj`'s, and its other keys where `obj` has none.
fn merge(obj: &mut Map<String, Value>, included: Value) {
    let Value::Object(inc) = included else { return };
    for (k, v) in inc {
        if k == "scripts" {
            let mine = obj
                .entry("scripts")
                .or_insert_with(|| Value::Array(Vec::new()));
            if let (Value::Array(mine), Value::Array(theirs)) = (mine, v) {
                mine.extend(theirs);
            }
        } else {
            obj.entry(k).or_insert(v);
        }
    }
}

/// Applies and removes `patches`.
pub fn patch(obj: &mut Map<String, Value>) -> Result<(), String> {
    let Some(patches) = obj.remove("patches") else {
        return Ok(());
    };
    let Value::Array(patches) = patches else {
        return Err("`patches` is a list".into());
    };
    for (i, p) in patches.iter().enumerate() {
        let script = p.get("script").and_then(Value::as_str).unwrap_or("default");
        let turn = p
            .get("turn")
            .and_then(Value::as_u64)
            .and_then(|t| usize::try_from(t).ok())
            .ok_or_else(|| format!("patch {i}: `turn` (a number) is required"))?;
        let Some(Value::Object(set)) = p.get("set") else {
            return Err(format!("patch {i}: `set` (an object) is required"));
        };
        let turns = if script == "default" {
            obj.get_mut("turns")
        } else {
            obj.get_mut("scripts")
                .and_then(Value::as_array_mut)
                .and_then(|s| {
                    s.iter_mut()
                        .find(|s| s.get("name").and_then(Value::as_str) == Some(script))
                })
                .and_then(|s| s.get_mut("turns"))
        };
        let Some(Value::Object(target)) = turns
            .and_then(Value::as_array_mut)
            .and_then(|t| t.get_mut(turn))
        else {
            return Err(format!("patch {i}: script `{script}` has no turn {turn}"));
        };
        for (k, v) in set {
            target.insert(k.clone(), v.clone());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write(dir: &Path, name: &str, v: &Value) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, v.to_string()).expect("write");
        p
    }

    #[test]
    fn include_then_patch() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "roles.json",
            &json!({"model": "m-roles", "description": "roles",
                    "scripts": [{"name": "dev", "turns": [{"text": "a"}, {"text": "b"}]}]}),
        );
        let top = write(
            dir.path(),
            "top.json",
            &json!({"description": "top", "include": "roles.json",
                    "scripts": [{"name": "mine", "turns": []}],
                    "patches": [{"script": "dev", "turn": 1, "set": {"hang": true}}]}),
        );
        let v = load(&top).expect("load");
        assert_eq!(v["description"], "top");
        assert_eq!(v["model"], "m-roles");
        assert_eq!(v["scripts"][0]["name"], "mine");
        assert_eq!(
            v["scripts"][1]["turns"][1],
            json!({"text": "b", "hang": true})
        );
        assert!(v.get("include").is_none() && v.get("patches").is_none());
    }

    #[test]
    fn errors_name_the_file_and_patch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = write(dir.path(), "a.json", &json!({"include": ["nope.json"]}));
        let e = load(&missing).expect_err("missing include");
        assert!(e.contains("nope.json"), "{e}");
        let bad = write(
            dir.path(),
            "b.json",
            &json!({"turns": [{"text": "x"}], "patches": [{"turn": 3, "set": {}}]}),
        );
        let e = load(&bad).expect_err("no such turn");
        assert!(e.contains("b.json") && e.contains("no turn 3"), "{e}");
        let selfloop = write(dir.path(), "c.json", &json!({"include": "c.json"}));
        assert!(load(&selfloop).expect_err("loop").contains("deeper"));
    }
}
