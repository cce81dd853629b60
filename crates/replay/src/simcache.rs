//! Caches in virtual time, over dense entity indices: an exact LRU and moka's TinyLFU.
//!
//! Both hold versioned entries with a fill time and an expiry. An entry is usable while
//! `now < expires`; a hit does not move the expiry; an expired entry takes no capacity.
//! Writes never replace a newer version, and never go below an invalidation's floor.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use prescient_core::Timestamp;

const NIL: u32 = u32::MAX;
/// Expiry of an entry that never expires.
pub const NEVER: i64 = i64::MAX;

/// A cached entry's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// The cached version.
    pub version: u64,
    /// When it was filled.
    pub fill: i64,
    /// When it stops being usable (microseconds; [`NEVER`] for no limit).
    pub expires: i64,
}

/// A versioned cache in virtual time.
pub trait SimCache {
    /// The usable entry of `idx` at `now`, counting as an access (recency, frequency).
    fn get(&mut self, idx: u32, now: Timestamp) -> Option<Slot>;
    /// The usable entry of `idx` at `now`, without counting an access.
    fn peek(&self, idx: u32, now: Timestamp) -> Option<Slot>;
    /// Stores `version` of `idx` filled at `now` until `expires`, unless a newer version or a
    /// higher floor is there. Returns whether it stored.
    fn insert(&mut self, idx: u32, version: u64, now: Timestamp, expires: i64) -> bool;
    /// Removes entries older than `min_version` and refuses such writes from now on.
    fn invalidate(&mut self, idx: u32, min_version: u64);
    /// Entries held (expired ones that were not purged yet included).
    fn len(&self) -> usize;
    /// Moves the entities evicted for capacity (not expiry) since the last call into `out`.
    /// The default reports none.
    fn take_evicted(&mut self, out: &mut Vec<u32>) {
        let _ = out;
    }
    /// Whether the cache holds nothing.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An exact LRU with per-entry expiry, over indices `0..n`.
#[derive(Debug)]
pub struct LruTtl {
    cap: usize,
    len: usize,
    present: Vec<bool>,
    slots: Vec<Slot>,
    prev: Vec<u32>,
    next: Vec<u32>,
    head: u32,
    tail: u32,
    floor: Vec<u64>,
    expiry: BinaryHeap<Reverse<(i64, u32)>>,
    /// Evicted for capacity since the last [`SimCache::take_evicted`].
    evicted: Vec<u32>,
}

impl LruTtl {
    /// A cache of `cap` entries over `n` entities.
    pub fn new(n: usize, cap: usize) -> Self {
        LruTtl {
            cap: cap.max(1),
            len: 0,
            present: vec![false; n],
            slots: vec![
                Slot {
                    version: 0,
                    fill: 0,
                    expires: 0
                };
                n
            ],
            prev: vec![NIL; n],
            next: vec![NIL; n],
            head: NIL,
            tail: NIL,
            floor: vec![0; n],
            expiry: BinaryHeap::new(),
            evicted: Vec::new(),
        }
    }

    fn unlink(&mut self, i: u32) {
        let (p, n) = (self.prev[i as usize], self.next[i as usize]);
        if p == NIL {
            self.head = n
        } else {
            self.next[p as usize] = n
        }
        if n == NIL {
            self.tail = p
        } else {
            self.prev[n as usize] = p
        }
        self.prev[i as usize] = NIL;
        self.next[i as usize] = NIL;
    }

    fn push_front(&mut self, i: u32) {
        self.prev[i as usize] = NIL;
        self.next[i as usize] = self.head;
        if self.head != NIL {
            self.prev[self.head as usize] = i;
        }
        self.head = i;
        if self.tail == NIL {
            self.tail = i;
        }
    }

    fn remove(&mut self, i: u32) {
        if self.present[i as usize] {
            self.unlink(i);
            self.present[i as usize] = false;
            self.len -= 1;
        }
    }

    fn purge_expired(&mut self, now: i64) {
        while let Some(&Reverse((exp, i))) = self.expiry.peek() {
            if exp > now {
                break;
            }
            self.expiry.pop();
            if self.present[i as usize] && self.slots[i as usize].expires == exp {
                self.remove(i);
            }
        }
    }

    fn usable(&self, i: u32, now: i64) -> bool {
        self.present[i as usize] && now < self.slots[i as usize].expires
    }
}

impl SimCache for LruTtl {
    fn get(&mut self, idx: u32, now: Timestamp) -> Option<Slot> {
        let now = now.as_micros();
        if !self.present.get(idx as usize).copied().unwrap_or(false) {
            return None;
        }
        if !self.usable(idx, now) {
            self.remove(idx);
            return None;
        }
        self.unlink(idx);
        self.push_front(idx);
        Some(self.slots[idx as usize])
    }

    fn peek(&self, idx: u32, now: Timestamp) -> Option<Slot> {
        let now = now.as_micros();
        (self.present.get(idx as usize).copied().unwrap_or(false) && self.usable(idx, now))
            .then(|| self.slots[idx as usize])
    }

    fn insert(&mut self, idx: u32, version: u64, now: Timestamp, expires: i64) -> bool {
        let i = idx as usize;
        if i >= self.present.len() || version < self.floor[i] || expires <= now.as_micros() {
            return false;
        }
        let now = now.as_micros();
        if self.present[i] && self.usable(idx, now) {
            if version < self.slots[i].version {
                return false;
            }
            self.unlink(idx);
        } else {
            self.remove(idx);
            self.purge_expired(now);
            while self.len >= self.cap && self.tail != NIL {
                let t = self.tail;
                self.remove(t);
                self.evicted.push(t);
            }
            self.present[i] = true;
            self.len += 1;
        }
        self.slots[i] = Slot {
            version,
            fill: now,
            expires,
        };
        self.push_front(idx);
        if expires != NEVER {
            self.expiry.push(Reverse((expires, idx)));
        }
        true
    }

