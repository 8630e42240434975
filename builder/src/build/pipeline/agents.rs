//! Which hull binary a build installs as the on-host agent of each
//! architecture: the ones `--agent` names, then those found beside this one.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::BuildOptions;
use crate::build::rootfs;
use crate::manifest::Arch;

/// The agents a `hull build` finds by itself, after those given with
/// `--agent`: this binary (for its own architecture), then the ones cargo
/// cross-built beside it — `<target>/<triple>/release/hull` when this one is
/// `<target>/release/hull` — so `hull build --arch aarch64` works after
/// `cargo build --release --target aarch64-unknown-linux-gnu -p hull` with no
/// `--agent`.
pub fn default_agents(this: &Path) -> Vec<PathBuf> {
    let mut out = vec![this.to_path_buf()];
    let target = this
        .parent()
        .filter(|d| d.file_name().is_some_and(|n| n == "release"))
        .and_then(Path::parent);
    if let Some(target) = target {
        for triple in ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"] {
            let p = target.join(triple).join("release/hull");
            if p.is_file() {
                out.push(p);
            }
        }
    }
    out
}

/// The agent of `opts.agents` built for `arch`.
pub fn agent_for(opts: &BuildOptions, arch: Arch) -> Result<PathBuf> {
    let mut seen = Vec::new();
    for path in &opts.agents {
        let found = rootfs::agent::file_arch(path)?;
        if found == Some(arch) {
            return Ok(path.clone());
        }
        seen.push(format!(
            "{} ({})",
            path.display(),
            found.map_or("not an x86_64 or aarch64 ELF executable", Arch::as_str)
        ));
    }
    bail!(
        "no hull agent built for {arch} among {}: build one (cargo build --release -p hull{}); \
         target/release/hull finds it beside itself, or give it with --agent PATH",
        if seen.is_empty() {
            "none".to_owned()
        } else {
            seen.join(", ")
        },
        match arch {
            Arch::X86_64 => " --target x86_64-unknown-linux-gnu",
            Arch::Aarch64 => " --target aarch64-unknown-linux-gnu",
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn elf(dir: &Path, name: &str, machine: u16) -> PathBuf {
        let mut bytes = b"\x7fELF".to_vec();
        bytes.resize(20, 0);
        bytes[18..20].copy_from_slice(&machine.to_le_bytes());
        let p = dir.join(name);
        fs::write(&p, bytes).unwrap();
        p
    }

    fn opts(agents: Vec<PathBuf>) -> BuildOptions {
        BuildOptions {
            manifest: "m.toml".into(),
            out: "out".into(),
            arch: None,
            refresh: false,
            agents,
            sign_key: None,
            summary_lifetime: crate::repo::summary::DEFAULT_LIFETIME_SECS,
            rollout: None,
        }
    }

    /// `target/release/hull` finds `target/aarch64-unknown-linux-gnu/release/hull`.
    #[test]
    fn cross_built_agents_are_found_beside_this_one() {
        let t = tempfile::tempdir().unwrap();
        let release = t.path().join("target/release");
        let cross = t.path().join("target/aarch64-unknown-linux-gnu/release");
        fs::create_dir_all(&release).unwrap();
        fs::create_dir_all(&cross).unwrap();
        let this = elf(&release, "hull", 62);
        assert_eq!(default_agents(&this), vec![this.clone()]);
        let arm = elf(&cross, "hull", 183);
        let found = default_agents(&this);
        assert_eq!(found, vec![this.clone(), arm.clone()]);
        assert_eq!(agent_for(&opts(found), Arch::Aarch64).unwrap(), arm);
        // Installed elsewhere: only itself.
        let other = elf(t.path(), "hull", 62);
        assert_eq!(default_agents(&other), vec![other.clone()]);
    }

    #[test]
    fn each_arch_gets_the_agent_built_for_it() {
        let t = tempfile::tempdir().unwrap();
        let x86 = elf(t.path(), "hull-x86", 62);
        let arm = elf(t.path(), "hull-arm", 183);
        let o = opts(vec![arm.clone(), x86.clone()]);
        assert_eq!(agent_for(&o, Arch::X86_64).unwrap(), x86);
        assert_eq!(agent_for(&o, Arch::Aarch64).unwrap(), arm);
        let e = format!(
            "{:#}",
            agent_for(&opts(vec![x86.clone()]), Arch::Aarch64).unwrap_err()
        );
        assert!(
            e.contains("no hull agent built for aarch64")
                && e.contains("hull-x86 (x86_64)")
                && e.contains("--target aarch64-unknown-linux-gnu"),
            "{e}"
        );
    }
}
