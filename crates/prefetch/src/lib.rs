//! The prefetch manager.
//!
//! [`machine::PrefetchCore`] is the manager as a sans-IO state machine: it holds the
//! [`planner::Planner`] (threshold, dedup, priority, just-in-time scheduling, budget, batching,
//! retries, TTLs), the [`breaker::Breaker`], the record of what is cached, in flight and
//! prefetched but unread, the rule that credits a prefetch as used, and the fills reported to
//! the predictor. It is driven with time passed in and does no I/O. Two thin drivers run it:
//! the tokio driver in [`driver`] ([`Prefetcher`], with the consumer API), and the replay
//! simulator of `prescient-replay` in virtual time. [`worker::Offloaded`] runs an in-process
//! model on a thread of its own, so that the driver awaits it with a deadline like a remote
//! predictor.
//!
//! **Architecture Invariant:** this crate depends on the core traits only; it knows nothing of
//! Redis, SQL or any bus.

pub mod breaker;
pub mod budget;
pub mod driver;
pub mod machine;
pub mod planner;
pub mod retry;
pub mod worker;

pub use breaker::{Breaker, BreakerConfig, BreakerState};
pub use budget::{Budget, BudgetConfig};
pub use driver::{
    Metrics, Prefetcher, PrefetcherConfig, Processed, ReadError, ReadOutcome, Snapshot,
};
pub use machine::{CoreConfig, CoreState, CoreStats, Demand, EntityState, Fill, PrefetchCore};
pub use planner::{
    Batch, BatchItem, Failure, InFlight, LoadId, Offer, Origin, PlanKey, PlanState, Planner,
    PlannerConfig, PlannerStats, RelationStats,
};
pub use retry::RetryConfig;
pub use worker::Offloaded;
