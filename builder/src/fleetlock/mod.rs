//! FleetLock: reboot coordination for a fleet, as Zincati (the client) and
//! airlock (the server) speak it.
//!
//! A node takes a slot of its group's semaphore with `POST <base>/v1/pre-reboot`
//! before it reboots into an update, and gives it back with
//! `POST <base>/v1/steady-state` once the new boot passed its health check.
//! Both carry the header `fleet-lock-protocol: true` and the body
//! `{"client_params": {"id": NODE_ID, "group": GROUP}}`; 200 means granted or
//! released, any other status is a refusal with the body
//! `{"kind": ..., "value": ...}` ([`Refusal`]).
//!
//! [`server`] is `hull fleet-lock serve`, a stateless server keeping every
//! group's [`semaphore::Semaphore`] in etcd ([`etcd`]) in airlock's layout;
//! [`client`] is the agent's side, with the node id derived from
//! /etc/machine-id as Zincati derives it.

pub mod client;
pub mod etcd;
pub mod semaphore;
pub mod server;

use serde::{Deserialize, Serialize};

/// The header every FleetLock request carries, with the value `true`.
pub const PROTOCOL_HEADER: &str = "fleet-lock-protocol";

/// The path of the endpoint that takes a slot.
pub const PRE_REBOOT: &str = "/v1/pre-reboot";

/// The path of the endpoint that gives a slot back.
pub const STEADY_STATE: &str = "/v1/steady-state";

/// The request body: `{"client_params": {"id": ..., "group": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Who is asking.
    pub client_params: ClientParams,
}

/// A node's identity in a request: its node id (32 lowercase hex digits from
/// Zincati and [`client::node_id`], any non-empty string for the server) and
/// its reboot group (non-empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientParams {
    /// The node id.
    pub id: String,
    /// The reboot group: the semaphore the node takes a slot of.
    pub group: String,
}

/// A refusal, in the FleetLock error format: an HTTP status other than 200
/// and the body `{"kind": "<machine word>", "value": "<human text>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The HTTP status (not part of the body).
    #[serde(skip)]
    pub status: u16,
    /// A short machine word, e.g. `failed_lock` (airlock's kinds where airlock
    /// has one).
    pub kind: String,
    /// What went wrong, for people.
    pub value: String,
}

impl Refusal {
    /// A refusal with this status, kind and text.
    pub fn new(status: u16, kind: &str, value: impl Into<String>) -> Self {
        Refusal {
            status,
            kind: kind.to_string(),
            value: value.into(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (HTTP {}): {}", self.kind, self.status, self.value)
    }
}

/// The etcd key of a group's semaphore, exactly as airlock names it:
/// `com.coreos.airlock/groups/<group>/v1/semaphore` with the group escaped as
/// Go's `url.QueryEscape` does (so airlock finds the same key).
pub fn semaphore_key(group: &str) -> String {
    format!(
        "com.coreos.airlock/groups/{}/v1/semaphore",
        query_escape(group)
    )
}

/// Go's `url.QueryEscape`: letters, digits and `-_.~` stay, a space becomes
/// `+`, every other byte `%XX` (upper-case hex).
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_airlocks() {
        for (group, key) in [
            ("default", "com.coreos.airlock/groups/default/v1/semaphore"),
            (
                "web-1.eu_west~a",
                "com.coreos.airlock/groups/web-1.eu_west~a/v1/semaphore",
            ),
            ("a b", "com.coreos.airlock/groups/a+b/v1/semaphore"),
            ("a/b", "com.coreos.airlock/groups/a%2Fb/v1/semaphore"),
            ("é", "com.coreos.airlock/groups/%C3%A9/v1/semaphore"),
        ] {
            assert_eq!(semaphore_key(group), key, "{group}");
        }
    }

    #[test]
    fn bodies_are_the_protocols() {
        let r = Request {
            client_params: ClientParams {
                id: "n1".into(),
                group: "g".into(),
            },
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"client_params":{"id":"n1","group":"g"}}"#
        );
        let e = Refusal::new(409, "failed_lock", "full");
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"kind":"failed_lock","value":"full"}"#
        );
    }
}
