//! Packages and kernel per architecture: the common lists merged with each
//! `[per-arch.<arch>]` table.

#[allow(unused_imports)]
use super::*;

/// The top-level `[packages]` and `[kernel]` with each architecture's
/// `[per-arch.<arch>]` applied: its lists appended (duplicates dropped), its
/// `kernel.package` replacing the top-level one. Every architecture gets a
/// target, listed in `arch` or not, so `hull build --arch` can build any.
pub(super) fn targets_of(
    cx: &Cx,
    packages: RawPackages,
    kernel: RawKernel,
    per_arch: BTreeMap<String, RawPerArch>,
) -> Result<BTreeMap<Arch, Target>> {
    let mut tables = BTreeMap::new();
    for (name, table) in per_arch {
        let arch = arch_named(&name).map_err(|m| cx.err(&format!("per-arch.{name}"), m))?;
        tables.insert(arch, table);
    }
    let include = packages.include.unwrap_or_default();
    let exclude = packages.exclude.unwrap_or_default();
    let cmdline = kernel.cmdline.unwrap_or_default();
    let common_include = items(cx, "packages.include", &include, check_package)?;
    let common_exclude = items(cx, "packages.exclude", &exclude, check_package)?;
    let common_cmdline = items(cx, "kernel.cmdline", &cmdline, check_karg)?;
    let mut out = BTreeMap::new();
    for arch in Arch::ALL {
        let table = tables.remove(&arch).unwrap_or_default();
        let p = table.packages.unwrap_or_default();
        let k = table.kernel.unwrap_or_default();
        let at = format!("per-arch.{arch}");
        let (arch_include, arch_exclude, arch_cmdline) = (
            p.include.unwrap_or_default(),
            p.exclude.unwrap_or_default(),
            k.cmdline.unwrap_or_default(),
        );
        let include = merged(
            &common_include,
            items(
                cx,
                &format!("{at}.packages.include"),
                &arch_include,
                check_package,
            )?,
        );
        let exclude = merged(
            &common_exclude,
            items(
                cx,
                &format!("{at}.packages.exclude"),
                &arch_exclude,
                check_package,
            )?,
        );
        let cmdline = merged(
            &common_cmdline,
            items(
                cx,
                &format!("{at}.kernel.cmdline"),
                &arch_cmdline,
                check_karg,
            )?,
        );
        let included: HashSet<&str> = include.iter().map(|i| i.value).collect();
        if let Some(e) = exclude.iter().find(|e| included.contains(e.value)) {
            let with = include.iter().find(|i| i.value == e.value).expect("found");
            return Err(cx.err(
                &e.key,
                format!("{} is also in {}", e.value, strip_index(&with.key)),
            ));
        }
        let (package_key, package) = match (k.package, &kernel.package) {
            (Some(p), _) => (format!("{at}.kernel.package"), p),
            (None, Some(p)) => ("kernel.package".to_owned(), p.clone()),
            (None, None) => ("kernel.package".to_owned(), default_kernel(arch).to_owned()),
        };
        check_package(&package).map_err(|m| cx.err(&package_key, m))?;
        if let Some(e) = exclude.iter().find(|e| e.value == package) {
            return Err(cx.err(
                &package_key,
                format!("{package} is also in {}", strip_index(&e.key)),
            ));
        }
        let values = |list: &[Item]| list.iter().map(|i| i.value.to_owned()).collect();
        out.insert(
            arch,
            Target {
                packages: Packages {
                    include: values(&include),
                    exclude: values(&exclude),
                },
                kernel: Kernel {
                    package,
                    cmdline: values(&cmdline),
                    cmdline_key: if arch_cmdline.is_empty() {
                        "kernel.cmdline".to_owned()
                    } else {
                        format!("{at}.kernel.cmdline")
                    },
                },
            },
        );
    }
    Ok(out)
}

/// `common` then the items of `extra` not already in it.
pub(super) fn merged<'a>(common: &[Item<'a>], extra: Vec<Item<'a>>) -> Vec<Item<'a>> {
    let mut out: Vec<Item<'a>> = common
        .iter()
        .map(|i| Item {
            key: i.key.clone(),
            value: i.value,
        })
        .collect();
    for item in extra {
        if !out.iter().any(|o| o.value == item.value) {
            out.push(item);
        }
    }
    out
}

/// `packages.include[3]` → `packages.include`.
pub(super) fn strip_index(key: &str) -> &str {
    key.rsplit_once('[').map_or(key, |(k, _)| k)
}
