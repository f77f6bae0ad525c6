//! The observation of a story: its file read and its status parsed, judged into what the
//! workflow acts on ([`Observed`]). The judgement, [`observed`] and its one wording of a status
//! problem, [`StatusProblem`], is shared with `bmad-host status` and `run --dry-run`.

use std::fmt;
use std::path::Path;

use super::driver::Driver;
use crate::policy::{MissingReason, ParseOutcome, StatusValue, StoryState};
use crate::project::StoryEntry;
use crate::workflow::{self, Observed};

/// Why a parsed status cannot be acted on. Its `Display` names the story file (and the line):
/// `docs/stories/1.1.story.md: 2 status values disagree (...); keep one`.
#[derive(Debug, Clone, Copy)]
pub struct StatusProblem<'a> {
    file: &'a Path,
    parse: &'a ParseOutcome,
}

impl<'a> StatusProblem<'a> {
    /// The state the status `parse` read from `file` maps to with confidence, or the problem
    /// with it.
    pub fn judge(file: &'a Path, parse: &'a ParseOutcome) -> Result<StoryState, Self> {
        match parse {
            ParseOutcome::Found(StatusValue { state: Some(s), .. }) => Ok(*s),
            _ => Err(StatusProblem { file, parse }),
        }
    }

    /// The problem with the status `parse` read from `file`, if it has one.
    pub fn of(file: &'a Path, parse: &'a ParseOutcome) -> Option<Self> {
        Self::judge(file, parse).err()
    }
}

impl fmt::Display for StatusProblem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        match self.parse {
            ParseOutcome::Found(v) => {
                write!(f, "{file}:{}: status `{}` maps to no state", v.line, v.raw)
            }
            ParseOutcome::Doubtful(v) => {
                write!(
                    f,
                    "{file}:{}: status `{}` is not a standard BMAD status",
                    v.line, v.raw
                )?;
                if let Some(s) = v.state {
                    write!(f, " (it might mean {})", workflow::state_name(s))?;
                }
                f.write_str("; set it to one by hand")
            }
            ParseOutcome::Conflict(vs) => {
                write!(f, "{file}: {} status values disagree (", vs.len())?;
                for (i, v) in vs.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}`{}` at line {}", v.raw, v.line)?;
                }
                f.write_str("); keep one")
            }
            ParseOutcome::Missing(reason) => match reason {
                MissingReason::EmptyFile => write!(f, "{file}: the story file is empty"),
                MissingReason::NotText => write!(f, "{file}: the story file is not text"),
                MissingReason::NoStatus => {
                    write!(f, "{file}: no Status section or `Status:` line")
                }
                MissingReason::EmptyValue(line) => {
                    write!(f, "{file}: line {line}: the Status has no value")
                }
            },
        }
    }
}

/// What the workflow makes of the status `parse` read from `file`: the state to act on, or why
/// the status cannot be trusted.
pub fn observed(file: &Path, parse: &ParseOutcome) -> Observed {
    match StatusProblem::judge(file, parse) {
        Ok(state) => Observed::State(state),
        Err(problem) => Observed::Unusable(problem.to_string()),
    }
}

/// The story as last read.
#[derive(Debug, Clone)]
pub(super) struct Seen {
    pub exists: bool,
    pub text: String,
    pub parse: ParseOutcome,
    pub observed: Observed,
    pub state: Option<StoryState>,
    /// The status as written, when one could be read.
    pub raw: Option<String>,
    /// The status value a write would replace (none when the statuses conflict or are missing).
    pub value: Option<StatusValue>,
}

impl Seen {
    fn not_drafted() -> Self {
        Seen {
            exists: false,
            text: String::new(),
            parse: ParseOutcome::Missing(MissingReason::NoStatus),
            observed: Observed::NotDrafted,
            state: None,
            raw: None,
            value: None,
        }
    }

    fn unusable(why: String) -> Self {
        Seen {
            exists: true,
            observed: Observed::Unusable(why),
            ..Seen::not_drafted()
        }
    }

