//! The agent's side of FleetLock: take a slot before rebooting
//! ([`Client::pre_reboot`]), give it back once the new boot is healthy
//! ([`Client::steady_state`]), as Zincati does, so airlock or any other
//! FleetLock server works with hull hosts.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{ClientParams, Refusal, Request, PRE_REBOOT, PROTOCOL_HEADER, STEADY_STATE};

/// Zincati's application id: node ids derived with it are the ones Zincati
/// would send from the same machine, so a fleet moving between the two keeps
/// its slots.
pub const APP_ID: [u8; 16] = [
    0xde, 0x35, 0x10, 0x6b, 0x6e, 0xc2, 0x46, 0x88, 0xb6, 0x3a, 0xfd, 0xda, 0xa1, 0x56, 0x67, 0x9b,
];

/// The node id of the machine with this machine id (32 hex digits, as in
/// /etc/machine-id): systemd's `sd_id128_get_machine_app_specific` with
/// [`APP_ID`] — HMAC-SHA256 keyed by the machine id over the application id,
/// its first 16 bytes made a version-4 UUID — as 32 lowercase hex digits.
/// The machine id itself never leaves the host.
pub fn node_id(machine_id: &str) -> Result<String> {
    let m = machine_id.trim();
    let bytes = match hex::decode(m) {
        Ok(b) if b.len() == 16 && b.iter().any(|&x| x != 0) => b,
        _ => bail!("machine id {m:?} is not 32 hexadecimal digits"),
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(&bytes).expect("HMAC takes any key length");
    mac.update(&APP_ID);
    let digest = mac.finalize().into_bytes();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    Ok(hex::encode(id))
}

/// [`node_id`] of the machine id in `path` (/etc/machine-id on a host).
/// Errors name the path.
pub fn node_id_from(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the machine id {}", path.display()))?;
    node_id(&text).with_context(|| format!("reading the machine id {}", path.display()))
}

/// The server's answer to a request it understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 200: the slot is held (pre-reboot) or given back (steady-state).
    Granted,
    /// Any other status: not now. A body not in the FleetLock error format
    /// becomes the kind `generic_http_<status>`, as Zincati reports it.
    Refused(Refusal),
}

/// A FleetLock client for one node in one group.
pub struct Client {
    base: String,
    body: String,
    agent: ureq::Agent,
}

impl Client {
    /// A client of the server at `base` (`http://` or `https://`, any path
    /// prefix; the endpoints are appended), sending `id` in `group`; each
    /// request gives up after `timeout` (connecting included). Errors name
    /// the URL.
    pub fn new(base: &str, id: &str, group: &str, timeout: Duration) -> Result<Self> {
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("fleet-lock URL {base}: not an http:// or https:// URL");
        }
        if id.is_empty() || group.is_empty() {
            bail!("fleet-lock URL {base}: the node id and the group must not be empty");
        }
        let body = serde_json::to_string(&Request {
            client_params: ClientParams {
                id: id.to_string(),
                group: group.to_string(),
            },
        })?;
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(timeout)
            .timeout(timeout)
            .build();
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            body,
            agent,
        })
    }

    /// Asks for a slot before rebooting. `Granted` also when the node
    /// already holds one. Errors (the server unreachable, a timeout) name
    /// the URL.
    pub fn pre_reboot(&self) -> Result<Answer> {
        self.post(PRE_REBOOT)
    }

    /// Gives the slot back once the new boot is healthy. `Granted` also when
    /// the node held none. Errors name the URL.
    pub fn steady_state(&self) -> Result<Answer> {
        self.post(STEADY_STATE)
    }

    fn post(&self, endpoint: &str) -> Result<Answer> {
        let url = format!("{}{endpoint}", self.base);
        let result = self
            .agent
            .post(&url)
            .set(PROTOCOL_HEADER, "true")
            .set("Content-Type", "application/json")
            .send_string(&self.body);
        match result {
            Ok(_) => Ok(Answer::Granted),
            Err(ureq::Error::Status(status, resp)) => {
                let text = resp.into_string().unwrap_or_default();
                let refusal = match serde_json::from_str::<Refusal>(&text) {
                    Ok(r) => Refusal { status, ..r },
                    Err(_) => Refusal::new(
                        status,
                        &format!("generic_http_{status}"),
                        text.lines().next().unwrap_or("").to_string(),
                    ),
                };
                Ok(Answer::Refused(refusal))
            }
            Err(e) => Err(anyhow::Error::new(e)).with_context(|| format!("POST {url}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_systemds() {
        // Checked against systemd 252:
        // `systemd-id128 machine-id --app-specific=de35106b6ec24688b63afddaa156679b`
        // on the machine whose /etc/machine-id is the first.
        for (machine, node) in [
            (
                "3d1219c7c4c5404aaa1f6d2a48adfda4\n",
                "975228d46dc94622b9bbe16671e2b58d",
            ),
            (
                "3D1219C7C4C5404AAA1F6D2A48ADFDA4",
                "975228d46dc94622b9bbe16671e2b58d",
            ),
        ] {
            assert_eq!(node_id(machine).unwrap(), node, "{machine}");
        }
        for bad in [
            "",
            "uninitialized",
            "3d1219c7",
            "00000000000000000000000000000000",
            "zz1219c7c4c5404aaa1f6d2a48adfda4",
        ] {
            let e = node_id(bad).unwrap_err().to_string();
            assert!(e.contains("is not 32 hexadecimal digits"), "{bad}: {e}");
        }
    }

    #[test]
    fn node_id_from_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("machine-id");
        let e = format!("{:#}", node_id_from(&p).unwrap_err());
        assert!(
            e.starts_with(&format!("reading the machine id {}", p.display())),
            "{e}"
        );
        std::fs::write(&p, "uninitialized\n").unwrap();
        let e = format!("{:#}", node_id_from(&p).unwrap_err());
        assert!(e.contains("is not 32 hexadecimal digits"), "{e}");
        std::fs::write(&p, "3d1219c7c4c5404aaa1f6d2a48adfda4\n").unwrap();
        assert_eq!(
            node_id_from(&p).unwrap(),
            "975228d46dc94622b9bbe16671e2b58d"
        );
    }

    #[test]
    fn bad_urls_and_dead_servers_are_named() {
        let t = Duration::from_secs(2);
        let e = Client::new("ftp://x", "n", "g", t)
            .err()
            .unwrap()
            .to_string();
        assert_eq!(e, "fleet-lock URL ftp://x: not an http:// or https:// URL");
        assert!(Client::new("http://x", "n", "", t).is_err());
        // A port nobody listens on: refused at once, and the error says where.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let c = Client::new(&format!("http://127.0.0.1:{port}/"), "n", "g", t).unwrap();
        let e = format!("{:#}", c.pre_reboot().unwrap_err());
        assert!(
            e.starts_with(&format!("POST http://127.0.0.1:{port}/v1/pre-reboot: ")),
            "{e}"
        );
    }
}
