//! `include = [...]` resolved into one [`RawManifest`].
//!
//! Includes are resolved depth-first, relative to the directory of the file
//! that names them: a file's includes are composed first, in the order listed,
//! and the file itself last. A file reached twice (two fragments including the
//! same base) is read and composed once, where it is first reached.
//!
//! Merging, each later file over what came before:
//! - scalars (`name`, `version`, `stream`, `suite`, `mirror`, `hostname`,
//!   `kernel.package`, `image.size`, `image.esp-size`) are replaced;
//! - `arch` is replaced as a whole;
//! - lists accumulate (`overlays`, `packages.include`, `packages.exclude`,
//!   `kernel.cmdline`, `units.enable`, `units.disable`, `units.mask`),
//!   duplicates dropped, keeping the first position;
//! - `[per-arch.<arch>]` tables merge like the top-level `[packages]` and
//!   `[kernel]`, each architecture on its own;
//! - `users` are merged by name: an entry whose name is already present
//!   replaces that entry, in its place; a new name is appended.
//!
//! The composed manifest has `include` set to `None`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use sha2::{Digest, Sha256};

use super::raw::{self, RawKernel, RawManifest, RawPackages, RawUser};
use super::SourceFile;

/// The composed manifest and every file it was composed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composed {
    pub raw: RawManifest,
    /// Each file read, once, in composition order (includes first, the
    /// top-level file last), with the sha256 of its bytes.
    pub files: Vec<SourceFile>,
    /// The bytes of each file in `files`, in the same order, as parsed: the
    /// manifest's sha256 is taken over these, so no file is read twice.
    pub bytes: Vec<Vec<u8>>,
    /// For each overlay, the file that first named it: an overlay is looked
    /// up under the `rootfs-overlays` nearest to that file, so a manifest
    /// kept elsewhere can include hull's base.toml and its overlays.
    pub overlay_origins: BTreeMap<String, PathBuf>,
}

/// Reads the manifest at `path` and everything it includes, and merges them.
pub fn compose(path: &Path) -> Result<Composed> {
    let mut state = State {
        raw: RawManifest::default(),
        files: Vec::new(),
        bytes: Vec::new(),
        overlay_origins: BTreeMap::new(),
        done: HashSet::new(),
        stack: Vec::new(),
    };
    let canonical =
        std::fs::canonicalize(path).map_err(|e| anyhow!("{}: cannot read: {e}", path.display()))?;
    state.visit(path, canonical)?;
    Ok(Composed {
        raw: state.raw,
        files: state.files,
        bytes: state.bytes,
        overlay_origins: state.overlay_origins,
    })
}

struct State {
    raw: RawManifest,
    files: Vec<SourceFile>,
    bytes: Vec<Vec<u8>>,
    overlay_origins: BTreeMap<String, PathBuf>,
    /// Canonical paths of files already composed.
    done: HashSet<PathBuf>,
    /// The include chain being resolved: (canonical path, path as reached).
    stack: Vec<(PathBuf, PathBuf)>,
}

impl State {
    fn visit(&mut self, path: &Path, canonical: PathBuf) -> Result<()> {
        if self.done.contains(&canonical) {
            return Ok(());
        }
        let (mut raw, bytes) = raw::read(path)?;
        check_users_once(path, &raw)?;
        let includes = raw.include.take().unwrap_or_default();
        self.stack.push((canonical.clone(), path.to_path_buf()));
        let dir = path.parent().unwrap_or(Path::new(""));
        for (i, include) in includes.iter().enumerate() {
            let at = format!("{}: include[{i}]", path.display());
            if include.is_empty() {
                bail!("{at}: empty path");
            }
            let target = dir.join(include);
            let target_canonical = std::fs::canonicalize(&target)
                .map_err(|e| anyhow!("{at}: cannot read {}: {e}", target.display()))?;
            if !target_canonical.is_file() {
                bail!("{at}: {} is not a file", target.display());
            }
            if let Some(start) = self.stack.iter().position(|(c, _)| *c == target_canonical) {
                let chain: Vec<String> = self.stack[start..]
                    .iter()
                    .map(|(_, p)| p.display().to_string())
                    .chain([target.display().to_string()])
                    .collect();
                bail!("{at}: include loop: {}", chain.join(" → "));
            }
            self.visit(&target, target_canonical)?;
        }
        self.stack.pop();
        self.done.insert(canonical);
        self.files.push(SourceFile {
            path: path.to_path_buf(),
            sha256: hex::encode(Sha256::digest(&bytes)),
        });
        self.bytes.push(bytes);
        // Key files are named relative to the file that names them.
        if let Some(keys) = raw.update.as_mut().and_then(|u| u.keys.as_mut()) {
            for key in keys.iter_mut() {
                if !key.is_empty() {
                    *key = dir.join(&*key).display().to_string();
                }
            }
        }
        if let Some(c) = raw.containers.as_mut() {
            super::containers::resolve_paths(c, dir);
        }
        for name in raw.overlays.iter().flatten() {
            self.overlay_origins
                .entry(name.clone())
                .or_insert_with(|| path.to_path_buf());
        }
        merge(&mut self.raw, raw);
        Ok(())
    }
}

