//! `hull fleet-lock serve`: a stateless FleetLock server. Every request is
//! checked ([`parse`], pure), then decided against the group's semaphore in
//! etcd ([`super::etcd::Store::change`]); the server keeps nothing itself, so
//! several run side by side and a restart loses nothing.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use super::etcd::Store;
use super::semaphore::Locked;
use super::{ClientParams, Refusal, Request, PRE_REBOOT, PROTOCOL_HEADER, STEADY_STATE};

/// The largest request body read, in bytes: a FleetLock body is ~100.
const MAX_BODY: u64 = 64 * 1024;

/// How many requests are served at once.
const THREADS: usize = 4;

/// What `hull fleet-lock serve` was told.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// etcd endpoints, e.g. `http://127.0.0.1:2379`.
    pub etcd: Vec<String>,
    /// Address to listen on, e.g. `0.0.0.0:3333` (port 0: any free port; the
    /// one taken is printed).
    pub listen: String,
    /// Slots of a group whose semaphore does not exist yet (at least 1); a
    /// stored semaphore keeps its own count.
    pub slots: u64,
    /// Time limit of each etcd request.
    pub etcd_timeout: Duration,
}

/// The two endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/pre-reboot`: take a slot.
    PreReboot,
    /// `POST /v1/steady-state`: give it back.
    SteadyState,
}

/// Checks a request: its path (404 `not_found`), method (405
/// `method_not_allowed`), the `fleet-lock-protocol: true` header and a body
/// with a non-empty id and group (400 `invalid_client_identity`, airlock's
/// kind). `url` may carry a query, which is ignored.
pub fn parse(
    method: &str,
    url: &str,
    protocol_header: Option<&str>,
    body: &[u8],
) -> Result<(Endpoint, ClientParams), Refusal> {
    let path = url.split('?').next().unwrap_or(url);
    let endpoint = match path {
        PRE_REBOOT => Endpoint::PreReboot,
        STEADY_STATE => Endpoint::SteadyState,
        other => {
            return Err(Refusal::new(
                404,
                "not_found",
                format!(
                    "no endpoint {other}: FleetLock has POST {PRE_REBOOT} and POST {STEADY_STATE}"
                ),
            ))
        }
    };
    if method != "POST" {
        return Err(Refusal::new(
            405,
            "method_not_allowed",
            format!("{method} {path}: only POST is allowed"),
        ));
    }
    let invalid = |what: String| Refusal::new(400, "invalid_client_identity", what);
    match protocol_header.map(str::trim) {
        Some("true") => {}
        Some(other) => {
            return Err(invalid(format!(
                "header {PROTOCOL_HEADER} is {other:?}, not \"true\""
            )))
        }
        None => return Err(invalid(format!("missing header {PROTOCOL_HEADER}: true"))),
    }
    let req: Request = serde_json::from_slice(body).map_err(|e| {
        invalid(format!(
            "body is not {{\"client_params\": {{\"id\": ..., \"group\": ...}}}}: {e}"
        ))
    })?;
    let p = req.client_params;
    if p.id.is_empty() {
        return Err(invalid("empty client_params.id".into()));
    }
    if p.group.is_empty() {
        return Err(invalid("empty client_params.group".into()));
    }
    Ok((endpoint, p))
}

/// Decides a checked request against etcd: a free slot (or one already held)
/// is granted, a full group refused with 409 `failed_lock`; steady-state
/// always succeeds, releasing the slot if the node held one. An etcd failure
/// is a 500 `failed_lock` with the error.
pub fn decide(
    store: &Store,
    default_slots: u64,
    endpoint: Endpoint,
    p: &ClientParams,
) -> Result<(), Refusal> {
    let etcd_failed = |e: anyhow::Error| Refusal::new(500, "failed_lock", format!("{e:#}"));
    match endpoint {
        Endpoint::PreReboot => {
            let (locked, sem) = store
                .change(&p.group, default_slots, |s| {
                    let l = s.lock(&p.id);
                    (l, l == Locked::Taken)
                })
                .map_err(etcd_failed)?;
            let held = format!("{}/{} slots held", sem.holders.len(), sem.total_slots);
            match locked {
                Locked::Taken | Locked::AlreadyHeld => {
                    log::info!(
                        "pre-reboot: {} holds a slot of group {} ({held})",
                        p.id,
                        p.group
                    );
                    Ok(())
                }
                Locked::Full => Err(Refusal::new(
                    409,
                    "failed_lock",
                    format!(
                        "all {} slots of group {:?} are held, by {}",
                        sem.total_slots,
                        p.group,
                        sem.holders.join(", ")
                    ),
                )),
            }
        }
        Endpoint::SteadyState => {
            let (released, sem) = store
                .change(&p.group, default_slots, |s| {
                    let r = s.unlock(&p.id);
                    (r, r)
                })
                .map_err(etcd_failed)?;
            if released {
                log::info!(
                    "steady-state: {} released its slot of group {} ({}/{} slots held)",
                    p.id,
                    p.group,
                    sem.holders.len(),
                    sem.total_slots
                );
            }
            Ok(())
        }
    }
}

