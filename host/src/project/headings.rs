//! The epic parser: epic and story headings of a PRD, a PRD shard or a v6 `epics.md`.
//!
//! Pure and linear in the input (no regex, no backtracking), so any text is parsed in bounded
//! time without panicking. The rules are in the [`super`] module doc ("Epic and story headings").

use super::id::StoryId;
use super::text::numbered_lines;

/// An `Epic N` heading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpicHeading {
    /// The epic number.
    pub number: u32,
    /// The title (may be empty).
    pub title: String,
    /// The 1-based line.
    pub line: u32,
}

/// A `Story N.M` heading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoryHeading {
    /// The story id.
    pub id: StoryId,
    /// The title (may be empty).
    pub title: String,
    /// The 1-based line.
    pub line: u32,
}

/// Everything found in one document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpicDoc {
    /// Epic headings, in document order (duplicates included).
    pub epics: Vec<EpicHeading>,
    /// Story headings, in document order, the first of each id only.
    pub stories: Vec<StoryHeading>,
    /// Tolerated oddities: (line, message).
    pub warnings: Vec<(u32, String)>,
}

/// What one heading line holds.
#[derive(Debug, PartialEq, Eq)]
enum Heading {
    Epic(u32, String),
    Story(StoryId, String),
    /// Looks like an epic or story heading (keyword and a digit) but did not parse.
    Suspect,
    Other,
}

/// Parses the epic and story headings of a Markdown document.
pub fn parse_epic_doc(text: &str) -> EpicDoc {
    let mut doc = EpicDoc::default();
    let mut lines = numbered_lines(text).peekable();

    // YAML frontmatter (v6 epics.md) is skipped when it is closed; an unclosed `---` is text.
    if lines.peek().is_some_and(|(_, l)| l.trim_end() == "---") {
        let closes = numbered_lines(text)
            .skip(1)
            .any(|(_, l)| is_frontmatter_end(l));
        if closes {
            lines.next();
            for (_, l) in lines.by_ref() {
                if is_frontmatter_end(l) {
                    break;
                }
            }
        }
    }

    let mut current_epic: Option<u32> = None;
    let mut fence: Option<(u8, usize, u32)> = None;
    let mut in_comment: Option<u32> = None;
    for (no, line) in lines {
        if let Some((ch, len, _)) = fence {
            if closes_fence(line, ch, len) {
                fence = None;
            }
            continue;
        }
        if in_comment.is_some() {
            if line.contains("-->") {
                in_comment = None;
            }
            continue;
        }
        if let Some((ch, len)) = opens_fence(line) {
            fence = Some((ch, len, no));
            continue;
        }
        let lead = line.trim_start();
        if lead.starts_with("<!--") && !lead.contains("-->") {
            in_comment = Some(no);
            continue;
        }
        match classify(line) {
            Heading::Epic(number, title) => {
                current_epic = Some(number);
                doc.epics.push(EpicHeading {
                    number,
                    title,
                    line: no,
                });
            }
            Heading::Story(id, title) => {
                if let Some(first) = doc.stories.iter().find(|s| s.id == id) {
                    doc.warnings.push((
                        no,
                        format!("duplicate heading for story {id} (first at line {}): the first is kept", first.line),
                    ));
                } else {
                    if title.is_empty() {
                        doc.warnings.push((no, format!("story {id} has no title")));
                    }
                    if let Some(epic) = current_epic
                        && epic != id.epic
                    {
                        doc.warnings.push((no, format!("story {id} is under the heading of epic {epic}: it belongs to epic {}", id.epic)));
                    }
                    doc.stories.push(StoryHeading {
                        id,
                        title,
                        line: no,
                    });
                }
            }
            Heading::Suspect => doc.warnings.push((
                no,
                format!(
                    "heading looks like an epic or story but did not parse: `{}`",
                    super::text::clip(lead, 80)
                ),
            )),
            Heading::Other => {}
        }
    }
    if let Some((_, _, opened)) = fence {
        doc.warnings.push((
            opened,
            "code fence never closed: headings after it are ignored".to_owned(),
        ));
    }
    if let Some(opened) = in_comment {
        doc.warnings.push((
            opened,
            "HTML comment never closed: headings after it are ignored".to_owned(),
        ));
    }
    doc
}

fn is_frontmatter_end(line: &str) -> bool {
    matches!(line.trim_end(), "---" | "...")
}

