//! [`Project::discover`]: the layout, the config, the epics and every story of a BMAD project.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::config::{self, PrdSource, V4Config, V6Config};
use super::error::{ProjectError, Warning};
use super::flow::{self, BmadFlow, FlowChoice, NoFlow};
use super::folder_index::{FolderIndex, NameId};
use super::fs::{inside, read_inside};
use super::gate::{QaGate, gate_story, read_gate};
use super::headings::{EpicDoc, parse_epic_doc};
use super::id::StoryId;
use super::sprint::SprintStatus;
use super::text::slug;
use crate::policy::Layout;

/// Epic documents (PRD, shards, epics.md) larger than this are refused.
const MAX_EPIC_DOC_BYTES: u64 = 8 * 1024 * 1024;
/// How much of a story file is read to find its title.
const TITLE_PEEK_BYTES: usize = 16 * 1024;

/// An epic of the plan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Epic {
    /// The epic number.
    pub number: u32,
    /// The title from its heading (empty when only its stories name it).
    pub title: String,
    /// The document with its heading, relative to the root.
    pub path: Option<PathBuf>,
    /// The heading's line in that document.
    pub line: Option<u32>,
    /// Its value in sprint-status (v6).
    pub sprint_value: Option<String>,
}

/// One story of the project: planned in the PRD / epics, present as a file, or listed in
/// sprint-status. Every path is relative to the project root.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoryEntry {
    /// The story id.
    pub id: StoryId,
    /// The title (from the plan, else the story file, else the sprint-status slug).
    pub title: String,
    /// The epic number.
    pub epic: u32,
    /// The story file: the existing one, or where the SM agent must create it
    /// (v4 `{devStoryLocation}/{epic}.{story}.story.md`, v6 `{implementation_artifacts}/{key}.md`).
    pub path: PathBuf,
    /// Whether the story file existed at discovery.
    pub exists: bool,
    /// The slug: v6 the sprint-status key's tail, else derived from the title like
    /// `sprint_plan.py` does.
    pub slug: String,
    /// v4: the QA gate file, the existing one or `{qaLocation}/gates/{epic}.{story}-{slug}.yml`.
    pub gate_path: Option<PathBuf>,
    /// Whether the gate file existed at discovery.
    pub gate_exists: bool,
    /// v6: the sprint-status key (the existing one, else derived: `{epic}-{story}-{slug}`).
    pub sprint_key: Option<String>,
    /// v6: the key's value in sprint-status, when listed.
    pub sprint_value: Option<String>,
    /// v6: the key's line in sprint-status.
    pub sprint_line: Option<u32>,
    /// The epic document that plans the story (or its epic's document).
    pub epic_path: Option<PathBuf>,
    /// Whether the plan (PRD, shards, epics.md) has a heading for it.
    pub in_plan: bool,
    /// The heading's line in the epic document.
    pub plan_line: Option<u32>,
}

/// The layout-specific part of a project.
#[derive(Debug, Clone)]
enum LayoutConfig {
    V4(V4Config),
    V6(V6Config),
}

/// A discovered BMAD project.
#[derive(Debug, Clone)]
pub struct Project {
    root: PathBuf,
    config: LayoutConfig,
    epic_files: Vec<PathBuf>,
    epics: Vec<Epic>,
    stories: Vec<StoryEntry>,
    sprint: Option<SprintStatus>,
    sprint_path: Option<PathBuf>,
    warnings: Vec<Warning>,
    /// The gate files of `{qaLocation}/gates`, kept current without listing it per lookup.
    gates: FolderIndex,
    /// The story folder's files, kept current the same way (a story file is looked for at the
    /// start of each story).
    story_index: FolderIndex,
    /// The implementation flow its installation supports ([`Project::flow`]).
    flow: Result<FlowChoice, NoFlow>,
}

impl Project {
    /// Finds the BMAD project at `root` and everything in it.
    ///
    /// v4 is `.bmad-core/core-config.yaml`, v6 is `_bmad/bmm/config.yaml` (v6 wins, with a
    /// warning, when both exist). Broken config or sprint-status files are errors naming the file,
    /// line and key; missing planning documents are warnings (see [`Project::warnings`]).
    pub fn discover(root: &Path) -> Result<Project, ProjectError> {
        let root = std::path::absolute(root).map_err(|e| ProjectError::io("resolve", root, e))?;
        if !root.is_dir() {
            return Err(ProjectError::NotADirectory { root });
        }
        let mut warnings = Vec::new();
        let has_v4 = root.join(config::V4_CONFIG).is_file();
        let has_v6 = root.join(config::V6_CONFIG).is_file();
        let config = match (has_v4, has_v6) {
            (_, true) => {
                if has_v4 {
                    warnings.push(Warning::new(
                        &root.join(config::V4_CONFIG),
                        None,
                        "both BMAD v4 (.bmad-core/) and v6 (_bmad/) are installed: using v6; remove .bmad-core/ if the project has moved to v6",
                    ));
                }
                LayoutConfig::V6(config::read_v6(&root, &mut warnings)?)
            }
            (true, false) => LayoutConfig::V4(config::read_v4(&root, &mut warnings)?),
            (false, false) => return Err(no_layout(&root)),
        };
        let (layout, version) = match &config {
            LayoutConfig::V4(c) => (Layout::V4, c.version.as_deref()),
            LayoutConfig::V6(c) => (Layout::V6, c.version.as_deref()),
        };
        let flow = flow::detect(&root, layout, version);
        let mut project = Project {
            root,
            config,
            epic_files: Vec::new(),
            epics: Vec::new(),
            stories: Vec::new(),
            sprint: None,
            sprint_path: None,
            warnings,
            gates: FolderIndex::new(gate_story),
            story_index: FolderIndex::new(story_file_id(layout)),
            flow,
        };
        match project.config.clone() {
            LayoutConfig::V4(c) => project.build_v4(&c)?,
            LayoutConfig::V6(c) => project.build_v6(&c)?,
        }
        tracing::debug!(project = %project.describe(), stories = project.stories.len(), "project discovered");
        Ok(project)
    }

