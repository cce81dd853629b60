//! `--log` and the flags that say how to read it, shared by every command that reads a log.

use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use prescient_core::Event;
use prescient_io::{CsvMapping, Format, ImportOptions, ImportedLog};

/// Where the events come from and how to read them.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// The event log: JSON Lines, CSV/TSV, OCEL 2.0 JSON or an ARC block trace; `.gz` is read
    /// transparently.
    #[arg(long, value_name = "PATH")]
    pub log: PathBuf,

    /// The log's format: jsonl, csv, ocel2 or arc (default: from the file name).
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,

    /// CSV: the case column (an entity with role `case`, e.g. `CaseID`).
    #[arg(long, value_name = "COL")]
    pub case: Option<String>,

    /// CSV: the event type column; repeat it or separate with commas to join several with `+`
    /// (e.g. `--type activity,lifecycle`).
    #[arg(long = "type", value_name = "COL", value_delimiter = ',')]
    pub event_type: Vec<String>,

    /// CSV: the timestamp column (ISO 8601 with or without offset, `YYYY-MM-DD HH:MM:SS`, or
    /// Unix seconds). Without it, event i happens at i milliseconds.
    #[arg(long, value_name = "COL")]
    pub time: Option<String>,

    /// CSV: a further entity column (repeatable, or comma-separated); its name is the entity kind.
    #[arg(long = "entity", value_name = "COL", value_delimiter = ',')]
    pub entities: Vec<String>,

    /// CSV: the event id column (default: the line number).
    #[arg(long, value_name = "COL")]
    pub id: Option<String>,

    /// CSV: the field delimiter: `,` `;` `tab` (default: detected from the header).
    #[arg(long, value_name = "CHAR")]
    pub delimiter: Option<String>,

    /// Skip invalid rows (counting them and showing the first errors) instead of stopping.
    #[arg(long)]
    pub skip_invalid: bool,
}

impl LogArgs {
    /// The import options these flags describe.
    pub fn options(&self) -> anyhow::Result<ImportOptions> {
        let format = match &self.format {
            Some(f) => Some(f.parse::<Format>()?),
            None => None,
        };
        let delimiter = match self.delimiter.as_deref() {
            None => None,
            Some("tab" | "\\t" | "\t" | "TAB") => Some(b'\t'),
            Some(d) if d.len() == 1 && d.is_ascii() => Some(d.as_bytes()[0]),
            Some(d) => anyhow::bail!(
                "--delimiter {d:?}: expected one character such as , or ; or the word tab"
            ),
        };
        Ok(ImportOptions {
            format,
            csv: CsvMapping {
                case: self.case.clone(),
                event_type: self.event_type.clone(),
                time: self.time.clone(),
                entities: self.entities.clone(),
                id: self.id.clone(),
                delimiter,
            },
            skip_invalid: self.skip_invalid,
        })
    }

    /// Reads the log with a progress bar on stderr, and says what was read.
    pub fn load(&self) -> anyhow::Result<ImportedLog> {
        let opts = self.options()?;
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>12} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message("reading");
        let result = prescient_io::read_log(&self.log, &opts, &mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        });
        bar.finish_and_clear();
        let log = result.with_context(|| format!("cannot import {}", self.log.display()))?;
        eprintln!(
            "imported {} events from {} ({}, skipped {})",
            log.events.len(),
            self.log.display(),
            log.format,
            log.skipped
        );
        for e in &log.first_errors {
            eprintln!("  skipped: {e}");
        }
        Ok(log)
    }
}

/// `events` in the order a live stream would carry them: by time. A log file may be grouped
/// otherwise (an OCEL 2.0 export lists its events type by type, say), and a predictor fed that
/// order would learn a stream that never happens. The sort is stable: events at the same time
/// keep the log's order.
pub fn in_time_order(mut events: Vec<Event>) -> Vec<Event> {
    events.sort_by_key(|e| e.time);
    events
}

#[cfg(test)]
mod time_order_tests {
    use prescient_core::Timestamp;

    use super::*;

    #[test]
    fn a_log_grouped_by_type_is_streamed_by_time_with_ties_in_log_order() {
        let ev = |id: &str, ty: &str, s: i64| Event::new(id, ty, Timestamp::from_secs(s));
        let log = vec![
            ev("a1", "place", 10),
            ev("a2", "place", 30),
            ev("b1", "pay", 20),
            ev("b2", "pay", 30),
            ev("c1", "ship", 5),
        ];
        let ids: Vec<String> = in_time_order(log)
            .iter()
            .map(|e| e.id.to_string())
            .collect();
        assert_eq!(ids, ["c1", "a1", "b1", "a2", "b2"]);
    }
}
