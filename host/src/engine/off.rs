//! The engine's entry points in a build without the `restate` feature: each fails with
//! [`EngineError::NotBuilt`], which says how to get a bmad-host with it.

use std::net::SocketAddr;
use std::path::Path;

use super::{EngineError, WorkerSpec};
use crate::context::Context;
use crate::error::Error;

/// `bmad-host worker --engine restate`.
pub fn worker(_: WorkerSpec, _: SocketAddr) -> Result<u8, Error> {
    Err(EngineError::NotBuilt.into())
}

/// `bmad-host balance`.
pub fn balance(_: SocketAddr, _: &[String]) -> Result<u8, Error> {
    Err(EngineError::NotBuilt.into())
}

/// `bmad-host run --engine restate`.
pub fn run(_: Context, _: Option<u32>, _: Option<&str>, _: &str) -> Result<u8, Error> {
    Err(EngineError::NotBuilt.into())
}

/// `bmad-host log --restate-admin URL`.
pub fn log(_: &Path, _: &str, _: Option<&str>, _: bool) -> Result<u8, Error> {
    Err(EngineError::NotBuilt.into())
}

/// `bmad-host status --restate-admin URL`.
pub fn status(_: &Path, _: &str, _: bool) -> Result<u8, Error> {
    Err(EngineError::NotBuilt.into())
}
