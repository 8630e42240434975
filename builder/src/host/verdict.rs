//! The decisions `hull update` takes about a fetched, signature-checked
//! commit before anything is pulled: each a pure function of plain facts,
//! so that every rule is a row in a table test.
//!
//! Every check fails closed: a fact that is missing or unreadable refuses
//! the update, never waves it through.

use anyhow::{bail, Result};
use ostree::glib;

use crate::repo::commit::{META_ARCH, META_BOOT_BYTES, META_REF_BINDING};
use crate::repo::sizes::{META_OSTREE_SIZES, META_SIZES_SINCE_PARENT};

/// What the signed commit object says about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitFacts {
    pub checksum: String,
    pub version: Option<String>,
    /// Seconds since the epoch.
    pub timestamp: u64,
    /// `ostree.ref-binding`: the refs the commit may be served under.
    pub ref_binding: Option<Vec<String>>,
    /// `hull.arch`: the architecture it was built for.
    pub arch: Option<String>,
    /// `hull.boot-bytes`: bytes it puts on the ESP.
    pub boot_bytes: Option<u64>,
    /// Whether it carries a size list (`hull.sizes-since-parent`, or
    /// libostree's `ostree.sizes` in commits of an older hull).
    pub has_sizes: bool,
}

impl CommitFacts {
    /// Reads the facts from a commit variant `(a{sv}aya(say)sstayay)`.
    pub fn of(checksum: &str, commit: &glib::Variant) -> CommitFacts {
        let meta = glib::VariantDict::new(Some(&commit.child_value(0)));
        CommitFacts {
            checksum: checksum.to_string(),
            version: meta.lookup::<String>("version").ok().flatten(),
            timestamp: ostree::commit_get_timestamp(commit),
            ref_binding: meta.lookup::<Vec<String>>(META_REF_BINDING).ok().flatten(),
            arch: meta.lookup::<String>(META_ARCH).ok().flatten(),
            // OSTree stores integers in metadata big-endian.
            boot_bytes: meta
                .lookup::<u64>(META_BOOT_BYTES)
                .ok()
                .flatten()
                .map(u64::from_be),
            has_sizes: [META_SIZES_SINCE_PARENT, META_OSTREE_SIZES]
                .iter()
                .any(|k| {
                    meta.lookup_value(k, Some(glib::VariantTy::new("aay").expect("type")))
                        .is_some()
                }),
        }
    }
}

/// Mix-and-match: the commit must be bound to the ref this host follows and
/// built for this host's architecture; a commit signed by the fleet key for
/// another image, stream or architecture is refused.
pub fn check_binding(facts: &CommitFacts, followed: &str, arch: &str) -> Result<()> {
    let c = &facts.checksum;
    match &facts.ref_binding {
        None => bail!(
            "commit {c} names no ref it was built for ({META_REF_BINDING}): refusing it, as it could be any image's"
        ),
        Some(refs) if !refs.iter().any(|r| r == followed) => bail!(
            "commit {c} is bound to {}, not to {followed}, the ref this host follows: refusing it",
            refs.join(", ")
        ),
        Some(_) => {}
    }
    match facts.arch.as_deref() {
        None => bail!("commit {c} names no architecture ({META_ARCH}): refusing it"),
        Some(a) if a != arch => {
            bail!("commit {c} is built for {a}, and this host is {arch}: refusing it")
        }
        Some(_) => Ok(()),
    }
}

/// Rollback attacks: an older commit than the booted one is refused unless
/// the operator asked for it; when the booted commit's time cannot be read,
/// the check fails closed.
pub fn check_downgrade(
    facts: &CommitFacts,
    booted: &str,
    booted_timestamp: Option<u64>,
    allow_downgrade: bool,
) -> Result<()> {
    if allow_downgrade {
        return Ok(());
    }
    let c = &facts.checksum;
    match booted_timestamp {
        None => bail!(
            "the booted commit {booted} cannot be read from the local repository, so {c} cannot be shown to be newer: \
             refusing it (--allow-downgrade to take it anyway)"
        ),
        Some(b) if facts.timestamp < b => bail!(
            "commit {c} is older than the booted commit {booted}: refusing a downgrade (--allow-downgrade to take it anyway)"
        ),
        Some(_) => Ok(()),
    }
}