/// One file declares each user once: merging by name would silently drop
/// the earlier entry's groups and keys. (A later file replacing an entry of
/// an included one is what merging is for.)
fn check_users_once(path: &Path, raw: &RawManifest) -> Result<()> {
    let users = raw.users.as_deref().unwrap_or_default();
    for (j, user) in users.iter().enumerate() {
        let Some(name) = user.name.as_deref() else {
            continue;
        };
        if let Some(i) = users[..j]
            .iter()
            .position(|u| u.name.as_deref() == Some(name))
        {
            bail!(
                "{}: users[{j}].name: {name} is also users[{i}].name in the same file (declare each user once)",
                path.display()
            );
        }
    }
    Ok(())
}

/// Merges `next` over `acc` by the rules in the module documentation.
pub fn merge(acc: &mut RawManifest, next: RawManifest) {
    let RawManifest {
        include: _,
        name,
        version,
        stream,
        suite,
        mirror,
        updates,
        security,
        security_mirror,
        arch,
        hostname,
        overlays,
        packages,
        kernel,
        units,
        users,
        image,
        hardening,
        update,
        health,
        containers,
        per_arch,
    } = next;
    replace(&mut acc.name, name);
    replace(&mut acc.version, version);
    replace(&mut acc.stream, stream);
    replace(&mut acc.suite, suite);
    replace(&mut acc.mirror, mirror);
    replace(&mut acc.updates, updates);
    replace(&mut acc.security, security);
    replace(&mut acc.security_mirror, security_mirror);
    replace(&mut acc.arch, arch);
    replace(&mut acc.hostname, hostname);
    accumulate(&mut acc.overlays, overlays);
    merge_packages(&mut acc.packages, packages);
    merge_kernel(&mut acc.kernel, kernel);
    for (arch, table) in per_arch.into_iter().flatten() {
        let a = acc
            .per_arch
            .get_or_insert_with(Default::default)
            .entry(arch)
            .or_default();
        merge_packages(&mut a.packages, table.packages);
        merge_kernel(&mut a.kernel, table.kernel);
    }
    if let Some(u) = units {
        let a = acc.units.get_or_insert_with(Default::default);
        accumulate(&mut a.enable, u.enable);
        accumulate(&mut a.disable, u.disable);
        accumulate(&mut a.mask, u.mask);
    }
    if let Some(users) = users {
        let a = acc.users.get_or_insert_with(Vec::new);
        for user in users {
            merge_user(a, user);
        }
    }
    if let Some(i) = image {
        let a = acc.image.get_or_insert_with(Default::default);
        replace(&mut a.size, i.size);
        replace(&mut a.esp_size, i.esp_size);
        accumulate(&mut a.formats, i.formats);
    }
    if let Some(h) = hardening {
        super::hardening::merge(acc.hardening.get_or_insert_with(Default::default), h);
    }
    if let Some(u) = update {
        let a = acc.update.get_or_insert_with(Default::default);
        replace(&mut a.url, u.url);
        replace(&mut a.ostree_ref, u.ostree_ref);
        accumulate(&mut a.keys, u.keys);
        replace(&mut a.boot_tries, u.boot_tries);
        replace(&mut a.auto, u.auto);
        replace(&mut a.interval, u.interval);
        replace(&mut a.strategy, u.strategy);
        // The window is one value: a later file's replaces it whole.
        replace(&mut a.window, u.window);
        replace(&mut a.fleet_lock_url, u.fleet_lock_url);
        replace(&mut a.group, u.group);
    }
    if let Some(h) = health {
        let a = acc.health.get_or_insert_with(Default::default);
        accumulate(&mut a.required_units, h.required_units);
    }
    if let Some(c) = containers {
        super::containers::merge(acc.containers.get_or_insert_with(Default::default), c);
    }
}

