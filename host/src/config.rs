//! Configuration: defaults < `bmad-host.toml` < `BMAD_HOST_*` environment < flags, with provenance.
