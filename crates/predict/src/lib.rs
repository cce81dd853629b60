//! Online predictors for Prescient.
//!
//! Every model here implements [`prescient_core::OnlineModel`]: it is shown each event once
//! (learning from it or only tracking context) and answers with a [`prescient_core::Forecast`]
//! of the next event types and the entities that are likely to be read soon.
//!
//! - [`SimpleModel`] is the baseline: bigram next types and same-entity re-touch predictions.

pub mod simple;

pub use simple::{SimpleConfig, SimpleModel};
