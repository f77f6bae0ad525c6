//! The durable journal (SQLite): runs, stories, steps with intent and result rows; resume; the run lock.
