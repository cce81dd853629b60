//! Sequential and strided streams: following them, reading ahead, and learning what was read.

use prescient_core::{EntityKey, Prediction, Relation, SmolStr, Timestamp};
use smol_str::ToSmolStr;

use super::KeyModel;
use super::calibration::{SEQ_HORIZON, SEQ_PENDING, seq_bin, stream_cell};
use super::state::{Key, Mode, Stream, Window, after};

impl KeyModel {
    /// Moves the streams with the current integer runs.
    pub(super) fn follow_streams(&mut self, now: Timestamp, learn: bool) {
        self.touched.clear();
        let cap = self.cfg.max_count;
        let skip = self.cfg.skip_requests;
        for ai in 0..self.cur.len() {
            let Key::Num(kind, s) = self.cur[ai].key else {
                continue;
            };
            let len = self.cur[ai].len;
            let end = s + u64::from(len);
            // 1. A continuation: sequential (inside the window read ahead) or at the stride.
            let mut found = None;
            for (i, st) in self.streams.iter().enumerate() {
                if st.kind != kind || self.touched.contains(&i) {
                    continue;
                }
                let ok = match st.mode {
                    Mode::Fresh | Mode::Seq => {
                        s >= st.last_end
                            && s <= st.last_end.max(st.emitted_to).min(
                                st.last_end
                                    .saturating_add(skip.saturating_mul(u64::from(st.len))),
                            )
                    }
                    Mode::Stride(d) => s == st.last_start + d,
                };
                if ok {
                    found = Some(i);
                    if s == st.last_end {
                        break;
                    }
                }
            }
            // 2. A fresh stream a small forward stride behind: a strided stream.
            if found.is_none() {
                found = self
                    .streams
                    .iter()
                    .enumerate()
                    .filter(|(i, st)| {
                        st.kind == kind
                            && st.mode == Mode::Fresh
                            && !self.touched.contains(i)
                            && s > st.last_end
                            && s - st.last_start <= self.cfg.max_stride
                    })
                    .max_by_key(|(_, st)| st.last_event)
                    .map(|(i, _)| i);
            }
            match found {
                Some(i) => {
                    let st = &mut self.streams[i];
                    let was_fresh = st.mode == Mode::Fresh;
                    if was_fresh {
                        st.mode = if s >= st.last_end && s <= st.last_end.max(st.emitted_to) {
                            Mode::Seq
                        } else {
                            Mode::Stride(s - st.last_start)
                        };
                    }
                    let strided = matches!(st.mode, Mode::Stride(_));
                    if learn && let Some(ks) = self.kinds.get_mut(usize::from(kind)) {
                        ks.streams[stream_cell(st.n, strided, st.len)].add(true, cap);
                        if was_fresh {
                            // A fresh stream is a trial of both ways to continue.
                            ks.streams[stream_cell(st.n, !strided, st.len)].add(false, cap);
                        }
                    }
                    let gap = now.as_micros().saturating_sub(st.last_time.as_micros()) as f64;
                    st.gap_us = if st.n <= 1 {
                        gap
                    } else {
                        0.75 * st.gap_us + 0.25 * gap
                    };
                    st.n = st.n.saturating_add(1);
                    st.last_start = s;
                    st.last_end = end;
                    st.len = len;
                    st.emitted_to = st.emitted_to.max(end);
                    st.last_event = self.event_no;
                    st.last_time = now;
                    self.touched.push(i);
                }
                None => {
                    let st = Stream {
                        kind,
                        last_start: s,
                        last_end: end,
                        len,
                        mode: Mode::Fresh,
                        n: 1,
                        emitted_to: end,
                        last_event: self.event_no,
                        last_time: now,
                        gap_us: 0.0,
                    };
                    if self.streams.len() < self.cfg.max_streams {
                        self.streams.push(st);
                        self.touched.push(self.streams.len() - 1);
                    } else if let Some(i) = self
                        .streams
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| !self.touched.contains(i))
                        .min_by_key(|(_, st)| st.last_event)
                        .map(|(i, _)| i)
                    {
                        // The least recently continued stream ends: it did not continue.
                        let old = &self.streams[i];
                        let strided = matches!(old.mode, Mode::Stride(_));
                        let fresh = old.mode == Mode::Fresh;
                        let (n, len) = (old.n, old.len);
                        if learn && let Some(ks) = self.kinds.get_mut(usize::from(old.kind)) {
                            ks.streams[stream_cell(n, strided, len)].add(false, cap);
                            if fresh {
                                ks.streams[stream_cell(n, true, len)].add(false, cap);
                            }
                        }
                        self.streams[i] = st;
                        self.touched.push(i);
                    }
                }
            }
        }
    }

    pub(super) fn push_ids(
        out: &mut Vec<Prediction>,
        kind: &SmolStr,
        start: u64,
        len: u64,
        w: Window,
    ) {
        for v in start..start.saturating_add(len) {
            out.push(Prediction {
                entity: EntityKey {
                    kind: kind.clone(),
                    id: v.to_smolstr(),
                },
                confidence: w.confidence,
                expected_at: w.expected_at,
                latest: w.latest.max(w.expected_at),
                event_type: None,
                relation: w.relation,
            });
        }
    }

    pub(super) fn forecast_streams(
        &mut self,
        now: Timestamp,
        latest: Timestamp,
        out: &mut Vec<Prediction>,
    ) {
        let mut pending = Vec::new();
        for ti in 0..self.touched.len() {
            let i = self.touched[ti];
            let Some(st) = self.streams.get(i) else {
                continue;
            };
            let Some(ks) = self.kinds.get(usize::from(st.kind)) else {
                continue;
            };
            let strided = matches!(st.mode, Mode::Stride(_));
            let step = match st.mode {
                Mode::Fresh | Mode::Seq => u64::from(st.len),
                Mode::Stride(d) => d,
            };
            let len = u64::from(st.len);
            let limit = st.last_end.saturating_add(self.cfg.max_readahead);
            let mut raw = 1.0f32;
            let mut emitted_to = st.emitted_to;
            for c in 1..=self.cfg.max_readahead {
                let n =
                    st.n.saturating_add(u32::try_from(c - 1).unwrap_or(u32::MAX));
                raw *= ks.streams[stream_cell(n, strided, st.len)].rate();
                let bin = seq_bin(raw);
                let conf = ks.seq[usize::from(bin)].calibrate(raw);
                if conf < self.cfg.min_confidence {
                    break;
                }
                let start = st.last_start.saturating_add(step.saturating_mul(c));
                let end = start.saturating_add(len).min(limit);
                if start >= limit {
                    break;
                }
                let from = start.max(emitted_to);
                if from < end {
                    let expected_at = after(now, (c - 1) as f64 * 0.5 * st.gap_us);
                    Self::push_ids(
                        out,
                        &ks.name,
                        from,
                        end - from,
                        Window {
                            confidence: conf,
                            expected_at,
                            latest,
                            relation: Relation::Sequential,
                        },
                    );
                    for v in from..end {
                        pending.push((st.kind, v, bin));
                    }
                    emitted_to = end;
                }
            }
            if let Some(st) = self.streams.get_mut(i) {
                st.emitted_to = emitted_to;
            }
        }
        let deadline = self.event_no.saturating_add(SEQ_HORIZON);
        for (k, v, bin) in pending {
            self.seq_pending.insert((k, v), (bin, deadline));
            self.seq_order.push_back((deadline, k, v));
            if self.seq_order.len() > SEQ_PENDING
                && let Some((d, k, v)) = self.seq_order.pop_front()
                && self.seq_pending.get(&(k, v)).is_some_and(|p| p.1 == d)
            {
                self.seq_pending.remove(&(k, v));
            }
        }
    }

    /// Learns whether readahead came true: ids of this event that were predicted are hits,
    /// predicted ids whose horizon has passed unread are misses.
    pub(super) fn resolve_readahead(&mut self) {
        let cap = self.cfg.max_count;
        for &(k, v) in &self.scratch_nums {
            if let Some((bin, _)) = self.seq_pending.remove(&(k, v))
                && let Some(ks) = self.kinds.get_mut(usize::from(k))
            {
                ks.seq[usize::from(bin)].add(true, cap);
            }
        }
        while let Some(&(d, k, v)) = self.seq_order.front() {
            if d >= self.event_no {
                break;
            }
            self.seq_order.pop_front();
            if self.seq_pending.get(&(k, v)).is_some_and(|p| p.1 == d)
                && let Some((bin, _)) = self.seq_pending.remove(&(k, v))
                && let Some(ks) = self.kinds.get_mut(usize::from(k))
            {
                ks.seq[usize::from(bin)].add(false, cap);
            }
        }
    }
}
