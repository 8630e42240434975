//! A group's semaphore as airlock stores it in etcd:
//! `{"total_slots": N, "holders": ["<node id>", ...]}`, holders sorted.
//! Pure data; [`super::etcd`] reads and swaps it.

use anyhow::{Context, Result};
use serde::{Deserialize, Deserializer, Serialize};

/// A group's semaphore: `total_slots` slots, `holders` the node ids holding
/// one (sorted, no duplicates, at most `total_slots` of them when hull wrote
/// it; a semaphore whose slots were lowered by hand may hold more).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Semaphore {
    /// How many nodes may hold a slot at once.
    pub total_slots: u64,
    /// Who holds one. airlock (Go) may write `null` for none.
    #[serde(deserialize_with = "null_as_empty")]
    pub holders: Vec<String>,
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// What [`Semaphore::lock`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locked {
    /// The node already held a slot: nothing changed (the call is idempotent).
    AlreadyHeld,
    /// The node took a free slot.
    Taken,
    /// Every slot is held by other nodes: nothing changed.
    Full,
}

impl Semaphore {
    /// A semaphore with `total_slots` slots and no holder.
    pub fn new(total_slots: u64) -> Self {
        Semaphore {
            total_slots,
            holders: Vec::new(),
        }
    }

    /// Parses the JSON stored at `key` (named in the error).
    pub fn parse(key: &str, bytes: &[u8]) -> Result<Self> {
        let mut s: Semaphore = serde_json::from_slice(bytes)
            .with_context(|| format!("etcd key {key} holds no FleetLock semaphore"))?;
        // Sorted as airlock keeps it, so the binary searches below hold even
        // for a value written by hand.
        s.holders.sort();
        s.holders.dedup();
        Ok(s)
    }

    /// The JSON to store, in airlock's field order.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a semaphore always serializes")
    }

    /// Takes a slot for `id` if it has none and one is free.
    pub fn lock(&mut self, id: &str) -> Locked {
        match self.holders.binary_search_by(|h| h.as_str().cmp(id)) {
            Ok(_) => Locked::AlreadyHeld,
            Err(_) if self.holders.len() as u64 >= self.total_slots => Locked::Full,
            Err(at) => {
                self.holders.insert(at, id.to_string());
                Locked::Taken
            }
        }
    }

    /// Gives `id`'s slot back; false if it held none (nothing changed).
    pub fn unlock(&mut self, id: &str) -> bool {
        match self.holders.binary_search_by(|h| h.as_str().cmp(id)) {
            Ok(at) => {
                self.holders.remove(at);
                true
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sem(slots: u64, holders: &[&str]) -> Semaphore {
        Semaphore {
            total_slots: slots,
            holders: holders.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn lock_table() {
        for (before, id, outcome, after) in [
            (sem(1, &[]), "a", Locked::Taken, sem(1, &["a"])),
            (sem(1, &["a"]), "a", Locked::AlreadyHeld, sem(1, &["a"])),
            (sem(1, &["a"]), "b", Locked::Full, sem(1, &["a"])),
            (sem(2, &["c"]), "a", Locked::Taken, sem(2, &["a", "c"])),
            (
                sem(3, &["a", "c"]),
                "b",
                Locked::Taken,
                sem(3, &["a", "b", "c"]),
            ),
            (sem(0, &[]), "a", Locked::Full, sem(0, &[])),
            // slots lowered by hand below the holders: nobody new gets in,
            // the holders still count as holding
            (sem(1, &["a", "b"]), "c", Locked::Full, sem(1, &["a", "b"])),
            (
                sem(1, &["a", "b"]),
                "b",
                Locked::AlreadyHeld,
                sem(1, &["a", "b"]),
            ),
        ] {
            let mut s = before.clone();
            assert_eq!(s.lock(id), outcome, "{before:?} + {id}");
            assert_eq!(s, after, "{before:?} + {id}");
        }
    }

    #[test]
    fn unlock_table() {
        for (before, id, changed, after) in [
            (sem(1, &["a"]), "a", true, sem(1, &[])),
            (sem(1, &[]), "a", false, sem(1, &[])),
            (sem(2, &["a", "b"]), "b", true, sem(2, &["a"])),
            (sem(2, &["a", "c"]), "b", false, sem(2, &["a", "c"])),
        ] {
            let mut s = before.clone();
            assert_eq!(s.unlock(id), changed, "{before:?} - {id}");
            assert_eq!(s, after, "{before:?} - {id}");
        }
    }

    #[test]
    fn reads_and_writes_airlocks_json() {
        let k = "com.coreos.airlock/groups/default/v1/semaphore";
        assert_eq!(
            Semaphore::parse(k, br#"{"total_slots":2,"holders":["b","a","a"]}"#).unwrap(),
            sem(2, &["a", "b"])
        );
        assert_eq!(
            Semaphore::parse(k, br#"{"total_slots":1,"holders":null}"#).unwrap(),
            sem(1, &[])
        );
        assert_eq!(
            sem(2, &["a"]).to_json(),
            r#"{"total_slots":2,"holders":["a"]}"#
        );
        assert_eq!(sem(1, &[]).to_json(), r#"{"total_slots":1,"holders":[]}"#);
        let e = format!("{:#}", Semaphore::parse(k, b"{}").unwrap_err());
        assert!(
            e.starts_with(&format!("etcd key {k} holds no FleetLock semaphore")),
            "{e}"
        );
        assert!(Semaphore::parse(k, br#"{"total_slots":-1,"holders":[]}"#).is_err());
    }
}
