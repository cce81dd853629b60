//! Random bytes fed to every importer give events or an error, never a panic.

mod common;

use common::{Dir, csv_opts};
use prescient_io::{Format, ImportOptions, read_log, read_ocel2_object_links};
use proptest::prelude::*;

fn all_options() -> Vec<ImportOptions> {
    let mut out = Vec::new();
    for skip_invalid in [false, true] {
        for f in Format::ALL {
            let mut o = csv_opts("a", &["b", "c"], Some("c"), &["a", "d"]);
            o.format = Some(f);
            o.skip_invalid = skip_invalid;
            out.push(o);
        }
        let mut o = csv_opts("a", &["b"], None, &[]);
        o.format = Some(Format::Csv);
        o.skip_invalid = skip_invalid;
        out.push(o);
    }
    out
}

fn check(bytes: &[u8]) {
    let dir = Dir::new();
    let plain = dir.file("in.bin", bytes);
    let packed = dir.gz("in.gz", bytes);
    for o in all_options() {
        for p in [&plain, &packed] {
            let _ = read_log(p, &o, &mut |_, _| {});
        }
    }
    let _ = read_ocel2_object_links(&plain);
}

/// Bytes that look a little like the formats, so the parsers get past their first checks.
fn texty() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"a,b,c,d\n".to_vec()),
        Just(b"a;b;c\n".to_vec()),
        Just(b"\"".to_vec()),
        Just(b",".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"2012-04-03 1:04:54".to_vec()),
        Just(b"{\"events\":[{\"id\":\"e\",\"type\":\"t\",\"time\":\"2023-04-05T15:28:14Z\",\"relationships\":[{\"objectId\":\"o\"}]}],\"objects\":[".to_vec()),
        Just(b"{\"id\":\"o\",\"type\":\"x\"}]}".to_vec()),
        Just(b"1 8 0 0\n".to_vec()),
        Just(b"18446744073709551615".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check(&bytes);
    }

    #[test]
    fn format_like_bytes_never_panic(bytes in texty()) {
        check(&bytes);
    }
}
