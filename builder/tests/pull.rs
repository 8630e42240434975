//! `hull update`'s pull, for real: the hull binary's `pull-commit` fetches a
//! commit over HTTP from a server on 127.0.0.1, within the budget its signed
//! sizes give it; a server that sends one file object without end is cut
//! off, and the error says so.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use hull::host::{pull, update};
use hull::repo::commit::{self, CommitMeta};
use ostree::gio;
use ostree::glib;
use ostree::prelude::*;

/// A static file server on 127.0.0.1 for `root`; the file at URL path
/// `endless` is sent without end instead, at network speed (64 KiB a
/// millisecond at most).
fn serve(root: PathBuf, endless: Option<String>) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let (root, endless) = (root.clone(), endless.clone());
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut first = String::new();
                r.read_line(&mut first).unwrap_or(0);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
                let mut s = s;
                if Some(&path) == endless.as_ref() {
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
                    let chunk = vec![0x5au8; 65536];
                    while s.write_all(&chunk).is_ok() {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    return;
                }
                match std::fs::read(root.join(path.trim_start_matches('/'))) {
                    Ok(body) => {
                        let _ = write!(
                            s,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = s.write_all(&body);
                    }
                    Err(_) => {
                        let _ = s.write_all(
                            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        );
                    }
                }
            });
        }
    });
    format!("http://127.0.0.1:{port}")
}

/// A repository with one commit of a tree holding 300 kB that do not
/// compress; returns it, the commit and the URL path of the file's object.
fn source(dir: &Path) -> (ostree::Repo, String, String) {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("usr")).unwrap();
    let mut data = vec![0u8; 300_000];
    let mut x = 0x2545_f491u32;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    std::fs::write(tree.join("usr/file"), &data).unwrap();
    let repo = commit::open_or_create(&dir.join("repo")).unwrap();
    let meta = CommitMeta {
        version: "1".into(),
        manifest_sha256: "m".into(),
        input_sha256: "i".into(),
        packages: vec![],
        kver: "6.12".into(),
        release: "r".into(),
        boot_bytes: 0,
        kargs: vec![],
        ref_binding: vec!["hull/t/x86_64/stable".into()],
        arch: "x86_64".into(),
        rollout: None,
    };
    let c = commit::commit_tree(&repo, &tree, "hull/t/x86_64/stable", &meta)
        .unwrap()
        .checksum;
    commit::move_ref(&repo, "hull/t/x86_64/stable", &c).unwrap();
    let (root, _) = repo.read_commit(&c, gio::Cancellable::NONE).unwrap();
    let file = root
        .resolve_relative_path("usr/file")
        .downcast::<ostree::RepoFile>()
        .unwrap();
    file.ensure_resolved().unwrap();
    let obj = file.checksum().to_string();
    let path = format!("/objects/{}/{}.filez", &obj[..2], &obj[2..]);
    (repo, c, path)
}

#[test]
fn a_pull_is_cut_off_past_its_signed_sizes() {
    let t = tempfile::tempdir().unwrap();
    let (src, c, object) = source(t.path());
    let (commit, _) = src.load_commit(&c).unwrap();
    let hull = Path::new(env!("CARGO_BIN_EXE_hull"));
    for (name, endless) in [("good", None), ("endless", Some(object))] {
        let url = serve(t.path().join("repo"), endless);
        let dst_dir = t.path().join(name);
        let dst = commit::open_or_create(&dst_dir).unwrap();
        let opts = glib::VariantDict::new(None);
        opts.insert("gpg-verify", false);
        dst.remote_add(
            "origin",
            Some(&url),
            Some(&opts.end()),
            gio::Cancellable::NONE,
        )
        .unwrap();
        let missing = update::missing_bytes(&dst, &c, &commit, |p| {
            anyhow::bail!("a commit without a parent asked for its parent {p}")
        })
        .unwrap();
        assert!(missing.archived >= 300_000, "{missing:?}");
        let spec = pull::PullSpec {
            remote: "origin",
            ostree_ref: "hull/t/x86_64/stable",
            checksum: &c,
        };
        let start = std::time::Instant::now();
        let result = pull::pull_bounded(
            hull,
            &dst_dir,
            &spec,
            pull::budget(missing.archived, missing.unpacked),
        );
        eprintln!("{name}: {:?} {result:?}", start.elapsed());
        match name {
            "good" => {
                result.unwrap();
                dst.load_commit(&c).unwrap();
            }
            _ => {
                let e = format!("{:#}", result.unwrap_err());
                assert!(
                    e.contains("more than the")
                        && e.contains(&c)
                        && e.contains("nothing was deployed"),
                    "{e}"
                );
                assert!(start.elapsed() < std::time::Duration::from_secs(60));
            }
        }
    }
}
