//! The domain types and traits of Prescient.
//!
//! Everything else in the workspace depends on this crate and on nothing else of ours:
//! importers produce [`Event`]s, predictors turn them into [`Forecast`]s, the prefetch manager
//! turns forecasts into loads from a [`Store`] and writes into a [`Cache`], and the consumer API
//! reads through both. Time enters only through a [`Clock`], so the same code runs in wall-clock
//! time in `serve` and in virtual time in `replay`.
//!
//! This crate knows nothing about Redis, SQL, brokers, files or neural networks.

pub mod cache;
pub mod calibrate;
pub mod entity;
pub mod error;
pub mod event;
pub mod limits;
pub mod prediction;
pub mod predictor;
pub mod secret;
pub mod source;
pub mod store;
pub mod time;

pub use cache::{Cache, CacheError, PutOutcome};
pub use calibrate::TopCalibration;
pub use entity::{EntityKey, EntityRef, Entry, Version};
pub use error::error_chain;
pub use event::{Event, Mutation};
pub use prediction::{Forecast, NextEvent, Prediction, Relation};
pub use predictor::{
    Local, Observe, OnlineModel, PredictError, PredictRequest, Predictor, panic_message,
    process_each,
};
pub use secret::{Secret, redact_url, split_credentials};
pub use source::{
    Ack, Acknowledge, Delivery, EventSink, EventSource, MalformedMessage, SourceError, decode_event,
};
pub use store::{Store, StoreError, StoreWriter};
pub use time::{Clock, EventClock, ManualClock, SystemClock, Timestamp};

/// A cheap-to-clone immutable string (inline up to 23 bytes), used for ids, kinds and types.
pub use smol_str::SmolStr;