fn merge_packages(acc: &mut Option<RawPackages>, next: Option<RawPackages>) {
    if let Some(p) = next {
        let a = acc.get_or_insert_with(Default::default);
        accumulate(&mut a.include, p.include);
        accumulate(&mut a.exclude, p.exclude);
    }
}

fn merge_kernel(acc: &mut Option<RawKernel>, next: Option<RawKernel>) {
    if let Some(k) = next {
        let a = acc.get_or_insert_with(Default::default);
        replace(&mut a.package, k.package);
        accumulate(&mut a.cmdline, k.cmdline);
    }
}

pub(super) fn replace<T>(acc: &mut Option<T>, next: Option<T>) {
    if next.is_some() {
        *acc = next;
    }
}

pub(super) fn accumulate(acc: &mut Option<Vec<String>>, next: Option<Vec<String>>) {
    let Some(next) = next else { return };
    let a = acc.get_or_insert_with(Vec::new);
    for item in next {
        if !a.contains(&item) {
            a.push(item);
        }
    }
}

fn merge_user(acc: &mut Vec<RawUser>, user: RawUser) {
    // Entries without a name cannot be matched; validation reports them.
    match user
        .name
        .as_ref()
        .and_then(|n| acc.iter().position(|u| u.name.as_ref() == Some(n)))
    {
        Some(i) => acc[i] = user,
        None => acc.push(user),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&path, text).unwrap();
        path
    }

    fn one_line_err(r: Result<Composed>) -> String {
        let e = r.expect_err("expected an error").to_string();
        assert!(!e.contains('\n'), "error spans lines: {e:?}");
        e
    }

    #[test]
    fn per_arch_tables_merge_per_architecture() {
        let t = tempfile::tempdir().unwrap();
        write(
            t.path(),
            "base.toml",
            r#"
[per-arch.aarch64.packages]
include = ["a", "b"]
[per-arch.aarch64.kernel]
package = "k-arm"
cmdline = ["x"]
"#,
        );
        let top = write(
            t.path(),
            "top.toml",
            r#"
include = ["base.toml"]
[per-arch.aarch64.packages]
include = ["b", "c"]
exclude = ["d"]
[per-arch.aarch64.kernel]
package = "k-arm2"
cmdline = ["y", "x"]
[per-arch.x86_64.kernel]
cmdline = ["z"]
"#,
        );
        let per = compose(&top).unwrap().raw.per_arch.unwrap();
        let arm = &per["aarch64"];
        let p = arm.packages.as_ref().unwrap();
        assert_eq!(p.include.as_ref().unwrap(), &["a", "b", "c"]);
        assert_eq!(p.exclude.as_ref().unwrap(), &["d"]);
        let k = arm.kernel.as_ref().unwrap();
        assert_eq!(k.package.as_deref(), Some("k-arm2"));
        assert_eq!(k.cmdline.as_ref().unwrap(), &["x", "y"]);
        let x = per["x86_64"].kernel.as_ref().unwrap();
        assert_eq!(x.package, None);
        assert_eq!(x.cmdline.as_ref().unwrap(), &["z"]);
    }

    #[test]
    fn later_files_override_scalars_and_accumulate_lists() {
        let t = tempfile::tempdir().unwrap();
        write(
            t.path(),
            "base.toml",
            r#"
name = "base"
suite = "bookworm"
arch = ["x86_64", "aarch64"]
overlays = ["a", "b"]
[packages]
include = ["systemd", "udev"]
exclude = ["nano"]
[kernel]
package = "linux-image-amd64"
cmdline = ["quiet"]
[units]
enable = ["a.service"]
mask = ["m.service"]
[image]
size = "4G"
esp-size = "256M"
"#,
        );
        let top = write(
            t.path(),
            "top.toml",
            r#"
include = ["base.toml"]
name = "top"
arch = ["aarch64"]
overlays = ["b", "c"]
[packages]
include = ["podman", "udev"]
[kernel]
cmdline = ["console=ttyS0", "quiet"]
[units]
enable = ["b.service"]
disable = ["d.service"]
[image]
size = "8G"
"#,
        );
        let c = compose(&top).unwrap();
        let r = &c.raw;
        assert_eq!(r.include, None);
        assert_eq!(r.name.as_deref(), Some("top"));
        assert_eq!(r.suite.as_deref(), Some("bookworm"));
        assert_eq!(r.arch.as_deref(), Some(&["aarch64".to_owned()][..]));
        assert_eq!(r.overlays.as_ref().unwrap(), &["a", "b", "c"]);
        let p = r.packages.as_ref().unwrap();
        assert_eq!(p.include.as_ref().unwrap(), &["systemd", "udev", "podman"]);
        assert_eq!(p.exclude.as_ref().unwrap(), &["nano"]);
        let k = r.kernel.as_ref().unwrap();
        assert_eq!(k.package.as_deref(), Some("linux-image-amd64"));
        assert_eq!(k.cmdline.as_ref().unwrap(), &["quiet", "console=ttyS0"]);
        let u = r.units.as_ref().unwrap();
        assert_eq!(u.enable.as_ref().unwrap(), &["a.service", "b.service"]);
        assert_eq!(u.disable.as_ref().unwrap(), &["d.service"]);
        assert_eq!(u.mask.as_ref().unwrap(), &["m.service"]);
        let i = r.image.as_ref().unwrap();
        assert_eq!(i.size, Some(raw::RawSize::Text("8G".into())));
        assert_eq!(i.esp_size, Some(raw::RawSize::Text("256M".into())));

        assert_eq!(c.files.len(), 2);
        assert_eq!(c.files[0].path, t.path().join("base.toml"));
        assert_eq!(c.files[1].path, top);
        let bytes = fs::read(&top).unwrap();
        assert_eq!(c.files[1].sha256, hex::encode(Sha256::digest(&bytes)));
    }

    #[test]
    fn users_merge_by_name() {
        let t = tempfile::tempdir().unwrap();
        write(
            t.path(),
            "base.toml",
            "[[users]]\nname = \"a\"\ngroups = [\"adm\"]\n[[users]]\nname = \"b\"\n",
        );
        let top = write(
            t.path(),
            "top.toml",
            "include = [\"base.toml\"]\n[[users]]\nname = \"c\"\n[[users]]\nname = \"a\"\ngroups = [\"video\"]\n",
        );
        let users = compose(&top).unwrap().raw.users.unwrap();
        let names: Vec<_> = users.iter().map(|u| u.name.as_deref().unwrap()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(users[0].groups.as_ref().unwrap(), &["video"]);
    }

    #[test]
    fn nested_includes_are_depth_first_and_relative() {
        let t = tempfile::tempdir().unwrap();
        write(
            t.path(),
            "common/base.toml",
            "name = \"base\"\nversion = \"1\"\n[packages]\ninclude = [\"a0\"]\n",
        );
        write(
            t.path(),
            "common/mid.toml",
            "include = [\"base.toml\"]\nname = \"mid\"\n[packages]\ninclude = [\"b0\"]\n",
        );
        write(
            t.path(),
            "other.toml",
            "version = \"2\"\n[packages]\ninclude = [\"c0\"]\n",
        );
        let top = write(
            t.path(),
            "top.toml",
            "include = [\"common/mid.toml\", \"other.toml\"]\n[packages]\ninclude = [\"d0\"]\n",
        );
        let c = compose(&top).unwrap();
        assert_eq!(c.raw.name.as_deref(), Some("mid"));
        assert_eq!(c.raw.version.as_deref(), Some("2"));
        assert_eq!(
            c.raw.packages.unwrap().include.unwrap(),
            ["a0", "b0", "c0", "d0"]
        );
        let files: Vec<_> = c
            .files
            .iter()
            .map(|f| f.path.strip_prefix(t.path()).unwrap().to_owned())
            .collect();
        assert_eq!(
            files,
            [
                PathBuf::from("common/base.toml"),
                PathBuf::from("common/mid.toml"),
                PathBuf::from("other.toml"),
                PathBuf::from("top.toml")
            ]
        );
    }

    #[test]
    fn a_file_included_twice_is_read_once() {
        let t = tempfile::tempdir().unwrap();
        write(t.path(), "base.toml", "[packages]\ninclude = [\"a0\"]\n");
        write(t.path(), "x.toml", "include = [\"base.toml\"]\n");
        write(t.path(), "y.toml", "include = [\"./base.toml\"]\n");
        let top = write(t.path(), "top.toml", "include = [\"x.toml\", \"y.toml\"]\n");
        let c = compose(&top).unwrap();
        assert_eq!(c.files.len(), 4);
        assert_eq!(c.files[0].path, t.path().join("base.toml"));
    }

    #[test]
    fn missing_include_names_file_key_and_path() {
        let t = tempfile::tempdir().unwrap();
        let top = write(t.path(), "top.toml", "include = [\"nope.toml\"]\n");
        let e = one_line_err(compose(&top));
        assert!(e.contains("top.toml: include[0]: "), "{e}");
        assert!(e.contains("nope.toml"), "{e}");
    }

    #[test]
    fn missing_nested_include_names_the_including_file() {
        let t = tempfile::tempdir().unwrap();
        write(t.path(), "mid.toml", "include = [\"sub/gone.toml\"]\n");
        let top = write(t.path(), "top.toml", "include = [\"mid.toml\"]\n");
        let e = one_line_err(compose(&top));
        assert!(e.contains("mid.toml: include[0]: "), "{e}");
        assert!(e.contains("gone.toml"), "{e}");
    }

    #[test]
    fn including_a_directory_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("sub")).unwrap();
        let top = write(t.path(), "top.toml", "include = [\"x.toml\", \"sub\"]\n");
        write(t.path(), "x.toml", "");
        let e = one_line_err(compose(&top));
        assert!(e.contains("top.toml: include[1]: "), "{e}");
        assert!(e.contains("sub is not a file"), "{e}");
    }

    #[test]
    fn empty_include_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let top = write(t.path(), "top.toml", "include = [\"\"]\n");
        let e = one_line_err(compose(&top));
        assert!(e.contains("top.toml: include[0]: empty path"), "{e}");
    }

    #[test]
    fn include_loop_names_the_cycle() {
        let t = tempfile::tempdir().unwrap();
        let a = write(t.path(), "a.toml", "include = [\"b.toml\"]\n");
        write(t.path(), "b.toml", "include = [\"a.toml\"]\n");
        let e = one_line_err(compose(&a));
        assert!(e.contains("b.toml: include[0]: include loop: "), "{e}");
        let a_s = a.display().to_string();
        let b_s = t.path().join("b.toml").display().to_string();
        assert!(e.contains(&format!("{a_s} → {b_s} → {a_s}")), "{e}");
    }

    #[test]
    fn self_include_is_a_loop() {
        let t = tempfile::tempdir().unwrap();
        let a = write(t.path(), "a.toml", "include = [\"a.toml\"]\n");
        let e = one_line_err(compose(&a));
        assert!(e.contains("include loop"), "{e}");
    }

    #[test]
    fn parse_errors_in_includes_name_the_included_file() {
        let t = tempfile::tempdir().unwrap();
        write(
            t.path(),
            "base.toml",
            "\n[packages]\ninclude = \"systemd\"\n",
        );
        let top = write(t.path(), "top.toml", "include = [\"base.toml\"]\n");
        let e = one_line_err(compose(&top));
        assert!(e.contains("base.toml:3:"), "{e}");
        assert!(e.contains("packages.include: "), "{e}");
    }

    #[test]
    fn missing_top_level_file_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let e = one_line_err(compose(&t.path().join("absent.toml")));
        assert!(e.contains("absent.toml: cannot read"), "{e}");
    }
}
