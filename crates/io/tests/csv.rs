//! The CSV importer: mapping, delimiters, timestamps, gzip, errors and skipping.

mod common;

use common::{Dir, assert_mentions, csv_opts, error, read};
use prescient_core::{EntityRef, Timestamp};
use prescient_io::{Format, ImportError, read_log, write_jsonl};

const HELPDESK: &str = "\
case_id,activity,lifecycle,timestamp,resource,customer,note
Case 1,Assign seriousness,,2012-10-09T14:50:17+00:00,Value 1,Value 3,
Case 1,Take in charge ticket,START,2012-10-09T14:51:01+00:00,,Value 3,\"hello, \"\"world\"\"\"
Case 2,Closed,COMPLETE,2012-10-10T08:00:00Z,Value 2,Value 4,\"two
lines\"
";

#[test]
fn maps_columns_to_events() {
    let dir = Dir::new();
    let p = dir.file("helpdesk.csv", HELPDESK.as_bytes());
    let opts = csv_opts(
        "case_id",
        &["activity", "lifecycle"],
        Some("timestamp"),
        &["resource", "customer", "resource"],
    );
    let log = read(&p, &opts).unwrap();
    assert_eq!(log.format, Format::Csv);
    assert_eq!(log.events.len(), 3);
    let e = &log.events[0];
    assert_eq!(e.id, "2");
    assert_eq!(e.event_type, "Assign seriousness");
    assert_eq!(
        e.time,
        Timestamp::parse_rfc3339("2012-10-09T14:50:17Z").unwrap()
    );
    assert_eq!(
        e.entities,
        vec![
            EntityRef::new("case_id", "Case 1").with_role("case"),
            EntityRef::new("resource", "Value 1"),
            EntityRef::new("customer", "Value 3"),
        ]
    );
    assert!(e.attributes.is_empty(), "{:?}", e.attributes);
    let e = &log.events[1];
    assert_eq!(e.event_type, "Take in charge ticket+START");
    // The empty resource cell is not an entity.
    assert_eq!(
        e.entities,
        vec![
            EntityRef::new("case_id", "Case 1").with_role("case"),
            EntityRef::new("customer", "Value 3"),
        ]
    );
    assert_eq!(e.attribute("note"), Some("hello, \"world\""));
    let e = &log.events[2];
    assert_eq!(e.id, "4");
    assert_eq!(e.event_type, "Closed+COMPLETE");
    assert_eq!(e.attribute("note"), Some("two\nlines"));
}

#[test]
fn id_column_and_case_also_named_as_entity() {
    let dir = Dir::new();
    let p = dir.file("ids.csv", b"eid,case,type\nx1,c1,a\nx2,c1,b\n");
    let mut opts = csv_opts("case", &["type"], None, &["case"]);
    opts.csv.id = Some("eid".into());
    let log = read(&p, &opts).unwrap();
    let ids: Vec<&str> = log.events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["x1", "x2"]);
    assert_eq!(log.events[0].entities.len(), 1);
    assert!(log.events[0].attributes.is_empty());
}

#[test]
fn without_a_time_column_event_i_is_at_i_millis() {
    let dir = Dir::new();
    let p = dir.file("notime.csv", b"case,type\nc,a\nc,\nc,b\nd,c\n");
    let mut opts = csv_opts("case", &["type"], None, &[]);
    opts.skip_invalid = true;
    let log = read(&p, &opts).unwrap();
    assert_eq!(log.skipped, 1);
    let times: Vec<Timestamp> = log.events.iter().map(|e| e.time).collect();
    assert_eq!(
        times,
        [0, 1, 2].map(Timestamp::from_millis).to_vec(),
        "indices count after skipping"
    );
}

#[test]
fn detects_the_delimiter() {
    let dir = Dir::new();
    for (name, content) in [
        ("comma.csv", "case,type,time\n1,a,5\n"),
        ("semi.csv", "case;type;time\n1;a,x;5\n"),
        ("tab.tsv", "case\ttype\ttime\n1\ta;b,c\t5\n"),
        ("quoted.csv", "\"a;b;c;d\",type,time\n1,a,5\n"),
    ] {
        let p = dir.file(name, content.as_bytes());
        let first = content.split(['\n']).next().unwrap();
        let case = if first.starts_with('"') {
            "a;b;c;d"
        } else {
            "case"
        };
        let log = read(&p, &csv_opts(case, &["type"], Some("time"), &[]))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(log.events.len(), 1, "{name}");
        assert_eq!(log.events[0].entities[0].id, "1", "{name}");
        assert_eq!(log.events[0].time, Timestamp::from_secs(5), "{name}");
    }
}

#[test]
fn explicit_delimiter_wins() {
    let dir = Dir::new();
    let p = dir.file("pipe.csv", b"case|type\n1|a\n");
    let mut opts = csv_opts("case", &["type"], None, &[]);
    opts.csv.delimiter = Some(b'|');
    assert_eq!(read(&p, &opts).unwrap().events[0].event_type, "a");
}

