//! One event through the default model (relational, reuse-time and key parts): learned,
//! forecast and ticked past, without a panic or a hang (libFuzzer's `-timeout` bounds the
//! time of one input). The input is a JSON event, or several on separate lines; each is
//! checked against the limits first, as every importer and bus decoder does.
#![no_main]

use std::sync::Mutex;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use prescient_core::{Event, Observe, OnlineModel};
use prescient_predict::PrescientModel;

fn model() -> &'static Mutex<PrescientModel> {
    static MODEL: std::sync::OnceLock<Mutex<PrescientModel>> = std::sync::OnceLock::new();
    MODEL.get_or_init(|| {
        let mut m = PrescientModel::default();
        m.set_max_age(Some(Duration::from_secs(3600)));
        Mutex::new(m)
    })
}

fuzz_target!(|data: &[u8]| {
    let mut model = model().lock().unwrap_or_else(|p| p.into_inner());
    for line in data.split(|&b| b == b'\n').take(64) {
        let Ok(event) = serde_json::from_slice::<Event>(line) else {
            continue;
        };
        if prescient_core::limits::check_event(&event).is_err() {
            continue;
        }
        model.observe(&event, Observe::Learn);
        let forecast = model.forecast(&event);
        for p in &forecast.next {
            assert!(p.probability.is_finite(), "{p:?}");
        }
        let _ = model.forecast_due(event.time.plus(Duration::from_secs(7200)));
    }
});
