//! The story state machine: pure, synchronous, no I/O.