/// Runs the server until the process is killed. Prints
/// `listening on http://ADDR` once it accepts requests.
pub fn serve(opts: &ServeOptions) -> Result<()> {
    if opts.slots == 0 {
        anyhow::bail!("--slots 0 would never let a node reboot: give at least 1");
    }
    let store = Arc::new(Store::connect(&opts.etcd, opts.etcd_timeout)?);
    let server = tiny_http::Server::http(&opts.listen)
        .map_err(|e| anyhow!("listening on {}: {e}", opts.listen))?;
    let addr = server
        .server_addr()
        .to_ip()
        .with_context(|| format!("listening on {}: not an IP address", opts.listen))?;
    println!("listening on http://{addr}");
    let server = Arc::new(server);
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (server, store, slots) = (server.clone(), store.clone(), opts.slots);
            std::thread::spawn(move || loop {
                match server.recv() {
                    Ok(req) => respond(&store, slots, req),
                    Err(e) => log::warn!("accepting a request: {e}"),
                }
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| anyhow!("a request thread panicked"))?;
    }
    Ok(())
}

fn respond(store: &Store, slots: u64, mut req: tiny_http::Request) {
    let method = req.method().as_str().to_string();
    let url = req.url().to_string();
    let header = req
        .headers()
        .iter()
        .find(|h| h.field.equiv(PROTOCOL_HEADER))
        .map(|h| h.value.as_str().to_string());
    let mut body = Vec::new();
    let read = req
        .as_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut body)
        .map_err(|e| {
            Refusal::new(
                400,
                "invalid_client_identity",
                format!("reading the body: {e}"),
            )
        })
        .and_then(|n| match n as u64 > MAX_BODY {
            true => Err(Refusal::new(
                413,
                "invalid_client_identity",
                format!("body over {MAX_BODY} bytes"),
            )),
            false => Ok(()),
        });
    let result = read
        .and_then(|()| parse(&method, &url, header.as_deref(), &body))
        .and_then(|(endpoint, p)| decide(store, slots, endpoint, &p));
    let response = match result {
        Ok(()) => tiny_http::Response::from_string(""),
        Err(r) => {
            log::info!("{method} {url}: refused: {r}");
            let json = serde_json::to_string(&r).expect("a refusal always serializes");
            let mut resp = tiny_http::Response::from_string(json)
                .with_status_code(r.status)
                .with_header(header_line("Content-Type", "application/json"));
            if r.status == 405 {
                resp = resp.with_header(header_line("Allow", "POST"));
            }
            resp
        }
    };
    if let Err(e) = req.respond(response) {
        log::warn!("{method} {url}: answering: {e}");
    }
}

fn header_line(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid header")
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"client_params": {"id": "n1", "group": "g"}}"#;

    #[test]
    fn parse_table() {
        let ok = |e| {
            Ok((
                e,
                ClientParams {
                    id: "n1".into(),
                    group: "g".into(),
                },
            ))
        };
        let refused = |status: u16, kind: &str| (status, kind.to_string());
        type Case<'a> = (&'a str, &'a str, Option<&'a str>, &'a [u8]);
        type Want = Result<(Endpoint, ClientParams), (u16, String)>;
        let cases: Vec<(Case, Want)> = vec![
            (
                ("POST", "/v1/pre-reboot", Some("true"), BODY),
                ok(Endpoint::PreReboot),
            ),
            (
                ("POST", "/v1/steady-state", Some("true"), BODY),
                ok(Endpoint::SteadyState),
            ),
            (
                ("POST", "/v1/pre-reboot?x=1", Some(" true "), BODY),
                ok(Endpoint::PreReboot),
            ),
            (
                ("POST", "/v1/reboot", Some("true"), BODY),
                Err(refused(404, "not_found")),
            ),
            (
                ("GET", "/v1/pre-reboot", Some("true"), BODY),
                Err(refused(405, "method_not_allowed")),
            ),
            (
                ("POST", "/v1/pre-reboot", None, BODY),
                Err(refused(400, "invalid_client_identity")),
            ),
            (
                ("POST", "/v1/pre-reboot", Some("false"), BODY),
                Err(refused(400, "invalid_client_identity")),
            ),
            (
                ("POST", "/v1/pre-reboot", Some("true"), b"{"),
                Err(refused(400, "invalid_client_identity")),
            ),
            (
                ("POST", "/v1/pre-reboot", Some("true"), b""),
                Err(refused(400, "invalid_client_identity")),
            ),
            (
                (
                    "POST",
                    "/v1/pre-reboot",
                    Some("true"),
                    br#"{"client_params": {"id": "", "group": "g"}}"#,
                ),
                Err(refused(400, "invalid_client_identity")),
            ),
            (
                (
                    "POST",
                    "/v1/pre-reboot",
                    Some("true"),
                    br#"{"client_params": {"id": "n", "group": ""}}"#,
                ),
                Err(refused(400, "invalid_client_identity")),
            ),
            (
                (
                    "POST",
                    "/v1/pre-reboot",
                    Some("true"),
                    br#"{"client_params": {"id": "n"}}"#,
                ),
                Err(refused(400, "invalid_client_identity")),
            ),
        ];
        for ((method, url, header, body), want) in cases {
            let got = parse(method, url, header, body).map_err(|r| (r.status, r.kind));
            assert_eq!(
                got,
                want,
                "{method} {url} {header:?} {}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        let value = |h, b| parse("POST", "/v1/pre-reboot", h, b).unwrap_err().value;
        assert_eq!(
            value(None, BODY),
            "missing header fleet-lock-protocol: true"
        );
        assert_eq!(
            value(Some("yes"), BODY),
            "header fleet-lock-protocol is \"yes\", not \"true\""
        );
        assert!(value(Some("true"), b"{").starts_with("body is not {\"client_params\""));
        assert_eq!(
            parse("PUT", "/v1/steady-state", None, b"")
                .unwrap_err()
                .value,
            "PUT /v1/steady-state: only POST is allowed"
        );
    }
}
