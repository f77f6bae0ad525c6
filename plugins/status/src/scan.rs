//! The line scanner: one linear pass that collects every status value of a document.
//!
//! What it reads:
//! - YAML frontmatter (`---` on the first line, closed by `---` or `...`): a top-level
//!   `status:` key, quotes and trailing `# comment` removed. An unclosed frontmatter is not
//!   read: its lines up to the first blank line are skipped (they are YAML, not body).
//! - A status heading (`#`..`######` `Status`, bold allowed): the value is the first non-empty
//!   line before the next heading (a `Status:` label on that line is dropped); `## Status: X`
//!   carries its value on the heading line. No value before the next heading (or the end) is an
//!   empty value.
//! - A `Status: value` line outside sections, with a plain or bold label (`**Status**:`,
//!   `**Status:**`). An empty label line takes the next non-empty line of its paragraph.
//!
//! What it never reads: fenced code blocks, HTML comments (blanked out, even across lines),
//! table rows, block quotes, lines indented four columns or more (indented code).
//!
//! A status heading inside another H2+ section (the Dev Agent Record's `### Status`) is
//! *nested*: nested values count only when the document has no other status value, so a
//! top-level `## Status` wins over a Dev Agent Record's own. Any two top-level values that
//! disagree are a conflict.

use std::borrow::Cow;

use crate::decode::{is_space, trim};
use crate::swar;
use crate::vocab::{Mapping, map_value};
use crate::{MAX_CONFLICT_VALUES, MAX_RAW_BYTES, MissingReason, Parse, Source, StatusValue};

/// One value found by the scanner.
#[derive(Debug)]
struct Candidate {
    value: StatusValue,
    mapping: Mapping,
    nested: bool,
}

/// Everything the scanner found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    candidates: Vec<Candidate>,
    first_empty: Option<u32>,
}

impl Scan {
    pub(crate) fn all_values(self) -> Vec<StatusValue> {
        self.candidates.into_iter().map(|c| c.value).collect()
    }

    fn resolve(self) -> Parse {
        let has_top = self.candidates.iter().any(|c| !c.nested);
        let chosen: Vec<Candidate> = self
            .candidates
            .into_iter()
            .filter(|c| c.nested != has_top)
            .collect();
        let Some(first) = chosen.first() else {
            return Parse::Missing(match self.first_empty {
                Some(line) => MissingReason::EmptyValue(line),
                None => MissingReason::NoStatus,
            });
        };
        let state = first.mapping.state();
        let agree = state.is_some() && chosen.iter().all(|c| c.mapping.state() == state);
        if chosen.len() > 1 && !agree {
            return Parse::Conflict(
                chosen
                    .into_iter()
                    .take(MAX_CONFLICT_VALUES)
                    .map(|c| c.value)
                    .collect(),
            );
        }
        let confident = chosen
            .iter()
            .all(|c| matches!(c.mapping, Mapping::Known(_)));
        let mut values = chosen.into_iter().map(|c| c.value);
        match values.next() {
            Some(v) if confident => Parse::Found(v),
            Some(v) => Parse::Doubtful(v),
            None => Parse::Missing(MissingReason::NoStatus),
        }
    }
}

/// Parses a document already known to be non-empty text.
pub(crate) fn parse_text(doc: &str) -> Parse {
    scan(doc).resolve()
}

/// A line of the document: its 1-based number, byte offset and text without the line ending.
#[derive(Debug, Clone, Copy)]
struct Line<'a> {
    no: u32,
    start: usize,
    text: &'a str,
    /// The line contains a `<` (so it may open an HTML comment).
    has_lt: bool,
}

/// Splits on `\n`, `\r\n` and a lone `\r`.
#[derive(Debug, Clone)]
struct Lines<'a> {
    doc: &'a str,
    pos: usize,
    no: u32,
}

impl<'a> Lines<'a> {
    fn new(doc: &'a str) -> Self {
        let pos = if doc.starts_with('\u{FEFF}') {
            '\u{FEFF}'.len_utf8()
        } else {
            0
        };
        Lines { doc, pos, no: 0 }
    }
}