    /// The project root (absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The BMAD layout.
    pub fn layout(&self) -> Layout {
        match self.config {
            LayoutConfig::V4(_) => Layout::V4,
            LayoutConfig::V6(_) => Layout::V6,
        }
    }

    /// The implementation flow the installation supports, and why (see
    /// [`crate::project`]'s flow rules); [`ProjectError::NoFlow`] for a v6 installation with
    /// neither the story workflows nor the build skills.
    pub fn flow(&self) -> Result<&FlowChoice, ProjectError> {
        self.flow.as_ref().map_err(|e| e.error(&self.root))
    }

    /// Whether the project runs the build flow (its stories are `bmad-build` specs).
    pub fn is_build_flow(&self) -> bool {
        matches!(&self.flow, Ok(c) if c.flow == BmadFlow::Build)
    }

    /// The installed BMAD version (`4.44.3`, `6.0.4`), when known.
    pub fn version(&self) -> Option<&str> {
        match &self.config {
            LayoutConfig::V4(c) => c.version.as_deref(),
            LayoutConfig::V6(c) => c.version.as_deref(),
        }
    }

    /// The config file that was read, relative to the root.
    pub fn config_path(&self) -> &Path {
        Path::new(match self.config {
            LayoutConfig::V4(_) => config::V4_CONFIG,
            LayoutConfig::V6(_) => config::V6_CONFIG,
        })
    }

    /// One line for people: `BMAD v4 4.44.3 (.bmad-core/core-config.yaml), sharded PRD docs/prd`.
    pub fn describe(&self) -> String {
        let layout = match self.layout() {
            Layout::V4 => "v4",
            Layout::V6 => "v6",
        };
        let version = self.version().unwrap_or("(version unknown)");
        let head = format!("BMAD {layout} {version} ({})", self.config_path().display());
        match &self.config {
            LayoutConfig::V4(c) => match &c.prd {
                PrdSource::Sharded { dir, .. } => format!("{head}, sharded PRD {}", dir.display()),
                PrdSource::Monolithic { file } => format!("{head}, PRD {}", file.display()),
            },
            LayoutConfig::V6(c) => {
                let epics = match self.epic_files.as_slice() {
                    [one] => one.display().to_string(),
                    [] => format!("{} (no epics.md)", c.planning.display()),
                    _ => format!("{}/epics/", c.planning.display()),
                };
                format!(
                    "{head}, epics {epics}, stories {}",
                    c.implementation.display()
                )
            }
        }
    }

    /// Where story files live (v4 `devStoryLocation`, v6 `implementation_artifacts`), relative.
    pub fn story_dir(&self) -> &Path {
        match &self.config {
            LayoutConfig::V4(c) => &c.story_dir,
            LayoutConfig::V6(c) => &c.implementation,
        }
    }

    /// v4: the PRD source.
    pub fn prd(&self) -> Option<&PrdSource> {
        match &self.config {
            LayoutConfig::V4(c) => Some(&c.prd),
            LayoutConfig::V6(_) => None,
        }
    }

    /// v4: `qa.qaLocation`, relative.
    pub fn qa_dir(&self) -> Option<&Path> {
        match &self.config {
            LayoutConfig::V4(c) => Some(&c.qa_dir),
            LayoutConfig::V6(_) => None,
        }
    }

    /// v6: `planning_artifacts`, relative.
    pub fn planning_dir(&self) -> Option<&Path> {
        match &self.config {
            LayoutConfig::V4(_) => None,
            LayoutConfig::V6(c) => Some(&c.planning),
        }
    }

    /// v6: where `sprint-status.yaml` is (whether or not it exists), relative.
    pub fn sprint_status_path(&self) -> Option<&Path> {
        self.sprint_path.as_deref()
    }

    /// v6: the sprint-status file as read at discovery (`None` if it does not exist).
    pub fn sprint_status(&self) -> Option<&SprintStatus> {
        self.sprint.as_ref()
    }

