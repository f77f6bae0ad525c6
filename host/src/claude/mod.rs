//! The Claude supervisor: spawn, stream-json reading, limits, outcomes, teardown of the whole process tree.