/// Which lines the scanner can do without, so the splitter need not hand them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    /// Hand out every line.
    Nothing,
    /// Nothing pending, no open comment or fence: skip lines without a `<` that cannot hold a
    /// heading, fence or label ([`may_matter`]).
    Idle,
    /// Inside a fence of this character: skip lines that cannot close it.
    Fence(u8),
}

impl<'a> Lines<'a> {
    /// The next line the scanner needs (see [`Skip`]); skipped lines are still counted.
    fn next_needed(&mut self, skip: Skip) -> Option<Line<'a>> {
        let bytes = self.doc.as_bytes();
        while self.pos < bytes.len() {
            if skip != Skip::Nothing {
                // Runs of empty lines cannot matter: count them in a tight loop.
                while let Some(&b) = bytes.get(self.pos) {
                    self.pos += match b {
                        b'\n' => 1,
                        b'\r' if bytes.get(self.pos + 1) == Some(&b'\n') => 2,
                        b'\r' => 1,
                        _ => break,
                    };
                    self.no = self.no.saturating_add(1);
                }
                if self.pos >= bytes.len() {
                    break;
                }
            }
            let start = self.pos;
            let (end, has_lt) = swar::line_end(bytes, start);
            self.pos = match bytes.get(end) {
                Some(b'\r') if bytes.get(end + 1) == Some(&b'\n') => end + 2,
                Some(_) => end + 1,
                None => end,
            };
            self.no = self.no.saturating_add(1);
            let text = &bytes[start..end];
            let needed = match skip {
                Skip::Nothing => true,
                Skip::Idle => has_lt || may_matter(text),
                Skip::Fence(ch) => first_non_blank(text) == Some(ch),
            };
            if needed {
                let text = self.doc.get(start..end)?;
                return Some(Line {
                    no: self.no,
                    start,
                    text,
                    has_lt,
                });
            }
        }
        None
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        self.next_needed(Skip::Nothing)
    }
}

/// The first byte that is not a space or a tab.
#[inline]
fn first_non_blank(text: &[u8]) -> Option<u8> {
    text.iter().copied().find(|b| *b != b' ' && *b != b'\t')
}

/// Whether a line outside any pending value, comment or fence can matter: only a heading, a
/// fence or a label can, and each starts with one of a few bytes (after ASCII blanks); a
/// non-ASCII start (a Unicode space before the label) is looked at too.
#[inline]
fn may_matter(text: &[u8]) -> bool {
    matches!(
        first_non_blank(text),
        Some(b'#' | b'`' | b'~' | b'S' | b's' | b'*' | b'_' | 0x80..=0xFF)
    )
}

/// A status heading or empty label waiting for its value.
#[derive(Debug, Clone, Copy)]
struct Pending {
    line: u32,
    source: Source,
    nested: bool,
}

/// An open fenced code block: fence character and length.
#[derive(Debug, Clone, Copy)]
struct Fence {
    ch: u8,
    len: usize,
}

