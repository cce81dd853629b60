//! Settings of the relational model: the next-type context chain and the bounds.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::state::MAX_ORDER;

/// One level of the next-type context chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextSpec {
    /// How many of the entity's last types (1 = the current event's type).
    pub history: u8,
    /// Whether the time since the entity's previous event (log buckets) is part of the context.
    pub gap: bool,
    /// Whether the hour of day (4 blocks of 6 h, UTC) and weekend-or-not are part of it.
    pub clock: bool,
    /// Whether the entity's event count so far (1, 2, 3-4, 5-8, ...) is part of it.
    pub position: bool,
}

impl ContextSpec {
    /// A context of the last `history` types only.
    pub const fn types(history: u8) -> Self {
        ContextSpec {
            history,
            gap: false,
            clock: false,
            position: false,
        }
    }
}

/// A [`ContextSpec`] that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "bad context {0:?}: expected a history length 1-8 followed by any of g (gap), c (clock), p (position), e.g. 3g"
)]
pub struct BadContextSpec(pub String);

impl std::str::FromStr for ContextSpec {
    type Err = BadContextSpec;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadContextSpec(s.to_owned());
        let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
        let history: u8 = digits.parse().map_err(|_| bad())?;
        if history as usize > MAX_ORDER {
            return Err(bad());
        }
        let mut spec = ContextSpec::types(history);
        for ch in s[digits.len()..].chars() {
            match ch {
                'g' => spec.gap = true,
                'c' => spec.clock = true,
                'p' => spec.position = true,
                _ => return Err(bad()),
            }
        }
        Ok(spec)
    }
}

/// Settings of a [`RelationalModel`].
///
/// [`RelationalModel`]: super::RelationalModel
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelationalConfig {
    /// The next-type context chain, from the most general to the most specific.
    pub contexts: Vec<ContextSpec>,
    /// The longest type history kept per entity (at least the longest context's).
    pub order: usize,
    /// The widest predicted window of an entity read (`latest - expected_at`).
    pub window: Duration,
    /// How far ahead a predicted window may end.
    pub lookahead: Duration,
    /// How soon a predicted window may start (windows that start earlier are moved later).
    pub min_lead: Duration,
    /// At most this many next types are returned.
    pub max_next: usize,
    /// Counts of a context halve once they pass this (decay); 0 never halves.
    pub max_count: f32,
    /// At most this many entities are tracked.
    pub max_entities: usize,
    /// At most this many next-type contexts are kept.
    pub max_contexts: usize,
    /// At most this many linked entities are kept per entity (one per other kind).
    pub max_links: usize,
}

impl Default for RelationalConfig {
    fn default() -> Self {
        RelationalConfig {
            contexts: vec![
                ContextSpec::types(1),
                ContextSpec::types(2),
                ContextSpec::types(3),
                ContextSpec::types(4),
                ContextSpec {
                    gap: true,
                    position: true,
                    ..ContextSpec::types(3)
                },
            ],
            order: 4,
            window: Duration::from_secs(3600),
            lookahead: Duration::from_secs(7 * 24 * 3600),
            min_lead: Duration::from_secs(3600),
            max_next: 5,
            max_count: 100_000.0,
            max_entities: 1_000_000,
            max_contexts: 1_000_000,
            max_links: 4,
        }
    }
}
