//! What a story declares about its place among the others, for the admission of parallel
//! stories (`run --jobs N`): its **footprint** (the files and globs it says it will touch) and
//! the stories it **depends on**. Pure and linear in the text; nothing here is guessed by a
//! model, and a story that declares nothing has an unknown footprint (admitted optimistically:
//! the integration lane catches real conflicts).
//!
//! Where a footprint is read from, in a story file or a v6 spec:
//! - the YAML frontmatter's `files:` or `footprint:` (a block list or a flow list `[a, b]`);
//! - the sections whose heading names the work on files: `Tasks / Subtasks` (v4, v6),
//!   `Tasks & Acceptance` and `Code Map` (6.12 specs), `File List` (the Dev record, filled on
//!   a resumed story), and any heading with `file` or `footprint` in it (`### Files to
//!   modify`): every path in backticks there, and in a file list every list item that is a path.
//!
//! A path is one token (no blank), with a `/` or a file extension, of letters, digits and
//! `._-/*?[]{}`: `src/api/users.rs`, `tests/**/*.rs`, `Cargo.toml`; not `a@x.io`, not
//! `sh tests/run.sh`, not a URL. A leading `./` and a trailing `:line` go.
//!
//! Dependencies: the frontmatter's `depends_on:` (a list or one id), or a line
//! `Depends on: 1.2, 1.3` (any case, bold allowed, `Story` before an id allowed).

use std::collections::BTreeSet;

use super::id::StoryId;
use super::text::numbered_lines;

/// What one story declares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Declared {
    /// The paths and globs it will touch; empty: unknown.
    pub footprint: Vec<String>,
    /// The stories it depends on; `None` when it says nothing about it.
    pub depends_on: Option<Vec<StoryId>>,
}

/// Reads what `text` (a story file or spec) declares.
pub fn declared(text: &str) -> Declared {
    let (front, body_start) = frontmatter(text);
    let mut paths = BTreeSet::new();
    let mut depends: Option<Vec<StoryId>> = None;
    for (key, values) in &front {
        match key.as_str() {
            "files" | "footprint" => paths.extend(values.iter().filter_map(|v| as_path(v))),
            "depends_on" | "depends-on" | "dependencies" => {
                depends
                    .get_or_insert_with(Vec::new)
                    .extend(values.iter().filter_map(|v| story_id(v)));
            }
            _ => {}
        }
    }
    let mut in_section = false;
    let mut list_section = false;
    let mut fence = false;
    for (n, line) in numbered_lines(text) {
        if n < body_start {
            continue;
        }
        let trimmed = line.trim();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fence = !fence;
            continue;
        }
        if fence {
            continue;
        }
        if let Some(heading) = heading(trimmed) {
            let h = heading.to_ascii_lowercase();
            in_section = h.contains("task")
                || h.contains("code map")
                || h.contains("file")
                || h.contains("footprint");
            list_section = h.contains("file list") || h.contains("footprint");
            continue;
        }
        if let Some(ids) = depends_line(trimmed) {
            depends.get_or_insert_with(Vec::new).extend(ids);
            continue;
        }
        if !in_section {
            continue;
        }
        paths.extend(backticked(line).filter_map(as_path));
        if list_section
            && let Some(item) = list_item(trimmed)
            && let Some(first) = item.split_whitespace().next()
            && let Some(path) = as_path(first.trim_matches('`'))
        {
            paths.insert(path);
        }
    }
    Declared {
        footprint: paths.into_iter().collect(),
        depends_on: depends.map(|mut d| {
            d.sort();
            d.dedup();
            d
        }),
    }
}

/// Whether two footprints may touch a common file. Conservative: two paths overlap when one
/// is the other, or one is a folder of the other (`src/api` and `src/api/users.rs`); a glob
/// overlaps whatever lies under its literal part (`src/**/*.rs` overlaps everything under
/// `src/`; `*.md` everything). An empty footprint (unknown) overlaps nothing.
pub fn overlap(a: &[String], b: &[String]) -> Option<(String, String)> {
    for x in a {
        for y in b {
            if paths_overlap(x, y) {
                return Some((x.clone(), y.clone()));
            }
        }
    }
    None
}

