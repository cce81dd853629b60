//! Trains and scores the neural model under protocol `tax2017` on a verenich CSV
//! (`CaseID,ActivityID,CompleteTimestamp`) and prints one JSON object on stdout.
//!
//! ```text
//! cargo run --release -p prescient-neural --example tax2017 -- /work/shared/data/verenich_psp/helpdesk.csv [--hidden 64] [--layers 1] [--epochs 40] [--batch 32] [--lr 0.003] [--embed 32] [--patience 5] [--out DIR] [--load DIR]
//! ```

use std::time::Instant;

use prescient_core::{EntityRef, Event, Timestamp};
use prescient_neural::{NeuralConfig, NeuralModel, ProgressBarReporter};

fn read_cases(path: &str) -> Result<Vec<Vec<Event>>, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(path)?;
    let mut cases: Vec<Vec<Event>> = Vec::new();
    let mut prev_case = String::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let cols: Vec<&str> = line.trim().split(',').collect();
        let [case, activity, time] = cols[..] else {
            return Err(format!("line {}: expected 3 columns", i + 1).into());
        };
        let t = chrono::NaiveDateTime::parse_from_str(time, "%Y-%m-%d %H:%M:%S")
            .map_err(|e| format!("line {}: {e}", i + 1))?
            .and_utc();
        let e = Event::new(
            format!("line-{}", i + 1),
            activity,
            Timestamp::from_micros(t.timestamp_micros()),
        )
        .with_entity(EntityRef::new("CaseID", case).with_role("case"));
        if cases.is_empty() || case != prev_case {
            cases.push(Vec::new());
            prev_case = case.to_owned();
        }
        if let Some(c) = cases.last_mut() {
            c.push(e);
        }
    }
    Ok(cases)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .first()
        .ok_or("usage: tax2017 FILE.csv [--hidden N ...]")?
        .clone();
    let mut cfg = NeuralConfig::default();
    let mut out_dir = None;
    let mut load_dir = None;
    let mut it = args.iter().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--hidden" => cfg.hidden = v.parse()?,
            "--embed" => cfg.embed_dim = v.parse()?,
            "--layers" => cfg.layers = v.parse()?,
            "--epochs" => cfg.epochs = v.parse()?,
            "--batch" => cfg.batch = v.parse()?,
            "--lr" => cfg.lr = v.parse()?,
            "--patience" => cfg.patience = v.parse()?,
            "--seed" => cfg.seed = v.parse()?,
            "--time-weight" => cfg.time_loss_weight = v.parse()?,
            "--max-seconds" => cfg.max_train_seconds = v.parse()?,
            "--out" => out_dir = Some(v.clone()),
            "--load" => load_dir = Some(v.clone()),
            _ => return Err(format!("unknown flag {flag}").into()),
        }
    }
    let cases = read_cases(&path)?;
    let n = cases.len();
    let f = ((n + 1) as f64 / 3.0).round() as usize;
    let (train, test) = cases.split_at((2 * f).min(n));
    let longest = train.iter().map(Vec::len).max().unwrap_or(0);

    let mut load_seconds = None;
    let (model, report) = match &load_dir {
        Some(dir) => {
            let started = Instant::now();
            let m = NeuralModel::load(dir)?;
            load_seconds = Some(started.elapsed().as_secs_f64());
            let r = m.info().report.clone();
            (m, r)
        }
        None => {
            let mut bar = ProgressBarReporter::new();
            let trained = NeuralModel::train(train, &cfg, &mut |p| bar.report(p))?;
            bar.finish();
            trained
        }
    };
    if let Some(dir) = &out_dir {
        model.save(dir)?;
    }

    let mut contexts: Vec<&[Event]> = Vec::new();
    let mut targets = Vec::new();
    for c in test {
        for k in 2..=(c.len().saturating_sub(1)).min(longest) {
            contexts.push(&c[..k]);
            targets.push(c[k].event_type.clone());
        }
    }
    let started = Instant::now();
    let dists = model.predict_batch(&contexts)?;
    let predict_secs = started.elapsed().as_secs_f64();
    let mut correct = 0usize;
    let mut bins = [(0.0f64, 0.0f64); 10];
    for (d, t) in dists.iter().zip(&targets) {
        let top = d.top(1);
        let (ty, p) = top.first().cloned().unwrap_or_default();
        let hit = ty == *t;
        correct += usize::from(hit);
        let b = ((f64::from(p) * 10.0) as usize).min(9);
        bins[b].0 += f64::from(p);
        bins[b].1 += f64::from(u8::from(hit));
    }
    let scored = targets.len();
    let ece: f64 = bins
        .iter()
        .map(|(c, a)| (c - a).abs() / scored.max(1) as f64)
        .sum();
    let json = serde_json::json!({
        "protocol": "tax2017",
        "log": path,
        "model": "neural",
        "scored": scored,
        "next_type_accuracy": correct as f64 / scored.max(1) as f64,
        "ece": ece,
        "train_seconds": report.train_seconds,
        "predict_per_sec": scored as f64 / predict_secs.max(1e-9),
        "cases": n,
        "train_cases": train.len(),
        "epochs": report.epochs,
        "best_epoch": report.best_epoch,
        "val_accuracy": report.val_accuracy,
        "val_ece": report.val_ece,
        "temperature": report.temperature,
        "config": cfg,
        "load_seconds": load_seconds,
    });
    println!("{json}");
    Ok(())
}
