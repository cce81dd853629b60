//! Accuracy and calibration of [`RelationalModel`] under the `tax2017` protocol on the
//! `verenich_psp` logs, as `prescient evaluate --protocol tax2017` runs it (windows of the
//! default one-hour horizon, no minimum lead). A quick check while tuning the model, without
//! building the binary.
//!
//! Needs `/work/shared/data` (or `PRESCIENT_DATA`); a missing log is skipped.
//!
//! Run: `cargo bench -p prescient-predict --bench tax2017`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use prescient_eval::{EvalOptions, Protocol, evaluate};
use prescient_io::{CsvMapping, Format, ImportOptions, read_log};
use prescient_predict::{RelationalConfig, RelationalModel};

fn data_dir() -> PathBuf {
    std::env::var_os("PRESCIENT_DATA")
        .map_or_else(|| PathBuf::from("/work/shared/data"), PathBuf::from)
}

fn main() {
    let opts = ImportOptions {
        format: Some(Format::Csv),
        csv: CsvMapping {
            case: Some("CaseID".into()),
            event_type: vec!["ActivityID".into()],
            time: Some("CompleteTimestamp".into()),
            ..CsvMapping::default()
        },
        ..ImportOptions::default()
    };
    for name in ["helpdesk", "bpi_12_w", "bpi_13_incidents", "env_permit"] {
        let path = data_dir().join(format!("verenich_psp/{name}.csv"));
        let Ok(log) = read_log(&path, &opts, &mut |_, _| {}) else {
            eprintln!("{name}: skipped (cannot read {})", path.display());
            continue;
        };
        let horizon = Duration::from_secs(3600);
        let mut model = RelationalModel::new(RelationalConfig {
            window: horizon,
            lookahead: horizon,
            min_lead: Duration::ZERO,
            ..RelationalConfig::default()
        });
        let eval = EvalOptions {
            protocol: Protocol::Tax2017,
            horizon,
            log: name.to_owned(),
            ..EvalOptions::default()
        };
        let start = Instant::now();
        match evaluate(&mut model, &log.events, &eval, &mut |_, _| {}) {
            Ok(r) => println!(
                "{name:<18} accuracy {:.4}  ece {:.4}  scored {:>6}  ({:.2} s)",
                r.next_type_accuracy,
                r.ece,
                r.scored,
                start.elapsed().as_secs_f64()
            ),
            Err(e) => eprintln!("{name}: {e}"),
        }
    }
}
