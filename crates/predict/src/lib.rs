//! Online predictors for Prescient.
//!
//! Every model here implements [`prescient_core::OnlineModel`]: it is shown each event once
//! (learning from it or only tracking context) and answers with a [`prescient_core::Forecast`]
//! of the next event types and the entities that are likely to be read soon.
//!
//! - [`SimpleModel`] is the baseline: bigram next types and same-entity re-touch predictions.
//! - [`PrescientModel`] is the default (`online`): the three below behind one model.
//! - [`RelationalModel`] is the next-type and relations model: backed-off type contexts per entity,
//!   log-bucketed timing, entities through learned relations, calibrated confidences, bounded
//!   memory and versioned snapshots.
//! - [`ReuseModel`] predicts, window by window of the data-age limit, when an entity is read
//!   again (a hazard over hashed features: kind, process state, elapsed time, hour and day).
//! - [`KeyModel`] is for access traces (`keys`): successors between keys and sequential or
//!   strided readahead over integer ids.

pub mod combined;
pub mod held_out;
pub mod hist;
pub mod keys;
pub mod relational;
pub mod reuse;
pub mod simple;

pub use combined::PrescientModel;
pub use held_out::HeldOutCalibrated;
pub use keys::{KeyConfig, KeyModel};
pub use relational::{
    BadContextSpec, ContextSpec, ContextUse, ExplainedPrediction, Explanation, FORMAT_VERSION,
    RelationalConfig, RelationalModel, SnapshotError,
};
pub use reuse::{ReuseConfig, ReuseModel};
pub use simple::{SimpleConfig, SimpleModel};