/// The space facts of the commit must be there: without them a host cannot
/// tell whether the update fits, so it does not try.
pub fn check_size_facts(facts: &CommitFacts) -> Result<u64> {
    let c = &facts.checksum;
    if !facts.has_sizes {
        bail!(
            "commit {c} has no {META_SIZES_SINCE_PARENT}: its size on disk is unknown, refusing it"
        );
    }
    facts.boot_bytes.ok_or_else(|| {
        anyhow::anyhow!(
            "commit {c} has no {META_BOOT_BYTES}: its size on the ESP is unknown, refusing it"
        )
    })
}

/// Bytes needed and available on one file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// What the update writes there.
    pub needed: u64,
    /// `f_bavail × f_frsize`.
    pub free: u64,
    /// What must stay free after it: libostree's own reserve (its
    /// `min-free-space-percent` of the file system, or `min-free-space-size`)
    /// plus hull's margin.
    pub reserve: u64,
}

/// Refuses an update that would not fit, naming the file system.
pub fn check_space(root: &Space, esp: &Space, root_name: &str, esp_name: &str) -> Result<()> {
    for (s, name, what) in [
        (root, root_name, "the new deployment's objects"),
        (esp, esp_name, "the new kernel and initramfs"),
    ] {
        if s.needed.saturating_add(s.reserve) > s.free {
            bail!(
                "not enough space on {name} for {what}: {} MiB needed and {} MiB kept free, {} MiB free; nothing was changed",
                s.needed.div_ceil(1 << 20),
                s.reserve.div_ceil(1 << 20),
                s.free >> 20
            );
        }
    }
    Ok(())
}

/// libostree's reserve on a file system of `total` bytes: `min-free-space-size`
/// (bytes) when the repository sets one, else `min-free-space-percent`
/// (default 3) of the file system.
pub fn ostree_reserve(total: u64, percent: Option<u64>, size: Option<u64>) -> u64 {
    match size {
        Some(s) => s,
        None => total / 100 * percent.unwrap_or(3).min(99),
    }
}

