//! Scheduling: the default scheduler's rule ([`admit`]) and the footprint overlap test it uses
//! ([`globs_overlap`]), for the `scheduler` world (`bmad:policy@0.2.0`).
//!
//! # The rule
//!
//! Candidates are taken in the order given (story order), until `slots` are filled. One is
//! admitted when every story it depends on is done, and its footprint overlaps the footprint of
//! no running story, nor of a candidate admitted before it in the same call. A story whose
//! footprint is unknown (`footprint-known` false) is admitted optimistically and constrains no
//! one: the integration lane catches real conflicts.
//!
//! # Overlap
//!
//! Footprints are file globs relative to the project root, `/`-separated: `*` and `?` match
//! within one path segment, `[...]` one character, `{a,b}` either alternative, `**` any number
//! of segments. The test is conservative: it says "overlap" whenever some path could match
//! both globs, and also when one glob names a folder the other reaches into (a glob covers
//! what is under the paths it matches: `src/auth` overlaps `src/auth/login.rs`), and it treats
//! a `[...]` class as any character. It can say "overlap" for two globs no file matches both
//! of (never the reverse): two stories wrongly kept apart cost time, two wrongly run together
//! cost a conflict.

use std::collections::BTreeSet;

use crate::types::{Candidate, Running};

/// Alternatives one glob's `{...}` groups may expand to before the test gives up and says
/// "overlap".
const MAX_ALTERNATIVES: usize = 256;

/// The default scheduler's decision (see the module documentation): the ids to start, in
/// candidate order, at most `slots`.
pub fn admit(candidates: &[Candidate], running: &[Running], slots: u32) -> Vec<String> {
    let slots = usize::try_from(slots).unwrap_or(usize::MAX);
    let mut taken: Vec<&[String]> = running
        .iter()
        .filter(|r| r.footprint_known)
        .map(|r| r.footprint.as_slice())
        .collect();
    let mut admitted: Vec<String> = Vec::new();
    for candidate in candidates {
        if admitted.len() >= slots {
            break;
        }
        if admitted.contains(&candidate.id) || !candidate.depends_on.iter().all(|d| d.done) {
            continue;
        }
        if candidate.footprint_known {
            if taken
                .iter()
                .any(|fp| footprints_overlap(&candidate.footprint, fp))
            {
                continue;
            }
            taken.push(&candidate.footprint);
        }
        admitted.push(candidate.id.clone());
    }
    admitted
}

/// Whether some glob of `a` overlaps some glob of `b` ([`globs_overlap`]).
pub fn footprints_overlap(a: &[String], b: &[String]) -> bool {
    a.iter().any(|x| b.iter().any(|y| globs_overlap(x, y)))
}

/// Whether some path could match both globs, or lie under a path each matches (see the module
/// documentation). An empty glob matches nothing.
pub fn globs_overlap(a: &str, b: &str) -> bool {
    let (Some(xs), Some(ys)) = (expand(a), expand(b)) else {
        return true;
    };
    xs.iter().any(|x| {
        ys.iter().any(|y| match (path(x), path(y)) {
            (Some(px), Some(py)) => paths_overlap(&px, &py),
            _ => false,
        })
    })
}

/// The glob with its `{a,b}` groups expanded; `None` when they give more than
/// [`MAX_ALTERNATIVES`].
fn expand(glob: &str) -> Option<Vec<String>> {
    let mut done = Vec::new();
    let mut todo = vec![glob.to_owned()];
    while let Some(g) = todo.pop() {
        match brace_group(&g) {
            None => done.push(g),
            Some((open, close)) => {
                for alt in split_alternatives(&g[open + 1..close]) {
                    todo.push(format!("{}{alt}{}", &g[..open], &g[close + 1..]));
                }
            }
        }
        if done.len() + todo.len() > MAX_ALTERNATIVES {
            return None;
        }
    }
    Some(done)
}

/// The byte positions of the first top-level `{` and its matching `}`.
fn brace_group(glob: &str) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    let mut open = None;
    let mut escaped = false;
    for (i, c) in glob.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '{' => {
                if depth == 0 {
                    open = Some(i);
                }
                depth += 1;
            }
            '}' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    return open.map(|o| (o, i));
                }
            }
            _ => {}
        }
    }
    None
}

