//! The key layout shared by the cache and by consumers in other languages.
//!
//! An entity `kind`/`id` lives at `<prefix>:{<kind>:<id>}` (a hash with fields `v` and `d`) and
//! its invalidation floor at `<prefix>:{<kind>:<id>}:floor` (a string). The braces are a Redis
//! Cluster hash tag, so both keys of one entity hash to the same slot and a Lua script may touch
//! both. `%`, `{` and `}` in kinds and ids, and `:` in kinds, are percent-encoded (`%25`, `%7B`,
//! `%7D`, `%3A`), which keeps the hash tag intact and the mapping from entity to key one-to-one.
//! `docs/redis-layout.md` describes the layout for readers with a plain Redis client.

use prescient_core::EntityKey;

use crate::error::RedisError;

/// Builds the Redis keys of entities under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLayout {
    prefix: String,
}

impl KeyLayout {
    /// A layout under `prefix` (e.g. `prescient`).
    ///
    /// # Errors
    /// [`RedisError::Config`] when the prefix contains `{` or `}`, which would move the hash tag.
    pub fn new(prefix: impl Into<String>) -> Result<Self, RedisError> {
        let prefix = prefix.into();
        if prefix.contains(['{', '}']) {
            return Err(RedisError::Config(format!(
                "key prefix {prefix:?} must not contain '{{' or '}}'"
            )));
        }
        Ok(KeyLayout { prefix })
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key of the entity's hash: `<prefix>:{<kind>:<id>}`.
    pub fn data_key(&self, key: &EntityKey) -> String {
        let mut out = String::with_capacity(self.prefix.len() + key.kind.len() + key.id.len() + 4);
        out.push_str(&self.prefix);
        out.push_str(":{");
        escape_into(&key.kind, true, &mut out);
        out.push(':');
        escape_into(&key.id, false, &mut out);
        out.push('}');
        out
    }

    /// The key of the entity's invalidation floor: `<prefix>:{<kind>:<id>}:floor`.
    pub fn floor_key(&self, key: &EntityKey) -> String {
        let mut out = self.data_key(key);
        out.push_str(":floor");
        out
    }
}

fn escape_into(s: &str, escape_colon: bool, out: &mut String) {
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            ':' if escape_colon => out.push_str("%3A"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: &str, id: &str, expect: &str) {
        let l = KeyLayout::new("prescient").unwrap();
        assert_eq!(l.data_key(&EntityKey::new(kind, id)), expect);
    }

    #[test]
    fn plain_keys_are_literal() {
        check("orders", "o-1", "prescient:{orders:o-1}");
        check("block", "17", "prescient:{block:17}");
        check("orders", "a:b", "prescient:{orders:a:b}");
    }

    #[test]
    fn braces_percent_and_kind_colons_are_escaped() {
        check("orders", "x{y}z", "prescient:{orders:x%7By%7Dz}");
        check("orders", "50%", "prescient:{orders:50%25}");
        check("a:b", "c", "prescient:{a%3Ab:c}");
        // Without escaping these two would collide.
        let l = KeyLayout::new("p").unwrap();
        assert_ne!(
            l.data_key(&EntityKey::new("a:b", "c")),
            l.data_key(&EntityKey::new("a", "b:c"))
        );
    }

    #[test]
    fn floor_key_shares_the_hash_tag() {
        let l = KeyLayout::new("p").unwrap();
        let k = EntityKey::new("orders", "o-1");
        assert_eq!(l.floor_key(&k), "p:{orders:o-1}:floor");
    }

    #[test]
    fn prefix_with_braces_is_rejected() {
        assert!(KeyLayout::new("a{b").is_err());
        assert!(KeyLayout::new("a}b").is_err());
    }
}