/// Up to three spaces of indentation, as Markdown allows for fences and headings.
fn strip_indent(line: &str) -> Option<&str> {
    let spaces = line.len() - line.trim_start_matches(' ').len();
    (spaces <= 3).then(|| &line[spaces..])
}

fn opens_fence(line: &str) -> Option<(u8, usize)> {
    let rest = strip_indent(line)?;
    let ch = *rest.as_bytes().first()?;
    if ch != b'`' && ch != b'~' {
        return None;
    }
    let len = rest.len() - rest.trim_start_matches(ch as char).len();
    if len < 3 {
        return None;
    }
    // A backtick fence's info string cannot contain a backtick.
    if ch == b'`' && rest[len..].contains('`') {
        return None;
    }
    Some((ch, len))
}

fn closes_fence(line: &str, ch: u8, len: usize) -> bool {
    let Some(rest) = strip_indent(line) else {
        return false;
    };
    let run = rest.len() - rest.trim_start_matches(ch as char).len();
    run >= len && rest[run..].trim().is_empty()
}

/// Strips `**`/`__` emphasis at both ends of a heading text.
fn strip_emphasis(s: &str) -> &str {
    let mut t = s.trim();
    for marker in ["**", "__"] {
        t = t.strip_prefix(marker).unwrap_or(t).trim_start();
        t = t.strip_suffix(marker).unwrap_or(t).trim_end();
    }
    t
}

/// The heading's text without hashes, closing hashes and emphasis; `None` if not a heading.
/// `##Story` (no space after the hashes) is accepted on purpose: PMs write it.
fn heading_text(line: &str) -> Option<&str> {
    let rest = strip_indent(line)?;
    let hashes = rest.len() - rest.trim_start_matches('#').len();
    if !(1..=6).contains(&hashes) {
        return None;
    }
    let mut text = rest[hashes..].trim();
    // A closing sequence of hashes preceded by a space is not part of the title.
    let without_closing = text.trim_end_matches('#');
    if without_closing.len() < text.len()
        && (without_closing.is_empty() || without_closing.ends_with([' ', '\t']))
    {
        text = without_closing.trim_end();
    }
    Some(strip_emphasis(text))
}

fn strip_keyword<'a>(text: &'a str, keyword: &str) -> Option<&'a str> {
    let head = text.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = &text[keyword.len()..];
    let after = rest.trim_start();
    // The keyword must be a whole word followed by whitespace.
    (after.len() < rest.len()).then_some(after)
}

/// The title after an id or number: an optional `:`, `.`, `-`, `–` or `—` separator, then text.
fn title_after(rest: &str) -> String {
    let t = rest.trim_start();
    let t = t.strip_prefix([':', '.', '-', '–', '—']).unwrap_or(t);
    strip_emphasis(t).to_owned()
}

/// `.5` or `-5`: the number before goes on, so it was not a whole id.
fn continues_number(s: &str) -> bool {
    let b = s.as_bytes();
    matches!(b.first(), Some(b'.' | b'-')) && b.get(1).is_some_and(u8::is_ascii_digit)
}

