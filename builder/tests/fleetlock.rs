//! `hull fleet-lock serve` for real: Debian's etcd on 127.0.0.1 with a
//! throw-away data dir, hull servers as processes of the built binary, the
//! library client as the agents. The semaphore is read straight from etcd
//! (its JSON gateway), not through hull's own code.
//!
//! Without etcd (the Debian package etcd-server) the tests say "skipped";
//! under CI (CI set) a missing etcd fails them instead.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use hull::fleetlock::client::{Answer, Client};
use hull::util::cmd::Cmd;
use serde_json::Value;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// An etcd member on 127.0.0.1, killed when dropped.
struct Etcd {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts etcd and waits until it is healthy; `None` (after saying
    /// "skipped") when etcd is not installed outside CI.
    fn start(test: &str) -> Option<Etcd> {
        let bin = Path::new("/usr/bin/etcd");
        if !bin.exists() {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "{test}: /usr/bin/etcd missing under CI: .ci/install-deps installs etcd-server"
                );
            }
            eprintln!("{test}: skipped: etcd is not installed (apt-get install etcd-server)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let (client, peer) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Cmd::new(bin)
            .args(["--name", "t", "--data-dir"])
            .arg(dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .args(["--initial-cluster", &format!("t={peer_url}")])
            .args(["--log-level", "warn"])
            .spawn(Stdio::null(), Stdio::null())
            .unwrap();
        let etcd = Etcd {
            child,
            url,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let health = ureq::get(&format!("{}/health", etcd.url))
                .timeout(Duration::from_secs(1))
                .call()
                .ok()
                .and_then(|r| r.into_string().ok())
                .unwrap_or_default();
            if health.contains("\"health\":\"true\"") {
                return Some(etcd);
            }
            assert!(
                Instant::now() < deadline,
                "etcd at {} did not come up: {health}",
                etcd.url
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The JSON gateway's POST /v3/kv/<op>.
    fn gateway(&self, op: &str, body: Value) -> Value {
        let r = ureq::post(&format!("{}/v3/kv/{op}", self.url))
            .send_string(&body.to_string())
            .unwrap();
        serde_json::from_str(&r.into_string().unwrap()).unwrap()
    }

    /// The stored value of `key` (at `revision`, 0 for the newest) and its
    /// mod_revision, or None.
    fn get_at(&self, key: &str, revision: u64) -> Option<(Value, u64)> {
        let r = self.gateway(
            "range",
            serde_json::json!({"key": B64.encode(key), "revision": revision}),
        );
        let kv = r["kvs"].as_array()?.first()?.clone();
        let value = B64.decode(kv["value"].as_str().unwrap()).unwrap();
        let rev = kv["mod_revision"].as_str().unwrap().parse().unwrap();
        Some((serde_json::from_slice(&value).unwrap(), rev))
    }

    fn put(&self, key: &str, value: &str) {
        self.gateway(
            "put",
            serde_json::json!({"key": B64.encode(key), "value": B64.encode(value)}),
        );
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `hull fleet-lock serve` process, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    /// Starts a server on `listen` (port 0: any) and waits for its
    /// "listening on" line.
    fn start(etcd: &Etcd, slots: u64, listen: &str) -> Server {
        let mut child = Cmd::new(env!("CARGO_BIN_EXE_hull"))
            .args([
                "fleet-lock",
                "serve",
                "--etcd",
                &etcd.url,
                "--listen",
                listen,
            ])
            .args(["--slots", &slots.to_string(), "--etcd-timeout", "2s"])
            .env("RUST_LOG", "warn")
            .spawn(Stdio::piped(), Stdio::inherit())
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("hull fleet-lock serve said {line:?}"))
            .to_string();
        Server { child, url }
    }

    fn client(&self, id: &str, group: &str) -> Client {
        Client::new(&self.url, id, group, Duration::from_secs(5)).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn key(group: &str) -> String {
    format!("com.coreos.airlock/groups/{group}/v1/semaphore")
}

fn holders(v: &Value) -> Vec<String> {
    v["holders"]
        .as_array()
        .map(|a| a.iter().map(|h| h.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn refused(a: Answer) -> hull::fleetlock::Refusal {
    match a {
        Answer::Refused(r) => r,
        Answer::Granted => panic!("granted, not refused"),
    }
}

/// Ten agents contend for one group of two slots through two servers; a
/// watcher reads the semaphore from etcd all along, and etcd's history of
/// the key is read afterwards, version by version: never more than two
/// holders, every agent held a slot once and finished.
#[test]
fn ten_agents_two_slots_two_servers() {
    let Some(etcd) = Etcd::start("ten_agents_two_slots_two_servers") else {
        return;
    };
    let servers = [
        Server::start(&etcd, 2, "127.0.0.1:0"),
        Server::start(&etcd, 2, "127.0.0.1:0"),
    ];
    // Agents that finished (well or not: a panicking one counts too, so
    // the watcher stops) and agents that finished well.
    let ended = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let inside = Arc::new(AtomicUsize::new(0));
    let seen_by_watcher = Arc::new(Mutex::new(Vec::<Vec<String>>::new()));
    std::thread::scope(|s| {
        let watcher = {
            let (etcd, ended, seen) = (&etcd, ended.clone(), seen_by_watcher.clone());
            s.spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(60);
                while ended.load(Ordering::SeqCst) < 10 && Instant::now() < deadline {
                    if let Some((v, _)) = etcd.get_at(&key("fleet"), 0) {
                        let h = holders(&v);
                        assert!(h.len() <= 2, "etcd shows {} holders: {v}", h.len());
                        seen.lock().unwrap().push(h);
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        for i in 0..10 {
            let client = servers[i % 2].client(&format!("node-{i:02}"), "fleet");
            let (done, inside) = (done.clone(), inside.clone());
            let ended = EndGuard(ended.clone());
            s.spawn(move || {
                let _ended = ended;
                let deadline = Instant::now() + Duration::from_secs(40);
                loop {
                    match client.pre_reboot().unwrap() {
                        Answer::Granted => break,
                        Answer::Refused(r) => {
                            assert_eq!((r.status, r.kind.as_str()), (409, "failed_lock"), "{r}")
                        }
                    }
                    assert!(Instant::now() < deadline, "node-{i:02} never got a slot");
                    std::thread::sleep(Duration::from_millis(20));
                }
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                assert!(now <= 2, "{now} agents hold a slot at once");
                std::thread::sleep(Duration::from_millis(300));
                inside.fetch_sub(1, Ordering::SeqCst);
                assert_eq!(client.steady_state().unwrap(), Answer::Granted);
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        watcher.join().unwrap();
    });
    assert_eq!(done.load(Ordering::SeqCst), 10);
    let seen = seen_by_watcher.lock().unwrap();
    assert!(
        seen.iter().any(|h| h.len() == 2),
        "the watcher never saw both slots taken"
    );

    // Every version the key ever had, from etcd's history.
    let (last, last_rev) = etcd.get_at(&key("fleet"), 0).unwrap();
    assert_eq!(last, serde_json::json!({"total_slots": 2, "holders": []}));
    let mut ever = std::collections::BTreeSet::new();
    let mut versions = 0;
    for rev in 1..=last_rev {
        if let Some((v, _)) = etcd.get_at(&key("fleet"), rev) {
            let h = holders(&v);
            assert!(h.len() <= 2, "revision {rev}: {v}");
            ever.extend(h);
            versions += 1;
        }
    }
    assert_eq!(ever.len(), 10, "holders ever: {ever:?}");
    // at least one take and one release each, plus the creation
    assert!(versions >= 20, "{versions} versions");
}

/// Slots taken through one server survive its restart: the new process
/// finds them in etcd, refuses a third node, takes a holder's repeat as
/// granted, and releases through either server. With etcd gone, a refusal
/// names it.
#[test]
fn restarted_server_loses_nothing() {
    let Some(etcd) = Etcd::start("restarted_server_loses_nothing") else {
        return;
    };
    let a = Server::start(&etcd, 2, "127.0.0.1:0");
    let b = Server::start(&etcd, 2, "127.0.0.1:0");
    assert_eq!(a.client("n1", "g").pre_reboot().unwrap(), Answer::Granted);
    assert_eq!(b.client("n2", "g").pre_reboot().unwrap(), Answer::Granted);
    let listen = a.url.trim_start_matches("http://").to_string();
    drop(a);
    assert!(a_is_down(&listen));
    // The same address again, with another default: the stored count wins.
    let a = Server::start(&etcd, 5, &listen);
    let r = refused(a.client("n3", "g").pre_reboot().unwrap());
    assert_eq!((r.status, r.kind.as_str()), (409, "failed_lock"));
    assert_eq!(r.value, "all 2 slots of group \"g\" are held, by n1, n2");
    assert_eq!(a.client("n1", "g").pre_reboot().unwrap(), Answer::Granted);
    assert_eq!(a.client("n1", "g").steady_state().unwrap(), Answer::Granted);
    assert_eq!(b.client("n3", "g").pre_reboot().unwrap(), Answer::Granted);
    // Releasing a slot not held changes nothing and is no error.
    assert_eq!(b.client("n9", "g").steady_state().unwrap(), Answer::Granted);
    let (v, _) = etcd.get_at(&key("g"), 0).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"total_slots": 2, "holders": ["n2", "n3"]})
    );

    let etcd_url = etcd.url.clone();
    drop(etcd);
    let r = refused(a.client("n4", "g").pre_reboot().unwrap());
    assert_eq!((r.status, r.kind.as_str()), (500, "failed_lock"), "{r}");
    assert!(r.value.contains(&etcd_url), "{r}");
}

/// Counts a thread as ended when dropped, panicking or not.
struct EndGuard(Arc<AtomicUsize>);

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn a_is_down(listen: &str) -> bool {
    std::net::TcpStream::connect(listen).is_err()
}

/// Refusals come in the FleetLock error format with their status; a group
/// that airlock created (holders null, one slot) is read as it stands.
#[test]
fn protocol_errors_and_airlock_data() {
    let Some(etcd) = Etcd::start("protocol_errors_and_airlock_data") else {
        return;
    };
    let s = Server::start(&etcd, 3, "127.0.0.1:0");
    let body = r#"{"client_params": {"id": "n1", "group": "g"}}"#;
    // method, path, fleet-lock-protocol header, body; status, kind
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, &'a str, u16, &'a str);
    let cases: [Case; 6] = [
        (
            "POST",
            "/v1/pre-reboot",
            None,
            body,
            400,
            "invalid_client_identity",
        ),
        (
            "POST",
            "/v1/pre-reboot",
            Some("false"),
            body,
            400,
            "invalid_client_identity",
        ),
        (
            "POST",
            "/v1/pre-reboot",
            Some("true"),
            "{\"client_params\":",
            400,
            "invalid_client_identity",
        ),
        (
            "POST",
            "/v1/steady-state",
            Some("true"),
            r#"{"client_params": {"id": "", "group": "g"}}"#,
            400,
            "invalid_client_identity",
        ),
        (
            "GET",
            "/v1/pre-reboot",
            Some("true"),
            "",
            405,
            "method_not_allowed",
        ),
        (
            "POST",
            "/v2/pre-reboot",
            Some("true"),
            body,
            404,
            "not_found",
        ),
    ];
    for (method, path, header, body, status, kind) in cases {
        let mut req = ureq::request(method, &format!("{}{path}", s.url));
        if let Some(h) = header {
            req = req.set("fleet-lock-protocol", h);
        }
        let resp = match req.send_string(body) {
            Err(ureq::Error::Status(_, resp)) => resp,
            other => panic!("{method} {path}: {other:?}"),
        };
        assert_eq!(resp.status(), status, "{method} {path} {header:?}");
        assert_eq!(resp.header("content-type"), Some("application/json"));
        let json: Value = serde_json::from_str(&resp.into_string().unwrap()).unwrap();
        let obj = json.as_object().unwrap();
        assert_eq!(obj.keys().collect::<Vec<_>>(), ["kind", "value"], "{json}");
        assert_eq!(json["kind"], kind, "{method} {path} {header:?}: {json}");
        assert!(!json["value"].as_str().unwrap().is_empty());
    }
    // None of that wrote anything.
    assert!(etcd.get_at(&key("g"), 0).is_none());

    // A semaphore as airlock (Go) writes it for an empty group.
    etcd.put(&key("seeded"), r#"{"total_slots":1,"holders":null}"#);
    assert_eq!(
        s.client("n1", "seeded").pre_reboot().unwrap(),
        Answer::Granted
    );
    let r = refused(s.client("n2", "seeded").pre_reboot().unwrap());
    assert_eq!((r.status, r.kind.as_str()), (409, "failed_lock"));
    // A group name that needs escaping lands where airlock puts it.
    assert_eq!(
        s.client("n1", "eu west/1").pre_reboot().unwrap(),
        Answer::Granted
    );
    let (v, _) = etcd.get_at(&key("eu+west%2F1"), 0).unwrap();
    assert_eq!(v, serde_json::json!({"total_slots": 3, "holders": ["n1"]}));
    // A value that is no semaphore is refused by name, and left alone.
    etcd.put(&key("broken"), "not json");
    let r = refused(s.client("n1", "broken").pre_reboot().unwrap());
    assert_eq!((r.status, r.kind.as_str()), (500, "failed_lock"));
    assert!(r.value.contains(&key("broken")), "{r}");
}
