//! BMAD projects: finding the layout (v4 `.bmad-core`, v6 `_bmad`), epics, stories, sprint-status and QA gates; safe status writes.
