//! Settings of the key model.

/// Settings of a [`KeyModel`]. [`Default`] is the one setting for every trace and log.
///
/// [`KeyModel`]: super::KeyModel
#[derive(Debug, Clone, PartialEq)]
pub struct KeyConfig {
    /// The most anchors (keys or runs of keys) tracked for successors.
    pub max_keys: usize,
    /// The most successors kept per anchor (at most 8).
    pub max_successors: usize,
    /// A successor must be read within this many events after its source.
    pub successor_distance: usize,
    /// Whether the successors of predicted successors are predicted too (with the product of
    /// the two confidences), to look one step further ahead.
    pub successor_chain: bool,
    /// How many steps a chain of successors is followed (with `successor_chain`). On P3
    /// (access-trace scenario, first million reads), 3 closed 0.497 of the gap, 2 closed 0.505.
    pub successor_depth: usize,
    /// The most sequential or strided streams followed at once (all kinds together).
    pub max_streams: usize,
    /// A request continues a sequential stream if it starts at most this many request lengths
    /// after the stream's end (and inside the window read ahead).
    pub skip_requests: u64,
    /// The most ids read ahead of a stream's last request.
    pub max_readahead: u64,
    /// The largest forward stride recognised between two requests of a stream.
    pub max_stride: u64,
    /// The longest run of ids predicted as one successor.
    pub max_run: u64,
    /// The least confidence of an emitted prediction. The default, 0.3, is the prefetch
    /// planner's lowest threshold: the planner learns, per relation, which of these are worth
    /// a load, so the model leaves that choice to it.
    pub min_confidence: f32,
    /// The predicted windows end this many mean event gaps after the event.
    pub window_events: f64,
    /// The most entity kinds; ids of further kinds are ignored.
    pub max_kinds: usize,
    /// Calibration counts halve when a cell has seen this many trials (follows drift).
    pub max_count: f32,
}

impl Default for KeyConfig {
    fn default() -> Self {
        KeyConfig {
            max_keys: 1 << 18,
            max_successors: 8,
            successor_distance: 4,
            successor_chain: true,
            successor_depth: 2,
            max_streams: 16,
            skip_requests: 1,
            max_readahead: 256,
            max_stride: 64,
            max_run: 256,
            min_confidence: 0.3,
            window_events: 1_000_000.0,
            max_kinds: 64,
            max_count: 4096.0,
        }
    }
}
