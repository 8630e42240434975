//! A real FleetLock service for the update tests: Debian's etcd on
//! 127.0.0.1 with a throw-away data dir, and `hull fleet-lock serve` (the
//! release binary the images carry) in front of it, one slot per group. The
//! guest reaches the server only as http://10.0.2.101/ through QEMU's
//! restricted network ([`hull::qemu::RunSpec::lock_port`]). The semaphore is
//! read straight from etcd's JSON gateway, not through hull's code. Both
//! processes are killed when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use base64::Engine;
use hull::util::cmd::Cmd;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The URL the test images' manifests give as `fleet-lock-url`.
pub const GUEST_URL: &str = "http://10.0.2.101";

pub struct Fleet {
    /// The server's port on 127.0.0.1.
    pub port: u16,
    etcd_url: String,
    server: Child,
    etcd: Child,
    _dir: tempfile::TempDir,
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl Fleet {
    /// Starts etcd, waits until it is healthy, then the server.
    pub fn start() -> Result<Fleet> {
        hull::util::cmd::require_program("etcd", "etcd-server")?;
        let dir = tempfile::Builder::new().prefix("hull-etcd").tempdir()?;
        let (client, peer) = (free_port()?, free_port()?);
        let etcd_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let etcd = Cmd::new("etcd")
            .args(["--name", "t", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &etcd_url])
            .args(["--advertise-client-urls", &etcd_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("t={peer_url}")])
            .args(["--log-level", "warn"])
            .spawn(Stdio::null(), Stdio::null())?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let health = ureq::get(&format!("{etcd_url}/health"))
                .timeout(Duration::from_secs(1))
                .call()
                .ok()
                .and_then(|r| r.into_string().ok())
                .unwrap_or_default();
            if health.contains("\"health\":\"true\"") {
                break;
            }
            if Instant::now() > deadline {
                bail!("etcd at {etcd_url} did not come up: {health}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let hull = crate::agents()?.remove(0);
        let mut server = Cmd::new(&hull)
            .args(["fleet-lock", "serve", "--etcd", &etcd_url])
            .args(["--listen", "127.0.0.1:0", "--slots", "1"])
            .spawn(Stdio::piped(), Stdio::inherit())?;
        let mut line = String::new();
        BufReader::new(server.stdout.take().context("the server's stdout")?)
            .read_line(&mut line)?;
        let port = line
            .trim()
            .strip_prefix("listening on http://127.0.0.1:")
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("{}: unexpected first line {line:?}", hull.display()))?;
        eprintln!("fleet-lock server on 127.0.0.1:{port}, etcd at {etcd_url}");
        Ok(Fleet {
            port,
            etcd_url,
            server,
            etcd,
            _dir: dir,
        })
    }

    /// The holders of `group`'s semaphore as etcd has them; `None` when no
    /// node ever asked for a slot of it (the key does not exist).
    pub fn holders(&self, group: &str) -> Result<Option<Vec<String>>> {
        let key = hull::fleetlock::semaphore_key(group);
        let body = serde_json::json!({ "key": B64.encode(&key) }).to_string();
        let r = ureq::post(&format!("{}/v3/kv/range", self.etcd_url))
            .send_string(&body)
            .with_context(|| format!("reading {key} from etcd"))?;
        let v: serde_json::Value = serde_json::from_str(&r.into_string()?)?;
        let Some(kv) = v["kvs"].as_array().and_then(|a| a.first()) else {
            return Ok(None);
        };
        let value = B64.decode(kv["value"].as_str().context("no value")?)?;
        let sem: serde_json::Value = serde_json::from_slice(&value)?;
        ensure!(
            sem["total_slots"] == 1,
            "{key}: {sem} (the server was started with one slot)"
        );
        let holders = sem["holders"]
            .as_array()
            .with_context(|| format!("{key}: {sem} has no holders list"))?
            .iter()
            .map(|h| h.as_str().unwrap_or_default().to_string())
            .collect();
        Ok(Some(holders))
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for c in [&mut self.server, &mut self.etcd] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The node id a guest printed as the detail of its `node-id` check.
pub fn node_id_of(o: &crate::Outcome) -> Result<String> {
    let c = o
        .checks
        .iter()
        .find(|c| c.name == "node-id")
        .context("the guest printed no node-id check")?;
    let id = c.detail.trim().to_string();
    ensure!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "node-id {id:?} is not 32 hex digits"
    );
    Ok(id)
}
