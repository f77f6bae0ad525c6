//! A line reader with a length cap: a line longer than the cap is consumed and discarded as it
//! streams by (memory stays bounded by the cap plus one buffer) and reported as `TooLong`.
//! `next` is cancel-safe (all state lives in the struct, and the only await is `fill_buf`), so it
//! can sit in a `tokio::select!`.

use std::io;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// What one `next` call read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Read {
    /// A line without its newline (the last line may lack one).
    Line(Vec<u8>),
    /// A line longer than the cap was discarded; its length in bytes.
    TooLong(usize),
    Eof,
}

#[derive(Debug)]
pub(crate) struct LineReader<R> {
    inner: BufReader<R>,
    buf: Vec<u8>,
    /// Bytes of the current over-long line discarded so far.
    discarding: Option<usize>,
    cap: usize,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub(crate) fn new(inner: R, cap: usize) -> Self {
        Self {
            inner: BufReader::with_capacity(64 * 1024, inner),
            buf: Vec::new(),
            discarding: None,
            cap,
        }
    }

    pub(crate) async fn next(&mut self) -> io::Result<Read> {
        loop {
            let chunk = self.inner.fill_buf().await?;
            if chunk.is_empty() {
                if let Some(n) = self.discarding.take() {
                    return Ok(Read::TooLong(n));
                }
                if !self.buf.is_empty() {
                    return Ok(Read::Line(std::mem::take(&mut self.buf)));
                }
                return Ok(Read::Eof);
            }
            let newline = chunk.iter().position(|&b| b == b'\n');
            let take = newline.unwrap_or(chunk.len());
            let mut done = None;
            if let Some(n) = self.discarding.as_mut() {
                *n += take;
                if newline.is_some() {
                    done = Some(Read::TooLong(*n));
                    self.discarding = None;
                }
            } else if self.buf.len() + take > self.cap {
                let n = self.buf.len() + take;
                self.buf = Vec::new();
                if newline.is_some() {
                    done = Some(Read::TooLong(n));
                } else {
                    self.discarding = Some(n);
                }
            } else {
                self.buf.extend_from_slice(&chunk[..take]);
                if newline.is_some() {
                    done = Some(Read::Line(std::mem::take(&mut self.buf)));
                }
            }
            self.inner.consume(take + usize::from(newline.is_some()));
            if let Some(read) = done {
                return Ok(read);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(data: &[u8], cap: usize) -> Vec<Read> {
        let mut r = LineReader::new(data, cap);
        let mut out = Vec::new();
        loop {
            let item = r.next().await.expect("reading a slice cannot fail");
            let eof = item == Read::Eof;
            out.push(item);
            if eof {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn lines_long_lines_and_a_last_line_without_newline() {
        let mut data = b"a\n\nbcd\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', 200_000));
        data.extend(b"\nok\ntail");
        assert_eq!(
            read_all(&data, 10).await,
            vec![
                Read::Line(b"a".to_vec()),
                Read::Line(Vec::new()),
                Read::Line(b"bcd".to_vec()),
                Read::TooLong(200_000),
                Read::Line(b"ok".to_vec()),
                Read::Line(b"tail".to_vec()),
                Read::Eof,
            ]
        );
    }

    #[tokio::test]
    async fn exactly_the_cap_is_kept_one_more_is_not() {
        assert_eq!(
            read_all(b"abc\nabcd\n", 3).await,
            vec![Read::Line(b"abc".to_vec()), Read::TooLong(4), Read::Eof]
        );
        assert_eq!(
            read_all(b"abcd", 3).await,
            vec![Read::TooLong(4), Read::Eof]
        );
    }

    #[tokio::test]
    async fn memory_stays_bounded_by_the_cap() {
        let data = vec![b'y'; 5 * 1024 * 1024];
        let mut r = LineReader::new(data.as_slice(), 1024);
        assert_eq!(
            r.next().await.expect("slice"),
            Read::TooLong(5 * 1024 * 1024)
        );
        assert!(r.buf.capacity() <= 1024);
    }
}
