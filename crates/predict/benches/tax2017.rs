//! Accuracy and calibration of [`RelationalModel`] under the `tax2017` protocol on the
//! `verenich_psp` logs, as `prescient evaluate --protocol tax2017` runs it (windows of the
//! default one-hour horizon, no minimum lead). A quick check while tuning the model, without
//! building the binary.
//!
//! Needs `/work/shared/data` (or `PRESCIENT_DATA`); a missing log is skipped.
//!
//! Run: `cargo bench -p prescient-predict --bench tax2017`. `PRESCIENT_CONTEXTS=1,2,3,4g`
//! tries another context chain; `PRESCIENT_DIAG=1` prints reliability tables instead.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use prescient_eval::{EvalOptions, Protocol, evaluate};
use prescient_io::{CsvMapping, Format, ImportOptions, read_log};
use prescient_predict::{ContextSpec, HeldOutCalibrated, RelationalConfig, RelationalModel};

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
        let mut cfg = RelationalConfig {
            window: horizon,
            lookahead: horizon,
            min_lead: Duration::ZERO,
            ..RelationalConfig::default()
        };
        if let Some(chain) = std::env::var_os("PRESCIENT_CONTEXTS") {
            let specs: Result<Vec<ContextSpec>, _> =
                chain.to_string_lossy().split(',').map(str::parse).collect();
            match specs {
                Ok(specs) => cfg.contexts = specs,
                Err(e) => {
                    eprintln!("PRESCIENT_CONTEXTS: {e}");
                    return;
                }
            }
        }
        let cfg_fresh = cfg.clone();
        let mut model = RelationalModel::new(cfg);
        let eval = EvalOptions {
            protocol: Protocol::Tax2017,
            horizon,
            log: name.to_owned(),
            ..EvalOptions::default()
        };
        if std::env::var_os("PRESCIENT_DIAG").is_some() {
            println!("{name}");
            diag(&mut model, &log.events);
            continue;
        }
        // as `prescient evaluate` runs it: recalibrated on held-out training cases
        let mut model = HeldOutCalibrated::new(
            model,
            Box::new(move || RelationalModel::new(cfg_fresh.clone())),
        );
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

/// Prints a reliability table of the tax2017 scored rows (set `PRESCIENT_DIAG`).
fn diag(model: &mut RelationalModel, events: &[prescient_core::Event]) {
    use prescient_core::{Observe, OnlineModel};
    let mut cases: Vec<std::ops::Range<usize>> = Vec::new();
    let mut start = 0;
    for i in 1..=events.len() {
        if i == events.len()
            || prescient_eval::case_of(&events[i]) != prescient_eval::case_of(&events[start])
        {
            cases.push(start..i);
            start = i;
        }
    }
    let n = cases.len();
    let f = ((n as f64 + 1.0) / 3.0).round() as usize;
    let n_train = (2 * f).min(n);
    let mut longest = 0;
    for c in &cases[..n_train] {
        longest = longest.max(c.len());
        for e in &events[c.clone()] {
            model.observe(e, Observe::Learn);
        }
    }
    let mut bins = [(0u64, 0u64, 0f64); 10];
    for c in &cases[n_train..] {
        let case = &events[c.clone()];
        let kmax = (case.len().saturating_sub(1)).min(longest);
        for k in 1..=kmax {
            model.observe(&case[k - 1], Observe::Track);
            if k >= 2 {
                let x = model.explain(&case[k - 1]);
                if let Some(t) = x.next.first() {
                    let b = ((t.probability * 10.0) as usize).min(9);
                    bins[b].0 += 1;
                    bins[b].1 += u64::from(t.event_type == case[k].event_type);
                    bins[b].2 += f64::from(t.probability);
                }
            }
        }
    }
    for (i, (n, k, s)) in bins.iter().enumerate() {
        if *n > 0 {
            println!(
                "  bin {i}: n {n:>6} acc {:.3} conf {:.3}",
                *k as f64 / *n as f64,
                s / *n as f64
            );
        }
    }
}
