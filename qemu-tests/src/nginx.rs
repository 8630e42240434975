//! A real nginx (Debian's) serving OSTree repositories as static files on
//! 127.0.0.1, for the update tests. Each instance has its own config, logs
//! and temp directories under a temp dir, and stops when dropped.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub struct Nginx {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Serves each `(url prefix, directory)`: `("/repo/", b/repo)` makes
    /// http://127.0.0.1:PORT/repo/config the file b/repo/config.
    pub fn serve(locations: &[(&str, &Path)]) -> Result<Nginx> {
        hull::util::cmd::require_program("nginx", "nginx")?;
        let dir = tempfile::Builder::new().prefix("hull-nginx").tempdir()?;
        let port = free_port()?;
        let d = dir.path();
        for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            std::fs::create_dir_all(d.join(sub))?;
        }
        let mut locs = String::new();
        for (prefix, path) in locations {
            let path = path
                .canonicalize()
                .with_context(|| format!("serving {}", path.display()))?;
            locs.push_str(&format!(
                "    location {prefix} {{ alias {}/; }}\n",
                path.display()
            ));
        }
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\nuser root;\n\
             pid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log {d}/access.log;\n  default_type application/octet-stream;\n\
               client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               server {{\n    listen 127.0.0.1:{port};\n{locs}  }}\n}}\n",
            d = d.display()
        );
        let conf_path = d.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(d)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting nginx")?;
        let mut n = Nginx { port, child, dir };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = n.child.try_wait()? {
                let log =
                    std::fs::read_to_string(n.dir.path().join("error.log")).unwrap_or_default();
                bail!("nginx exited ({status}) before listening on 127.0.0.1:{port}: {log}");
            }
            if start.elapsed() > Duration::from_secs(20) {
                bail!("nginx did not listen on 127.0.0.1:{port} within 20 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("nginx on 127.0.0.1:{port} serving {locations:?}");
        Ok(n)
    }

    /// The access log so far: what the guest fetched.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// Requests and response body bytes in the access log (nginx's
    /// combined format: the field after the status code).
    pub fn served(&self) -> (usize, u64) {
        let log = self.access_log();
        let mut requests = 0;
        let mut bytes = 0;
        for line in log.lines() {
            // ... "GET /path HTTP/1.1" 200 1234 "-" "ua"
            let Some((_, after)) = line.split_once("\" ") else {
                continue;
            };
            let mut fields = after.split_whitespace();
            let _status = fields.next();
            if let Some(n) = fields.next().and_then(|b| b.parse::<u64>().ok()) {
                requests += 1;
                bytes += n;
            }
        }
        (requests, bytes)
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind(("127.0.0.1", 0)).context("finding a free port")?;
    Ok(l.local_addr()?.port())
}
