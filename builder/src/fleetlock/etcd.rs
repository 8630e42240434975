//! Group semaphores in etcd v3, changed only by compare-and-swap, so any
//! number of servers (hull's or airlock) can share them.
//!
//! A change reads the key, applies a pure edit to the [`Semaphore`], and puts
//! the result in a transaction that succeeds only if the key is unchanged
//! since the read: its `mod_revision` still the one read, or, for a key that
//! did not exist, its `version` still 0 (created by nobody else meanwhile).
//! A lost race is read again and retried, never overwritten.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, Txn, TxnOp};

use super::semaphore::Semaphore;
use super::semaphore_key;

/// How often a change is retried after losing a race before giving up: a
/// group of N nodes loses at most N-1 races in a row in practice.
const MAX_ATTEMPTS: u32 = 64;

/// A connection to etcd, driven from synchronous code.
pub struct Store {
    client: Client,
    rt: tokio::runtime::Runtime,
    endpoints: String,
}

impl Store {
    /// Connects to the etcd cluster at `endpoints` (URLs such as
    /// `http://127.0.0.1:2379`) and checks that it answers; every request
    /// then times out after `timeout`. Errors name the endpoints.
    pub fn connect(endpoints: &[String], timeout: Duration) -> Result<Self> {
        check_endpoints(endpoints)?;
        let names = endpoints.join(",");
        // One worker: the HTTP threads block on it, the work is waiting on
        // the network.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("starting the etcd client's runtime")?;
        let options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout);
        let client = rt
            .block_on(Client::connect(endpoints, Some(options)))
            .with_context(|| format!("connecting to etcd at {names}"))?;
        let store = Store {
            client,
            rt,
            endpoints: names,
        };
        // The channel connects lazily: ask once, so a wrong URL or a dead
        // cluster is said at start, not at the first node's reboot.
        let mut probe = store.client.clone();
        store
            .rt
            .block_on(probe.get("com.coreos.airlock/groups", None))
            .with_context(|| format!("connecting to etcd at {}", store.endpoints))?;
        Ok(store)
    }

    /// The group's semaphore as stored, or `None` if the key does not exist.
    pub fn read(&self, group: &str) -> Result<Option<Semaphore>> {
        let key = semaphore_key(group);
        Ok(self.get(&key)?.map(|(s, _)| s))
    }

    /// Changes the group's semaphore by compare-and-swap: `edit` gets the
    /// stored semaphore (a new one of `default_slots` slots if the key does
    /// not exist) and returns its answer and whether it changed the
    /// semaphore; a change is put only if nobody changed the key since it was
    /// read, else the whole step runs again. Returns the answer and the
    /// semaphore as it now stands. Errors name the key and the endpoints.
    pub fn change<T>(
        &self,
        group: &str,
        default_slots: u64,
        mut edit: impl FnMut(&mut Semaphore) -> (T, bool),
    ) -> Result<(T, Semaphore)> {
        let key = semaphore_key(group);
        for _ in 0..MAX_ATTEMPTS {
            let (mut sem, guard) = match self.get(&key)? {
                Some((s, mod_revision)) => (
                    s,
                    Compare::mod_revision(key.as_str(), CompareOp::Equal, mod_revision),
                ),
                None => (
                    Semaphore::new(default_slots),
                    Compare::version(key.as_str(), CompareOp::Equal, 0),
                ),
            };
            let (answer, changed) = edit(&mut sem);
            if !changed {
                return Ok((answer, sem));
            }
            let txn =
                Txn::new()
                    .when([guard])
                    .and_then([TxnOp::put(key.as_str(), sem.to_json(), None)]);
            let mut client = self.client.clone();
            let resp = self
                .rt
                .block_on(client.txn(txn))
                .with_context(|| format!("swapping etcd key {key} at {}", self.endpoints))?;
            if resp.succeeded() {
                return Ok((answer, sem));
            }
            log::debug!("lost a race on {key}, reading it again");
        }
        Err(anyhow!(
            "etcd key {key} at {} changed under every one of {MAX_ATTEMPTS} attempts",
            self.endpoints
        ))
    }

    /// The semaphore at `key` and the key's mod_revision, if it exists.
    fn get(&self, key: &str) -> Result<Option<(Semaphore, i64)>> {
        let mut client = self.client.clone();
        let resp = self
            .rt
            .block_on(client.get(key, None))
            .with_context(|| format!("reading etcd key {key} at {}", self.endpoints))?;
        match resp.kvs().first() {
            None => Ok(None),
            Some(kv) => Ok(Some((
                Semaphore::parse(key, kv.value())?,
                kv.mod_revision(),
            ))),
        }
    }
}

/// Endpoints must be `http://HOST:PORT` URLs: TLS to etcd (client
/// certificates, as airlock takes them) is not built in yet.
fn check_endpoints(endpoints: &[String]) -> Result<()> {
    if endpoints.is_empty() {
        bail!("no etcd endpoint given (--etcd URL)");
    }
    for e in endpoints {
        if e.starts_with("https://") {
            bail!("etcd endpoint {e}: TLS to etcd is not supported yet: use http:// on a trusted network");
        }
        let rest = e.strip_prefix("http://").unwrap_or("");
        let hostport = rest.trim_end_matches('/');
        match hostport.rsplit_once(':') {
            Some((host, port))
                if !host.is_empty() && port.parse::<u16>().is_ok() && !hostport.contains('/') => {}
            _ => bail!("etcd endpoint {e}: not an http://HOST:PORT URL"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_table() {
        for (endpoints, err) in [
            (vec!["http://127.0.0.1:2379"], None),
            (vec!["http://etcd-1.example.org:2379/", "http://[::1]:2379"], None),
            (vec![], Some("no etcd endpoint given (--etcd URL)")),
            (vec!["notaurl"], Some("etcd endpoint notaurl: not an http://HOST:PORT URL")),
            (vec!["http://h"], Some("etcd endpoint http://h: not an http://HOST:PORT URL")),
            (vec!["http://h:2379/v3"], Some("etcd endpoint http://h:2379/v3: not an http://HOST:PORT URL")),
            (
                vec!["http://a:1", "https://b:2379"],
                Some("etcd endpoint https://b:2379: TLS to etcd is not supported yet: use http:// on a trusted network"),
            ),
        ] {
            let endpoints: Vec<String> = endpoints.iter().map(|s| s.to_string()).collect();
            let got = check_endpoints(&endpoints).err().map(|e| e.to_string());
            assert_eq!(got.as_deref(), err, "{endpoints:?}");
        }
    }

    #[test]
    fn a_dead_cluster_is_named_at_start() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url = format!("http://127.0.0.1:{port}");
        let e = Store::connect(std::slice::from_ref(&url), Duration::from_secs(2))
            .err()
            .unwrap();
        let e = format!("{e:#}");
        assert!(
            e.starts_with(&format!("connecting to etcd at {url}: ")),
            "{e}"
        );
    }
}
