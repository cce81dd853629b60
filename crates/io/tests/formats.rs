//! The JSON Lines, OCEL 2.0 and ARC importers, format detection and their errors.

mod common;

use std::path::Path;

use common::{Dir, assert_mentions, error, format, read};
use prescient_core::{EntityKey, EntityRef, Event, Timestamp};
use prescient_io::{Format, ImportOptions, read_ocel2_object_links, write_jsonl};

#[test]
fn format_names_and_detection() {
    for f in Format::ALL {
        assert_eq!(f.name().parse::<Format>(), Ok(f));
    }
    assert!("xes".parse::<Format>().is_err());
    let d = |p: &str| Format::detect(Path::new(p));
    assert_eq!(d("a/b.jsonl"), Some(Format::Jsonl));
    assert_eq!(d("b.ndjson.gz"), Some(Format::Jsonl));
    assert_eq!(d("b.csv"), Some(Format::Csv));
    assert_eq!(d("b.TSV.gz"), Some(Format::Csv));
    assert_eq!(d("order-management.json.gz"), Some(Format::Ocel2));
    assert_eq!(d("P3.lis.gz"), Some(Format::Arc));
    assert_eq!(d("P3.lis"), Some(Format::Arc));
    assert_eq!(d("log.xes.gz"), None);
    assert_eq!(d("gz"), None);
}

#[test]
fn unknown_format_is_an_error() {
    let dir = Dir::new();
    let p = dir.file("log.xes", b"<log/>");
    assert_mentions(
        &error(&p, &ImportOptions::default()),
        &["log.xes", "--format"],
    );
    let missing = dir.0.path().join("missing.csv");
    assert_mentions(
        &error(&missing, &ImportOptions::default()),
        &["missing.csv", "cannot read"],
    );
}

fn sample_events() -> Vec<Event> {
    let mut a = Event::new(
        "e1",
        "place order",
        Timestamp::from_millis(1_680_516_498_000),
    )
    .with_entity(EntityRef::new("orders", "o-1").with_role("order"))
    .with_entity(EntityRef::new("customers", "c-7"));
    a.attributes.push(("price".into(), "12.5".into()));
    let b = Event::new(
        "e2",
        "pay order",
        Timestamp::from_micros(1_680_516_499_123_456),
    )
    .with_entity(EntityRef::new("orders", "o-1"));
    vec![a, b]
}

#[test]
fn jsonl_round_trip_plain_and_gz_with_blank_lines() {
    let events = sample_events();
    let mut out = Vec::new();
    write_jsonl(&events, &mut out).unwrap();
    let mut with_blanks = b"\n".to_vec();
    with_blanks.extend_from_slice(&out);
    with_blanks.extend_from_slice(b"   \n\n");
    let dir = Dir::new();
    let plain = read(
        &dir.file("e.jsonl", &with_blanks),
        &ImportOptions::default(),
    )
    .unwrap();
    assert_eq!(plain.events, events);
    let gz = read(&dir.gz("e.jsonl.gz", &out), &ImportOptions::default()).unwrap();
    assert_eq!(gz.events, events);
}

#[test]
fn jsonl_errors_name_the_line() {
    let dir = Dir::new();
    let mut out = Vec::new();
    write_jsonl(&sample_events(), &mut out).unwrap();
    out.extend_from_slice(b"{\"id\":\"e3\",\"type\":\"x\"}\n");
    out.extend_from_slice(b"{not json\n");
    let p = dir.file("broken.jsonl", &out);
    let msg = error(&p, &ImportOptions::default());
    assert!(
        msg.ends_with("broken.jsonl:3: not a valid event: missing field `time`"),
        "{msg}"
    );
    let opts = ImportOptions {
        skip_invalid: true,
        ..ImportOptions::default()
    };
    let log = read(&p, &opts).unwrap();
    assert_eq!((log.events.len(), log.skipped), (2, 2));
    assert_mentions(&log.first_errors[1].to_string(), &["broken.jsonl:4:"]);
}

const OCEL: &str = r#"{
  "objectTypes": [{"name": "orders", "attributes": []}],
  "eventTypes": [],
  "events": [
    {"id": "pay_o-1", "type": "pay order", "time": "2023-04-05T15:28:14Z",
     "attributes": [{"name": "amount", "value": 12.5}, {"name": "by", "value": "card"}, {"name": "n", "value": null}],
     "relationships": [{"objectId": "o-1", "qualifier": "order"}, {"objectId": "Echo", "qualifier": "product"}]},
    {"id": "place_o-1", "type": "place order", "time": "2023-04-03T10:08:18.000+02:00",
     "relationships": [{"objectId": "o-1", "qualifier": "order"}]}
  ],
  "objects": [
    {"id": "o-1", "type": "orders", "attributes": [{"name": "price", "value": 1353.98, "time": "2023-04-03T12:08:18+02:00"}],
     "relationships": [{"objectId": "i-1", "qualifier": "comprises"}, {"objectId": "Echo", "qualifier": "of"}]},
    {"id": "i-1", "type": "items"},
    {"id": "Echo", "type": "products"}
  ]
}"#;

