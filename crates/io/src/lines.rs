//! Reading one line with a cap: a line longer than [`MAX_RECORD_BYTES`] is skipped to its end
//! without being buffered, so a log with a huge line costs no more memory than one without.

use std::io::{self, BufRead};

use prescient_core::limits::MAX_RECORD_BYTES;

/// What [`read_line`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Line {
    /// The end of the stream; nothing was read.
    End,
    /// A line of at most the cap (its terminator included in the buffer).
    Read,
    /// A line longer than the cap, this many bytes long (its terminator excluded); the buffer
    /// holds no complete line and the stream is at the start of the next line.
    TooLong(u64),
}

/// The error message of a line over the cap.
pub(crate) fn too_long(len: u64) -> String {
    format!("line is {len} bytes long, longer than 1 MiB ({MAX_RECORD_BYTES} bytes)")
}

/// Reads one line (up to and including `\n`, or to the end of the stream) into `buf`, which is
/// cleared first. A line longer than `max` bytes, not counting its `\n` or `\r\n`, is consumed
/// to its end without being kept.
pub(crate) fn read_line<R: BufRead + ?Sized>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<Line> {
    buf.clear();
    let mut total: u64 = 0;
    let mut over = false;
    let mut ended = false;
    loop {
        let avail = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            break;
        }
        let (n, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        if !over {
            // Room for the content and a `\r\n`.
            if buf.len() + n > max.saturating_add(2) {
                over = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&avail[..n]);
            }
        }
        total += n as u64;
        r.consume(n);
        if done {
            ended = true;
            break;
        }
    }
    if total == 0 {
        return Ok(Line::End);
    }
    if over {
        return Ok(Line::TooLong(total - u64::from(ended)));
    }
    let mut len = buf.len();
    if buf.last() == Some(&b'\n') {
        len -= 1;
        if len > 0 && buf[len - 1] == b'\r' {
            len -= 1;
        }
    }
    if len > max {
        buf.clear();
        return Ok(Line::TooLong(len as u64));
    }
    Ok(Line::Read)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize, cap: usize) -> Vec<Result<Vec<u8>, u64>> {
        // A small BufReader capacity makes lines span several fills.
        let mut r = io::BufReader::with_capacity(cap, input);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            match read_line(&mut r, &mut buf, max).unwrap_or_else(|e| panic!("{e}")) {
                Line::End => return out,
                Line::Read => out.push(Ok(buf.clone())),
                Line::TooLong(n) => out.push(Err(n)),
            }
        }
    }

    #[test]
    fn lines_up_to_the_cap_are_read_and_longer_ones_skipped() {
        for cap in [1, 3, 64] {
            let got = lines(b"abcd\nabcde\r\nabcdef\nab\nxyzxyzxyz", 5, cap);
            assert_eq!(
                got,
                vec![
                    Ok(b"abcd\n".to_vec()),
                    Ok(b"abcde\r\n".to_vec()),
                    Err(6),
                    Ok(b"ab\n".to_vec()),
                    Err(9),
                ],
                "capacity {cap}"
            );
        }
    }
}