/// Collects every status value of `doc` (non-empty text).
pub(crate) fn scan(doc: &str) -> Scan {
    let mut out = Scan::default();
    let mut lines = Lines::new(doc);
    read_frontmatter(&mut lines, &mut out);

    let mut fence: Option<Fence> = None;
    let mut in_comment = false;
    let mut pending: Option<Pending> = None;
    let mut headings: Vec<u8> = Vec::new();

    loop {
        let skip = match fence {
            Some(open) => Skip::Fence(open.ch),
            None if pending.is_none() && !in_comment => Skip::Idle,
            None => Skip::Nothing,
        };
        let Some(line) = lines.next_needed(skip) else {
            break;
        };
        if let Some(open) = fence {
            if closes_fence(line.text, open) {
                fence = None;
            }
            continue;
        }
        let work = blank_comments(line, &mut in_comment);
        if let Some(open) = opens_fence(&work) {
            fence = Some(open);
            continue;
        }
        let text = trim(&work);
        if text.is_empty() {
            if let Some(p) = pending.filter(|p| p.source == Source::Line) {
                out.first_empty.get_or_insert(p.line);
                pending = None;
            }
            continue;
        }
        if let Some((level, heading)) = atx_heading(&work) {
            if let Some(p) = pending.take() {
                out.first_empty.get_or_insert(p.line);
            }
            while headings.last().is_some_and(|l| *l >= level) {
                headings.pop();
            }
            let nested = headings.iter().any(|l| *l >= 2);
            headings.push(level);
            let inline = if is_status_word(heading) {
                Some("")
            } else {
                strip_label(heading)
            };
            if let Some(rest) = inline {
                let value = clean(rest);
                if value.is_empty() {
                    pending = Some(Pending {
                        line: line.no,
                        source: Source::Section,
                        nested,
                    });
                } else {
                    push(&mut out, &line, &work, value, Source::Section, nested);
                }
            }
            continue;
        }
        if let Some(p) = pending {
            let value = clean(strip_label(text).unwrap_or(text));
            if !value.is_empty() {
                push(&mut out, &line, &work, value, p.source, p.nested);
                pending = None;
            }
            continue;
        }
        if indent_columns(&work) >= 4 || text.starts_with(['|', '>']) {
            continue;
        }
        if let Some(rest) = strip_label(text) {
            let value = clean(rest);
            if value.is_empty() {
                pending = Some(Pending {
                    line: line.no,
                    source: Source::Line,
                    nested: false,
                });
            } else {
                push(&mut out, &line, &work, value, Source::Line, false);
            }
        }
    }
    if let Some(p) = pending {
        out.first_empty.get_or_insert(p.line);
    }
    out
}

/// Reads a frontmatter block if the document opens with `---`, leaving `lines` at the body.
fn read_frontmatter(lines: &mut Lines<'_>, out: &mut Scan) {
    let mut probe = lines.clone();
    if probe.next().is_none_or(|l| l.text.trim_end() != "---") {
        return;
    }
    let mut block = Vec::new();
    let mut closed = false;
    for line in probe.by_ref() {
        let t = line.text.trim_end();
        if t == "---" || t == "..." {
            closed = true;
            break;
        }
        block.push(line);
    }
    if !closed {
        // Unclosed: not frontmatter. Skip the YAML-looking run up to the first blank line.
        for line in lines.by_ref() {
            if line.no > 1 && trim(line.text).is_empty() {
                break;
            }
        }
        return;
    }
    *lines = probe;
    for line in block {
        let Some(rest) = yaml_status_key(line.text) else {
            continue;
        };
        let value = yaml_scalar(rest);
        if value.is_empty() {
            out.first_empty.get_or_insert(line.no);
        } else {
            push(out, &line, line.text, value, Source::Frontmatter, false);
        }
    }
}

/// `status: x` at column 0 (the key in any ASCII case): the text after the colon.
fn yaml_status_key(text: &str) -> Option<&str> {
    let key = text.get(..6)?;
    if !key.eq_ignore_ascii_case("status") {
        return None;
    }
    text[6..].trim_start_matches([' ', '\t']).strip_prefix(':')
}

/// A plain or quoted YAML scalar, without quotes or a trailing comment.
fn yaml_scalar(rest: &str) -> &str {
    let t = trim(rest);
    for q in ['\'', '"'] {
        if let Some(inner) = t.strip_prefix(q)
            && let Some(end) = inner.find(q)
        {
            return trim(&inner[..end]);
        }
    }
    let t = match t.find(" #") {
        Some(i) => &t[..i],
        None if t.starts_with('#') => "",
        None => t,
    };
    trim(t)
}

/// Records a value; `value` is a subslice of `work`, which has `line`'s byte layout.
fn push(out: &mut Scan, line: &Line<'_>, work: &str, value: &str, source: Source, nested: bool) {
    let offset = (value.as_ptr() as usize).saturating_sub(work.as_ptr() as usize);
    let start = line.start + offset;
    let mapping = map_value(value);
    out.candidates.push(Candidate {
        value: StatusValue {
            raw: truncate(value),
            line: line.no,
            source,
            state: mapping.state(),
            span: start..start + value.len(),
        },
        mapping,
        nested,
    });
}

