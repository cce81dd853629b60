//! Settings of the reuse-time model.

use std::time::Duration;

/// Settings of a [`ReuseModel`].
///
/// [`ReuseModel`]: super::ReuseModel
#[derive(Debug, Clone, PartialEq)]
pub struct ReuseConfig {
    /// The data-age limit: the length of one window. `None` (entries never expire) turns the
    /// model off, since a cached entry then needs no refresh.
    pub window: Option<Duration>,
    /// How many windows after a read are considered; later reads start afresh. Every window
    /// considered is predicted and learned from, so this bounds the model's work per entity
    /// read; confident windows long after a read are rare, so a bound costs little gap
    /// (`docs/tuning.md`).
    pub max_windows: u32,
    /// The most entities tracked; the least recently read are forgotten first.
    pub max_entities: usize,
    /// The least confidence worth reporting.
    pub min_confidence: f32,
    /// log2 of the number of weights. Every window looks up one weight per feature, at random
    /// places: a table that fits the core's cache keeps that cheap (16 bits: 512 KiB).
    pub weight_bits: u32,
    /// Step size of the (AdaGrad) updates.
    pub learning_rate: f32,
    /// An entity's own features are used once it has been read this often.
    pub hot_reads: u32,
    /// One window without a read in this many is learned from, with this weight (chosen by a
    /// hash of the entity, its copy and the window, so that it is reproducible). Windows
    /// without a read far outnumber the others; sampling them keeps the estimate unbiased and
    /// costs a fraction of the updates, but the estimate is noisier. 1 learns from every
    /// window.
    pub negative_sample: u32,
    /// Windows without a read of an entity whose latest window was predicted cold (below
    /// [`COLD`]), or that is asleep, are sampled this many times more sparsely, with the weight to
    /// match. Such a window's gradient is its small probability, so sampling it adds little
    /// noise, and most windows learned are of this kind (`docs/tuning.md` has the
    /// measurements behind the default). 1: every such window.
    pub cold_sample: u32,
    /// After this many windows in a row predicted below [`COLD`], an entity's remaining windows
    /// are not predicted (its windows are still learned from); a read wakes it. Whether that is
    /// safe is learned per kind and state: a state whose sleeping entities are read again (a
    /// timer that fires after a quiet day, say) is never put to sleep again. 0: never.
    pub cold_windows: u32,
}

impl Default for ReuseConfig {
    fn default() -> Self {
        ReuseConfig {
            window: Some(Duration::from_secs(3600)),
            max_windows: 48,
            max_entities: 1_000_000,
            min_confidence: 0.3,
            weight_bits: 16,
            learning_rate: 0.1,
            hot_reads: 8,
            negative_sample: 1,
            cold_sample: 8,
            cold_windows: 12,
        }
    }
}

/// Starts windows a little after the expiry of the copy read at `t`, so that the copy a read
/// filled (after the store's latency) has expired when the prefetch is due.
pub(super) const MARGIN_US: i64 = 1_000_000;

/// While the driver reports no fills ([`OnlineModel::filled`]), a window predicted at least
/// this likely to hold a read is assumed refreshed by the prefetcher (the planner's default
/// threshold), so that a read in it finds a copy filled at its start.
///
/// [`OnlineModel::filled`]: prescient_core::OnlineModel::filled
pub(super) const REFRESH_ASSUMED: f32 = 0.5;

/// A window predicted below this probability is cold (see [`ReuseConfig::cold_windows`]).
pub const COLD: f32 = 0.02;