    /// The epic documents that were read, relative.
    pub fn epic_files(&self) -> &[PathBuf] {
        &self.epic_files
    }

    /// The epics, by number.
    pub fn epics(&self) -> &[Epic] {
        &self.epics
    }

    /// Every story, in numeric id order.
    pub fn stories(&self) -> &[StoryEntry] {
        &self.stories
    }

    /// What was tolerated during discovery (missing PRD, odd headings, sprint-status oddities).
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// The story with this id.
    pub fn story(&self, id: StoryId) -> Option<&StoryEntry> {
        self.stories.iter().find(|s| s.id == id)
    }

    /// The story for `--story ID` (`1.2` or `1-2`); an error lists the known ids.
    pub fn find_story(&self, id: &str) -> Result<&StoryEntry, ProjectError> {
        let id: StoryId = id.parse()?;
        self.story(id).ok_or_else(|| ProjectError::UnknownStory {
            id,
            known: self.known_ids(),
        })
    }

    /// The stories of `--epic N`, in order; an error lists the known epics.
    pub fn epic_stories(&self, epic: u32) -> Result<Vec<&StoryEntry>, ProjectError> {
        let stories: Vec<&StoryEntry> = self.stories.iter().filter(|s| s.epic == epic).collect();
        if stories.is_empty() && !self.epics.iter().any(|e| e.number == epic) {
            let known: Vec<String> = self.epics.iter().map(|e| e.number.to_string()).collect();
            return Err(ProjectError::UnknownEpic {
                epic,
                known: if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                },
            });
        }
        Ok(stories)
    }

    /// The stories selected by `--epic` and `--story` (both optional; all stories when neither).
    pub fn select(
        &self,
        epic: Option<u32>,
        story: Option<StoryId>,
    ) -> Result<Vec<&StoryEntry>, ProjectError> {
        match (epic, story) {
            (_, Some(id)) => {
                let entry = self.story(id).ok_or_else(|| ProjectError::UnknownStory {
                    id,
                    known: self.known_ids(),
                })?;
                match epic {
                    Some(e) if e != entry.epic => Err(ProjectError::StoryNotInEpic { id, epic: e }),
                    _ => Ok(vec![entry]),
                }
            }
            (Some(e), None) => self.epic_stories(e),
            (None, None) => Ok(self.stories.iter().collect()),
        }
    }

    /// The story's QA gate file (v4), looked for again now (QA may have written it since
    /// discovery): `{qaLocation}/gates/{epic}.{story}-*.yml`. `Ok(None)` for v6 and when there
    /// is no gate yet. Bad values are read tolerantly with warnings in [`QaGate::warnings`].
    pub fn read_qa_gate(&self, story: &StoryEntry) -> Result<Option<QaGate>, ProjectError> {
        let LayoutConfig::V4(c) = &self.config else {
            return Ok(None);
        };
        let gates_dir = c.qa_dir.join("gates");
        let mut several = Vec::new();
        let found = self.find_gate(&gates_dir, story.id, &story.slug, &mut several)?;
        match found {
            Some(rel) => {
                let mut gate = read_gate(&self.root, &rel)?;
                gate.warnings.extend(several);
                Ok(Some(gate))
            }
            None => Ok(None),
        }
    }

    /// Where the story's QA gate file is now (v4), relative to the root, as
    /// [`Project::read_qa_gate`] finds it, without reading it; `Ok(None)` for v6 and when there is
    /// none.
    pub(crate) fn find_qa_gate(&self, story: &StoryEntry) -> Result<Option<PathBuf>, ProjectError> {
        let LayoutConfig::V4(c) = &self.config else {
            return Ok(None);
        };
        self.find_gate(
            &c.qa_dir.join("gates"),
            story.id,
            &story.slug,
            &mut Vec::new(),
        )
    }

    /// Every gate file of the story (v4: `{qaLocation}/gates/{epic}.{story}-*.yml`, whatever
    /// the slug), relative to the root, sorted by name; empty for v6. A QA agent may write its
    /// gate under another slug than the story's, or next to an old one: the caller picks the one
    /// written by the review it ran ([`Project::read_qa_gate_file`]).
    pub fn qa_gate_files(&self, story: &StoryEntry) -> Result<Vec<PathBuf>, ProjectError> {
        let LayoutConfig::V4(c) = &self.config else {
            return Ok(Vec::new());
        };
        let gates_rel = c.qa_dir.join("gates");
        let names = self.gates.files(&self.abs(&gates_rel), story.id)?;
        Ok(names.into_iter().map(|n| gates_rel.join(n)).collect())
    }

    /// Reads the gate file at `rel` (relative to the root), tolerantly, like
    /// [`Project::read_qa_gate`].
    pub fn read_qa_gate_file(&self, rel: &Path) -> Result<QaGate, ProjectError> {
        read_gate(&self.root, rel)
    }

    /// `rel` made absolute (joined to the root).
    pub fn abs(&self, rel: &Path) -> PathBuf {
        self.root.join(rel)
    }

    /// `path` relative to the root when it is under it.
    pub fn relative(&self, path: &Path) -> PathBuf {
        path.strip_prefix(&self.root)
            .map_or_else(|_| path.to_owned(), Path::to_path_buf)
    }

    /// The story's file as it is on disk now: its path if it exists, else another file for the
    /// same id in the story folder (the SM agent may have chosen another slug), else `None`.
    pub fn locate_story_file(&self, story: &StoryEntry) -> Option<PathBuf> {
        if self.abs(&story.path).is_file() {
            return Some(story.path.clone());
        }
        let names = self
            .story_index
            .files(&self.abs(self.story_dir()), story.id)
            .ok()?;
        let preferred = story
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("");
        // The build flow's spec for the story is `spec-{key}.md`, whatever slug it chose.
        let spec = names
            .iter()
            .find(|n| n.starts_with("spec-"))
            .map(String::as_str);
        let name = match spec {
            Some(spec) if self.is_build_flow() => spec,
            _ => pick(&names, &[preferred])?,
        };
        Some(self.story_dir().join(name))
    }

    fn known_ids(&self) -> String {
        if self.stories.is_empty() {
            return "none".to_owned();
        }
        self.stories
            .iter()
            .map(|s| s.id.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The error for a root with neither layout, saying what was looked for and what was half there.
fn no_layout(root: &Path) -> ProjectError {
    let mut looked_for = format!(
        "{} (BMAD v4) and {} (BMAD v6)",
        config::V4_CONFIG,
        config::V6_CONFIG
    );
    if root.join(".bmad-core").is_dir() {
        looked_for.push_str("; .bmad-core/ exists but has no core-config.yaml: reinstall BMAD v4");
    }
    if root.join("_bmad").is_dir() {
        looked_for.push_str("; _bmad/ exists but has no bmm/config.yaml: install the BMM module");
    }
    ProjectError::NoLayout {
        root: root.to_owned(),
        looked_for,
    }
}

/// How the story files of `layout` are named: the story a file name belongs to.
fn story_file_id(layout: Layout) -> NameId {
    match layout {
        Layout::V4 => v4_story_file_id,
        Layout::V6 => v6_story_file_id,
    }
}

/// Picks a file among `names` (sorted): the first preferred name present, else the first.
fn pick<'a>(names: &'a [String], preferred: &[&str]) -> Option<&'a str> {
    preferred
        .iter()
        .find_map(|p| names.iter().find(|n| n.as_str() == *p))
        .or_else(|| names.first())
        .map(String::as_str)
}