/// `a,b{c,d},e` → `a`, `b{c,d}`, `e`.
fn split_alternatives(inner: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in inner.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
}

/// One piece of a path segment's pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tok {
    /// `*`: any run of characters.
    Star,
    /// `?` or a `[...]` class: one character (a class is taken as any, conservatively).
    One,
    /// This character.
    Lit(char),
}

/// One segment of a path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    /// `**`: any number of segments.
    Any,
    /// A segment pattern.
    Pat(Vec<Tok>),
}

/// The glob as segments, with a trailing `**` (a glob covers what lies under what it
/// matches); `None` for an empty glob.
fn path(glob: &str) -> Option<Vec<Seg>> {
    let mut rest = glob.trim();
    loop {
        if let Some(r) = rest.strip_prefix("./") {
            rest = r;
        } else if let Some(r) = rest.strip_prefix('/') {
            rest = r;
        } else {
            break;
        }
    }
    let mut segs: Vec<Seg> = rest
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .map(|s| {
            if s == "**" {
                Seg::Any
            } else {
                Seg::Pat(tokens(s))
            }
        })
        .collect();
    if segs.is_empty() {
        return None;
    }
    if segs.last() != Some(&Seg::Any) {
        segs.push(Seg::Any);
    }
    Some(segs)
}

/// A segment's pattern as tokens; `**` inside a segment is a `*`.
fn tokens(segment: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut chars = segment.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(Tok::Lit(chars.next().unwrap_or('\\'))),
            '*' => {
                if out.last() != Some(&Tok::Star) {
                    out.push(Tok::Star);
                }
            }
            '?' => out.push(Tok::One),
            '[' => {
                let rest: Vec<char> = chars.clone().collect();
                let negated = usize::from(matches!(rest.first(), Some('!' | '^')));
                // A `]` right after the `[` (or `[!`) is a member of the class, not its end.
                match rest.iter().skip(negated + 1).position(|&c| c == ']') {
                    Some(at) => {
                        for _ in 0..negated + at + 2 {
                            chars.next();
                        }
                        out.push(Tok::One);
                    }
                    None => out.push(Tok::Lit('[')),
                }
            }
            c => out.push(Tok::Lit(c)),
        }
    }
    out
}

/// Whether two segment patterns match a common string.
fn segments_overlap(a: &[Tok], b: &[Tok]) -> bool {
    let mut seen = BTreeSet::new();
    let mut todo = vec![(0usize, 0usize)];
    while let Some((i, j)) = todo.pop() {
        if !seen.insert((i, j)) {
            continue;
        }
        let (ta, tb) = (a.get(i), b.get(j));
        if ta.is_none() && tb.is_none() {
            return true;
        }
        if ta == Some(&Tok::Star) {
            todo.push((i + 1, j));
        }
        if tb == Some(&Tok::Star) {
            todo.push((i, j + 1));
        }
        let (Some(&ta), Some(&tb)) = (ta, tb) else {
            continue;
        };
        let common = match (ta, tb) {
            (Tok::Lit(x), Tok::Lit(y)) => x == y,
            _ => true,
        };
        if common {
            let ni = if ta == Tok::Star { i } else { i + 1 };
            let nj = if tb == Tok::Star { j } else { j + 1 };
            todo.push((ni, nj));
        }
    }
    false
}

