//! The bus message decoder every source (NATS, RabbitMQ, Redis Streams) calls: an event within
//! the limits or a malformed message with its reason, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match prescient_core::decode_event(bytes::Bytes::copy_from_slice(data)) {
        Ok(e) => assert!(prescient_core::limits::check_event(&e).is_ok(), "{e:?}"),
        Err(m) => assert!(!m.error.is_empty()),
    }
});