/// A story id at the start of a file name in dotted form (`1.2…`, never `1-2…`).
fn dotted_prefix(name: &str) -> Option<(StoryId, usize)> {
    let (id, used) = StoryId::parse_prefix(name)?;
    (name.bytes().find(|b| matches!(b, b'.' | b'-')) == Some(b'.')).then_some((id, used))
}

/// v4 story file names: `{id}.story.md`, or `{id}.{anything}.md` / `{id}.md`.
fn v4_story_file_id(name: &str) -> Option<StoryId> {
    let (id, used) = dotted_prefix(name)?;
    let rest = &name[used..];
    (rest.starts_with('.') && rest.ends_with(".md")).then_some(id)
}

/// v6 story file names: `{epic}-{story}-{slug}.md`, with 6.12's optional `spec-` prefix.
fn v6_story_file_id(name: &str) -> Option<StoryId> {
    let base = name.strip_suffix(".md")?;
    let base = base.strip_prefix("spec-").unwrap_or(base);
    match super::sprint::SprintKey::classify(base) {
        super::sprint::SprintKey::Story { id, .. } => Some(id),
        _ => None,
    }
}

/// The file names in `dir` (sorted); an empty list when the folder does not exist.
fn list_dir(dir: &Path) -> Result<Vec<String>, ProjectError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ProjectError::io("list", dir, e)),
    };
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| ProjectError::io("list", dir, e))?;
        let is_file = entry
            .file_type()
            .map(|t| t.is_file() || t.is_symlink())
            .unwrap_or(false);
        if let (true, Some(name)) = (is_file, entry.file_name().to_str()) {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// The title in the first lines of a story file: a `Story N.M: Title` heading for this id, or a
/// frontmatter `title:` (6.12 specs).
fn peek_title(path: &Path, id: StoryId) -> Option<String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).ok()?;
    let mut buf = Vec::with_capacity(TITLE_PEEK_BYTES);
    file.take(TITLE_PEEK_BYTES as u64)
        .read_to_end(&mut buf)
        .ok()?;
    let text = String::from_utf8_lossy(&buf);
    if let Some(h) = parse_epic_doc(&text)
        .stories
        .into_iter()
        .find(|s| s.id == id && !s.title.is_empty())
    {
        return Some(h.title);
    }
    let mut lines = text.lines();
    if lines.next().map(str::trim_end) == Some("---") {
        for line in lines {
            if line.trim_end() == "---" {
                break;
            }
            if let Some(v) = line.strip_prefix("title:") {
                let v = v.trim().trim_matches(['"', '\'']).trim();
                if !v.is_empty() {
                    return Some(v.to_owned());
                }
            }
        }
    }
    None
}