fn paths_overlap(a: &str, b: &str) -> bool {
    let (la, ga) = literal_part(a);
    let (lb, gb) = literal_part(b);
    let under = |prefix: &str, path: &str| {
        let prefix = prefix.trim_end_matches('/');
        prefix.is_empty()
            || path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    match (ga, gb) {
        (false, false) => under(la, lb) || under(lb, la),
        // A glob covers what lies under the folder its literal part names.
        (true, false) => under(glob_folder(la), lb),
        (false, true) => under(glob_folder(lb), la),
        (true, true) => {
            let (fa, fb) = (glob_folder(la), glob_folder(lb));
            under(fa, fb) || under(fb, fa)
        }
    }
}

/// The part of `path` before its first glob character, and whether it has one.
fn literal_part(path: &str) -> (&str, bool) {
    match path.find(['*', '?', '[', '{']) {
        Some(i) => (&path[..i], true),
        None => (path, false),
    }
}

/// The folder a glob's literal part ends in: `src/api/use` → `src/api`, `*` → ``.
fn glob_folder(literal: &str) -> &str {
    literal.rfind('/').map_or("", |i| &literal[..i])
}

/// The frontmatter's keys with their values (a scalar is a list of one), and the first line
/// of the body (1 when there is no closed frontmatter).
fn frontmatter(text: &str) -> (Vec<(String, Vec<String>)>, u32) {
    let mut lines = numbered_lines(text);
    if lines.next().is_none_or(|(_, l)| l.trim_end() != "---") {
        return (Vec::new(), 1);
    }
    let mut keys: Vec<(String, Vec<String>)> = Vec::new();
    for (n, line) in lines {
        if line.trim_end() == "---" {
            return (keys, n + 1);
        }
        let trimmed = line.trim();
        if let Some(item) = trimmed.strip_prefix("- ")
            && line.starts_with([' ', '-'])
            && let Some((_, values)) = keys.last_mut()
        {
            values.push(unquote(item).to_string());
            continue;
        }
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let values = if let Some(inner) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']'))
        {
            inner
                .split(',')
                .map(|v| unquote(v.trim()).to_string())
                .filter(|v| !v.is_empty())
                .collect()
        } else if value.is_empty() {
            Vec::new()
        } else {
            vec![unquote(value).to_string()]
        };
        keys.push((key.trim().to_ascii_lowercase(), values));
    }
    // Not closed: not frontmatter.
    (Vec::new(), 1)
}

fn unquote(v: &str) -> &str {
    let v = v.trim();
    v.strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .or_else(|| v.strip_prefix('"').and_then(|v| v.strip_suffix('"')))
        .unwrap_or(v)
}

/// The text of a Markdown heading line (`## Tasks / Subtasks` → `Tasks / Subtasks`).
fn heading(line: &str) -> Option<&str> {
    let rest = line.trim_start_matches('#');
    let level = line.len() - rest.len();
    ((1..=6).contains(&level) && (rest.is_empty() || rest.starts_with(' '))).then(|| rest.trim())
}

/// The text of a list item (`- x`, `* x`, `1. x`, `- [ ] x`).
fn list_item(line: &str) -> Option<&str> {
    let rest = line
        .strip_prefix("- ")
        .or_else(|| line.strip_prefix("* "))
        .or_else(|| {
            let digits = line.len() - line.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            (digits > 0)
                .then(|| line[digits..].strip_prefix(". "))
                .flatten()
        })?;
    let rest = rest.trim_start();
    Some(
        rest.strip_prefix("[ ] ")
            .or_else(|| rest.strip_prefix("[x] "))
            .or_else(|| rest.strip_prefix("[X] "))
            .unwrap_or(rest),
    )
}

/// The texts between pairs of single backticks on `line`.
fn backticked(line: &str) -> impl Iterator<Item = &str> {
    line.split('`').skip(1).step_by(2)
}

