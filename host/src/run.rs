//! The run loop: ties project, plugins, workflow, supervisor and journal together.