/// Whether two path patterns match a common path.
fn paths_overlap(a: &[Seg], b: &[Seg]) -> bool {
    let mut seen = BTreeSet::new();
    let mut todo = vec![(0usize, 0usize)];
    while let Some((i, j)) = todo.pop() {
        if !seen.insert((i, j)) {
            continue;
        }
        let (sa, sb) = (a.get(i), b.get(j));
        if sa.is_none() && sb.is_none() {
            return true;
        }
        if sa == Some(&Seg::Any) {
            todo.push((i + 1, j));
        }
        if sb == Some(&Seg::Any) {
            todo.push((i, j + 1));
        }
        match (sa, sb) {
            (Some(Seg::Any), Some(Seg::Pat(_))) => todo.push((i, j + 1)),
            (Some(Seg::Pat(_)), Some(Seg::Any)) => todo.push((i + 1, j)),
            (Some(Seg::Pat(x)), Some(Seg::Pat(y))) if segments_overlap(x, y) => {
                todo.push((i + 1, j + 1));
            }
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Dependency;

    fn owned(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn cand(id: &str, footprint: Option<&[&str]>, deps: &[(&str, bool)]) -> Candidate {
        Candidate {
            id: id.into(),
            epic: 1,
            footprint: footprint.map(owned).unwrap_or_default(),
            footprint_known: footprint.is_some(),
            depends_on: deps
                .iter()
                .map(|(id, done)| Dependency {
                    id: (*id).into(),
                    done: *done,
                })
                .collect(),
            ..Candidate::default()
        }
    }

    fn run(id: &str, footprint: Option<&[&str]>) -> Running {
        Running {
            id: id.into(),
            epic: 1,
            footprint: footprint.map(owned).unwrap_or_default(),
            footprint_known: footprint.is_some(),
        }
    }

    #[test]
    fn globs_overlap_when_some_path_could_match_both() {
        let yes = [
            ("src/auth/**", "src/auth/login.rs"),
            ("src/*.rs", "src/lib.rs"),
            ("src/**/*.rs", "src/a/b/c.rs"),
            ("**/*.rs", "docs/x.rs"),
            ("src/auth", "src/auth/login.rs"),
            ("./src/a.rs", "src/a.rs"),
            ("src/a?.rs", "src/ab.rs"),
            ("src/[ab].rs", "src/c.rs"),
            ("src/{auth,users}/*.rs", "src/users/mod.rs"),
            ("src/*/mod.rs", "src/**"),
            ("src/a*.rs", "src/*b.rs"),
            ("**", "anything/at/all"),
            ("src/", "src/x"),
        ];
        for (a, b) in yes {
            assert!(globs_overlap(a, b), "{a} / {b}");
            assert!(globs_overlap(b, a), "{b} / {a}");
        }
        let no = [
            ("src/auth/**", "src/users/**"),
            ("src/a.rs", "src/b.rs"),
            ("src/*.rs", "src/*.md"),
            ("src/*.rs", "docs/*.rs"),
            ("src/a?.rs", "src/abc.rs"),
            ("src/{auth,users}/*.rs", "src/billing/mod.rs"),
            ("tests/**/*.py", "src/**/*.py"),
            ("", "src/a.rs"),
        ];
        for (a, b) in no {
            assert!(!globs_overlap(a, b), "{a} / {b}");
            assert!(!globs_overlap(b, a), "{b} / {a}");
        }
    }

    #[test]
    fn too_many_alternatives_overlap() {
        let wide = "{a,b,c,d}{a,b,c,d}{a,b,c,d}{a,b,c,d}{a,b}/x";
        assert!(globs_overlap(wide, "zzz/y"));
    }

    #[test]
    fn the_default_rule_waits_for_dependencies_and_keeps_footprints_apart() {
        let candidates = [
            cand("1.1", Some(&["src/auth/**"]), &[]),
            cand("1.2", Some(&["src/auth/login.rs"]), &[]),
            cand("1.3", Some(&["src/users/**"]), &[("1.1", false)]),
            cand("1.4", None, &[]),
            cand("1.5", Some(&["docs/**"]), &[("0.9", true)]),
        ];
        // 1.2 overlaps 1.1 (admitted first), 1.3 waits for 1.1, 1.4 is unknown: optimistic.
        assert_eq!(admit(&candidates, &[], 8), owned(&["1.1", "1.4", "1.5"]));
        // The slots bound the answer, in candidate order.
        assert_eq!(admit(&candidates, &[], 2), owned(&["1.1", "1.4"]));
        // A running story's footprint holds the overlapping ones back.
        let running = [run("2.1", Some(&["docs/guide.md"]))];
        assert_eq!(admit(&candidates, &running, 8), owned(&["1.1", "1.4"]));
        // A running story of unknown footprint holds nobody back.
        let running = [run("2.1", None)];
        assert_eq!(
            admit(&candidates, &running, 8),
            owned(&["1.1", "1.4", "1.5"])
        );
        assert!(admit(&[], &[], 4).is_empty());
    }
}
