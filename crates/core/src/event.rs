//! Events: what happened, when, and to which entities.

use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::entity::{EntityKey, EntityRef, Version};
use crate::time::Timestamp;

/// An event of an event-driven system, object-centric: it references one or more entities.
///
/// The JSON Lines form is documented in `docs/events.md`:
///
/// ```json
/// {"id":"e1","type":"place order","time":"2023-04-03T10:08:18Z",
///  "entities":[{"kind":"orders","id":"o-1","role":"order"},{"kind":"customers","id":"c-7"}],
///  "mutations":[{"kind":"orders","id":"o-1","version":1}]}
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// A unique id. Importers make one up (`line-17`) where the log has none.
    pub id: SmolStr,
    /// The event type (activity), e.g. `place order`.
    #[serde(rename = "type")]
    pub event_type: SmolStr,
    /// When it happened.
    pub time: Timestamp,
    /// The entities it references, in the log's order.
    pub entities: Vec<EntityRef>,
    /// The entities it wrote, and the version each now has.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mutations: Vec<Mutation>,
    /// Other attributes of the event (extra CSV columns, OCEL attributes), as text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<(SmolStr, SmolStr)>,
}

impl Event {
    /// An event with no entities, mutations or attributes yet.
    pub fn new(id: impl Into<SmolStr>, event_type: impl Into<SmolStr>, time: Timestamp) -> Self {
        Event {
            id: id.into(),
            event_type: event_type.into(),
            time,
            entities: Vec::new(),
            mutations: Vec::new(),
            attributes: Vec::new(),
        }
    }

    /// Adds an entity reference.
    pub fn with_entity(mut self, r: EntityRef) -> Self {
        self.entities.push(r);
        self
    }

    /// The distinct entity keys this event references, in first-mention order.
    pub fn distinct_keys(&self) -> Vec<EntityKey> {
        let mut out: Vec<EntityKey> = Vec::with_capacity(self.entities.len());
        for r in &self.entities {
            if !out.iter().any(|k| k.kind == r.kind && k.id == r.id) {
                out.push(r.key());
            }
        }
        out
    }

    /// The case this event belongs to: its entity with role `case`, else its first entity.
    /// Events without entities belong to the empty case.
    pub fn case_id(&self) -> &str {
        self.entities
            .iter()
            .find(|r| r.role.as_deref() == Some("case"))
            .or_else(|| self.entities.first())
            .map_or("", |r| r.id.as_str())
    }

    /// The value of an attribute, if present.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The cases of `events` ([`Event::case_id`]) in order of first appearance, each as the
/// indices of its events in order.
pub fn cases_in_order(events: &[Event]) -> Vec<Vec<usize>> {
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut cases: Vec<Vec<usize>> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let next = cases.len();
        let c = *index.entry(e.case_id()).or_insert(next);
        if c == next {
            cases.push(Vec::new());
        }
        cases[c].push(i);
    }
    cases
}

/// A write that an event made: the entity now has `version`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Mutation {
    /// The entity's kind.
    pub kind: SmolStr,
    /// The entity's id.
    pub id: SmolStr,
    /// The entity's version after the write.
    pub version: Version,
}

impl Mutation {
    /// The written entity's key.
    pub fn key(&self) -> EntityKey {
        EntityKey {
            kind: self.kind.clone(),
            id: self.id.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_form() {
        let line = r#"{"id":"e1","type":"place order","time":"2023-04-03T10:08:18Z","entities":[{"kind":"orders","id":"o-1","role":"order"},{"kind":"customers","id":"c-7"},{"kind":"orders","id":"o-1"}],"mutations":[{"kind":"orders","id":"o-1","version":1}]}"#;
        let e: Event = serde_json::from_str(line).unwrap();
        assert_eq!(e.event_type, "place order");
        assert_eq!(e.entities[0].role.as_deref(), Some("order"));
        assert_eq!(
            e.distinct_keys(),
            vec![
                EntityKey::new("orders", "o-1"),
                EntityKey::new("customers", "c-7")
            ]
        );
        assert_eq!(e.mutations[0].version, Version(1));
        let back: Event = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }
}
