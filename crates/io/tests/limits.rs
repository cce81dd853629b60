//! The documented limits of `prescient_core::limits`, enforced by every importer: times out of
//! range, versions above the largest, too many entities, over-long names and lines, and OCEL
//! documents of the wrong shape. Each is an error at the file and place, skippable like any
//! other invalid record.

mod common;

use common::{Dir, assert_mentions, csv_opts, error, format, read};
use prescient_core::limits::{MAX_ENTITIES, MAX_NAME_BYTES, MAX_RECORD_BYTES};
use prescient_io::{Format, ImportOptions, read_ocel2_object_links};

fn skipping(mut opts: ImportOptions) -> ImportOptions {
    opts.skip_invalid = true;
    opts
}

/// A line of `len` bytes (not counting its newline) that is not valid in any format.
fn huge_line(len: usize) -> Vec<u8> {
    let mut v = vec![b'x'; len];
    v.push(b'\n');
    v
}

// --- JSON Lines ---------------------------------------------------------------------------

const GOOD: &str =
    r#"{"id":"ok","type":"t","time":"2023-04-03T10:08:18Z","entities":[{"kind":"k","id":"1"}]}"#;

fn jsonl_entities(n: usize) -> String {
    let list = vec![r#"{"kind":"k","id":"1"}"#; n].join(",");
    format!(r#"{{"id":"many","type":"t","time":"2023-04-03T10:08:18Z","entities":[{list}]}}"#)
}

#[test]
fn jsonl_time_out_of_range_is_an_error() {
    let dir = Dir::new();
    for (name, time) in [
        ("ms.jsonl", "9223372036854775807"),
        ("early.jsonl", "\"0001-01-01T00:00:00Z\""),
    ] {
        let line = format!(r#"{{"id":"e","type":"t","time":{time},"entities":[]}}"#);
        let p = dir.file(name, format!("{GOOD}\n{line}\n").as_bytes());
        assert_mentions(
            &error(&p, &ImportOptions::default()),
            &[&format!("{name}:2:"), "outside the accepted range"],
        );
    }
}

#[test]
fn jsonl_version_above_the_largest_is_an_error() {
    let dir = Dir::new();
    let line = r#"{"id":"w","type":"t","time":"2023-04-03T10:08:18Z","entities":[],"mutations":[{"kind":"k","id":"1","version":18446744073709551615}]}"#;
    let p = dir.file("v.jsonl", format!("{line}\n{GOOD}\n").as_bytes());
    assert_mentions(
        &error(&p, &ImportOptions::default()),
        &[
            "v.jsonl:1:",
            "version 18446744073709551615",
            "9007199254740991",
        ],
    );
    let log = read(&p, &skipping(ImportOptions::default())).unwrap();
    assert_eq!((log.events.len(), log.skipped), (1, 1));
}

#[test]
fn jsonl_too_many_entities_is_an_error() {
    let dir = Dir::new();
    let ok = jsonl_entities(MAX_ENTITIES);
    let over = jsonl_entities(MAX_ENTITIES + 1);
    let p = dir.file("n.jsonl", format!("{ok}\n{over}\n").as_bytes());
    assert_mentions(
        &error(&p, &ImportOptions::default()),
        &["n.jsonl:2:", "10001 entities in one event"],
    );
}

#[test]
fn jsonl_over_long_line_is_skipped_unread() {
    let dir = Dir::new();
    let mut content = format!("{GOOD}\n").into_bytes();
    content.extend(huge_line(3 * MAX_RECORD_BYTES));
    content.extend(format!("{GOOD}\n").into_bytes());
    let p = dir.file("long.jsonl", &content);
    let msg = error(&p, &ImportOptions::default());
    assert_mentions(
        &msg,
        &["long.jsonl:2:", "3145728 bytes", "longer than 1 MiB"],
    );
    let log = read(&p, &skipping(ImportOptions::default())).unwrap();
    assert_eq!((log.events.len(), log.skipped), (2, 1));
    // A line of exactly the limit is read (and here is bad JSON, a different error).
    let mut content = huge_line(MAX_RECORD_BYTES);
    content.extend(format!("{GOOD}\n").into_bytes());
    let p = dir.gz("edge.jsonl.gz", &content);
    assert_mentions(
        &error(&p, &ImportOptions::default()),
        &["edge.jsonl.gz:1:", "not a valid event"],
    );
}

// --- CSV ----------------------------------------------------------------------------------

#[test]
fn csv_time_out_of_range_is_an_error_not_saturated() {
    let dir = Dir::new();
    let opts = csv_opts("case", &["act"], Some("time"), &[]);
    for v in [
        "9223372036854",
        "99999999999999999999",
        "-9223372036854",
        "1000-01-01",
    ] {
        let p = dir.file(
            "t.csv",
            format!("case,act,time\nc1,a,1700000000\nc1,b,{v}\n").as_bytes(),
        );
        assert_mentions(
            &error(&p, &opts),
            &[
                "t.csv:3:",
                "column \"time\"",
                v,
                "outside the accepted range",
            ],
        );
    }
}

#[test]
fn csv_too_many_entities_and_long_names_are_errors() {
    let dir = Dir::new();
    let cols: Vec<String> = (0..=MAX_ENTITIES).map(|i| format!("e{i}")).collect();
    let names: Vec<&str> = cols.iter().map(String::as_str).collect();
    let opts = csv_opts("", &["act"], None, &names);
    let header = format!("act,{}\n", cols.join(","));
    let row = format!("a,{}\n", vec!["x"; cols.len()].join(","));
    let p = dir.file("wide.csv", format!("{header}{row}").as_bytes());
    assert_mentions(
        &error(&p, &opts),
        &["wide.csv:2:", "10001 entities in one event"],
    );

    let opts = csv_opts("case", &["act"], None, &[]);
    let long = "y".repeat(MAX_NAME_BYTES + 1);
    let p = dir.file(
        "name.csv",
        format!("case,act\nc1,{long}\nc1,ok\n").as_bytes(),
    );
    assert_mentions(
        &error(&p, &opts),
        &["name.csv:2:", "event type is 1025 bytes"],
    );
    let log = read(&p, &skipping(opts)).unwrap();
    assert_eq!((log.events.len(), log.skipped), (1, 1));
}

#[test]
fn csv_over_long_records_are_skipped_unread() {
    let dir = Dir::new();
    let opts = csv_opts("case", &["act"], None, &[]);
    // One physical line over the limit.
    let mut content = b"case,act\nc1,a\n".to_vec();
    content.extend(b"c1,");
    content.extend(huge_line(2 * MAX_RECORD_BYTES));
    content.extend(b"c1,b\r\n");
    let p = dir.file("long.csv", &content);
    assert_mentions(
        &error(&p, &opts),
        &[
            "long.csv:3:",
            "line is 2097155 bytes long",
            "longer than 1 MiB",
        ],
    );
    let log = read(&p, &skipping(opts.clone())).unwrap();
    assert_eq!((log.events.len(), log.skipped), (2, 1));
    assert_eq!(log.events[1].event_type, "b");
    assert_eq!(
        log.events[1].id, "4",
        "line numbers count past the skipped line"
    );

    // A quoted field of short lines that together pass the limit.
    let mut content = b"case,act\nc1,\"".to_vec();
    for _ in 0..(2 * MAX_RECORD_BYTES / 100) {
        content.extend(huge_line(99));
    }
    content.extend(b"\"\nc1,b\n");
    let p = dir.file("quoted.csv", &content);
    assert_mentions(&error(&p, &opts), &["quoted.csv:2:", "record of", "lines"]);
    let log = read(&p, &skipping(opts.clone())).unwrap();
    assert_eq!((log.events.len(), log.skipped), (1, 1));
    assert_eq!(log.events[0].event_type, "b");

    // An unterminated quote before a long tail is still reported as such.
    let mut content = b"case,act\nc1,\"".to_vec();
    content.extend(huge_line(2 * MAX_RECORD_BYTES));
    let p = dir.file("open.csv", &content);
    assert_mentions(&error(&p, &opts), &["open.csv:2:", "unterminated quote"]);

    // The header row, too.
    let mut content = huge_line(2 * MAX_RECORD_BYTES);
    content.extend(b"c1,a\n");
    let p = dir.file("head.csv", &content);
    assert_mentions(
        &error(&p, &opts),
        &["head.csv:1:", "header row", "longer than 1 MiB"],
    );
}

// --- ARC ----------------------------------------------------------------------------------

#[test]
fn arc_too_many_blocks_and_long_lines_are_errors() {
    let dir = Dir::new();
    let opts = format(Format::Arc);
    let p = dir.file("n.lis", b"1 10000 0 0\n1 10001 0 1\n");
    assert_mentions(&error(&p, &opts), &["n.lis:2:", "10001"]);
    let id = "7".repeat(MAX_NAME_BYTES + 1);
    let p = dir.file("id.lis", format!("1 1 0 {id}\n").as_bytes());
    assert_mentions(&error(&p, &opts), &["id.lis:1:", "event id is 1025 bytes"]);

    let mut content = b"1 1 0 0\n".to_vec();
    content.extend(huge_line(MAX_RECORD_BYTES + 1));
    content.extend(b"2 1 0 1\n");
    let p = dir.gz("long.lis.gz", &content);
    assert_mentions(
        &error(&p, &opts),
        &["long.lis.gz:2:", "1048577 bytes", "longer than 1 MiB"],
    );
    let log = read(&p, &skipping(opts)).unwrap();
    assert_eq!((log.events.len(), log.skipped), (2, 1));
}

// --- OCEL 2.0 -----------------------------------------------------------------------------

fn ocel(time: &str, event_type: &str, rels: usize) -> String {
    let rels = vec![r#"{"objectId":"o-1","qualifier":"q"}"#; rels].join(",");
    format!(
        r#"{{"events":[
  {{"id":"ok","type":"t","time":"2023-04-03T10:08:18Z","relationships":[{{"objectId":"o-1"}}]}},
  {{"id":"bad","type":"{event_type}","time":"{time}","relationships":[{rels}]}}],
 "objects":[{{"id":"o-1","type":"orders"}}]}}"#
    )
}

#[test]
fn ocel_limits_are_errors_at_the_event() {
    let dir = Dir::new();
    let opts = ImportOptions::default();
    let ok = "2023-04-03T10:08:18Z";
    for (content, want) in [
        (ocel("9223372036854", "t", 1), "outside the accepted range"),
        (
            ocel("0001-01-01T00:00:00Z", "t", 1),
            "outside the accepted range",
        ),
        (
            ocel(ok, "t", MAX_ENTITIES + 1),
            "10001 entities in one event",
        ),
        (
            ocel(ok, &"y".repeat(2 * MAX_RECORD_BYTES), 1),
            "event type is 2097152 bytes",
        ),
    ] {
        let p = dir.file("om.json", content.as_bytes());
        assert_mentions(&error(&p, &opts), &["om.json:events[1]:", "\"bad\"", want]);
        let log = read(&p, &skipping(opts.clone())).unwrap();
        assert_eq!((log.events.len(), log.skipped), (1, 1));
    }
}

#[test]
fn ocel_of_the_wrong_shape_is_an_error_naming_what_is_missing() {
    let dir = Dir::new();
    let opts = ImportOptions::default();
    for (content, want) in [
        (
            "{\"foo\":1}",
            "not an OCEL 2.0 log: no \"events\" and no \"objects\" field",
        ),
        (
            "{\"events\":[]}",
            "not an OCEL 2.0 log: no \"objects\" field",
        ),
        (
            "{\"objects\":[]}",
            "not an OCEL 2.0 log: no \"events\" field",
        ),
        (
            " []",
            "expected a JSON object with \"events\" and \"objects\", found an array",
        ),
        ("\"log\"", "found a string"),
        ("42", "found a number"),
    ] {
        let p = dir.file("wrong.json", content.as_bytes());
        let msg = error(&p, &opts);
        // The message names the file first, so `prescient evaluate` and `serve` show it.
        assert!(msg.starts_with(&p.display().to_string()), "{msg}");
        assert_mentions(&msg, &[want]);
        let links = read_ocel2_object_links(&p).unwrap_err().to_string();
        assert!(links.starts_with(&p.display().to_string()), "{links}");
    }
    // An empty but well-formed log is fine.
    let p = dir.file("empty.json", b"{\"events\":[],\"objects\":[]}");
    assert_eq!(read(&p, &opts).unwrap().events.len(), 0);
}
