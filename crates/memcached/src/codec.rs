//! The item layout: memcached keys for entities, and the value encoding with version and floor.
//!
//! **Value:** 8-byte big-endian version, 8-byte big-endian floor, then the data bytes. The item
//! holds a live entry when `version >= floor`; an item with `version < floor` is a tombstone that
//! only carries the invalidation floor (written with version 0 and no data).
//!
//! **Key:** `<prefix>:<kind>:<id>`, with bytes that memcached forbids or that would make the
//! mapping ambiguous percent-encoded: control characters, space, DEL, bytes above 0x7F, `%` and
//! `#` everywhere, and `:` in the kind. A key that would exceed memcached's 250 bytes becomes
//! `<prefix>:#<sha-256 of kind, NUL, id in hex>`; `#` never appears unescaped otherwise, so hashed
//! and plain keys cannot collide.

use bytes::Bytes;
use prescient_core::{EntityKey, Entry, Version};
use sha2::{Digest, Sha256};

/// memcached's longest key.
pub const MAX_KEY_LEN: usize = 250;

/// The header length of an encoded value: version and floor.
pub const HEADER_LEN: usize = 16;

/// A decoded item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The stored version (0 in a tombstone).
    pub version: Version,
    /// The invalidation floor (0 when never invalidated).
    pub floor: Version,
    /// The data (empty in a tombstone).
    pub data: Bytes,
}

impl Item {
    /// A live entry with a floor.
    pub fn live(entry: &Entry, floor: Version) -> Self {
        Item {
            version: entry.version,
            floor,
            data: entry.data.clone(),
        }
    }

    /// A tombstone carrying only `floor`.
    pub fn tombstone(floor: Version) -> Self {
        Item {
            version: Version::ZERO,
            floor,
            data: Bytes::new(),
        }
    }

    /// Whether the item holds an entry (its version is at least its floor).
    pub fn is_live(&self) -> bool {
        self.version >= self.floor
    }

    /// The entry, if live.
    pub fn entry(&self) -> Option<Entry> {
        self.is_live()
            .then(|| Entry::new(self.version, self.data.clone()))
    }

    /// Encodes as version, floor, data.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.data.len());
        out.extend_from_slice(&self.version.0.to_be_bytes());
        out.extend_from_slice(&self.floor.0.to_be_bytes());
        out.extend_from_slice(&self.data);
        out
    }

    /// Decodes; `None` when shorter than the header.
    pub fn decode(raw: &[u8]) -> Option<Self> {
        let version = u64::from_be_bytes(raw.get(0..8)?.try_into().ok()?);
        let floor = u64::from_be_bytes(raw.get(8..16)?.try_into().ok()?);
        Some(Item {
            version: Version(version),
            floor: Version(floor),
            data: Bytes::copy_from_slice(raw.get(HEADER_LEN..)?),
        })
    }
}

fn escape_into(s: &str, escape_colon: bool, out: &mut String) {
    for &b in s.as_bytes() {
        let plain = b > b' ' && b < 0x7f && b != b'%' && b != b'#' && !(escape_colon && b == b':');
        if plain {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// The memcached key of an entity under `prefix` (which must itself be a valid key part).
pub fn item_key(prefix: &str, key: &EntityKey) -> String {
    let mut out = String::with_capacity(prefix.len() + key.kind.len() + key.id.len() + 2);
    out.push_str(prefix);
    out.push(':');
    escape_into(&key.kind, true, &mut out);
    out.push(':');
    escape_into(&key.id, false, &mut out);
    if out.len() <= MAX_KEY_LEN {
        return out;
    }
    let mut h = Sha256::new();
    h.update(key.kind.as_bytes());
    h.update([0u8]);
    h.update(key.id.as_bytes());
    let digest = h.finalize();
    let mut hashed = String::with_capacity(prefix.len() + 66);
    hashed.push_str(prefix);
    hashed.push_str(":#");
    for b in digest {
        hashed.push_str(&format!("{b:02x}"));
    }
    hashed
}

/// Whether `prefix` can start keys: printable ASCII without space, `%`, `#` or `:`, and short
/// enough to leave room for a hashed key.
pub fn valid_prefix(prefix: &str) -> bool {
    prefix.len() <= MAX_KEY_LEN - 66
        && prefix
            .bytes()
            .all(|b| b > b' ' && b < 0x7f && b != b'%' && b != b'#' && b != b':')
}

/// A time to live in whole seconds for memcached: rounded up, at least 1 (0 would mean never),
/// at most 30 days (above that memcached reads the number as a Unix time).
pub fn ttl_secs(ttl: std::time::Duration) -> u64 {
    const MAX: u64 = 30 * 24 * 3600;
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    secs.clamp(1, MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn check(kind: &str, id: &str, expect: &str) {
        assert_eq!(item_key("p", &EntityKey::new(kind, id)), expect);
    }

    #[test]
    fn keys_escape_what_memcached_forbids() {
        check("orders", "o-1", "p:orders:o-1");
        check("orders", "a:b", "p:orders:a:b");
        check("a:b", "c", "p:a%3Ab:c");
        check("orders", "with space\n", "p:orders:with%20space%0A");
        check("orders", "50%#", "p:orders:50%25%23");
        check("orders", "é", "p:orders:%C3%A9");
    }

    #[test]
    fn long_keys_are_hashed_and_distinct() {
        let long = "x".repeat(300);
        let k1 = item_key("p", &EntityKey::new("orders", long.as_str()));
        let k2 = item_key("p", &EntityKey::new("orders", format!("{long}y")));
        assert!(k1.starts_with("p:#"), "{k1}");
        assert_eq!(k1.len(), 2 + 1 + 64);
        assert_ne!(k1, k2);
        // Just at the limit stays plain.
        let fits = "y".repeat(MAX_KEY_LEN - "p:orders:".len());
        let k = item_key("p", &EntityKey::new("orders", fits.as_str()));
        assert_eq!(k.len(), MAX_KEY_LEN);
        assert!(!k.contains('#'));
    }

    #[test]
    fn values_round_trip_and_tombstones_are_not_live() {
        let e = Entry::new(Version(7), &b"\x00data"[..]);
        let item = Item::live(&e, Version(5));
        let raw = item.encode();
        assert_eq!(&raw[..8], &7u64.to_be_bytes());
        assert_eq!(&raw[8..16], &5u64.to_be_bytes());
        assert_eq!(Item::decode(&raw), Some(item.clone()));
        assert_eq!(item.entry(), Some(e));
        let t = Item::tombstone(Version(9));
        assert!(!t.is_live());
        assert_eq!(Item::decode(&t.encode()).and_then(|i| i.entry()), None);
        assert_eq!(Item::decode(b"short"), None);
    }

    #[test]
    fn ttl_is_rounded_up_and_clamped() {
        assert_eq!(ttl_secs(Duration::ZERO), 1);
        assert_eq!(ttl_secs(Duration::from_millis(1)), 1);
        assert_eq!(ttl_secs(Duration::from_millis(1001)), 2);
        assert_eq!(ttl_secs(Duration::from_secs(60)), 60);
        assert_eq!(
            ttl_secs(Duration::from_secs(365 * 24 * 3600)),
            30 * 24 * 3600
        );
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(valid_prefix("prescient"));
        assert!(!valid_prefix("a b"));
        assert!(!valid_prefix("a:b"));
        assert!(!valid_prefix(&"x".repeat(200)));
    }
}
