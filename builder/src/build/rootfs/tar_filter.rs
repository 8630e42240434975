//! A native stand-in for mmdebstrap's `mmtarfilter`: a tar stream on stdin
//! written to stdout without the members dpkg's `--path-exclude` and
//! `--path-include` rules leave out.
//!
//! mmdebstrap extracts the essential packages itself (`dpkg-deb
//! --fsys-tarfile | mmtarfilter | tar -x`, one pipeline per package) when
//! dpkg path filters are set, as hull sets them (`DPKG_PATH_EXCLUDES`).
//! `mmtarfilter` is a Python script that starts an interpreter and re-encodes
//! every member through `tarfile`: 5 of the 7 s that extracting 45 essential
//! packages took in the minimal image's build (docs/benchmarks.md). The
//! install puts `hull tar-filter` first in mmdebstrap's `PATH` under that
//! name ([`shim`]); it passes each kept member's blocks through byte for
//! byte and drops the others.
//!
//! The rules are dpkg's (dpkg(1), `src/main/filters.c`): every rule is
//! matched against the member's path as `/path` (the archive's `./path`
//! without the dot), the last matching rule decides, and an excluded
//! directory or symlink is still kept when an include rule's pattern, up to
//! its first wildcard and without trailing slashes, is a prefix of its path
//! (so `/usr/share/doc/*/copyright` keeps the directories the copyright files
//! go in). Patterns are fnmatch(3) globs without `FNM_PATHNAME`: `*` matches
//! `/` too. (mmtarfilter means the same, but its re-include check reads the
//! regular expression a glob became and so drops such directories and
//! symlinks; dpkg's own install of the essential packages, right after,
//! lays them down either way. The tree comes out the same: checked file by
//! file on the minimal image, docs/benchmarks.md.)
//!
//! The format: POSIX ustar headers of 512-byte blocks, with GNU long names
//! (`L`, `K`) and pax headers (`x` per member, `g` global) read for the
//! member's full path. Anything else (GNU sparse files, unknown types) is
//! refused with an error naming it: dpkg never writes them, and a member
//! this filter cannot measure must not be passed on wrong.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Bytes per tar block.
const BLOCK: usize = 512;

/// The name mmdebstrap runs the filter by (from `PATH`).
pub const PROGRAM: &str = "mmtarfilter";

/// One dpkg path rule, in the order given.
#[derive(Debug, Clone)]
struct Rule {
    include: bool,
    /// The glob as given (`/usr/share/doc/*`).
    glob: String,
    pattern: glob::Pattern,
}

/// dpkg's path filter: `--path-exclude` and `--path-include` rules in order.
#[derive(Debug, Clone, Default)]
pub struct PathFilter {
    rules: Vec<Rule>,
}

impl PathFilter {
    /// Parses mmtarfilter's arguments as mmdebstrap passes them
    /// (`--path-exclude=GLOB`, `--path-include=GLOB`, in order). Any other
    /// argument is an error naming it: mmtarfilter's other options
    /// (`--transform`, `--idshift`, …) are not implemented here.
    pub fn from_args<S: AsRef<str>>(args: &[S]) -> Result<Self> {
        let mut rules = Vec::new();
        for arg in args {
            let arg = arg.as_ref();
            let (include, glob) = if let Some(g) = arg.strip_prefix("--path-exclude=") {
                (false, g)
            } else if let Some(g) = arg.strip_prefix("--path-include=") {
                (true, g)
            } else {
                bail!(
                    "hull tar-filter: unsupported argument {arg:?} \
                     (only --path-exclude=GLOB and --path-include=GLOB)"
                );
            };
            let pattern = glob::Pattern::new(glob)
                .with_context(|| format!("hull tar-filter: pattern {glob:?}"))?;
            rules.push(Rule {
                include,
                glob: glob.to_owned(),
                pattern,
            });
        }
        Ok(PathFilter { rules })
    }

