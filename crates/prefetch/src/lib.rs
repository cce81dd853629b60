//! The prefetch manager.
//!
//! [`planner::Planner`] makes every decision (threshold, dedup, priority, just-in-time
//! scheduling, budget, batching, retries, TTLs) with time passed in, and does no I/O.
//! [`breaker::Breaker`] switches prediction off when the predictor fails. The tokio driver in
//! [`runtime`] connects them to a [`prescient_core::Predictor`], [`prescient_core::Cache`] and
//! [`prescient_core::Store`] and offers the consumer API; the replay simulator drives the same
//! planner in virtual time.
//!
//! **Architecture Invariant:** this crate depends on the core traits only; it knows nothing of
//! Redis, SQL or any bus.

pub mod breaker;
pub mod budget;
pub mod planner;
pub mod retry;
pub mod runtime;

pub use breaker::{Breaker, BreakerConfig, BreakerState};
pub use budget::{Budget, BudgetConfig};
pub use planner::{
    Batch, BatchItem, Failure, InFlight, LoadId, Offer, Origin, PlanKey, Planner, PlannerConfig,
    PlannerStats, RelationStats,
};
pub use retry::RetryConfig;
pub use runtime::{Metrics, Prefetcher, PrefetcherConfig, ReadError, ReadOutcome, Snapshot};
