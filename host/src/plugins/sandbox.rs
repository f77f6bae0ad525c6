//! What a guest instance can reach: the per-instance store state, the `bmad:policy/host` imports
//! (`log`, `read-file`), and a locked-down WASI.
//!
//! Rust guests built for `wasm32-wasip2` import a few WASI interfaces through their standard
//! library, so the sandbox provides them with nothing behind them: no environment, arguments or
//! preopened directories, a closed stdin, stdout discarded, stderr kept (bounded) to explain a
//! trap, a clock fixed at the Unix epoch, fixed "random" bytes, no network. Waiting
//! (`wasi:io/poll`, a sleep) traps: the host owns all time.
//!
//! The WASI streams are linked through this module's own synchronous shim instead of
//! wasmtime-wasi's, which enters a Tokio runtime with `block_on` and so panics when a plugin
//! prints from a call made on a Tokio worker thread. The shim runs each stream operation's
//! future once: the sandbox's streams are always ready, and anything that would have to wait
//! traps instead.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use wasmtime::component::{HasData, Linker, Resource, ResourceTable, WasmStr};
use wasmtime::{ResourceLimiter, StoreContextMut, format_err};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream, WasiCli, WasiCliView as _};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView as _};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView as _};
use wasmtime_wasi::p2::bindings::io::{poll as async_poll, streams as async_streams};
use wasmtime_wasi::p2::bindings::sync::io::{poll as sync_poll, streams as sync_streams};
use wasmtime_wasi::p2::{DynPollable, OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi::random::{Deterministic, WasiRandom};
use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView,
};

use super::SUPPORTED_WIT;
use super::access::ReadAccess;
use super::limits::{
    HOST_BYTES_PER_FUEL, HOST_CALL_FUEL, LOG_MAX_MESSAGE_BYTES, LOG_MAX_PER_CALL,
    READ_MAX_PER_CALL, STDERR_KEEP_BYTES,
};
use crate::bindings::agent::bmad::policy::host;

/// Entries at most in a table a guest may grow.
const TABLE_MAX_ELEMENTS: usize = 100_000;

/// The message of the trap a guest gets when it tries to wait.
const NO_WAITING: &str = "the plugin tried to wait or sleep (wasi:io/poll): plugins cannot block; the host owns all time";

/// The state of one guest instance's store.
pub struct State {
    plugin: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limiter: Limiter,
    access: Arc<ReadAccess>,
    stderr: BoundedPipe,
    logs: u32,
    reads: u32,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("plugin", &self.plugin)
            .finish_non_exhaustive()
    }
}

impl State {
    /// A fresh state for an instance of `plugin`, with its memory cap and read access.
    pub fn new(plugin: Arc<str>, access: Arc<ReadAccess>, memory_bytes: u64) -> State {
        let stderr = BoundedPipe::new(STDERR_KEEP_BYTES);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(BoundedPipe::new(0))
            .stderr(stderr.clone())
            .wall_clock(FixedClock)
            .monotonic_clock(FixedClock)
            .secure_random(Deterministic::new(FIXED_RANDOM.to_vec()))
            .insecure_random(Deterministic::new(FIXED_RANDOM.to_vec()))
            .insecure_random_seed(0)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        State {
            plugin,
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: Limiter {
                memory_cap: usize::try_from(memory_bytes).unwrap_or(usize::MAX),
                exceeded: None,
            },
            access,
            stderr,
            logs: 0,
            reads: 0,
        }
    }

    /// Resets the per-call budgets before a call.
    pub fn begin_call(&mut self) {
        self.logs = 0;
        self.reads = 0;
    }

    /// What the guest wrote to stderr (a panic message), lossily decoded and trimmed.
    pub fn stderr_text(&self) -> String {
        let bytes = self.stderr.contents();
        String::from_utf8_lossy(&bytes).trim().to_string()
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// "Randomness" for guests: a fixed cycle of bytes, so that runs are reproducible.
const FIXED_RANDOM: [u8; 16] = [
    0x62, 0x6d, 0x61, 0x64, 0x2d, 0x68, 0x6f, 0x73, 0x74, 0x2d, 0x66, 0x69, 0x78, 0x65, 0x64, 0x21,
];

/// A clock stopped at the Unix epoch (wall) and at zero (monotonic).
struct FixedClock;

impl HostWallClock for FixedClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(1)
    }
    fn now(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

impl HostMonotonicClock for FixedClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Memory and table caps of one instance; remembers a refused memory growth.
#[derive(Debug)]
pub struct Limiter {
    memory_cap: usize,
    /// The size a refused memory growth asked for.
    pub exceeded: Option<usize>,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.exceeded = Some(desired);
            return Err(format_err!(
                "memory limit reached: growing to {desired} bytes, the cap is {} bytes",
                self.memory_cap
            ));
        }
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(error)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= TABLE_MAX_ELEMENTS)
    }

    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        16
    }
}

