//! The arc importer on any bytes: an error or a log, never a panic, a hang or a huge allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prescient_io::{Format, ImportOptions, read_slice};

fuzz_target!(|data: &[u8]| {
    for skip_invalid in [false, true] {
        let opts = ImportOptions {
            skip_invalid,
            ..ImportOptions::default()
        };
        if let Ok(log) = read_slice("fuzz.arc", data, Format::Arc, &opts) {
            for e in &log.events {
                assert!(prescient_core::limits::check_event(e).is_ok(), "{e:?}");
            }
        }
    }
});
