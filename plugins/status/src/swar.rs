//! Word-at-a-time byte searches (SIMD within a register, eight bytes per step).
//!
//! The component runs under fuel (about one unit per wasm instruction) and a 5 MB story must
//! parse well inside the host's budget, so the loops that touch every byte (the line splitter
//! and the text check) test eight bytes at once.

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Nonzero iff some byte of `x` is zero.
#[inline]
fn has_zero(x: u64) -> u64 {
    x.wrapping_sub(LO) & !x & HI
}

/// Nonzero iff some byte of `x` equals `b`.
#[inline]
fn has_byte(x: u64, b: u8) -> u64 {
    has_zero(x ^ (LO * u64::from(b)))
}

/// Nonzero iff some byte of `x` is below `n` (`n` <= 128).
#[inline]
fn has_less(x: u64, n: u8) -> u64 {
    x.wrapping_sub(LO * u64::from(n)) & !x & HI
}

/// Nonzero iff some byte of `x` may matter to the line splitter: below 0x0E (line breaks, and
/// the other ASCII controls up to CR) or `<`. Cheap; [`exact`] then sorts a hit out.
#[inline]
fn maybe(x: u64) -> u64 {
    has_less(x, 0x0E) | has_byte(x, b'<')
}

/// For one word: the offset of its first line break (if any) and whether a `<` comes before it.
///
/// In `has_zero`'s mask the lowest set bit marks the first matching byte exactly (a borrow only
/// propagates upwards), so `trailing_zeros` gives its offset; a false positive in the `<` mask
/// only sits above a true `<`, so it never invents one before the break.
#[inline]
fn exact(x: u64) -> (Option<usize>, bool) {
    let eol = has_byte(x, b'\n') | has_byte(x, b'\r');
    let less = has_byte(x, b'<');
    if eol == 0 {
        return (None, less != 0);
    }
    let bit = eol.trailing_zeros();
    (Some((bit / 8) as usize), less & ((1u64 << bit) - 1) != 0)
}

/// The first index at or after `from` holding `\n` or `\r` (or `bytes.len()`), and whether a
/// `<` occurs in `bytes[from..end]`. Sixteen bytes per step while nothing may matter.
pub(crate) fn line_end(bytes: &[u8], from: usize) -> (usize, bool) {
    let rest = bytes.get(from..).unwrap_or_default();
    let (pairs, tail) = rest.as_chunks::<16>();
    let mut lt = false;
    let mut at = from;
    for pair in pairs {
        let (a, b) = pair
            .as_chunks::<8>()
            .0
            .split_first()
            .map_or((0, 0), |(a, rest)| {
                (
                    u64::from_le_bytes(*a),
                    rest.first().map_or(0, |b| u64::from_le_bytes(*b)),
                )
            });
        if maybe(a) | maybe(b) != 0 {
            let (eol, less) = exact(a);
            lt |= less;
            if let Some(off) = eol {
                return (at + off, lt);
            }
            let (eol, less) = exact(b);
            lt |= less;
            if let Some(off) = eol {
                return (at + 8 + off, lt);
            }
        }
        at += 16;
    }
    let base = from + pairs.len() * 16;
    for (k, &b) in tail.iter().enumerate() {
        match b {
            b'\n' | b'\r' => return (base + k, lt),
            b'<' => lt = true,
            _ => {}
        }
    }
    (base + tail.len(), lt)
}

/// What the text check needs to know about a document's bytes.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Stats {
    /// A NUL byte occurs.
    pub nul: bool,
    /// U+FFFD replacement characters, C0 controls other than tab, line feed, carriage return
    /// and form feed, DEL, and C1 controls.
    pub bad: usize,
}

/// Counts the bytes that make a document look binary. Only the bytes examined count: callers
/// pass a window (see [`crate::decode`]).
pub(crate) fn stats(bytes: &[u8]) -> Stats {
    let mut s = Stats::default();
    let (words, tail) = bytes.as_chunks::<8>();
    for (n, w) in words.iter().enumerate() {
        let x = u64::from_le_bytes(*w);
        if has_less(x, 0x20) | (x & HI) | has_byte(x, 0x7F) != 0 {
            for k in 0..8 {
                classify(bytes, n * 8 + k, &mut s);
            }
        }
    }
    for k in 0..tail.len() {
        classify(bytes, words.len() * 8 + k, &mut s);
    }
    s
}

#[inline]
fn classify(bytes: &[u8], i: usize, s: &mut Stats) {
    match bytes[i] {
        0 => s.nul = true,
        b'\t' | b'\n' | b'\r' | 0x0C => {}
        0x01..=0x1F | 0x7F => s.bad += 1,
        // U+FFFD is EF BF BD; C1 controls are C2 80..C2 9F.
        0xEF if bytes.get(i + 1..i + 3) == Some(&[0xBF, 0xBD]) => s.bad += 1,
        0xC2 if bytes.get(i + 1).is_some_and(|b| (0x80..=0x9F).contains(b)) => s.bad += 1,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_end_finds_breaks_and_angle_brackets_at_every_offset() {
        for pad in 0..20 {
            let text = format!("{}<x\r\nnext", "a".repeat(pad));
            assert_eq!(line_end(text.as_bytes(), 0), (pad + 2, true), "pad {pad}");
            let text = format!("{}\nnext<", "b".repeat(pad));
            assert_eq!(line_end(text.as_bytes(), 0), (pad, false), "pad {pad}");
            assert_eq!(
                line_end(text.as_bytes(), pad + 1),
                (text.len(), true),
                "pad {pad}"
            );
        }
        assert_eq!(line_end(b"abc", 3), (3, false));
        assert_eq!(line_end(b"abc", 9), (9, false));
    }

    fn naive_line_end(bytes: &[u8], from: usize) -> (usize, bool) {
        let rest = bytes.get(from..).unwrap_or_default();
        let end = rest
            .iter()
            .position(|b| *b == b'\n' || *b == b'\r')
            .unwrap_or(rest.len());
        (from + end, rest[..end].contains(&b'<'))
    }

    proptest::proptest! {
        #[test]
        fn line_end_agrees_with_a_byte_loop(
            bytes in proptest::collection::vec(proptest::sample::select(vec![b'a', b'<', b'\n', b'\r', 0, 0x80, 0xFF, b'=']), 0..64),
            from in 0usize..70,
        ) {
            proptest::prop_assert_eq!(line_end(&bytes, from), naive_line_end(&bytes, from));
        }
    }

    #[test]
    fn stats_count_binary_markers_across_word_boundaries() {
        for pad in 0..12 {
            let mut bytes = vec![b'a'; pad];
            bytes.extend_from_slice("\u{FFFD}\t\n\u{1}\u{85}é\u{7f}".as_bytes());
            assert_eq!(stats(&bytes), Stats { nul: false, bad: 4 }, "pad {pad}");
            bytes.push(0);
            assert!(stats(&bytes).nul);
        }
    }
}
