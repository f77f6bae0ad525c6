//! Reading story documents: headings, sections and task checkboxes, with fenced code skipped.
//!
//! Line-based and linear, like the status parser. Used to pull review findings out of a story
//! (unchecked `[AI-Review]` / `[Review]` action items, the QA Results checklist) and to check
//! that every acceptance-criterion and task checkbox is ticked.

/// A checkbox list item (`- [ ]`, `* [x]`, `1. [ ]`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkbox {
    /// 1-based line number.
    pub line: u32,
    pub checked: bool,
    /// The item text after the box, trimmed.
    pub text: String,
    /// The headings enclosing the item, outermost first (without `#`s).
    pub headings: Vec<String>,
}

impl Checkbox {
    /// Whether any enclosing heading contains `needle` (ASCII case-insensitive).
    pub fn under(&self, needle: &str) -> bool {
        self.headings.iter().any(|h| contains_ci(h, needle))
    }
}

/// ASCII case-insensitive substring test.
pub fn contains_ci(haystack: &str, needle: &str) -> bool {
    let n = needle.len();
    n == 0
        || haystack
            .as_bytes()
            .windows(n)
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// The ATX heading on a line: level and text.
pub fn heading(line: &str) -> Option<(usize, &str)> {
    let t = line.trim_start_matches(' ');
    if line.len() - t.len() > 3 {
        return None;
    }
    let level = t.bytes().take_while(|b| *b == b'#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &t[level..];
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    Some((level, rest.trim().trim_end_matches('#').trim()))
}

/// Lines of a document outside fenced code blocks, with 1-based numbers.
fn prose_lines(doc: &str) -> impl Iterator<Item = (u32, &str)> {
    let mut fence: Option<(u8, usize)> = None;
    doc.lines().zip(1u32..).filter_map(move |(line, no)| {
        let t = line.trim_start();
        let ch = t.bytes().next().filter(|c| *c == b'`' || *c == b'~');
        let run = ch.map_or(0, |c| t.bytes().take_while(|b| *b == c).count());
        match (fence, ch) {
            (Some((open, len)), Some(c))
                if c == open && run >= len && t[run..].trim().is_empty() =>
            {
                fence = None;
                None
            }
            (Some(_), _) => None,
            (None, Some(c)) if run >= 3 => {
                fence = Some((c, run));
                None
            }
            (None, _) => Some((no, line)),
        }
    })
}

/// Every checkbox item of the document, outside code fences.
pub fn checkboxes(doc: &str) -> Vec<Checkbox> {
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut out = Vec::new();
    for (no, line) in prose_lines(doc) {
        if let Some((level, text)) = heading(line) {
            while stack.last().is_some_and(|(l, _)| *l >= level) {
                stack.pop();
            }
            stack.push((level, text.to_owned()));
            continue;
        }
        if let Some((checked, text)) = checkbox(line) {
            out.push(Checkbox {
                line: no,
                checked,
                text: text.to_owned(),
                headings: stack.iter().map(|(_, h)| h.clone()).collect(),
            });
        }
    }
    out
}

/// `- [ ] text` / `* [x] text` / `+ [X] text` / `1. [ ] text`: checked flag and text.
fn checkbox(line: &str) -> Option<(bool, &str)> {
    let t = line.trim_start();
    let rest = if let Some(r) = t.strip_prefix(['-', '*', '+']) {
        r
    } else {
        let digits = t.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        t[digits..].strip_prefix(['.', ')'])?
    };
    let rest = rest.strip_prefix([' ', '\t'])?.trim_start();
    let checked = match rest.get(..3)? {
        "[ ]" => false,
        "[x]" | "[X]" => true,
        _ => return None,
    };
    Some((checked, rest[3..].trim()))
}

/// The body of the first section whose heading matches `name` (ASCII case-insensitive,
/// exact), up to the next heading of the same or a higher level.
pub fn section<'a>(doc: &'a str, name: &str) -> Option<Vec<&'a str>> {
    let mut body: Option<(usize, Vec<&str>)> = None;
    for (_, line) in prose_lines(doc) {
        let h = heading(line);
        match (&mut body, h) {
            (Some((level, _)), Some((l, _))) if l <= *level => break,
            (Some((_, lines)), _) => lines.push(line),
            (None, Some((l, text))) if text.eq_ignore_ascii_case(name) => {
                body = Some((l, Vec::new()))
            }
            (None, _) => {}
        }
    }
    body.map(|(_, lines)| lines)
}

/// Shortens `text` to at most `max` bytes on a char boundary, marking the cut with `…`.
pub fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The last `lines` lines of `text`, at most `max` bytes (cut at the front).
pub fn tail(text: &str, lines: usize, max: usize) -> String {
    let all: Vec<&str> = text.trim_end().lines().collect();
    let kept = all[all.len().saturating_sub(lines)..].join("\n");
    if kept.len() <= max {
        return kept;
    }
    let mut start = kept.len() - max;
    while !kept.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &kept[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORY: &str = r#"# Story 1.1: T

## Acceptance Criteria

1. Works.

## Tasks / Subtasks

- [x] Task 1 (AC: 1)
  - [ ] Subtask 1.1

### Review Follow-ups (AI)

- [ ] [AI-Review][High] Fix it [src/a.rs:1]

```md
- [ ] not a task
## Not a heading
```

## QA Results

### Improvements Checklist

- [ ] Add a test
1. [X] Numbered
"#;

    #[test]
    fn checkboxes_carry_their_headings_and_skip_fences() {
        let boxes = checkboxes(STORY);
        let summary: Vec<(bool, &str, bool)> = boxes
            .iter()
            .map(|b| (b.checked, b.text.as_str(), b.under("tasks")))
            .collect();
        assert_eq!(
            summary,
            vec![
                (true, "Task 1 (AC: 1)", true),
                (false, "Subtask 1.1", true),
                (false, "[AI-Review][High] Fix it [src/a.rs:1]", true),
                (false, "Add a test", false),
                (true, "Numbered", false),
            ]
        );
        assert!(boxes[2].under("review follow-ups"));
        assert_eq!(
            boxes[3].headings,
            vec!["Story 1.1: T", "QA Results", "Improvements Checklist"]
        );
    }

    #[test]
    fn sections_end_at_a_same_level_heading() {
        let qa = section(STORY, "qa results").expect("section");
        assert!(qa.iter().any(|l| l.contains("Add a test")));
        let tasks = section(STORY, "Tasks / Subtasks").expect("section");
        assert!(tasks.iter().any(|l| l.contains("Fix it")));
        assert!(!tasks.iter().any(|l| l.contains("Add a test")));
        assert!(section(STORY, "Not a heading").is_none());
    }

    #[test]
    fn clip_and_tail_respect_char_boundaries() {
        assert_eq!(clip("héllo", 2), "h…");
        assert_eq!(tail("a\nb\nc\nd\n", 2, 100), "c\nd");
        assert_eq!(tail("ééé", 1, 3), "…é");
    }
}
