//! Imports every log in `/work/shared/data` (or the directory given as the first argument) with
//! the mapping its SOURCE.md describes, and prints one JSON object per log: events, distinct
//! entities, skipped records and seconds taken. Run it in a release build:
//!
//! ```text
//! cargo run --release -p prescient-io --example check_shared [DATA_DIR]
//! ```

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

use prescient_io::{CsvMapping, Format, ImportOptions, read_log, read_ocel2_object_links};

fn csv(case: &str, ty: &[&str], time: Option<&str>, entities: &[&str]) -> ImportOptions {
    ImportOptions {
        format: Some(Format::Csv),
        csv: CsvMapping {
            case: Some(case.to_owned()),
            event_type: ty.iter().map(|s| (*s).to_owned()).collect(),
            time: time.map(str::to_owned),
            entities: entities.iter().map(|s| (*s).to_owned()).collect(),
            ..CsvMapping::default()
        },
        skip_invalid: false,
    }
}

fn of(format: Format) -> ImportOptions {
    ImportOptions {
        format: Some(format),
        ..ImportOptions::default()
    }
}

fn main() {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "/work/shared/data".to_owned()),
    );
    let verenich = |f: &str| {
        (
            format!("verenich_psp/{f}"),
            csv("CaseID", &["ActivityID"], Some("CompleteTimestamp"), &[]),
        )
    };
    let logs: Vec<(String, ImportOptions)> = vec![
        verenich("helpdesk.csv"),
        verenich("bpi_12_w.csv"),
        verenich("bpi_12_w_no_repeat.csv"),
        verenich("bpi_13_incidents.csv"),
        verenich("env_permit.csv"),
        (
            "verenich_psp/env_permit_full_50_percent.csv".to_owned(),
            csv("caseID", &["ActivityID"], Some("completeTime"), &[]),
        ),
        (
            "bpic2012/bpic2012_events.csv.gz".to_owned(),
            csv("case_id", &["activity"], Some("timestamp"), &["resource"]),
        ),
        (
            "helpdesk_full/helpdesk_events.csv".to_owned(),
            csv(
                "case_id",
                &["activity"],
                Some("timestamp"),
                &["resource", "customer", "product", "workgroup"],
            ),
        ),
        (
            "nasa_http/nasa_19950801.tsv".to_owned(),
            csv("host", &["method"], Some("time"), &["url"]),
        ),
        (
            "ocel2_order_management/order-management.json.gz".to_owned(),
            of(Format::Ocel2),
        ),
        ("arc_traces/OLTP.lis.gz".to_owned(), of(Format::Arc)),
        ("arc_traces/P3.lis.gz".to_owned(), of(Format::Arc)),
    ];
    for (rel, opts) in logs {
        let path = dir.join(&rel);
        let start = Instant::now();
        match read_log(&path, &opts, &mut |_, _| {}) {
            Ok(log) => {
                let secs = start.elapsed().as_secs_f64();
                let mut distinct = HashSet::new();
                let mut refs = 0usize;
                let mut types = HashSet::new();
                for e in &log.events {
                    refs += e.entities.len();
                    types.insert(e.event_type.clone());
                    for r in &e.entities {
                        distinct.insert((r.kind.clone(), r.id.clone()));
                    }
                }
                println!(
                    "{{\"log\":{rel:?},\"events\":{},\"entity_refs\":{refs},\"distinct_entities\":{},\"event_types\":{},\"skipped\":{},\"seconds\":{secs:.3}}}",
                    log.events.len(),
                    distinct.len(),
                    types.len(),
                    log.skipped
                );
            }
            Err(e) => println!("{{\"log\":{rel:?},\"error\":{:?}}}", e.to_string()),
        }
    }
    let rel = "ocel2_order_management/order-management.json.gz";
    let start = Instant::now();
    match read_ocel2_object_links(&dir.join(rel)) {
        Ok(links) => println!(
            "{{\"log\":{rel:?},\"object_links\":{},\"seconds\":{:.3}}}",
            links.len(),
            start.elapsed().as_secs_f64()
        ),
        Err(e) => println!("{{\"log\":{rel:?},\"error\":{:?}}}", e.to_string()),
    }
}
