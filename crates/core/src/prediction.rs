//! What a predictor says will happen next.

use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::entity::EntityKey;
use crate::time::Timestamp;

/// A predictor's answer for one event: the likely next event types and the entities that
/// are likely to be read soon, each with a confidence and a time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    /// Likely next event types, most likely first. Probabilities are calibrated and sum to at most 1.
    pub next: Vec<NextEvent>,
    /// Entities likely to be touched soon, most confident first.
    pub entities: Vec<Prediction>,
    /// The factor by which the model lowers its top next type's confidence because the
    /// context holds event types it never learned (`None`: no such discount). `next` already
    /// includes it unless the model was told not to apply it
    /// ([`crate::OnlineModel::set_novelty_discount`]), so that a model mixing this forecast
    /// with others can apply it to the mix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub novelty_discount: Option<f32>,
}

impl Forecast {
    /// The most likely next event type, if any.
    pub fn top(&self) -> Option<&NextEvent> {
        self.next.first()
    }
}

/// A likely next event type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NextEvent {
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: SmolStr,
    /// The probability that this is the type of the next event touching the same entities.
    pub probability: f32,
    /// When it is expected.
    pub expected_at: Timestamp,
}

/// A prediction that an entity will be read, with a confidence and a window of time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The entity.
    pub entity: EntityKey,
    /// The probability that the entity is read inside the window.
    pub confidence: f32,
    /// The most likely time of the read.
    pub expected_at: Timestamp,
    /// The end of the window in which the read is expected; at least `expected_at`.
    pub latest: Timestamp,
    /// The event type expected to read it, if known.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub event_type: Option<SmolStr>,
    /// How the entity was found.
    pub relation: Relation,
}

/// How a predicted entity relates to the event that triggered the prediction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    /// An entity of the triggering event itself.
    #[default]
    Same,
    /// An entity linked to one of the event's entities by role or kind in earlier events.
    Linked,
    /// An entity that has followed one of the event's entities before (co-access).
    Successor,
    /// The next ids of a sequential or strided run.
    Sequential,
    /// An entity read before, whose cached copy is refreshed after it expires because a read
    /// is likely in the window that follows.
    Refresh,
    /// A refresh offered at a tick, between events ([`crate::Predictor::tick`]): judged apart
    /// from the refreshes offered at events, since quiet hours differ from busy ones.
    Tick,
}

impl Relation {
    /// Every relation, in the order of [`Relation::index`].
    pub const ALL: [Relation; 6] = [
        Relation::Same,
        Relation::Linked,
        Relation::Successor,
        Relation::Sequential,
        Relation::Refresh,
        Relation::Tick,
    ];

    /// The position of the relation in [`Relation::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// A short name, for metrics and explanations.
    pub fn as_str(self) -> &'static str {
        match self {
            Relation::Same => "same",
            Relation::Linked => "linked",
            Relation::Successor => "successor",
            Relation::Sequential => "sequential",
            Relation::Refresh => "refresh",
            Relation::Tick => "tick",
        }
    }
}