/// An output stream that keeps its first `keep` bytes and discards the rest; never full,
/// never blocks, never fails.
#[derive(Debug, Clone)]
struct BoundedPipe {
    buf: Arc<Mutex<Vec<u8>>>,
    keep: usize,
}

impl BoundedPipe {
    fn new(keep: usize) -> BoundedPipe {
        BoundedPipe {
            buf: Arc::new(Mutex::new(Vec::new())),
            keep,
        }
    }

    fn push(&self, bytes: &[u8]) {
        let mut buf = self.buf.lock().unwrap_or_else(PoisonError::into_inner);
        let room = self.keep.saturating_sub(buf.len());
        buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn contents(&self) -> Vec<u8> {
        self.buf
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl IsTerminal for BoundedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for BoundedPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for BoundedPipe {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 << 10)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for BoundedPipe {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for BoundedPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary, marking the cut.
pub fn truncate(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} bytes cut]", &s[..end], s.len() - end).into()
}

impl State {
    /// `log(level, message)`: to tracing, attributed to the plugin, within the per-call budget.
    fn log(&mut self, level: host::Level, message: &str) {
        self.logs = self.logs.saturating_add(1);
        if self.logs > LOG_MAX_PER_CALL {
            if self.logs == LOG_MAX_PER_CALL + 1 {
                tracing::warn!(target: "bmad_host::plugin", plugin = %self.plugin,
                    "more than {LOG_MAX_PER_CALL} log messages in one call: the rest of this call's messages are dropped");
            }
            return;
        }
        let msg = truncate(message, LOG_MAX_MESSAGE_BYTES);
        let plugin = &*self.plugin;
        match level {
            host::Level::Trace => tracing::trace!(target: "bmad_host::plugin", plugin, "{msg}"),
            host::Level::Debug => tracing::debug!(target: "bmad_host::plugin", plugin, "{msg}"),
            host::Level::Info => tracing::info!(target: "bmad_host::plugin", plugin, "{msg}"),
            host::Level::Warn => tracing::warn!(target: "bmad_host::plugin", plugin, "{msg}"),
            host::Level::Error => tracing::error!(target: "bmad_host::plugin", plugin, "{msg}"),
        }
    }

    /// `read-file(path)`: the file's text if the plugin's access allows it, else the reason.
    fn read_file(&mut self, path: &str) -> Result<String, String> {
        self.reads = self.reads.saturating_add(1);
        let shown = truncate(path, 256);
        if self.reads > READ_MAX_PER_CALL {
            let reason =
                format!("too many read-file calls in one call (limit {READ_MAX_PER_CALL})");
            tracing::warn!(target: "bmad_host::plugin", plugin = %self.plugin, path = %shown, %reason, "plugin read-file denied");
            return Err(reason);
        }
        match self.access.read(path) {
            Ok(text) => {
                tracing::debug!(target: "bmad_host::plugin", plugin = %self.plugin, path = %shown, bytes = text.len(), "plugin read a file");
                Ok(text)
            }
            Err(reason) => {
                tracing::warn!(target: "bmad_host::plugin", plugin = %self.plugin, path = %shown, %reason, "plugin read-file denied");
                Err(reason)
            }
        }
    }
}

/// Charges the guest's fuel for work the host does on its behalf: [`HOST_CALL_FUEL`] per call
/// plus one unit per [`HOST_BYTES_PER_FUEL`] bytes handed over. Fuel that runs out here makes
/// the guest's next instruction trap with "out of fuel", so host calls cannot be used to get
/// unmetered work out of the host.
fn charge(cx: &mut StoreContextMut<'_, State>, bytes: usize) -> wasmtime::Result<()> {
    let cost = HOST_CALL_FUEL.saturating_add((bytes / HOST_BYTES_PER_FUEL) as u64);
    let left = cx.get_fuel()?;
    cx.set_fuel(left.saturating_sub(cost))
}

/// Links `bmad:policy/host@VERSION`: `log` and `read-file`, metered by [`charge`]. Strings
/// from the guest are read in place ([`WasmStr`]), so a huge log message is never copied.
fn add_host_to_linker(linker: &mut Linker<State>, version: &str) -> wasmtime::Result<()> {
    let mut host = linker.instance(&format!("bmad:policy/host@{version}"))?;
    host.func_wrap(
        "log",
        |mut cx: StoreContextMut<'_, State>, (level, message): (host::Level, WasmStr)| {
            let text = message.to_str(&cx)?;
            let len = text.len();
            let kept = truncate(&text, LOG_MAX_MESSAGE_BYTES).into_owned();
            charge(&mut cx, len)?;
            cx.data_mut().log(level, &kept);
            Ok(())
        },
    )?;
    host.func_wrap(
        "read-file",
        |mut cx: StoreContextMut<'_, State>,
         (path,): (WasmStr,)|
         -> wasmtime::Result<(Result<String, String>,)> {
            let path = path.to_str(&cx)?.into_owned();
            charge(&mut cx, path.len())?;
            let result = cx.data_mut().read_file(&path);
            if let Ok(text) = &result {
                charge(&mut cx, text.len())?;
            }
            Ok((result,))
        },
    )?;
    Ok(())
}

/// `HasData` giving WASI's `wasi:io/error` its resource table.
struct IoTable;

impl HasData for IoTable {
    type Data<'a> = &'a mut ResourceTable;
}

/// `HasData` for this module's synchronous `wasi:io/streams` and `wasi:io/poll`.
struct SandboxIo;

impl HasData for SandboxIo {
    type Data<'a> = IoView<'a>;
}

/// The resource table, seen through the sandbox's stream and poll implementations.
struct IoView<'a>(&'a mut ResourceTable);