/// The sharded PRD's epic file name pattern (`epic-{n}*.md`) as a matcher returning the epic
/// number (`None` when the pattern has no `{n}`: the number then comes from the headings).
enum ShardPattern {
    /// `{prefix}{n}{rest}`.
    Numbered {
        prefix: String,
        rest: globset::GlobMatcher,
    },
    /// A plain glob.
    Plain(globset::GlobMatcher),
}

impl ShardPattern {
    fn new(pattern: &str) -> Result<ShardPattern, globset::Error> {
        Ok(match pattern.split_once("{n}") {
            Some((prefix, rest)) => ShardPattern::Numbered {
                prefix: prefix.to_owned(),
                rest: globset::Glob::new(rest)?.compile_matcher(),
            },
            None => ShardPattern::Plain(globset::Glob::new(pattern)?.compile_matcher()),
        })
    }

    /// `Some(Some(n))`: matches with epic n; `Some(None)`: matches, number unknown; `None`: no.
    fn matches(&self, name: &str) -> Option<Option<u32>> {
        match self {
            ShardPattern::Plain(m) => m.is_match(name).then_some(None),
            ShardPattern::Numbered { prefix, rest } => {
                let tail = name.strip_prefix(prefix.as_str())?;
                let digits =
                    tail.len() - tail.trim_start_matches(|c: char| c.is_ascii_digit()).len();
                let n: u32 = tail[..digits].parse().ok()?;
                rest.is_match(&tail[digits..]).then_some(Some(n))
            }
        }
    }
}

/// The plan collected from the epic documents.
#[derive(Default)]
struct Plan {
    epics: BTreeMap<u32, Epic>,
    /// Story heading, with the document it was found in.
    stories: Vec<(super::headings::StoryHeading, PathBuf)>,
}

impl Plan {
    fn add_doc(&mut self, rel: &Path, abs: &Path, doc: EpicDoc, warnings: &mut Vec<Warning>) {
        for (line, message) in doc.warnings {
            warnings.push(Warning::new(abs, Some(line), message));
        }
        for e in doc.epics {
            let entry = self.epics.entry(e.number).or_insert_with(|| Epic {
                number: e.number,
                title: String::new(),
                path: None,
                line: None,
                sprint_value: None,
            });
            if entry.title.is_empty() {
                entry.title = e.title;
            }
            // The epic's own section (the last heading: epics.md lists epics before their sections).
            entry.path = Some(rel.to_owned());
            entry.line = Some(e.line);
        }
        for s in doc.stories {
            if let Some((first, in_doc)) = self.stories.iter().find(|(f, _)| f.id == s.id) {
                warnings.push(Warning::new(
                    abs,
                    Some(s.line),
                    format!(
                        "story {} is planned twice (first in {} line {}): the first is kept",
                        s.id,
                        in_doc.display(),
                        first.line
                    ),
                ));
                continue;
            }
            self.stories.push((s, rel.to_owned()));
        }
    }
}

impl Project {
    fn read_epic_doc(&mut self, plan: &mut Plan, rel: &Path) -> Result<(), ProjectError> {
        let abs = self.abs(rel);
        let bytes = read_inside(&self.root, &abs, MAX_EPIC_DOC_BYTES, "an epic document")?;
        let doc = parse_epic_doc(&String::from_utf8_lossy(&bytes));
        plan.add_doc(rel, &abs, doc, &mut self.warnings);
        self.epic_files.push(rel.to_owned());
        Ok(())
    }

    /// Story files in the story folder, by id (names sorted).
    fn story_files(
        &self,
        warnings: &mut Vec<Warning>,
    ) -> Result<HashMap<StoryId, Vec<String>>, ProjectError> {
        let dir = self.abs(self.story_dir());
        let parse = story_file_id(self.layout());
        let mut files: HashMap<StoryId, Vec<String>> = HashMap::new();
        for name in list_dir(&dir)? {
            if let Some(id) = parse(&name) {
                files.entry(id).or_default().push(name);
            }
        }
        for (id, names) in &files {
            if names.len() > 1 {
                warnings.push(Warning::new(
                    &dir,
                    None,
                    format!("several files for story {id}: {}", names.join(", ")),
                ));
            }
        }
        Ok(files)
    }

    /// The existing gate file for a story: `{gates}/{id}-*.yml` (or `.yaml`), preferring the one
    /// with the story's slug.
    fn find_gate(
        &self,
        gates_rel: &Path,
        id: StoryId,
        slug: &str,
        warnings: &mut Vec<Warning>,
    ) -> Result<Option<PathBuf>, ProjectError> {
        let dir = self.abs(gates_rel);
        let names = self.gates.files(&dir, id)?;
        if names.len() > 1 {
            warnings.push(Warning::new(
                &dir,
                None,
                format!("several gate files for story {id}: {}", names.join(", ")),
            ));
        }
        let exact = format!("{id}-{slug}.yml");
        let exact_yaml = format!("{id}-{slug}.yaml");
        Ok(pick(&names, &[&exact, &exact_yaml]).map(|n| gates_rel.join(n)))
    }

