//! The CSV importer on any bytes, with a mapping that names a case, a type, a time and an
//! entity column (the first line of the input is the header): an error or a log, never a
//! panic, a hang or a huge allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prescient_io::{CsvMapping, Format, ImportOptions, read_slice};

fuzz_target!(|data: &[u8]| {
    let mapping = CsvMapping {
        case: Some("case".into()),
        event_type: vec!["activity".into()],
        time: Some("time".into()),
        entities: vec!["resource".into()],
        id: None,
        delimiter: None,
    };
    for skip_invalid in [false, true] {
        let opts = ImportOptions {
            skip_invalid,
            csv: mapping.clone(),
            ..ImportOptions::default()
        };
        if let Ok(log) = read_slice("fuzz.csv", data, Format::Csv, &opts) {
            for e in &log.events {
                assert!(prescient_core::limits::check_event(e).is_ok(), "{e:?}");
            }
        }
    }
});