/// Runs a future that must be ready at once; one that would wait is a trap.
fn at_once<F: Future>(fut: F) -> wasmtime::Result<F::Output> {
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Ok(v),
        Poll::Pending => Err(format_err!("{NO_WAITING}")),
    }
}

fn stream_at_once<T, F: Future<Output = StreamResult<T>>>(fut: F) -> StreamResult<T> {
    at_once(fut).map_err(StreamError::Trap)?
}

type InStream = sync_streams::InputStream;
type OutStream = sync_streams::OutputStream;

impl sync_streams::Host for IoView<'_> {
    fn convert_stream_error(
        &mut self,
        err: StreamError,
    ) -> wasmtime::Result<sync_streams::StreamError> {
        sync_streams::Host::convert_stream_error(self.0, err)
    }
}

impl sync_streams::HostOutputStream for IoView<'_> {
    fn drop(&mut self, stream: Resource<OutStream>) -> wasmtime::Result<()> {
        at_once(async_streams::HostOutputStream::drop(self.0, stream))?
    }
    fn check_write(&mut self, stream: Resource<OutStream>) -> StreamResult<u64> {
        sync_streams::HostOutputStream::check_write(self.0, stream)
    }
    fn write(&mut self, stream: Resource<OutStream>, bytes: Vec<u8>) -> StreamResult<()> {
        sync_streams::HostOutputStream::write(self.0, stream, bytes)
    }
    fn blocking_write_and_flush(
        &mut self,
        stream: Resource<OutStream>,
        bytes: Vec<u8>,
    ) -> StreamResult<()> {
        stream_at_once(async_streams::HostOutputStream::blocking_write_and_flush(
            self.0, stream, bytes,
        ))
    }
    fn blocking_write_zeroes_and_flush(
        &mut self,
        stream: Resource<OutStream>,
        len: u64,
    ) -> StreamResult<()> {
        stream_at_once(
            async_streams::HostOutputStream::blocking_write_zeroes_and_flush(self.0, stream, len),
        )
    }
    fn subscribe(
        &mut self,
        stream: Resource<OutStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        sync_streams::HostOutputStream::subscribe(self.0, stream)
    }
    fn write_zeroes(&mut self, stream: Resource<OutStream>, len: u64) -> StreamResult<()> {
        sync_streams::HostOutputStream::write_zeroes(self.0, stream, len)
    }
    fn flush(&mut self, stream: Resource<OutStream>) -> StreamResult<()> {
        sync_streams::HostOutputStream::flush(self.0, stream)
    }
    fn blocking_flush(&mut self, stream: Resource<OutStream>) -> StreamResult<()> {
        stream_at_once(async_streams::HostOutputStream::blocking_flush(
            self.0, stream,
        ))
    }
    fn splice(
        &mut self,
        dst: Resource<OutStream>,
        src: Resource<InStream>,
        len: u64,
    ) -> StreamResult<u64> {
        sync_streams::HostOutputStream::splice(self.0, dst, src, len)
    }
    fn blocking_splice(
        &mut self,
        dst: Resource<OutStream>,
        src: Resource<InStream>,
        len: u64,
    ) -> StreamResult<u64> {
        stream_at_once(async_streams::HostOutputStream::blocking_splice(
            self.0, dst, src, len,
        ))
    }
}