#[test]
fn ocel2_events_and_object_links() {
    let dir = Dir::new();
    let p = dir.gz("om.json.gz", OCEL.as_bytes());
    let log = read(&p, &ImportOptions::default()).unwrap();
    assert_eq!(log.format, Format::Ocel2);
    let ids: Vec<&str> = log.events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["pay_o-1", "place_o-1"], "file order is kept");
    let e = &log.events[0];
    assert_eq!(e.event_type, "pay order");
    assert_eq!(
        e.entities,
        vec![
            EntityRef::new("orders", "o-1").with_role("order"),
            EntityRef::new("products", "Echo").with_role("product"),
        ]
    );
    assert_eq!(e.attribute("amount"), Some("12.5"));
    assert_eq!(e.attribute("by"), Some("card"));
    assert_eq!(e.attribute("n"), None);
    assert_eq!(log.events[1].time.to_string(), "2023-04-03T08:08:18Z");

    let links = read_ocel2_object_links(&p).unwrap();
    assert_eq!(
        links,
        vec![
            (
                EntityKey::new("orders", "o-1"),
                EntityKey::new("items", "i-1"),
                "comprises".to_owned()
            ),
            (
                EntityKey::new("orders", "o-1"),
                EntityKey::new("products", "Echo"),
                "of".to_owned()
            ),
        ]
    );
}

#[test]
fn ocel2_unknown_objects_and_bad_json() {
    let dir = Dir::new();
    let broken = OCEL.replace(
        "\"objectId\": \"Echo\", \"qualifier\": \"product\"",
        "\"objectId\": \"Nope\", \"qualifier\": \"product\"",
    );
    let p = dir.file("om.json", broken.as_bytes());
    let msg = error(&p, &ImportOptions::default());
    assert_mentions(
        &msg,
        &["om.json:events[0].relationships[1]:", "\"Nope\"", "pay_o-1"],
    );
    let opts = ImportOptions {
        skip_invalid: true,
        ..ImportOptions::default()
    };
    let log = read(&p, &opts).unwrap();
    assert_eq!((log.events.len(), log.skipped), (2, 1));
    assert_eq!(log.events[0].entities.len(), 1);

    let bad_time = OCEL.replace("2023-04-05T15:28:14Z", "yesterday");
    let p = dir.file("time.json", bad_time.as_bytes());
    assert_mentions(
        &error(&p, &ImportOptions::default()),
        &["time.json:events[0]:", "\"yesterday\""],
    );

    let p = dir.file("cut.json", &OCEL.as_bytes()[..200]);
    let msg = error(&p, &ImportOptions::default());
    assert_mentions(&msg, &["cut.json:", "not valid OCEL 2.0 JSON", "EOF"]);
    let p = dir.file(
        "typo.json",
        OCEL.replacen("\"type\": \"pay order\"", "\"type\": 7", 1)
            .as_bytes(),
    );
    let msg = error(&p, &ImportOptions::default());
    assert_mentions(&msg, &["typo.json:5:", "invalid type"]);
    let bad_link = OCEL.replace(
        "\"objectId\": \"i-1\", \"qualifier\": \"comprises\"",
        "\"objectId\": \"i-9\"",
    );
    let p = dir.file("link.json", bad_link.as_bytes());
    let msg = read_ocel2_object_links(&p).unwrap_err().to_string();
    assert_mentions(&msg, &["link.json:objects[0].relationships[0]:", "\"i-9\""]);
}

#[test]
fn arc_lines_become_block_reads() {
    let dir = Dir::new();
    let p = dir.gz("t.lis.gz", b"230027 8 0 0\n1842745 2 0 1\n\n5 1 0 2\n");
    let log = read(&p, &ImportOptions::default()).unwrap();
    assert_eq!(log.format, Format::Arc);
    assert_eq!(log.events.len(), 3);
    let e = &log.events[1];
    assert_eq!((e.id.as_str(), e.event_type.as_str()), ("1", "read"));
    assert_eq!(e.time, Timestamp::from_millis(1));
    assert_eq!(
        e.entities,
        vec![
            EntityRef::new("block", "1842745"),
            EntityRef::new("block", "1842746")
        ]
    );
    assert_eq!(log.events[0].entities.len(), 8);
    assert_eq!(log.events[0].entities[7].id, "230034");
    assert_eq!(log.events[2].time, Timestamp::from_millis(2));
}

#[test]
fn arc_bad_lines_are_named() {
    let dir = Dir::new();
    let opts = format(Format::Arc);
    for (content, want) in [
        (
            "1 1 0 0\nx 1 0 1\n",
            &["bad.lis:2:", "start block \"x\""][..],
        ),
        (
            "1 1 0 0\n1 1 0\n",
            &["bad.lis:2:", "missing field \"request\""],
        ),
        ("1 0 0 0\n", &["bad.lis:1:", "block count 0"]),
        ("1 1000001 0 0\n", &["bad.lis:1:", "1000001"]),
        ("1 -3 0 0\n", &["bad.lis:1:", "\"-3\""]),
        ("18446744073709551615 2 0 0\n", &["bad.lis:1:", "overflow"]),
    ] {
        let p = dir.file("bad.lis", content.as_bytes());
        assert_mentions(&error(&p, &opts), want);
    }
    let p = dir.file("some.lis", b"1 1 0 0\nbad\n2 1 0 1\n");
    let mut opts = opts;
    opts.skip_invalid = true;
    let log = read(&p, &opts).unwrap();
    assert_eq!((log.events.len(), log.skipped), (2, 1));
    assert_eq!(log.events[1].time, Timestamp::from_millis(1));
}