    /// Whether dpkg leaves out `path` (`/usr/share/doc/x`; `""` is the
    /// root); `dir_or_symlink` for directories and symlinks, which an include
    /// rule below them keeps.
    pub fn skips(&self, path: &str, dir_or_symlink: bool) -> bool {
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: false,
            require_literal_leading_dot: false,
        };
        let mut skip = false;
        for rule in &self.rules {
            if rule.pattern.matches_with(path, options) {
                skip = !rule.include;
            }
        }
        if skip && dir_or_symlink {
            for rule in self.rules.iter().filter(|r| r.include) {
                // Up to the first wildcard, without trailing slashes.
                let fixed = rule
                    .glob
                    .find(['*', '?', '[', '\\'])
                    .map_or(rule.glob.as_str(), |i| &rule.glob[..i])
                    .trim_end_matches('/');
                if path.starts_with(fixed) {
                    return false;
                }
            }
        }
        skip
    }
}

/// Members seen and dropped by [`filter`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub members: u64,
    pub dropped: u64,
}

/// Copies the tar stream `input` to `output` without the members `rules`
/// skip: each kept member's header blocks (long-name and pax ones included)
/// and data pass through unchanged, then the end-of-archive marker (two zero
/// blocks; the input's record padding is read and dropped). Errors name the
/// member and what is wrong with it.
pub fn filter(mut input: impl Read, mut output: impl Write, rules: &PathFilter) -> Result<Counts> {
    let mut counts = Counts::default();
    // The blocks of the member being read: its extension headers, then its own.
    let mut pending: Vec<u8> = Vec::new();
    let mut long_name: Option<Vec<u8>> = None;
    let mut pax_path: Option<Vec<u8>> = None;
    let mut header = [0u8; BLOCK];
    loop {
        if !read_block(&mut input, &mut header)? {
            if !pending.is_empty() {
                bail!("tar stream ends inside a member's headers");
            }
            break;
        }
        if header.iter().all(|&b| b == 0) {
            // End of archive: two zero blocks, in one write. The reader (tar
            // -x) stops there, so the input's padding after it is read, to
            // let the writer finish, and not passed on.
            output.write_all(&[0u8; 2 * BLOCK])?;
            std::io::copy(&mut input, &mut std::io::sink()).context("reading the tar stream")?;
            break;
        }
        check_sum(&header)?;
        let kind = header[156];
        let size = field_number(&header[124..136])
            .with_context(|| format!("tar member {}: size field", lossy(&raw_name(&header))))?;
        match kind {
            b'L' | b'K' | b'x' => {
                let data = read_data(&mut input, size)?;
                match kind {
                    b'L' => long_name = Some(until_nul(&data).to_vec()),
                    b'x' => {
                        if let Some(p) = pax_record(&data, b"path") {
                            pax_path = Some(p);
                        }
                    }
                    _ => {}
                }
                pending.extend_from_slice(&header);
                pending.extend_from_slice(&data);
            }
            b'g' => {
                // A global pax header applies to what follows: always kept.
                let data = read_data(&mut input, size)?;
                output.write_all(&header)?;
                output.write_all(&data)?;
            }
            b'0' | 0 | b'7' | b'1' | b'2' | b'3' | b'4' | b'5' | b'6' => {
                // Each extension header names only the member that follows it.
                let long = long_name.take();
                let name = pax_path
                    .take()
                    .or(long)
                    .unwrap_or_else(|| raw_name(&header));
                // Only regular files carry data (tar(5); Python's tarfile reads it so).
                let data = match kind {
                    b'0' | 0 | b'7' => read_data(&mut input, size)?,
                    _ => Vec::new(),
                };
                let path = dpkg_path(&name)?;
                let dir_or_symlink = matches!(kind, b'5' | b'2');
                counts.members += 1;
                if rules.skips(&path, dir_or_symlink) {
                    counts.dropped += 1;
                } else {
                    output.write_all(&pending)?;
                    output.write_all(&header)?;
                    output.write_all(&data)?;
                }
                pending.clear();
            }
            other => bail!(
                "tar member {}: type {:?} is not supported by hull tar-filter",
                lossy(&raw_name(&header)),
                other as char
            ),
        }
    }
    output.flush()?;
    Ok(counts)
}

