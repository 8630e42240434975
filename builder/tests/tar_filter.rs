//! `hull tar-filter` as mmdebstrap runs it: through the `mmtarfilter` script
//! the install puts first in its `PATH` (build/rootfs/tar_filter.rs).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use hull::build::rootfs::tar_filter::{self, PathFilter};

fn run(program: &Path, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feed = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&feed).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "{}", program.display());
    out.stdout
}

/// The script runs the first candidate that is hull (this test's own
/// executable, a library caller's, is passed over) and filters as the
/// library does; with no hull among the candidates there is no script.
#[test]
fn the_shim_runs_hull_and_filters_as_the_library_does() {
    let hull = PathBuf::from(env!("CARGO_BIN_EXE_hull"));
    let me = std::env::current_exe().unwrap();
    assert!(tar_filter::runs_tar_filter(&hull));
    assert!(!tar_filter::runs_tar_filter(&me));
    assert!(!tar_filter::runs_tar_filter(Path::new("/bin/cat")));
    assert!(!tar_filter::runs_tar_filter(Path::new("/nonexistent/hull")));

    let t = tempfile::tempdir().unwrap();
    let none = tar_filter::shim(&t.path().join("none"), std::slice::from_ref(&me)).unwrap();
    assert_eq!(none, None);
    assert!(!t.path().join("none").exists());
    let dir = tar_filter::shim(&t.path().join("bin"), &[me, hull])
        .unwrap()
        .expect("hull is a candidate");
    let script = dir.join(tar_filter::PROGRAM);

    let tree = t.path().join("tree");
    for d in ["usr/share/doc/bash", "usr/share/man/man1", "usr/bin"] {
        std::fs::create_dir_all(tree.join(d)).unwrap();
    }
    for f in [
        "usr/share/doc/bash/copyright",
        "usr/share/doc/bash/NEWS.gz",
        "usr/share/man/man1/bash.1.gz",
        "usr/bin/bash",
    ] {
        std::fs::write(tree.join(f), f).unwrap();
    }
    let tar = Command::new("tar")
        .args(["--sort=name", "--format=gnu", "-C"])
        .arg(&tree)
        .args(["-cf", "-", "."])
        .output()
        .unwrap();
    assert!(tar.status.success());
    let rules = [
        "--path-exclude=/usr/share/doc/*",
        "--path-include=/usr/share/doc/*/copyright",
        "--path-exclude=/usr/share/man/*",
    ];
    let through_script = run(&script, &rules, &tar.stdout);
    let mut in_process = Vec::new();
    tar_filter::filter(
        &tar.stdout[..],
        &mut in_process,
        &PathFilter::from_args(&rules).unwrap(),
    )
    .unwrap();
    assert_eq!(through_script, in_process);
    let listed = run(Path::new("tar"), &["-tf", "-"], &through_script);
    let listed = String::from_utf8(listed).unwrap();
    assert!(
        listed.contains("./usr/share/doc/bash/copyright"),
        "{listed}"
    );
    assert!(!listed.contains("NEWS.gz"), "{listed}");
    assert!(!listed.contains("bash.1.gz"), "{listed}");
    assert!(listed.contains("./usr/bin/bash"), "{listed}");
}