fn truncate(value: &str) -> String {
    if value.len() <= MAX_RAW_BYTES {
        return value.to_owned();
    }
    let mut end = MAX_RAW_BYTES;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &value[..end])
}

/// The line with HTML comments replaced by spaces (same byte length), tracking comments that
/// span lines in `in_comment`.
fn blank_comments<'a>(line: Line<'a>, in_comment: &mut bool) -> Cow<'a, str> {
    let text = line.text;
    if !(*in_comment || (line.has_lt && text.contains("<!--"))) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        if *in_comment {
            match rest.find("-->") {
                Some(i) => {
                    let end = i + 3;
                    out.extend(std::iter::repeat_n(' ', end));
                    rest = &rest[end..];
                    *in_comment = false;
                }
                None => {
                    out.extend(std::iter::repeat_n(' ', rest.len()));
                    return Cow::Owned(out);
                }
            }
        } else {
            match rest.find("<!--") {
                Some(i) => {
                    out.push_str(&rest[..i]);
                    out.extend(std::iter::repeat_n(' ', 4));
                    rest = &rest[i + 4..];
                    *in_comment = true;
                }
                None => {
                    out.push_str(rest);
                    return Cow::Owned(out);
                }
            }
        }
    }
}

/// Leading indentation in columns (a tab counts 4).
fn indent_columns(text: &str) -> usize {
    let mut cols = 0;
    for b in text.bytes() {
        match b {
            b' ' => cols += 1,
            b'\t' => cols += 4,
            _ => break,
        }
    }
    cols
}

/// Up to three leading spaces, then the rest; `None` for indented code.
fn unindent(text: &str) -> Option<&str> {
    let spaces = text.bytes().take_while(|b| *b == b' ').count();
    if spaces > 3 || text.as_bytes().get(spaces) == Some(&b'\t') {
        return None;
    }
    Some(&text[spaces..])
}

fn opens_fence(text: &str) -> Option<Fence> {
    let s = unindent(text)?;
    let ch = *s.as_bytes().first()?;
    if ch != b'`' && ch != b'~' {
        return None;
    }
    let len = s.bytes().take_while(|b| *b == ch).count();
    if len < 3 {
        return None;
    }
    // A backtick fence's info string cannot contain a backtick (that is inline code).
    if ch == b'`' && s[len..].contains('`') {
        return None;
    }
    Some(Fence { ch, len })
}

fn closes_fence(text: &str, open: Fence) -> bool {
    let Some(s) = unindent(text) else {
        return false;
    };
    let len = s.bytes().take_while(|b| *b == open.ch).count();
    len >= open.len && s[len..].trim_matches(is_space).is_empty()
}

