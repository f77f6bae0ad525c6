//! Which BMAD implementation flow a project's installation supports, found from the files it
//! has installed (never from what its stories look like).
//!
//! - BMAD v4 (`.bmad-core/`): the v4 flow (SM `*draft`, Dev `*develop-story`, QA `*review`).
//! - BMAD v6 with the story workflows, `create-story` / `dev-story`: the workflow folders of
//!   6.0 to 6.10 (`_bmad/bmm/workflows/4-implementation/{create-story,dev-story}/`) or the
//!   `bmad-create-story` / `bmad-dev-story` skills (the opt-in shims of 6.11+, in
//!   `.claude/skills/` or listed in `_bmad/_config/skill-manifest.csv`): the story flow, SM →
//!   Dev → code-review, as before 6.11. The shims win when both flows are installed: a project
//!   that kept them keeps its flow.
//! - BMAD v6 with `bmad-build` or `bmad-build-auto` (6.11+) and no story workflows: the build
//!   flow, build (the spec written and implemented in one step) → gates → `bmad-code-review`.
//! - BMAD v6 with neither: an installation that lists its skills (a `skill-manifest.csv` or a
//!   `.claude/skills/` folder) or says it is 6.11 or later is an error naming what is missing
//!   and how to install it ([`ProjectError::NoFlow`]); one with no trace of what it installed
//!   and an older or unknown version (a bare `_bmad/bmm/config.yaml`) gets the story flow, the
//!   only one BMAD had before 6.11.

use std::fmt;
use std::path::{Path, PathBuf};

use super::error::ProjectError;
use crate::policy::Layout;

/// Where the BMAD installer records the skills it installed (6.x).
pub const SKILL_MANIFEST: &str = "_bmad/_config/skill-manifest.csv";
/// Where the installer puts skills for Claude Code.
pub const CLAUDE_SKILLS: &str = ".claude/skills";
/// The v6.0–6.10 workflow folder.
const V6_WORKFLOWS: &str = "_bmad/bmm/workflows/4-implementation";
/// The first BMAD release with the build flow.
const BUILD_SINCE: (u64, u64) = (6, 11);

/// The implementation flow a project runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BmadFlow {
    /// BMAD v4: `create-next-story`, `develop-story`, `review-story` + `qa-gate`.
    V4,
    /// BMAD v6 story flow: `create-story`, `dev-story`, `code-review`.
    Stories,
    /// BMAD 6.11+ build flow: `bmad-build` / `bmad-build-auto`, `bmad-code-review`.
    Build,
}

impl BmadFlow {
    /// The name `status --json` and `run --dry-run` use: `v4`, `stories`, `build`.
    pub fn name(self) -> &'static str {
        match self {
            BmadFlow::V4 => "v4",
            BmadFlow::Stories => "stories",
            BmadFlow::Build => "build",
        }
    }
}

impl fmt::Display for BmadFlow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BmadFlow::V4 => "v4 flow (create-next-story → develop-story → review-story)",
            BmadFlow::Stories => "story flow (create-story → dev-story → code-review)",
            BmadFlow::Build => "build flow (bmad-build → gates → bmad-code-review)",
        })
    }
}

/// The flow picked for a project, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FlowChoice {
    /// The flow.
    pub flow: BmadFlow,
    /// Why, for people: the installed file that decided it.
    pub why: String,
}

/// What made a v6 project's flow undecidable (kept by the project; see [`ProjectError::NoFlow`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NoFlow {
    pub version: String,
    pub looked_for: String,
}

impl NoFlow {
    pub(crate) fn error(&self, root: &Path) -> ProjectError {
        ProjectError::NoFlow {
            root: root.to_owned(),
            version: self.version.clone(),
            looked_for: self.looked_for.clone(),
        }
    }
}

/// The skills of the skill manifest (its `canonicalId` column), empty when there is none.
fn manifest_ids(root: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(root.join(SKILL_MANIFEST)).ok()?;
    let mut lines = text.lines();
    let header: Vec<String> = split_csv(lines.next()?);
    let col = header.iter().position(|h| h == "canonicalId").unwrap_or(0);
    Some(
        lines
            .filter_map(|l| split_csv(l).into_iter().nth(col))
            .filter(|id| !id.is_empty())
            .collect(),
    )
}

/// One CSV line's fields (double quotes, `""` inside them); enough for the installer's manifest.
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// The first installed file (relative) of the skill `id`: its Claude Code folder or its row in the
/// skill manifest.
fn skill(root: &Path, manifest: Option<&[String]>, id: &str) -> Option<PathBuf> {
    let dir = Path::new(CLAUDE_SKILLS).join(id).join("SKILL.md");
    if root.join(&dir).is_file() {
        return Some(dir);
    }
    manifest
        .filter(|ids| ids.iter().any(|i| i == id))
        .map(|_| PathBuf::from(format!("{SKILL_MANIFEST} ({id})")))
}