    fn build_v4(&mut self, c: &V4Config) -> Result<(), ProjectError> {
        let config_abs = self.abs(Path::new(config::V4_CONFIG));
        let mut plan = Plan::default();
        match &c.prd {
            PrdSource::Monolithic { file } => {
                if self.abs(file).is_file() {
                    self.read_epic_doc(&mut plan, file)?;
                } else {
                    self.warnings.push(Warning::new(
                        &config_abs,
                        None,
                        format!("the PRD {} (prd.prdFile) does not exist: no planned stories, only story files", file.display()),
                    ));
                }
            }
            PrdSource::Sharded { dir, pattern } => {
                let matcher = ShardPattern::new(pattern).map_err(|e| {
                    ProjectError::key(
                        &config_abs,
                        None,
                        "prd.epicFilePattern",
                        format!("is not a valid file pattern ({e})"),
                        "use a pattern like `epic-{n}*.md`",
                    )
                })?;
                let mut shards: Vec<(Option<u32>, String)> = list_dir(&self.abs(dir))?
                    .into_iter()
                    .filter_map(|n| matcher.matches(&n).map(|num| (num, n)))
                    .collect();
                shards.sort();
                if shards.is_empty() {
                    self.warnings.push(Warning::new(
                        &config_abs,
                        None,
                        format!(
                            "no epic files matching `{pattern}` (prd.epicFilePattern) in {} (prd.prdShardedLocation): no planned stories",
                            dir.display()
                        ),
                    ));
                }
                for (num, name) in shards {
                    let rel = dir.join(&name);
                    self.read_epic_doc(&mut plan, &rel)?;
                    // A shard without an epic heading still names its epic.
                    if let Some(n) = num {
                        plan.epics.entry(n).or_insert_with(|| Epic {
                            number: n,
                            title: String::new(),
                            path: Some(rel.clone()),
                            line: None,
                            sprint_value: None,
                        });
                    }
                }
            }
        }

        let mut warnings = Vec::new();
        let files = self.story_files(&mut warnings)?;
        let mut stories = Vec::new();
        for (h, doc) in &plan.stories {
            let names = files.get(&h.id).map(Vec::as_slice).unwrap_or(&[]);
            let default_name = format!("{}.story.md", h.id);
            let file = pick(names, &[&default_name]).map(str::to_owned);
            stories.push(self.v4_entry(
                h.id,
                h.title.clone(),
                file,
                Some(doc.clone()),
                Some(h.line),
                &mut warnings,
            )?);
        }
        for (id, names) in &files {
            if plan.stories.iter().any(|(h, _)| h.id == *id) {
                continue;
            }
            let default_name = format!("{id}.story.md");
            let name = pick(names, &[&default_name]).map(str::to_owned);
            let title = name
                .as_deref()
                .and_then(|n| peek_title(&self.abs(&c.story_dir.join(n)), *id))
                .unwrap_or_default();
            let epic_doc = plan.epics.get(&id.epic).and_then(|e| e.path.clone());
            stories.push(self.v4_entry(*id, title, name, epic_doc, None, &mut warnings)?);
        }
        self.warnings.extend(warnings);
        self.finish(plan, stories);
        Ok(())
    }

    fn v4_entry(
        &self,
        id: StoryId,
        title: String,
        file: Option<String>,
        epic_path: Option<PathBuf>,
        plan_line: Option<u32>,
        warnings: &mut Vec<Warning>,
    ) -> Result<StoryEntry, ProjectError> {
        let story_dir = self.story_dir().to_owned();
        let gates_rel = self.qa_dir().unwrap_or(Path::new("docs/qa")).join("gates");
        let gates_rel = gates_rel.as_path();
        let slug = slug(&title);
        let (path, exists) = match file {
            Some(name) => (story_dir.join(name), true),
            None => (story_dir.join(format!("{id}.story.md")), false),
        };
        let gate = self.find_gate(gates_rel, id, &slug, warnings)?;
        let gate_exists = gate.is_some();
        let gate_path = gate.unwrap_or_else(|| gates_rel.join(format!("{id}-{slug}.yml")));
        Ok(StoryEntry {
            id,
            title,
            epic: id.epic,
            path,
            exists,
            slug,
            gate_path: Some(gate_path),
            gate_exists,
            sprint_key: None,
            sprint_value: None,
            sprint_line: None,
            in_plan: plan_line.is_some(),
            epic_path,
            plan_line,
        })
    }