/// An ATX heading: its level and its text (trimmed, closing hashes removed).
fn atx_heading(text: &str) -> Option<(u8, &str)> {
    let s = trim_start(unindent(text)?);
    let level = s.bytes().take_while(|b| *b == b'#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &s[level..];
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let mut heading = trim(rest);
    let unclosed = heading.trim_end_matches('#');
    if unclosed.is_empty() || unclosed.ends_with([' ', '\t']) {
        heading = trim(unclosed);
    }
    Some((level as u8, heading))
}

fn trim_start(s: &str) -> &str {
    s.trim_start_matches(is_space)
}

/// `Status`, optionally wrapped in emphasis markers.
fn is_status_word(text: &str) -> bool {
    trim(text.trim_matches(['*', '_'])).eq_ignore_ascii_case("status")
}

/// `Status: rest`, `**Status**: rest`, `**Status:** rest` (also `__`, `*`, `_`, any ASCII case,
/// spaces before the colon): the rest, trimmed, without a closing marker left at its end.
fn strip_label(text: &str) -> Option<&str> {
    let marker = ["**", "__", "*", "_"]
        .into_iter()
        .find(|m| text.starts_with(m))
        .unwrap_or("");
    let after = &text[marker.len()..];
    if !after.get(..6)?.eq_ignore_ascii_case("status") {
        return None;
    }
    let mut rest = &after[6..];
    let mut closed = marker.is_empty();
    if !closed && let Some(r) = rest.strip_prefix(marker) {
        rest = r;
        closed = true;
    }
    rest = rest.trim_start_matches([' ', '\t']).strip_prefix(':')?;
    if !closed && let Some(r) = rest.strip_prefix(marker) {
        rest = r;
        closed = true;
    }
    let mut rest = trim(rest);
    if !closed && let Some(r) = rest.strip_suffix(marker) {
        rest = trim(r);
    }
    Some(rest)
}

/// A value without surrounding spaces and bold markers.
fn clean(value: &str) -> &str {
    let mut v = trim(value);
    for m in ["**", "__"] {
        if v.len() > 2 * m.len()
            && let Some(inner) = v.strip_prefix(m).and_then(|s| s.strip_suffix(m))
        {
            v = trim(inner);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoryState;

    fn values(doc: &str) -> Vec<(String, u32, Source)> {
        scan(doc)
            .all_values()
            .into_iter()
            .map(|v| (v.raw, v.line, v.source))
            .collect()
    }

    #[test]
    fn line_endings_and_numbers() {
        let lines: Vec<_> = Lines::new("a\r\nb\rc\n\nd")
            .map(|l| (l.no, l.text))
            .collect();
        assert_eq!(lines, vec![(1, "a"), (2, "b"), (3, "c"), (4, ""), (5, "d")]);
        let lines: Vec<_> = Lines::new("\u{FEFF}a\n")
            .map(|l| (l.no, l.start, l.text))
            .collect();
        assert_eq!(lines, vec![(1, 3, "a")]);
    }

    #[test]
    fn labels() {
        assert_eq!(strip_label("Status: done"), Some("done"));
        assert_eq!(strip_label("**Status**: Done"), Some("Done"));
        assert_eq!(
            strip_label("**Status:** Ready for Review"),
            Some("Ready for Review")
        );
        assert_eq!(strip_label("**Status: Done**"), Some("Done"));
        assert_eq!(strip_label("STATUS : x"), Some("x"));
        assert_eq!(strip_label("Statuses: x"), None);
        assert_eq!(strip_label("Status report: x"), None);
        assert_eq!(strip_label("Stat"), None);
    }

    #[test]
    fn comments_are_blanked_across_lines() {
        let doc = "## Status\n\n<!-- Status: Done\nDraft -->\nReview\n";
        assert_eq!(values(doc), vec![("Review".into(), 5, Source::Section)]);
    }

    #[test]
    fn tables_quotes_and_indented_code_are_not_read() {
        let doc = "# S\n\n| Status: done |\n> Status: done\n    Status: done\n";
        assert!(values(doc).is_empty());
    }

    #[test]
    fn empty_label_takes_the_next_line_of_its_paragraph() {
        assert_eq!(
            values("# S\n**Status:**\nDone\n"),
            vec![("Done".into(), 3, Source::Line)]
        );
        let s = scan("# S\nStatus:\n\nDone\n");
        assert_eq!(s.first_empty, Some(2));
        assert!(s.candidates.is_empty());
    }

    #[test]
    fn agreeing_values_are_found_and_nested_ones_yield() {
        let doc = "---\nstatus: done\n---\n# S\n\nStatus: Done\n";
        assert_eq!(parse_text(doc).state(), Some(StoryState::Done));
        let doc = "# S\n## Dev Agent Record\n### Status\nReview\n";
        assert_eq!(parse_text(doc).state(), Some(StoryState::Review));
    }

    #[test]
    fn frontmatter_values() {
        assert_eq!(yaml_scalar(" 'in-review' # c"), "in-review");
        assert_eq!(yaml_scalar(" \"done\""), "done");
        assert_eq!(yaml_scalar(" done # note"), "done");
        assert_eq!(yaml_scalar(" # only a comment"), "");
    }
}