/// Parses libostree's `min-free-space-size` (`500MB`, `1GB`, `100kB`: decimal
/// multiples, as libostree reads them).
pub fn parse_ostree_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..digits].parse().ok()?;
    let mult = match t[digits..].trim() {
        "" | "B" => 1,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> CommitFacts {
        CommitFacts {
            checksum: "c".repeat(64),
            version: Some("2".into()),
            timestamp: 2000,
            ref_binding: Some(vec!["hull/minimal/x86_64/stable".into()]),
            arch: Some("x86_64".into()),
            boot_bytes: Some(40 << 20),
            has_sizes: true,
        }
    }

    /// (binding, arch, refused because of)
    type BindingCase<'a> = (Option<Vec<String>>, Option<&'a str>, Option<&'a str>);

    /// (binding, arch) → refused because of
    #[test]
    fn bindings() {
        let k8s = Some(vec!["hull/k8s-node/x86_64/stable".to_string()]);
        let two = Some(vec![
            "hull/minimal/x86_64/stable".to_string(),
            "hull/minimal/x86_64/testing".to_string(),
        ]);
        let cases: &[BindingCase] = &[
            (facts().ref_binding, Some("x86_64"), None),
            (two, Some("x86_64"), None),
            (
                k8s,
                Some("x86_64"),
                Some("bound to hull/k8s-node/x86_64/stable, not to hull/minimal/x86_64/stable"),
            ),
            (None, Some("x86_64"), Some("names no ref")),
            (
                facts().ref_binding,
                Some("aarch64"),
                Some("built for aarch64, and this host is x86_64"),
            ),
            (facts().ref_binding, None, Some("names no architecture")),
        ];
        for (binding, arch, want) in cases {
            let f = CommitFacts {
                ref_binding: binding.clone(),
                arch: arch.map(String::from),
                ..facts()
            };
            let r = check_binding(&f, "hull/minimal/x86_64/stable", "x86_64");
            match want {
                None => assert!(r.is_ok(), "{binding:?} {arch:?}: {r:?}"),
                Some(w) => {
                    let e = r.unwrap_err().to_string();
                    assert!(e.contains(w) && e.contains(&f.checksum), "{e}");
                }
            }
        }
    }

    /// (new timestamp, booted timestamp, --allow-downgrade) → accepted
    #[test]
    fn downgrades() {
        let cases = [
            (2000, Some(1000), false, true),
            (2000, Some(2000), false, true),
            (1000, Some(2000), false, false),
            (1000, Some(2000), true, true),
            // The booted commit cannot be read: fail closed.
            (2000, None, false, false),
            (2000, None, true, true),
        ];
        for (new, booted, allow, ok) in cases {
            let f = CommitFacts {
                timestamp: new,
                ..facts()
            };
            let r = check_downgrade(&f, "b", booted, allow);
            assert_eq!(r.is_ok(), ok, "{new} {booted:?} {allow}: {r:?}");
        }
        let e = check_downgrade(&facts(), "b", None, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot be read"), "{e}");
    }

    #[test]
    fn size_facts_fail_closed() {
        assert_eq!(check_size_facts(&facts()).unwrap(), 40 << 20);
        let e = check_size_facts(&CommitFacts {
            has_sizes: false,
            ..facts()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("no hull.sizes-since-parent"), "{e}");
        let e = check_size_facts(&CommitFacts {
            boot_bytes: None,
            ..facts()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("no hull.boot-bytes"), "{e}");
    }

    const MIB: u64 = 1 << 20;

    /// (needed root, free root, reserve root, needed esp, free esp, refused on)
    type SpaceCase<'a> = (u64, u64, u64, u64, u64, Option<&'a str>);

    /// (needed root, free root, reserve root, needed esp, free esp) → refused on
    #[test]
    fn space_checks() {
        let cases: &[SpaceCase] = &[
            (100 * MIB, 1000 * MIB, 64 * MIB, 40 * MIB, 200 * MIB, None),
            (
                100 * MIB,
                150 * MIB,
                64 * MIB,
                40 * MIB,
                200 * MIB,
                Some("on /sysroot"),
            ),
            // Fits hull's margin alone, not with libostree's 3 % of a 4 GiB root.
            (
                100 * MIB,
                200 * MIB,
                64 * MIB + ostree_reserve(4096 * MIB, None, None),
                0,
                MIB * 2,
                Some("on /sysroot"),
            ),
            (
                100 * MIB,
                1000 * MIB,
                64 * MIB,
                40 * MIB,
                40 * MIB,
                Some("on /efi"),
            ),
            (0, 64 * MIB, 64 * MIB, 0, MIB, None),
        ];
        for &(nr, fr, rr, ne, fe, want) in cases {
            let r = check_space(
                &Space {
                    needed: nr,
                    free: fr,
                    reserve: rr,
                },
                &Space {
                    needed: ne,
                    free: fe,
                    reserve: MIB,
                },
                "/sysroot",
                "/efi",
            );
            match want {
                None => assert!(r.is_ok(), "{nr} {fr} {ne} {fe}: {r:?}"),
                Some(w) => {
                    let e = r.unwrap_err().to_string();
                    assert!(e.contains(w) && e.contains("nothing was changed"), "{e}");
                }
            }
        }
    }

    #[test]
    fn ostree_reserves() {
        assert_eq!(ostree_reserve(100_000, None, None), 3_000);
        assert_eq!(ostree_reserve(100_000, Some(10), None), 10_000);
        assert_eq!(ostree_reserve(100_000, Some(10), Some(5)), 5);
        assert_eq!(parse_ostree_size("500MB"), Some(500_000_000));
        assert_eq!(parse_ostree_size("1GB"), Some(1_000_000_000));
        assert_eq!(parse_ostree_size("12"), Some(12));
        assert_eq!(parse_ostree_size("lots"), None);
    }
}
