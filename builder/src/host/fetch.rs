//! hull's own downloads from an update server: small metadata files (the
//! signed summary, a commit object and its signatures), each bounded in size
//! and in time, so a server that never answers, trickles, or sends without
//! end (TUF's "slow retrieval" and "endless data") costs a bounded wait and
//! a one-line error naming the URL. The tree itself is pulled by libostree
//! (see `update::pull` for its bounds).

use std::io::Read;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

/// Time bounds of one request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// To open the TCP connection.
    pub connect: Duration,
    /// Longest wait for any byte (a stalled server).
    pub stall: Duration,
    /// The whole request, body included (a trickling server).
    pub total: Duration,
}

impl Limits {
    /// What `hull update` uses: 15 s to connect, 30 s without a byte,
    /// 120 s for one metadata file.
    pub const DEFAULT: Limits = Limits {
        connect: Duration::from_secs(15),
        stall: Duration::from_secs(30),
        total: Duration::from_secs(120),
    };
}

/// An HTTP client for one update run.
pub struct Fetcher {
    agent: ureq::Agent,
}

impl Fetcher {
    pub fn new(limits: Limits) -> Fetcher {
        Fetcher {
            agent: ureq::AgentBuilder::new()
                .timeout_connect(limits.connect)
                .timeout_read(limits.stall)
                .timeout(limits.total)
                .redirects(0)
                .build(),
        }
    }

    /// GETs `url`, at most `limit` bytes; `Ok(None)` on 404.
    ///
    /// Errors: another HTTP status, a timeout, a body over `limit`; each
    /// names `url`.
    pub fn get(&self, url: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        match self.agent.get(url).call() {
            Ok(resp) => {
                if let Some(len) = resp
                    .header("content-length")
                    .and_then(|l| l.parse::<u64>().ok())
                {
                    if len > limit {
                        bail!("{url}: the server offers {len} bytes, more than the {limit} allowed: refusing it");
                    }
                }
                let mut buf = Vec::new();
                resp.into_reader()
                    .take(limit + 1)
                    .read_to_end(&mut buf)
                    .map_err(|e| anyhow!("{url}: {e} (after {} bytes)", buf.len()))?;
                if buf.len() as u64 > limit {
                    bail!("{url}: more than the {limit} bytes allowed: refusing it");
                }
                Ok(Some(buf))
            }
            Err(ureq::Error::Status(404, _)) => Ok(None),
            Err(ureq::Error::Status(code, _)) => bail!("{url}: HTTP {code}"),
            Err(e) => Err(anyhow!("{url}: {e}")),
        }
    }

    /// Like [`Fetcher::get`], but a 404 is an error saying `what` is missing.
    pub fn require(&self, url: &str, limit: u64, what: &str) -> Result<Vec<u8>> {
        self.get(url, limit)?
            .with_context(|| format!("{url}: {what} is not on the server (HTTP 404)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;
    use std::time::Instant;

    /// A server on 127.0.0.1 that answers each connection with `serve`.
    fn server(serve: fn(std::net::TcpStream)) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                std::thread::spawn(move || serve(s));
            }
        });
        format!("http://{addr}/repo/summary")
    }

    fn short() -> Fetcher {
        Fetcher::new(Limits {
            connect: Duration::from_secs(2),
            stall: Duration::from_millis(500),
            total: Duration::from_secs(3),
        })
    }

    fn read_request(s: &mut std::net::TcpStream) {
        let mut buf = [0u8; 4096];
        let _ = std::io::Read::read(s, &mut buf);
    }

    #[test]
    fn a_server_that_never_answers_costs_a_bounded_wait() {
        let url = server(|s| {
            std::thread::sleep(Duration::from_secs(30));
            drop(s)
        });
        let start = Instant::now();
        let e = short().get(&url, 1000).unwrap_err().to_string();
        // The stall or the total limit, whichever ureq applies first.
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert!(e.starts_with(&url), "{e}");
    }

    #[test]
    fn a_server_that_sends_without_end_is_cut_at_the_limit() {
        let url = server(|mut s| {
            read_request(&mut s);
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n");
            let chunk = [0u8; 8192];
            while s.write_all(&chunk).is_ok() {}
        });
        let e = short().get(&url, 100_000).unwrap_err().to_string();
        assert!(e.starts_with(&url) && e.contains("100000 bytes"), "{e}");
    }

    #[test]
    fn a_declared_length_over_the_limit_is_refused_before_reading() {
        let url = server(|mut s| {
            read_request(&mut s);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\nabc");
        });
        let e = short().get(&url, 1000).unwrap_err().to_string();
        assert!(e.contains("offers 99999999999 bytes"), "{e}");
    }

    #[test]
    fn a_trickling_server_costs_the_total_limit() {
        let url = server(|mut s| {
            read_request(&mut s);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
            // One byte every 200 ms: never stalls, never finishes.
            while s.write_all(b"x").is_ok() {
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        let start = Instant::now();
        let e = short().get(&url, 1_000_000).unwrap_err().to_string();
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert!(e.starts_with(&url), "{e}");
    }

    #[test]
    fn not_found_and_errors() {
        let url = server(|mut s| {
            read_request(&mut s);
            let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        });
        assert_eq!(short().get(&url, 10).unwrap(), None);
        let e = short()
            .require(&url, 10, "the summary")
            .unwrap_err()
            .to_string();
        assert!(e.contains("the summary is not on the server"), "{e}");
        let url = server(|mut s| {
            read_request(&mut s);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        });
        assert_eq!(short().get(&url, 10).unwrap().unwrap(), b"hello");
    }
}