#[test]
fn every_timestamp_form() {
    let cases = [
        ("2011-10-01T00:38:44.546+02:00", "2011-09-30T22:38:44.546Z"),
        ("2023-04-03T10:08:18Z", "2023-04-03T10:08:18Z"),
        ("2012-04-03T16:55:38", "2012-04-03T16:55:38Z"),
        ("2012-04-03 16:55:38", "2012-04-03T16:55:38Z"),
        ("2012-04-03 1:04:54", "2012-04-03T01:04:54Z"),
        ("2012-04-03 16:55:38.125", "2012-04-03T16:55:38.125Z"),
        ("807256800", "1995-08-01T06:00:00Z"),
    ];
    let mut csv = String::from("case,type,time\n");
    for (t, _) in cases {
        csv.push_str(&format!("c,a,{t}\n"));
    }
    let dir = Dir::new();
    let p = dir.file("times.csv", csv.as_bytes());
    let log = read(&p, &csv_opts("case", &["type"], Some("time"), &[])).unwrap();
    for (e, (input, want)) in log.events.iter().zip(cases) {
        assert_eq!(e.time.to_string(), want, "{input}");
    }
}

#[test]
fn gzip_is_detected_by_magic_bytes_and_progress_reports_compressed_bytes() {
    let dir = Dir::new();
    let mut csv = String::from("case,type,time\n");
    for i in 0..20_000 {
        csv.push_str(&format!("c{},t{},{}\n", i % 97, i % 5, 1_000_000 + i));
    }
    let plain = read(
        &dir.file("plain.csv", csv.as_bytes()),
        &csv_opts("case", &["type"], Some("time"), &[]),
    )
    .unwrap();
    // A gzip file whose name does not say so.
    let p = dir.gz("packed.csv", csv.as_bytes());
    let total = std::fs::metadata(&p).unwrap().len();
    let mut calls = Vec::new();
    let packed = read_log(
        &p,
        &csv_opts("case", &["type"], Some("time"), &[]),
        &mut |done, all| calls.push((done, all)),
    )
    .unwrap();
    assert_eq!(packed.events, plain.events);
    assert_eq!(packed.events.len(), 20_000);
    assert!(calls.iter().all(|&(_, all)| all == total));
    assert_eq!(calls.last().map(|c| c.0), Some(total));
    assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0));
}

#[test]
fn round_trips_through_jsonl() {
    let dir = Dir::new();
    let p = dir.gz("helpdesk.csv.gz", HELPDESK.as_bytes());
    let opts = csv_opts("case_id", &["activity"], Some("timestamp"), &["resource"]);
    let log = read(&p, &opts).unwrap();
    let mut out = Vec::new();
    write_jsonl(&log.events, &mut out).unwrap();
    let j = dir.file("events.jsonl", &out);
    let back = read(&j, &common::format(Format::Jsonl)).unwrap();
    assert_eq!(back.format, Format::Jsonl);
    assert_eq!(back.events, log.events);
}

#[test]
fn unknown_columns_are_listed() {
    let dir = Dir::new();
    let p = dir.file("log.csv", b"CaseID,ActivityID,CompleteTimestamp\n1,2,3\n");
    let msg = error(&p, &csv_opts("CaseId", &["ActivityID"], None, &[]));
    assert_eq!(
        msg,
        format!(
            "{}: no column named \"CaseId\"; columns are: CaseID, ActivityID, CompleteTimestamp",
            p.display()
        )
    );
    let msg = error(
        &p,
        &csv_opts("CaseID", &["ActivityID"], None, &["resource"]),
    );
    assert_mentions(&msg, &["log.csv", "\"resource\"", "CompleteTimestamp"]);
    let msg = error(&p, &csv_opts("CaseID", &[], None, &[]));
    assert_mentions(&msg, &["log.csv", "event type", "ActivityID"]);
}

#[test]
fn bad_timestamp_names_file_line_column_and_value() {
    let dir = Dir::new();
    let p = dir.file(
        "helpdesk.csv",
        b"CaseID,ActivityID,CompleteTimestamp\n1,2,2012-04-03 16:55:38\n1,3,2012-13-45 xx\n",
    );
    let msg = error(
        &p,
        &csv_opts("CaseID", &["ActivityID"], Some("CompleteTimestamp"), &[]),
    );
    assert!(
        msg.ends_with(
            "helpdesk.csv:3: column \"CompleteTimestamp\": cannot parse \"2012-13-45 xx\" as a timestamp (expected ISO 8601 or YYYY-MM-DD HH:MM:SS or Unix seconds)"
        ),
        "{msg}"
    );
}