    fn invalidate(&mut self, idx: u32, min_version: u64) {
        let i = idx as usize;
        if i >= self.present.len() {
            return;
        }
        self.floor[i] = self.floor[i].max(min_version);
        if self.present[i] && self.slots[i].version < min_version {
            self.remove(idx);
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn take_evicted(&mut self, out: &mut Vec<u32>) {
        out.append(&mut self.evicted);
    }
}

/// moka's default cache (TinyLFU admission, LRU eviction) with per-entry expiry in virtual time.
pub struct MokaTtl {
    cache: moka::sync::Cache<u32, Slot>,
    floor: Vec<u64>,
    expiry: BinaryHeap<Reverse<(i64, u32)>>,
}

impl std::fmt::Debug for MokaTtl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MokaTtl")
            .field("entries", &self.cache.entry_count())
            .finish()
    }
}

impl MokaTtl {
    /// A cache of `cap` entries over `n` entities.
    pub fn new(n: usize, cap: usize) -> Self {
        MokaTtl {
            cache: moka::sync::Cache::new(cap.max(1) as u64),
            floor: vec![0; n],
            expiry: BinaryHeap::new(),
        }
    }

    fn purge_expired(&mut self, now: i64) {
        let mut purged = false;
        while let Some(&Reverse((exp, i))) = self.expiry.peek() {
            if exp > now {
                break;
            }
            self.expiry.pop();
            if self.cache.get(&i).is_some_and(|s| s.expires == exp) {
                self.cache.invalidate(&i);
                purged = true;
            }
        }
        if purged {
            self.cache.run_pending_tasks();
        }
    }
}

impl SimCache for MokaTtl {
    fn get(&mut self, idx: u32, now: Timestamp) -> Option<Slot> {
        let s = self.cache.get(&idx)?;
        if now.as_micros() < s.expires {
            Some(s)
        } else {
            self.cache.invalidate(&idx);
            None
        }
    }

    fn peek(&self, idx: u32, now: Timestamp) -> Option<Slot> {
        self.cache.get(&idx).filter(|s| now.as_micros() < s.expires)
    }

    fn insert(&mut self, idx: u32, version: u64, now: Timestamp, expires: i64) -> bool {
        let i = idx as usize;
        if i >= self.floor.len() || version < self.floor[i] || expires <= now.as_micros() {
            return false;
        }
        if let Some(s) = self.cache.get(&idx)
            && now.as_micros() < s.expires
            && version < s.version
        {
            return false;
        }
        self.purge_expired(now.as_micros());
        self.cache.insert(
            idx,
            Slot {
                version,
                fill: now.as_micros(),
                expires,
            },
        );
        self.cache.run_pending_tasks();
        if expires != NEVER {
            self.expiry.push(Reverse((expires, idx)));
        }
        true
    }

    fn invalidate(&mut self, idx: u32, min_version: u64) {
        let i = idx as usize;
        if i >= self.floor.len() {
            return;
        }
        self.floor[i] = self.floor[i].max(min_version);
        if self
            .cache
            .get(&idx)
            .is_some_and(|s| s.version < min_version)
        {
            self.cache.invalidate(&idx);
        }
    }

    fn len(&self) -> usize {
        self.cache.entry_count() as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(v: i64) -> Timestamp {
        Timestamp::from_micros(v)
    }

    #[test]
    fn lru_evicts_least_recent_and_respects_expiry() {
        let mut c = LruTtl::new(10, 2);
        assert!(c.insert(0, 1, us(0), 100));
        assert!(c.insert(1, 1, us(1), 100));
        assert!(c.get(0, us(2)).is_some()); // 0 is now most recent
        assert!(c.insert(2, 1, us(3), 100)); // evicts 1
        assert!(c.peek(1, us(3)).is_none());
        assert!(c.peek(0, us(3)).is_some());
        // Expired entries take no capacity: at t=100 both are gone, so nothing is evicted.
        assert!(c.get(0, us(100)).is_none());
        assert!(c.insert(3, 1, us(100), 1_000));
        assert!(c.insert(4, 1, us(101), 1_000));
        assert_eq!(c.len(), 2);
        assert!(c.peek(3, us(102)).is_some() && c.peek(4, us(102)).is_some());
    }

    #[test]
    fn never_older_and_floor() {
        for c in [
            &mut LruTtl::new(4, 4) as &mut dyn SimCache,
            &mut MokaTtl::new(4, 4),
        ] {
            assert!(c.insert(0, 5, us(0), NEVER));
            assert!(!c.insert(0, 4, us(1), NEVER));
            assert_eq!(c.peek(0, us(2)).map(|s| s.version), Some(5));
            c.invalidate(0, 7);
            assert!(c.peek(0, us(2)).is_none());
            assert!(!c.insert(0, 6, us(3), NEVER));
            assert!(c.insert(0, 7, us(3), NEVER));
            assert_eq!(c.get(0, us(4)).map(|s| s.version), Some(7));
        }
    }

    #[test]
    fn moka_respects_capacity_and_expiry() {
        let mut c = MokaTtl::new(100, 10);
        for i in 0..50 {
            c.insert(i, 1, us(i as i64), 1_000);
        }
        assert!(c.len() <= 10);
        assert!(c.get(49, us(2_000)).is_none());
    }
}