/// `token` as a footprint path, when it is one.
fn as_path(token: &str) -> Option<String> {
    let t = token.trim();
    let t = t.strip_prefix("./").unwrap_or(t);
    // `src/lib.rs:42` → `src/lib.rs`
    let t = match t.rsplit_once(':') {
        Some((path, line)) if !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit()) => path,
        _ => t,
    };
    let t = t.trim_end_matches(['.', ',', ';']);
    if t.is_empty()
        || t.contains("://")
        || t.starts_with(['-', '/', '.'])
        || t.contains("..")
        || !t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/*?[]{}".contains(&b))
    {
        return None;
    }
    let name = t.rsplit('/').next().unwrap_or(t);
    let extension = name.rsplit_once('.').is_some_and(|(stem, ext)| {
        !stem.is_empty()
            && (1..=10).contains(&ext.len())
            && ext.bytes().any(|b| b.is_ascii_alphabetic())
    });
    let folder = t.contains('/') && t.bytes().any(|b| b.is_ascii_alphabetic());
    (extension || folder).then(|| t.to_string())
}

/// The ids of a `Depends on: 1.2, Story 1.3` line.
fn depends_line(line: &str) -> Option<Vec<StoryId>> {
    let plain: String = line.chars().filter(|c| *c != '*').collect();
    let plain = plain.trim_start_matches(['-', ' ']);
    let lower = plain.to_ascii_lowercase();
    let rest = [
        "depends on:",
        "depends on :",
        "depends_on:",
        "dependencies:",
    ]
    .iter()
    .find_map(|p| lower.strip_prefix(p).map(|_| &plain[p.len()..]))?;
    Some(rest.split([',', ';', ' ']).filter_map(story_id).collect())
}

/// A story id alone (`1.2`, `1-2`, `Story 1.2`).
fn story_id(text: &str) -> Option<StoryId> {
    let t = text.trim().trim_matches(['"', '\'', '`']);
    let t = t
        .strip_prefix("Story ")
        .or_else(|| t.strip_prefix("story "))
        .unwrap_or(t);
    let (id, used) = StoryId::parse_prefix(t)?;
    // `1-2-slug`: a v6 key names story 1.2 too.
    (used == t.len() || t[used..].starts_with('-')).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_string()).collect()
    }

    #[test]
    fn a_v4_story_declares_the_paths_of_its_tasks_not_of_its_notes() {
        let text = include_str!("../../../tests/fixtures/v4-sample/docs/stories/1.1.story.md");
        let d = declared(text);
        assert_eq!(d.footprint, ["bin/greet", "tests/run.sh"]);
        assert_eq!(d.depends_on, None);
    }

    #[test]
    fn a_v6_story_and_a_612_spec_declare_their_tasks_and_code_map() {
        let story = "# Story 1.1: Count Lines\n\nStatus: ready-for-dev\n\n## Tasks / Subtasks\n\n\
            - [ ] Task 1: Create `bin/tally` (AC: #1)\n- [ ] Task 2: `wc -l` in `tests/run.sh`\n\n\
            ## Dev Notes\n\n- See `docs/architecture.md`.\n";
        assert_eq!(declared(story).footprint, ["bin/tally", "tests/run.sh"]);
        let spec = "---\ntitle: 'User Registration'\nstatus: 'in-review'\n---\n\n## Intent\n\n\
            Add `POST /api/users`.\n\n## Code Map\n\n- `src/routes/users.rs` -- handler\n\
            - `./migrations/0001_users.sql:3` -- table\n\n## Tasks & Acceptance\n\n\
            - [x] `tests/users.rs` -- tests\n- Given `a@x.io`, I get 201\n";
        assert_eq!(
            declared(spec).footprint,
            [
                "migrations/0001_users.sql",
                "src/routes/users.rs",
                "tests/users.rs"
            ]
        );
    }

    #[test]
    fn frontmatter_files_and_dependencies_and_a_file_list_count() {
        let text = "---\nfiles:\n  - src/api/**\n  - 'Cargo.toml'\ndepends_on: [1.2, \"1-3\"]\n---\n\
            # Story 1.4\n\n**Depends on:** Story 1.1, 2.1\n\n### File List\n\n- src/lib.rs (modified)\n\
            - not a path here\n";
        let d = declared(text);
        assert_eq!(d.footprint, ["Cargo.toml", "src/api/**", "src/lib.rs"]);
        assert_eq!(
            d.depends_on,
            Some(vec![
                StoryId::new(1, 1),
                StoryId::new(1, 2),
                StoryId::new(1, 3),
                StoryId::new(2, 1)
            ])
        );
    }

    #[test]
    fn nothing_declared_is_an_unknown_footprint() {
        let d = declared("# Story 2.1: Vague\n\nStatus: Draft\n\nDo the thing with `x`.\n");
        assert!(d.footprint.is_empty());
        assert!(d.depends_on.is_none());
        // A fenced block is not read.
        let d = declared("## Tasks\n\n```\n`src/a.rs`\n```\n");
        assert!(d.footprint.is_empty());
    }

    #[test]
    fn tokens_that_are_not_paths_are_left_out() {
        for bad in [
            "sh tests/run.sh",
            "a@x.io",
            "https://x.io/a.rs",
            "--words",
            "/etc/passwd",
            "../outside.rs",
            "3.14",
            "set -eu",
            "",
        ] {
            assert_eq!(as_path(bad), None, "{bad}");
        }
        for good in [
            "Cargo.toml",
            "src/lib.rs",
            "bin/greet",
            "tests/**/*.rs",
            "src/api/",
        ] {
            assert!(as_path(good).is_some(), "{good}");
        }
    }

    #[test]
    fn footprints_overlap_by_file_folder_and_glob() {
        let cases: &[(&[&str], &[&str], bool)] = &[
            (&["src/a.rs"], &["src/a.rs"], true),
            (&["src/a.rs"], &["src/b.rs"], false),
            (&["src/api"], &["src/api/users.rs"], true),
            (&["src/api/"], &["src/api/users.rs"], true),
            (&["src/apix.rs"], &["src/api"], false),
            (&["src/**/*.rs"], &["src/deep/a.rs"], true),
            (&["src/**/*.rs"], &["tests/a.rs"], false),
            (&["*.md"], &["docs/x.md"], true),
            (&["src/a*.rs"], &["lib/b*.rs"], false),
            (&["src/a*.rs"], &["src/b*.rs"], true),
            (&[], &["src/a.rs"], false),
        ];
        for (a, b, expected) in cases {
            assert_eq!(overlap(&s(a), &s(b)).is_some(), *expected, "{a:?} {b:?}");
            assert_eq!(overlap(&s(b), &s(a)).is_some(), *expected, "{b:?} {a:?}");
        }
    }
}
