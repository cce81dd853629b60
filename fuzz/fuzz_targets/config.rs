//! The config loader on any text: a config that passes its own checks, or an error naming the
//! key at fault, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = prescient_server::Config::from_toml_str(text) {
        // A loaded config builds the prefetcher's settings or says why not.
        let _ = prescient_server::build::prefetcher_config(&cfg.prefetch);
    }
});
