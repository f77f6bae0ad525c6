//! Output: progress for people on stderr, NDJSON events for machines on stdout.
