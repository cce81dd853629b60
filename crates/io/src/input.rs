//! Opening a log file: transparent gzip (by magic bytes) and byte-level progress reporting.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use flate2::bufread::MultiGzDecoder;

use crate::error::ImportError;

const BUF: usize = 256 * 1024;
const REPORT_EVERY: u64 = 256 * 1024;

/// A progress callback: bytes read so far (compressed) and the file's size.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// Counts the bytes read from the file and reports them to the progress callback.
pub(crate) struct Counting<'a, R> {
    inner: R,
    read: u64,
    reported: u64,
    total: u64,
    progress: Progress<'a>,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if n == 0 || self.read - self.reported >= REPORT_EVERY {
            self.reported = self.read;
            (self.progress)(self.read, self.total);
        }
        Ok(n)
    }
}

/// Opens `path` for reading, decompressing gzip when the file starts with the gzip magic bytes.
pub(crate) fn open<'a>(
    path: &Path,
    progress: Progress<'a>,
) -> Result<Box<dyn BufRead + 'a>, ImportError> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|e| ImportError::io(&name, e))?;
    let total = file
        .metadata()
        .map_err(|e| ImportError::io(&name, e))?
        .len();
    progress(0, total);
    let counting = Counting {
        inner: file,
        read: 0,
        reported: 0,
        total,
        progress,
    };
    let mut raw = BufReader::with_capacity(BUF, counting);
    let head = raw.fill_buf().map_err(|e| ImportError::io(&name, e))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(BufReader::with_capacity(
            BUF,
            MultiGzDecoder::new(raw),
        )))
    } else {
        Ok(Box::new(raw))
    }
}