/// The v6.0–6.10 workflow of `name` (`create-story`, `dev-story`), when installed.
fn workflow(root: &Path, name: &str) -> Option<PathBuf> {
    ["workflow.yaml", "workflow.md"]
        .iter()
        .map(|f| Path::new(V6_WORKFLOWS).join(name).join(f))
        .find(|p| root.join(p).is_file())
}

fn at_least(version: Option<&str>, min: (u64, u64)) -> bool {
    let Some(v) = version else { return false };
    let mut parts = v
        .trim_start_matches('v')
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u64>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= min,
        _ => false,
    }
}

/// The flow of the project at `root` (see the module docs).
pub(crate) fn detect(
    root: &Path,
    layout: Layout,
    version: Option<&str>,
) -> Result<FlowChoice, NoFlow> {
    if layout == Layout::V4 {
        return Ok(FlowChoice {
            flow: BmadFlow::V4,
            why: "BMAD v4 (.bmad-core/)".to_owned(),
        });
    }
    let manifest = manifest_ids(root);
    let manifest = manifest.as_deref();
    let stories = ["create-story", "dev-story"].iter().find_map(|name| {
        workflow(root, name).or_else(|| skill(root, manifest, &format!("bmad-{name}")))
    });
    if let Some(found) = stories {
        return Ok(FlowChoice {
            flow: BmadFlow::Stories,
            why: format!(
                "the story workflows are installed ({}): create-story / dev-story",
                found.display()
            ),
        });
    }
    let build = ["bmad-build-auto", "bmad-build"]
        .iter()
        .find_map(|id| skill(root, manifest, id));
    if let Some(found) = build {
        return Ok(FlowChoice {
            flow: BmadFlow::Build,
            why: format!(
                "bmad-build is installed ({}) and the create-story / dev-story shims are not",
                found.display()
            ),
        });
    }
    let lists_skills = manifest.is_some() || root.join(CLAUDE_SKILLS).is_dir();
    if lists_skills || at_least(version, BUILD_SINCE) {
        return Err(NoFlow {
            version: version.unwrap_or("(version unknown)").to_owned(),
            looked_for: format!(
                "{CLAUDE_SKILLS}/{{bmad-build,bmad-build-auto,bmad-create-story,bmad-dev-story}}/SKILL.md, \
                 their rows in {SKILL_MANIFEST} and {V6_WORKFLOWS}/{{create-story,dev-story}}/"
            ),
        });
    }
    Ok(FlowChoice {
        flow: BmadFlow::Stories,
        why: format!(
            "BMAD {} has no installed workflow or skill list and predates the build flow (6.11): create-story / dev-story",
            version.unwrap_or("(version unknown)")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    #[test]
    fn csv_fields() {
        assert_eq!(split_csv(r#""a","b ""c"", d",e"#), ["a", "b \"c\", d", "e"]);
    }

    #[test]
    fn versions() {
        assert!(at_least(Some("6.12.0"), (6, 11)));
        assert!(at_least(Some("6.11.0-beta.1"), (6, 11)));
        assert!(at_least(Some("7.0"), (6, 11)));
        assert!(!at_least(Some("6.0.4"), (6, 11)));
        assert!(!at_least(Some("6.10.2"), (6, 11)));
        assert!(!at_least(None, (6, 11)));
        assert!(!at_least(Some("six"), (6, 11)));
    }

    #[test]
    fn shims_win_then_build_then_neither() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path();
        // Bare and old: the story flow.
        let c = detect(root, Layout::V6, Some("6.0.4")).expect("flow");
        assert_eq!(c.flow, BmadFlow::Stories);
        // Bare and 6.12: nothing to run.
        let e = detect(root, Layout::V6, Some("6.12.0")).expect_err("no flow");
        assert!(e.looked_for.contains("bmad-build"), "{e:?}");
        // The build skill.
        put(root, ".claude/skills/bmad-build/SKILL.md", "x");
        let c = detect(root, Layout::V6, Some("6.12.0")).expect("flow");
        assert_eq!(c.flow, BmadFlow::Build);
        assert!(
            c.why.contains(".claude/skills/bmad-build/SKILL.md"),
            "{c:?}"
        );
        // The shims too: the story flow.
        put(
            root,
            SKILL_MANIFEST,
            "canonicalId,name,description,module,path\n\"bmad-dev-story\",\"bmad-dev-story\",\"Deprecated\",\"bmm\",\"_bmad/bmm/x/SKILL.md\"\n",
        );
        let c = detect(root, Layout::V6, Some("6.12.0")).expect("flow");
        assert_eq!(c.flow, BmadFlow::Stories);
        assert!(c.why.contains("bmad-dev-story"), "{c:?}");
        // A skill list with neither, whatever the version.
        let dir = tempfile::tempdir().expect("tmp");
        put(dir.path(), ".claude/skills/bmad-help/SKILL.md", "x");
        assert!(detect(dir.path(), Layout::V6, None).is_err());
        // v4 is v4.
        assert_eq!(
            detect(dir.path(), Layout::V4, None).expect("v4").flow,
            BmadFlow::V4
        );
    }
}