    fn build_v6(&mut self, c: &V6Config) -> Result<(), ProjectError> {
        let mut plan = Plan::default();
        let epics_md = c.planning.join("epics.md");
        let sharded = c.planning.join("epics");
        if self.abs(&epics_md).is_file() {
            self.read_epic_doc(&mut plan, &epics_md)?;
        } else if self.abs(&sharded).is_dir() {
            let mut shards: Vec<(u32, String)> = list_dir(&self.abs(&sharded))?
                .into_iter()
                .filter(|n| n.ends_with(".md") && n != "index.md")
                .map(|n| {
                    let digits: String = n
                        .chars()
                        .skip_while(|c| !c.is_ascii_digit())
                        .take_while(char::is_ascii_digit)
                        .collect();
                    (digits.parse().unwrap_or(u32::MAX), n)
                })
                .collect();
            shards.sort();
            for (_, name) in shards {
                self.read_epic_doc(&mut plan, &sharded.join(name))?;
            }
        } else {
            self.warnings.push(Warning::new(
                &self.abs(&c.planning),
                None,
                "no epics.md (or epics/ folder) in planning_artifacts: no planned stories, only story files and sprint-status",
            ));
        }

        let sprint_rel = c.implementation.join("sprint-status.yaml");
        let sprint_abs = self.abs(&sprint_rel);
        self.sprint_path = Some(sprint_rel);
        if sprint_abs.is_file() {
            // Read only when it stays inside the project (the same check as any project read).
            inside(&self.root, &sprint_abs)?;
            let sprint = SprintStatus::load(&sprint_abs)?;
            self.warnings.extend(sprint.warnings().iter().cloned());
            for e in sprint.entries() {
                if let super::sprint::SprintKey::Epic(n) = e.kind
                    && let Some(epic) = plan.epics.get_mut(&n)
                {
                    epic.sprint_value = Some(e.value.clone());
                }
            }
            self.sprint = Some(sprint);
        } else {
            self.warnings.push(Warning::new(
                &sprint_abs,
                None,
                "no sprint-status.yaml yet: run the sprint-planning workflow; stories are read from epics.md and the story files",
            ));
        }

        let mut warnings = Vec::new();
        let files = self.story_files(&mut warnings)?;
        let mut ids: Vec<StoryId> = plan.stories.iter().map(|(h, _)| h.id).collect();
        ids.extend(files.keys().copied());
        if let Some(s) = &self.sprint {
            ids.extend(s.stories().map(|(id, _)| id));
        }
        ids.sort();
        ids.dedup();

        let build = self.is_build_flow();
        let mut stories = Vec::new();
        for id in ids {
            let planned = plan.stories.iter().find(|(h, _)| h.id == id);
            let sprint_entry = self.sprint.as_ref().and_then(|s| s.story(id));
            let names = files.get(&id).map(Vec::as_slice).unwrap_or(&[]);
            let title_slug = planned.map(|(h, _)| slug(&h.title));
            let key = match (sprint_entry, &title_slug) {
                (Some(e), _) => e.key.clone(),
                (None, Some(s)) => format!("{}-{s}", id.key_prefix()),
                (None, None) => names
                    .first()
                    .map(|n| {
                        let base = n.strip_suffix(".md").unwrap_or(n);
                        base.strip_prefix("spec-").unwrap_or(base).to_owned()
                    })
                    .unwrap_or_else(|| format!("{}-untitled", id.key_prefix())),
            };
            // The build flow's file is the spec (`bmad-build` writes `spec-{key}.md`), a story
            // flow's the story (`{key}.md`); either is found when only it exists.
            let (story_name, spec_name) = (format!("{key}.md"), format!("spec-{key}.md"));
            let preferred: [&str; 2] = if build {
                [&spec_name, &story_name]
            } else {
                [&story_name, &spec_name]
            };
            let file = pick(names, &preferred).map(str::to_owned);
            let slug = key
                .strip_prefix(&id.key_prefix())
                .and_then(|r| r.strip_prefix('-'))
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .or(title_slug)
                .unwrap_or_else(|| "untitled".to_owned());
            let title = match (planned, &file) {
                (Some((h, _)), _) => h.title.clone(),
                (None, Some(name)) => peek_title(&self.abs(&c.implementation.join(name)), id)
                    .unwrap_or_else(|| slug.replace('-', " ")),
                (None, None) => slug.replace('-', " "),
            };
            let (path, exists) = match &file {
                Some(name) => (c.implementation.join(name), true),
                None => (c.implementation.join(preferred[0]), false),
            };
            stories.push(StoryEntry {
                id,
                title,
                epic: id.epic,
                path,
                exists,
                slug,
                gate_path: None,
                gate_exists: false,
                sprint_value: sprint_entry.map(|e| e.value.clone()),
                sprint_line: sprint_entry.and_then(|e| e.line),
                sprint_key: Some(key),
                epic_path: planned
                    .map(|(_, doc)| doc.clone())
                    .or_else(|| plan.epics.get(&id.epic).and_then(|e| e.path.clone())),
                in_plan: planned.is_some(),
                plan_line: planned.map(|(h, _)| h.line),
            });
        }
        self.warnings.extend(warnings);
        if let Some(s) = &self.sprint {
            for e in s.entries() {
                if let super::sprint::SprintKey::Epic(n) = e.kind {
                    plan.epics.entry(n).or_insert_with(|| Epic {
                        number: n,
                        title: String::new(),
                        path: None,
                        line: None,
                        sprint_value: Some(e.value.clone()),
                    });
                }
            }
        }
        self.finish(plan, stories);
        Ok(())
    }