    fn from_parse(path: &Path, text: String, parse: ParseOutcome) -> Self {
        let observed = observed(path, &parse);
        let value = match &parse {
            ParseOutcome::Found(v) | ParseOutcome::Doubtful(v) => Some(v.clone()),
            ParseOutcome::Conflict(_) | ParseOutcome::Missing(_) => None,
        };
        let state = match &observed {
            Observed::State(s) => Some(*s),
            _ => None,
        };
        Seen {
            exists: true,
            raw: value.as_ref().map(|v| v.raw.clone()),
            value,
            text,
            parse,
            observed,
            state,
        }
    }

    /// Why the status cannot be written over, for a refused state write.
    pub fn why_unusable(&self) -> String {
        match &self.observed {
            Observed::Unusable(why) => why.clone(),
            _ => "no status".into(),
        }
    }
}

impl Driver<'_> {
    /// Reads the story file and parses its status with the status plugin.
    pub(super) fn observe(&mut self, entry: &StoryEntry) -> Seen {
        let path = self.root.join(&entry.path);
        if !path.exists() {
            return Seen::not_drafted();
        }
        let text = match self.project.read_story(entry) {
            Ok(t) => t.text,
            Err(e) => return Seen::unusable(e.to_string()),
        };
        match self.plugins.parse_status(&text) {
            Ok(outcome) => Seen::from_parse(&entry.path, text, outcome),
            Err(e) => Seen::unusable(format!("status plugin: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::StatusSource;

    fn value(raw: &str, line: u32, state: Option<StoryState>) -> StatusValue {
        StatusValue {
            raw: raw.into(),
            line,
            source: StatusSource::Section,
            state,
        }
    }

    fn problem(parse: &ParseOutcome) -> Option<String> {
        StatusProblem::of(Path::new("docs/stories/1.1.story.md"), parse).map(|p| p.to_string())
    }

    #[test]
    fn every_parse_outcome_has_one_wording() {
        let found = ParseOutcome::Found(value("Approved", 5, Some(StoryState::ReadyForDev)));
        assert_eq!(problem(&found), None);
        assert_eq!(
            observed(Path::new("x.md"), &found),
            Observed::State(StoryState::ReadyForDev)
        );
        assert_eq!(
            problem(&ParseOutcome::Found(value("Odd", 5, None))).as_deref(),
            Some("docs/stories/1.1.story.md:5: status `Odd` maps to no state")
        );
        assert_eq!(
            problem(&ParseOutcome::Doubtful(value(
                "Finished",
                7,
                Some(StoryState::Done)
            )))
            .as_deref(),
            Some(
                "docs/stories/1.1.story.md:7: status `Finished` is not a standard BMAD status \
                 (it might mean done); set it to one by hand"
            )
        );
        assert_eq!(
            problem(&ParseOutcome::Doubtful(value("Hmm", 7, None))).as_deref(),
            Some(
                "docs/stories/1.1.story.md:7: status `Hmm` is not a standard BMAD status; set it \
                 to one by hand"
            )
        );
        let conflict = ParseOutcome::Conflict(vec![
            value("Draft", 5, Some(StoryState::Drafted)),
            value("Done", 9, Some(StoryState::Done)),
        ]);
        assert_eq!(
            problem(&conflict).as_deref(),
            Some(
                "docs/stories/1.1.story.md: 2 status values disagree (`Draft` at line 5, `Done` \
                 at line 9); keep one"
            )
        );
        let cases = [
            (MissingReason::EmptyFile, "the story file is empty"),
            (MissingReason::NotText, "the story file is not text"),
            (
                MissingReason::NoStatus,
                "no Status section or `Status:` line",
            ),
            (
                MissingReason::EmptyValue(3),
                "line 3: the Status has no value",
            ),
        ];
        for (reason, text) in cases {
            let parse = ParseOutcome::Missing(reason);
            assert_eq!(
                problem(&parse),
                Some(format!("docs/stories/1.1.story.md: {text}"))
            );
            assert_eq!(
                observed(Path::new("docs/stories/1.1.story.md"), &parse),
                Observed::Unusable(format!("docs/stories/1.1.story.md: {text}"))
            );
        }
    }
}
