//! Quality gates: the project's own check commands, run under the same process-tree supervision as agent calls.