    /// Sorts the stories and completes the epic list with epics only stories name.
    fn finish(&mut self, mut plan: Plan, mut stories: Vec<StoryEntry>) {
        stories.sort_by_key(|s| s.id);
        for s in &stories {
            plan.epics.entry(s.epic).or_insert_with(|| Epic {
                number: s.epic,
                title: String::new(),
                path: None,
                line: None,
                sprint_value: None,
            });
        }
        self.epics = plan.epics.into_values().collect();
        self.stories = stories;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v4 project of `n` stories in its PRD, none drafted.
    fn v4_project(root: &Path, n: u32) {
        let write = |rel: &str, text: &str| {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        };
        write(
            config::V4_CONFIG,
            "qa:\n  qaLocation: docs/qa\nprd:\n  prdFile: docs/prd.md\n  prdSharded: false\ndevStoryLocation: docs/stories\n",
        );
        let mut prd = String::from("# PRD\n\n## Epic 1: Many\n");
        for i in 1..=n {
            prd.push_str(&format!("\n### Story 1.{i}: Feature {i}\n\nAs a user.\n"));
        }
        write("docs/prd.md", &prd);
        std::fs::create_dir_all(root.join("docs/stories")).expect("mkdir");
    }

    #[test]
    fn a_story_file_with_another_slug_is_found_without_listing_the_folder_each_time() {
        let tmp = tempfile::tempdir().expect("tempdir");
        v4_project(tmp.path(), 40);
        let p = Project::discover(tmp.path()).expect("discover");
        let mut watch = None;
        for (i, story) in p.stories().iter().enumerate() {
            assert_eq!(p.locate_story_file(story), None, "{} not drafted", story.id);
            // The SM agent chose another name than the host expects.
            let name = format!("{}.{}.its-own-slug.md", story.id.epic, story.id.story);
            std::fs::write(tmp.path().join("docs/stories").join(&name), "# x\n").expect("w");
            assert_eq!(
                p.locate_story_file(story),
                Some(PathBuf::from("docs/stories").join(&name))
            );
            // The host writes a story file by exchanging a temporary file in: the queue then
            // says the name was moved away last, yet it is there.
            let folder = tmp.path().join("docs/stories");
            std::fs::write(folder.join(".bmad-host-x.tmp"), "# y\n").expect("w");
            nix::fcntl::renameat2(
                nix::fcntl::AT_FDCWD,
                &folder.join(".bmad-host-x.tmp"),
                nix::fcntl::AT_FDCWD,
                &folder.join(&name),
                nix::fcntl::RenameFlags::RENAME_EXCHANGE,
            )
            .expect("exchange");
            std::fs::remove_file(folder.join(".bmad-host-x.tmp")).expect("rm");
            assert_eq!(
                p.locate_story_file(story),
                Some(PathBuf::from("docs/stories").join(&name)),
                "found after an exchange"
            );
            let fd = p.story_index.watch_fd();
            assert!(fd.is_some(), "the story folder is watched");
            if i == 0 {
                watch = fd;
            }
            assert_eq!(
                fd, watch,
                "the same watch all along: the folder is not listed again"
            );
        }
    }

    #[test]
    fn shard_patterns() {
        let p = ShardPattern::new("epic-{n}*.md").expect("pattern");
        assert_eq!(p.matches("epic-1-user-accounts.md"), Some(Some(1)));
        assert_eq!(p.matches("epic-12.md"), Some(Some(12)));
        assert_eq!(p.matches("epic-list.md"), None);
        assert_eq!(p.matches("index.md"), None);
        assert_eq!(p.matches("epic-2-x.txt"), None);
        let p = ShardPattern::new("epic*.md").expect("pattern");
        assert_eq!(p.matches("epic-list.md"), Some(None));
        assert!(ShardPattern::new("epic-{n}[.md").is_err());
    }

    #[test]
    fn story_file_names() {
        assert_eq!(v4_story_file_id("1.2.story.md"), Some(StoryId::new(1, 2)));
        assert_eq!(
            v4_story_file_id("1.10.user-login.md"),
            Some(StoryId::new(1, 10))
        );
        assert_eq!(
            v4_story_file_id("4.4a.story.md").map(|i| i.suffix),
            Some(Some('a'))
        );
        for no in [
            "1-2.story.md",
            "1.2.story.txt",
            "notes.md",
            "1.2-x.md",
            "1.2",
        ] {
            assert_eq!(v4_story_file_id(no), None, "{no}");
        }
        assert_eq!(
            v6_story_file_id("1-2-user-registration.md"),
            Some(StoryId::new(1, 2))
        );
        assert_eq!(
            v6_story_file_id("spec-1-10-x.md"),
            Some(StoryId::new(1, 10))
        );
        for no in [
            "sprint-status.yaml",
            "epic-1-context.md",
            "tech-spec-epic-1.md",
            "1.2.story.md",
            "1-2-x.txt",
        ] {
            assert_eq!(v6_story_file_id(no), None, "{no}");
        }
    }
}