/// The path dpkg's rules see for a member named `./usr/bin/x` or `./usr/`:
/// `/usr/bin/x`, `/usr` (`""` for the root). A name not below `.` is an
/// error: dpkg's archives name every member so.
fn dpkg_path(name: &[u8]) -> Result<String> {
    let text = lossy(name);
    let trimmed = text.trim_end_matches('/');
    match trimmed.strip_prefix('.') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => Ok(rest.to_owned()),
        _ => bail!("tar member {text}: not a ./path name as dpkg's archives have"),
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The header's own name: ustar's prefix and name, or the name alone.
fn raw_name(h: &[u8; BLOCK]) -> Vec<u8> {
    let name = until_nul(&h[0..100]);
    // POSIX ustar ("ustar\0") has a prefix field; GNU's ("ustar  \0") does not.
    if &h[257..263] == b"ustar\0" {
        let prefix = until_nul(&h[345..500]);
        if !prefix.is_empty() {
            return [prefix, b"/", name].concat();
        }
    }
    name.to_vec()
}

fn until_nul(b: &[u8]) -> &[u8] {
    b.iter().position(|&c| c == 0).map_or(b, |i| &b[..i])
}

/// Checks a header's checksum ([`header_sum`]), as tar and Python's tarfile do.
fn check_sum(h: &[u8; BLOCK]) -> Result<()> {
    let want = field_number(&h[148..156])
        .with_context(|| format!("tar member {}: checksum field", lossy(&raw_name(h))))?;
    if header_sum(h) != want {
        bail!("tar member {}: bad header checksum", lossy(&raw_name(h)));
    }
    Ok(())
}

/// A header's checksum as tar computes it: the unsigned sum of its bytes,
/// the checksum field's own eight counted as spaces.
pub(crate) fn header_sum(h: &[u8]) -> u64 {
    h.iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum()
}

/// A numeric header field: octal digits (space or NUL ended), or GNU's
/// base-256 when the first byte's high bit is set.
fn field_number(f: &[u8]) -> Result<u64> {
    if f[0] & 0x80 != 0 {
        let mut n: u64 = u64::from(f[0] & 0x7f);
        for &b in &f[1..] {
            n = n
                .checked_mul(256)
                .and_then(|n| n.checked_add(u64::from(b)))
                .context("number too large")?;
        }
        return Ok(n);
    }
    let text = std::str::from_utf8(f).context("not ASCII")?;
    let digits = text.trim_matches(|c: char| c == ' ' || c == '\0');
    if digits.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(digits, 8).with_context(|| format!("{digits:?} is not octal"))
}

/// The value of `key` in pax extended header records (`LEN key=value\n`).
fn pax_record(data: &[u8], key: &[u8]) -> Option<Vec<u8>> {
    let mut rest = data;
    while !rest.is_empty() {
        let space = rest.iter().position(|&c| c == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
        if len <= space || len > rest.len() {
            return None;
        }
        let record = &rest[space + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(eq) = record.iter().position(|&c| c == b'=') {
            if &record[..eq] == key {
                return Some(record[eq + 1..].to_vec());
            }
        }
        rest = &rest[len..];
    }
    None
}

/// Reads one block; `false` at the end of the input before any byte of it.
fn read_block(input: &mut impl Read, block: &mut [u8; BLOCK]) -> Result<bool> {
    let mut got = 0;
    while got < BLOCK {
        match input.read(&mut block[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => bail!("tar stream ends inside a 512-byte block"),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("reading the tar stream"),
        }
    }
    Ok(true)
}

/// Reads `size` bytes of member data with their padding to whole blocks.
fn read_data(input: &mut impl Read, size: u64) -> Result<Vec<u8>> {
    let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
    let mut data = Vec::with_capacity(padded as usize);
    input
        .take(padded)
        .read_to_end(&mut data)
        .context("reading the tar stream")?;
    if data.len() as u64 != padded {
        bail!("tar stream ends inside a member's data");
    }
    Ok(data)
}

/// Writes `dir/mmtarfilter`, a script that runs `hull tar-filter` with the
/// first of `candidates` that does it (checked by filtering a one-member
/// archive with it: a library caller's executable, a test binary for one,
/// does not), and returns `dir`, to put first in mmdebstrap's `PATH`;
/// `None` when none does, and mmdebstrap then runs its own `mmtarfilter`.
/// Errors name the file written.
pub fn shim(dir: &Path, candidates: &[PathBuf]) -> Result<Option<PathBuf>> {
    let Some(exe) = candidates.iter().find(|c| runs_tar_filter(c)) else {
        log::info!(
            "extracting the essential packages with mmdebstrap's own mmtarfilter: \
             none of {} runs `hull tar-filter`",
            candidates
                .iter()
                .map(|c| c.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(None);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(PROGRAM);
    let quoted = exe.display().to_string().replace('\'', r"'\''");
    let script = format!("#!/bin/sh\nexec '{quoted}' tar-filter \"$@\"\n");
    std::fs::write(&path, script).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))?;
    Ok(Some(dir.to_path_buf()))
}

/// The executables an install may run `hull tar-filter` with, in order: the
/// one running (hull's CLI; a library caller's is checked and passed over),
/// then the build's own `agent` (path, architecture), if it has one, when it
/// is for this machine's architecture (a hull built for the images is the
/// same program).
pub fn candidates(agent: Option<(&Path, crate::manifest::Arch)>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::env::current_exe().into_iter().collect();
    if let Some((agent, arch)) = agent {
        if crate::build::binfmt::host_arch() == Some(arch) && !out.iter().any(|e| e == agent) {
            out.push(agent.to_path_buf());
        }
    }
    out
}

/// A header block for `name` (a directory when `dir`, else an empty
/// regular file), ustar format, its checksum set.
pub(crate) fn header(name: &str, dir: bool) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(if dir { b"0000755\0" } else { b"0000644\0" });
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(b"00000000000\0");
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = if dir { b'5' } else { b'0' };
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    let sum = header_sum(&h);
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// Whether `exe tar-filter` filters as [`filter`] does: a two-member archive
/// through it keeps `./` and drops `./x`.
pub fn runs_tar_filter(exe: &Path) -> bool {
    use std::process::{Command, Stdio};
    let input = [
        header("./", true),
        header("./x", false),
        [0; BLOCK],
        [0; BLOCK],
    ]
    .concat();
    let want = [&header("./", true)[..], &[0; 2 * BLOCK][..]].concat();
    let Ok(mut child) = Command::new(exe)
        .args(["tar-filter", "--path-exclude=/x"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    // 2 KiB fits a pipe's buffer: written before the output is read.
    let fed = child
        .stdin
        .take()
        .is_some_and(|mut stdin| stdin.write_all(&input).is_ok());
    match child.wait_with_output() {
        Ok(out) => fed && out.status.success() && out.stdout == want,
        Err(_) => false,
    }
}

/// `hull tar-filter ARGS`: [`filter`] from stdin to stdout.
pub fn run_cli(args: &[String]) -> Result<()> {
    let rules = PathFilter::from_args(args)?;
    let stdin = std::io::stdin().lock();
    let stdout = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    filter(
        std::io::BufReader::with_capacity(1 << 20, stdin),
        stdout,
        &rules,
    )?;
    Ok(())
}

#[cfg(test)]
#[path = "tar_filter_tests.rs"]
mod tests;