impl sync_streams::HostInputStream for IoView<'_> {
    fn drop(&mut self, stream: Resource<InStream>) -> wasmtime::Result<()> {
        at_once(async_streams::HostInputStream::drop(self.0, stream))?
    }
    fn read(&mut self, stream: Resource<InStream>, len: u64) -> StreamResult<Vec<u8>> {
        sync_streams::HostInputStream::read(self.0, stream, len)
    }
    fn blocking_read(&mut self, stream: Resource<InStream>, len: u64) -> StreamResult<Vec<u8>> {
        stream_at_once(async_streams::HostInputStream::blocking_read(
            self.0, stream, len,
        ))
    }
    fn skip(&mut self, stream: Resource<InStream>, len: u64) -> StreamResult<u64> {
        sync_streams::HostInputStream::skip(self.0, stream, len)
    }
    fn blocking_skip(&mut self, stream: Resource<InStream>, len: u64) -> StreamResult<u64> {
        stream_at_once(async_streams::HostInputStream::blocking_skip(
            self.0, stream, len,
        ))
    }
    fn subscribe(&mut self, stream: Resource<InStream>) -> wasmtime::Result<Resource<DynPollable>> {
        sync_streams::HostInputStream::subscribe(self.0, stream)
    }
}

impl sync_poll::Host for IoView<'_> {
    fn poll(&mut self, _pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        Err(format_err!("{NO_WAITING}"))
    }
}

impl sync_poll::HostPollable for IoView<'_> {
    fn ready(&mut self, _pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        Err(format_err!("{NO_WAITING}"))
    }
    fn block(&mut self, _pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        Err(format_err!("{NO_WAITING}"))
    }
    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        async_poll::HostPollable::drop(self.0, pollable)
    }
}

/// Links everything a guest may import: `bmad:policy/host` and the sandbox's WASI. Anything
/// else a component imports (sockets, HTTP, ...) makes it fail to load.
pub fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    use wasmtime_wasi::p2::bindings::sync::filesystem as sync_filesystem;
    use wasmtime_wasi::p2::bindings::sync::io::error as io_error;
    use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random};

    let l = linker;
    for version in SUPPORTED_WIT {
        add_host_to_linker(l, version)?;
        // `types` holds only types: an empty instance satisfies a component's import of it.
        l.instance(&format!("bmad:policy/types@{version}"))?;
    }

    clocks::wall_clock::add_to_linker::<State, WasiClocks>(l, State::clocks)?;
    clocks::monotonic_clock::add_to_linker::<State, WasiClocks>(l, State::clocks)?;
    random::random::add_to_linker::<State, WasiRandom>(l, |s| s.wasi.random())?;
    random::insecure::add_to_linker::<State, WasiRandom>(l, |s| s.wasi.random())?;
    random::insecure_seed::add_to_linker::<State, WasiRandom>(l, |s| s.wasi.random())?;
    cli::exit::add_to_linker::<State, WasiCli>(l, State::cli)?;
    cli::environment::add_to_linker::<State, WasiCli>(l, State::cli)?;
    cli::stdin::add_to_linker::<State, WasiCli>(l, State::cli)?;
    cli::stdout::add_to_linker::<State, WasiCli>(l, State::cli)?;
    cli::stderr::add_to_linker::<State, WasiCli>(l, State::cli)?;
    cli::terminal_input::add_to_linker::<State, WasiCli>(l, State::cli)?;
    cli::terminal_output::add_to_linker::<State, WasiCli>(l, State::cli)?;
    cli::terminal_stdin::add_to_linker::<State, WasiCli>(l, State::cli)?;
    cli::terminal_stdout::add_to_linker::<State, WasiCli>(l, State::cli)?;
    cli::terminal_stderr::add_to_linker::<State, WasiCli>(l, State::cli)?;
    // No directory is ever preopened, so no descriptor exists for the guest to use.
    filesystem::preopens::add_to_linker::<State, WasiFilesystem>(l, State::filesystem)?;
    sync_filesystem::types::add_to_linker::<State, WasiFilesystem>(l, State::filesystem)?;

    io_error::add_to_linker::<State, IoTable>(l, |s| &mut s.table)?;
    sync_streams::add_to_linker::<State, SandboxIo>(l, |s| IoView(&mut s.table))?;
    sync_poll::add_to_linker::<State, SandboxIo>(l, |s| IoView(&mut s.table))?;
    Ok(())
}