fn classify(line: &str) -> Heading {
    let Some(text) = heading_text(line) else {
        return Heading::Other;
    };
    if let Some(rest) = strip_keyword(text, "epic") {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Heading::Other;
        }
        let after = &rest[digits..];
        // `Epic 1.2` or `Epic 1a` is not an epic heading.
        if after.starts_with(char::is_alphanumeric) || continues_number(after) {
            return Heading::Suspect;
        }
        return match rest[..digits].parse() {
            Ok(n) => Heading::Epic(n, title_after(after)),
            Err(_) => Heading::Suspect,
        };
    }
    if let Some(rest) = strip_keyword(text, "story") {
        if !rest.starts_with(|c: char| c.is_ascii_digit()) {
            return Heading::Other;
        }
        return match StoryId::parse_prefix(rest) {
            // `Story 1.2.3` or `Story 1.2abc` is not a story heading.
            Some((id, used))
                if !rest[used..].starts_with(char::is_alphanumeric)
                    && !continues_number(&rest[used..]) =>
            {
                Heading::Story(id, title_after(&rest[used..]))
            }
            _ => Heading::Suspect,
        };
    }
    Heading::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(doc: &EpicDoc) -> Vec<String> {
        doc.stories
            .iter()
            .map(|s| format!("{} {}", s.id, s.title))
            .collect()
    }

    #[test]
    fn both_heading_styles() {
        let colon =
            "## Epic 1: User Accounts\n\n### Story 1.1: Project Setup\n\n### Story 1.2: Sign Up\n";
        let plain =
            "# Epic 1 User Accounts\n\n## Story 1.1 Project Setup\n\n## Story 1.2 Sign Up\n";
        for text in [colon, plain] {
            let doc = parse_epic_doc(text);
            assert_eq!(
                doc.epics,
                vec![EpicHeading {
                    number: 1,
                    title: "User Accounts".into(),
                    line: 1
                }]
            );
            assert_eq!(ids(&doc), ["1.1 Project Setup", "1.2 Sign Up"]);
            assert_eq!(doc.stories[1].line, 5);
            assert!(doc.warnings.is_empty(), "{:?}", doc.warnings);
        }
    }

    #[test]
    fn ignores_fences_frontmatter_and_comments() {
        let text = "---\ntitle: x\n# Epic 9 In Frontmatter\n---\n# Epic 1 A\n```markdown\n## Story 1.9: Fenced\n```\n~~~~\n## Story 1.8 Tilde\n~~~\n## Story 1.7 still fenced\n~~~~\n<!--\n## Story 1.6 Commented\n-->\n## Story 1.1 Real\n";
        let doc = parse_epic_doc(text);
        assert_eq!(doc.epics.len(), 1);
        assert_eq!(ids(&doc), ["1.1 Real"]);
    }

    #[test]
    fn unclosed_frontmatter_is_text_and_unclosed_fence_warns() {
        let doc = parse_epic_doc("---\n## Story 1.1 A\n```\n## Story 1.2 B\n");
        assert_eq!(ids(&doc), ["1.1 A"]);
        assert_eq!(
            doc.warnings,
            vec![(
                3,
                "code fence never closed: headings after it are ignored".to_owned()
            )]
        );
    }

    #[test]
    fn odd_headings() {
        let text = "## **Story 4.7: Bold Heading**\n##Story 4.8: No Space\n#### Story 4.4a: Split\n## Story 4-5 Dash\n## Story 4.6\n## Story 4.2: X ##\n__Story 4.9__\n";
        let doc = parse_epic_doc(text);
        assert_eq!(
            ids(&doc),
            [
                "4.7 Bold Heading",
                "4.8 No Space",
                "4.4a Split",
                "4.5 Dash",
                "4.6 ",
                "4.2 X"
            ]
        );
        assert_eq!(doc.warnings, vec![(5, "story 4.6 has no title".to_owned())]);
    }

    #[test]
    fn not_headings() {
        let text = "## Epic List\n## Stories\n### Story Points\n- **Epic 1: In a list**\n    ## Story 1.1 indented code\n####### Story 1.2 seven\n## Epicure 1\n## Storyline 1.1\n";
        let doc = parse_epic_doc(text);
        assert!(doc.epics.is_empty() && doc.stories.is_empty(), "{doc:?}");
        assert!(doc.warnings.is_empty(), "{:?}", doc.warnings);
    }

    #[test]
    fn suspects_warn() {
        let doc = parse_epic_doc(
            "## Story 1.2.3 Bad\n## Epic 1.2 Bad\n## Story 99999999999.1 Big\n## Story 1.2abc\n",
        );
        assert!(doc.stories.is_empty() && doc.epics.is_empty());
        let lines: Vec<u32> = doc.warnings.iter().map(|w| w.0).collect();
        assert_eq!(lines, [1, 2, 3, 4]);
    }

    #[test]
    fn duplicates_keep_the_first() {
        let doc = parse_epic_doc("## Story 1.1: A\n## Story 1.1: B\n");
        assert_eq!(ids(&doc), ["1.1 A"]);
        assert!(doc.warnings[0].1.contains("first at line 1"));
    }

    #[test]
    fn crlf_and_cr_lines() {
        let doc = parse_epic_doc("# Epic 2 X\r\n## Story 2.1 Y\r\n");
        assert_eq!(ids(&doc), ["2.1 Y"]);
        let doc = parse_epic_doc("# Epic 2 X\r## Story 2.1 Y\r");
        assert_eq!(ids(&doc), ["2.1 Y"]);
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// Pieces that steer random documents into the parser's interesting paths.
    fn token() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "#",
            "##",
            "###",
            "####",
            "#######",
            " ",
            "   ",
            "    ",
            "\t",
            "Epic",
            "epic",
            "Story",
            "STORY",
            "1",
            "4",
            "10",
            "99999999999",
            ".",
            "-",
            ":",
            "a",
            "b",
            "é",
            "✅",
            "\u{200b}",
            "\u{0}",
            "**",
            "__",
            "```",
            "````",
            "~~~",
            "<!--",
            "-->",
            "---",
            "...",
            "\n",
            "\r\n",
            "\r",
            "Title",
        ])
    }

    fn doc() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::collection::vec(token(), 0..200).prop_map(|t| t.concat()),
            ".{0,400}",
        ]
    }

    /// Epics, each with its numbered, titled stories.
    type Plan = Vec<(u32, Vec<(u32, String)>)>;

    /// A well-formed plan: epics with numbered stories, rendered in one of the heading styles.
    fn plan() -> impl Strategy<Value = (Plan, bool, bool)> {
        let title = "[A-Za-z][A-Za-z0-9 &]{0,20}[A-Za-z0-9]";
        let stories = prop::collection::btree_map(1u32..30, title, 0..6)
            .prop_map(|m| m.into_iter().collect::<Vec<_>>());
        (
            prop::collection::btree_map(1u32..20, stories, 0..5)
                .prop_map(|m| m.into_iter().collect()),
            any::<bool>(),
            any::<bool>(),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn never_panics_and_stays_consistent(text in doc()) {
            let lines = u32::try_from(text.len() + 1).unwrap_or(u32::MAX);
            let doc = parse_epic_doc(&text);
            let mut ids: Vec<StoryId> = doc.stories.iter().map(|s| s.id).collect();
            let n = ids.len();
            ids.sort();
            ids.dedup();
            prop_assert_eq!(ids.len(), n, "story ids are unique");
            for s in &doc.stories {
                prop_assert!(s.line >= 1 && s.line <= lines);
            }
            for (line, _) in &doc.warnings {
                prop_assert!(*line >= 1 && *line <= lines);
            }
        }

        #[test]
        fn recovers_a_rendered_plan((plan, colon, crlf) in plan()) {
            let nl = if crlf { "\r\n" } else { "\n" };
            let mut text = String::new();
            for (epic, stories) in &plan {
                if colon {
                    text.push_str(&format!("## Epic {epic}: Epic title{nl}{nl}Goal.{nl}{nl}"));
                } else {
                    text.push_str(&format!("# Epic {epic} Epic title{nl}{nl}"));
                }
                for (story, title) in stories {
                    if colon {
                        text.push_str(&format!("### Story {epic}.{story}: {title}{nl}{nl}```{nl}## Story {epic}.{story}: fenced{nl}```{nl}"));
                    } else {
                        text.push_str(&format!("## Story {epic}.{story} {title}{nl}{nl}As a user.{nl}"));
                    }
                }
            }
            let doc = parse_epic_doc(&text);
            let expected: Vec<(StoryId, String)> = plan
                .iter()
                .flat_map(|(e, s)| s.iter().map(move |(n, t)| (StoryId::new(*e, *n), t.trim().to_owned())))
                .collect();
            let got: Vec<(StoryId, String)> = doc.stories.iter().map(|s| (s.id, s.title.clone())).collect();
            prop_assert_eq!(got, expected);
            prop_assert_eq!(doc.epics.len(), plan.len());
            prop_assert!(doc.warnings.is_empty(), "{:?}", doc.warnings);
        }
    }

    #[test]
    fn large_adversarial_inputs_parse_in_one_pass() {
        // Every line opens or closes something; a quadratic parser would take minutes here.
        let pieces = [
            "```\n",
            "## Story 1.1: x\n",
            "<!--\n",
            "-->\n",
            "#",
            "Story 1.",
            "~~~\n",
        ];
        let mut text = String::with_capacity(4 << 20);
        let mut i = 0usize;
        while text.len() < 4 << 20 {
            text.push_str(pieces[i % pieces.len()]);
            i += 1;
        }
        let doc = parse_epic_doc(&text);
        assert!(doc.stories.len() <= 1);
        let one_line = "#".repeat(2 << 20) + &" Story 1.1".repeat(1 << 16);
        assert!(parse_epic_doc(&one_line).stories.is_empty());
    }
}