#[test]
fn wrong_field_count_missing_type_bad_quote_and_utf8() {
    let dir = Dir::new();
    let opts = csv_opts("case", &["type"], None, &[]);
    let p = dir.file("fields.csv", b"case,type\n1,a\n\n1,b,extra\n");
    assert_mentions(
        &error(&p, &opts),
        &["fields.csv:4:", "expected 2 fields", "found 3"],
    );
    let p = dir.file("type.csv", b"case,type\n1,a\n1,\n");
    assert_mentions(
        &error(&p, &opts),
        &["type.csv:3:", "missing event type", "\"type\""],
    );
    let p = dir.file("quote.csv", b"case,type\n1,a\n2,\"b\n3,c\n");
    assert_mentions(&error(&p, &opts), &["quote.csv:3:", "unterminated quote"]);
    let p = dir.file("utf8.csv", b"case,type\n1,a\n1,\xff\xfe\n");
    assert_mentions(
        &error(&p, &opts),
        &["utf8.csv:3:", "column \"type\"", "invalid UTF-8"],
    );
    let p = dir.file("empty.csv", b"");
    assert_mentions(&error(&p, &opts), &["empty.csv", "no header"]);
}

#[test]
fn skip_invalid_counts_and_keeps_the_first_ten_errors() {
    let dir = Dir::new();
    let mut csv = String::from("case,type,time\n");
    for i in 0..30 {
        csv.push_str(&format!("c,a,{}\n", i));
        csv.push_str("c,a,not a time\n");
    }
    csv.push_str("c,a\n");
    let p = dir.file("mixed.csv", csv.as_bytes());
    let mut opts = csv_opts("case", &["type"], Some("time"), &[]);
    opts.skip_invalid = true;
    let log = read(&p, &opts).unwrap();
    assert_eq!(log.events.len(), 30);
    assert_eq!(log.skipped, 31);
    assert_eq!(log.first_errors.len(), 10);
    let first = &log.first_errors[0];
    assert!(matches!(first, ImportError::Invalid { .. }));
    assert_eq!(first.location(), Some("3"));
    assert_mentions(&first.to_string(), &["mixed.csv:3:", "not a time"]);
    opts.skip_invalid = false;
    assert_mentions(&error(&p, &opts), &["mixed.csv:3:"]);
}

#[test]
fn crlf_bom_and_blank_lines() {
    let dir = Dir::new();
    let p = dir.file(
        "win.csv",
        b"\xEF\xBB\xBFcase,type\r\n1,a\r\n\r\n2,\"b\r\nc\"\r\n",
    );
    let log = read(&p, &csv_opts("case", &["type"], None, &[])).unwrap();
    let types: Vec<&str> = log.events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["a", "b\r\nc"]);
    assert_eq!(log.events[1].id, "4");
}

/// Writes a CSV field, quoting it when it holds a delimiter, quote or line break.
fn quote(field: &str, always: bool) -> String {
    if always || field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Any table written with RFC 4180 quoting reads back cell for cell, with the right line
    /// numbers as event ids.
    #[test]
    fn written_tables_read_back(
        rows in proptest::collection::vec(
            (
                "[a-z0-9 ,;\"\n]{0,6}|\r\n",
                "t[a-z0-9]{0,4}",
                "[a-zé0-9 ,;\"\t\n]{0,8}",
                proptest::bool::ANY,
            ),
            1..20,
        ),
        crlf in proptest::bool::ANY,
    ) {
        let eol = if crlf { "\r\n" } else { "\n" };
        let mut text = format!("case,type,value{eol}");
        let mut line = 2usize;
        let mut lines = Vec::new();
        for (case, ty, value, always) in &rows {
            lines.push(line);
            text.push_str(&format!(
                "{},{},{}{eol}",
                quote(case, *always),
                quote(ty, false),
                quote(value, *always)
            ));
            line += 1 + case.matches('\n').count() + value.matches('\n').count();
        }
        let dir = Dir::new();
        let p = dir.file("table.csv", text.as_bytes());
        let log = read(&p, &csv_opts("case", &["type"], None, &[])).unwrap();
        proptest::prop_assert_eq!(log.events.len(), rows.len());
        for ((e, (case, ty, value, _)), line) in log.events.iter().zip(&rows).zip(lines) {
            proptest::prop_assert_eq!(e.id.as_str(), line.to_string());
            proptest::prop_assert_eq!(e.event_type.as_str(), ty.as_str());
            let want_case: Vec<&str> = if case.is_empty() { vec![] } else { vec![case.as_str()] };
            let got_case: Vec<&str> = e.entities.iter().map(|r| r.id.as_str()).collect();
            proptest::prop_assert_eq!(got_case, want_case);
            let want_value = (!value.is_empty()).then_some(value.as_str());
            proptest::prop_assert_eq!(e.attribute("value"), want_value);
        }
    }
}
