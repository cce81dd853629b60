//! Successors between anchors: learning edges from what followed, and predicting them (chained).

use prescient_core::{EntityKey, Prediction, Relation, Timestamp};

use super::KeyModel;
use super::calibration::edge_cell;
use super::state::{Edge, Key, KindState, MAX_SUCCESSORS, Pending, Window, after};

/// At most this many anchors of an event are tried as successors of each earlier anchor.
/// An anchor keeps at most [`KeyConfig::max_successors`] edges, so the later anchors of a
/// wide event would mostly be turned away anyway; without the bound, an event with N
/// anchors after one with N cost N² edge look-ups.
///
/// [`KeyConfig::max_successors`]: super::KeyConfig::max_successors
const MAX_TARGETS: usize = 64;

impl KeyModel {
    /// Tries the edges of recent anchors against the current anchors, and learns new edges.
    pub(super) fn learn_successors(&mut self) {
        let max_succ = self.cfg.max_successors;
        for entry in self.ring.iter_mut() {
            let dist = self.event_no.saturating_sub(entry.event_no);
            let dist = u8::try_from(dist).unwrap_or(u8::MAX);
            for p in entry.anchors.iter_mut() {
                let Some(node) = self.nodes.get_mut(&p.key) else {
                    continue;
                };
                for a in self.cur.iter().take(MAX_TARGETS) {
                    if a.fp == p.fp && a.key == p.key {
                        continue;
                    }
                    let n = node.edges.len();
                    match (0..n).find(|&i| node.fps[i] == a.fp && node.edges[i].target == a.key) {
                        Some(i) => {
                            let e = &mut node.edges[i];
                            if i < p.tried && p.serials[i] == e.serial && p.hits & (1 << i) == 0 {
                                p.hits |= 1 << i;
                                e.dist = dist;
                                e.len = a.len;
                            }
                        }
                        None => {
                            let serial = self.next_serial;
                            let edge = Edge {
                                target: a.key.clone(),
                                len: a.len,
                                hits: 1,
                                misses: 0,
                                dist,
                                serial,
                            };
                            if node.edges.len() < max_succ {
                                node.fps[node.edges.len()] = a.fp;
                                node.edges.push(edge);
                                self.next_serial = self.next_serial.wrapping_add(1);
                                continue;
                            }
                            // Replace the weakest edge not on trial now, if it is unconfirmed.
                            let victim = node
                                .edges
                                .iter()
                                .enumerate()
                                .filter(|(i, e)| !(*i < p.tried && p.serials[*i] == e.serial))
                                .min_by_key(|(_, e)| (e.score(), e.hits))
                                .map(|(i, e)| (i, e.score()));
                            if let Some((i, score)) = victim
                                && score <= 1
                            {
                                node.edges[i] = edge;
                                node.fps[i] = a.fp;
                                self.next_serial = self.next_serial.wrapping_add(1);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Resolves the trials of the anchors read `successor_distance` events ago.
    pub(super) fn resolve_old(&mut self, learn: bool) {
        while let Some(front) = self.ring.front() {
            if self.event_no.saturating_sub(front.event_no) < self.cfg.successor_distance as u64 {
                break;
            }
            let Some(mut entry) = self.ring.pop_front() else {
                break;
            };
            if learn {
                let cap = self.cfg.max_count;
                for p in &entry.anchors {
                    let Some(node) = self.nodes.get_mut(&p.key) else {
                        continue;
                    };
                    let Some(ks) = self.kinds.get_mut(usize::from(p.key.kind())) else {
                        continue;
                    };
                    for (i, e) in node.edges.iter_mut().enumerate().take(p.tried) {
                        if p.serials[i] != e.serial {
                            continue;
                        }
                        let hit = p.hits & (1 << i) != 0;
                        ks.edges[edge_cell(e.hits, e.misses)].add(hit, cap);
                        e.record(hit);
                    }
                }
            }
            entry.anchors.clear();
            self.spare.push(entry);
        }
    }

    /// Records the current anchors as waiting for their successors.
    pub(super) fn push_pending(&mut self) {
        let mut entry = self.spare.pop().unwrap_or_default();
        entry.event_no = self.event_no;
        entry.anchors.clear();
        for a in &self.cur {
            let node = self.nodes.entry(a.key.clone()).or_default();
            node.last_seen = self.event_no;
            let mut serials = [0u32; MAX_SUCCESSORS];
            for (s, e) in serials.iter_mut().zip(&node.edges) {
                *s = e.serial;
            }
            entry.anchors.push(Pending {
                key: a.key.clone(),
                fp: a.fp,
                serials,
                tried: node.edges.len(),
                hits: 0,
            });
        }
        self.ring.push_back(entry);
        if self.nodes.len() > self.cfg.max_keys {
            self.evict_cold();
        }
    }

    pub(super) fn emit_target(
        out: &mut Vec<Prediction>,
        kinds: &[KindState],
        target: &Key,
        len: u32,
        max_run: u64,
        w: Window,
    ) {
        let Some(kind) = kinds.get(usize::from(target.kind())) else {
            return;
        };
        match target {
            Key::Num(_, start) => {
                Self::push_ids(out, &kind.name, *start, u64::from(len).min(max_run), w)
            }
            Key::Text(_, id) => out.push(Prediction {
                entity: EntityKey {
                    kind: kind.name.clone(),
                    id: id.clone(),
                },
                confidence: w.confidence,
                expected_at: w.expected_at,
                latest: w.latest.max(w.expected_at),
                event_type: None,
                relation: w.relation,
            }),
        }
    }

    pub(super) fn forecast_successors(
        &self,
        now: Timestamp,
        latest: Timestamp,
        out: &mut Vec<Prediction>,
    ) {
        let depth = if self.cfg.successor_chain {
            self.cfg.successor_depth.max(1)
        } else {
            1
        };
        let mut path = Vec::with_capacity(depth + 1);
        for a in &self.cur {
            path.clear();
            path.push(a.fp);
            self.walk_successors(&a.key, 1.0, 0, depth, &mut path, now, latest, out);
        }
    }

    /// Predicts the successors of `from`, reached with confidence `conf` after `dist` events,
    /// and theirs up to `depth` steps, each with the product of the confidences along the way.
    /// `path` holds the fingerprints of the anchors on the way: none is predicted again.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn walk_successors(
        &self,
        from: &Key,
        conf: f32,
        dist: u8,
        depth: usize,
        path: &mut Vec<u64>,
        now: Timestamp,
        latest: Timestamp,
        out: &mut Vec<Prediction>,
    ) {
        let Some(node) = self.nodes.get(from) else {
            return;
        };
        let Some(ks) = self.kinds.get(usize::from(from.kind())) else {
            return;
        };
        for (e, &fp) in node.edges.iter().zip(&node.fps) {
            if path.contains(&fp) {
                continue;
            }
            let c = conf * ks.edges[edge_cell(e.hits, e.misses)].rate();
            if c < self.cfg.min_confidence {
                continue;
            }
            let d = dist.saturating_add(e.dist);
            let expected_at = after(now, f64::from(d.saturating_sub(1)) * self.gap_us);
            Self::emit_target(
                out,
                &self.kinds,
                &e.target,
                e.len,
                self.cfg.max_run,
                Window {
                    confidence: c,
                    expected_at,
                    latest,
                    relation: Relation::Successor,
                },
            );
            if depth > 1 {
                path.push(fp);
                self.walk_successors(&e.target, c, d, depth - 1, path, now, latest, out);
                path.pop();
            }
        }
    }
}
