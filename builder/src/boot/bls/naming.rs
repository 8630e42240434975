//! Entry file names on the ESP (`hull-<prio>-<csum>-<serial>[+left[-done]].conf`,
//! with systemd's boot counter) and which files a new plan keeps, adds and
//! removes ([`name_entries`]).

use super::entry::BlsEntry;
use super::plan::{DeploymentKey, PlannedEntry};
/// The sort key of every hull entry: with it, systemd-boot orders entries by
/// their `version` line, highest first.
const SORT_KEY: &str = "hull";

/// An entry file name on the ESP: `hull-<prio>-<csum>-<serial>[+left[-done]].conf`.
/// `prio` orders entries (highest boots by default); the `+left-done`
/// suffix is systemd-boot's boot counter, which systemd-boot and
/// systemd-bless-boot rename.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryName {
    pub prio: u64,
    pub csum: String,
    pub serial: u32,
    pub tries_left: Option<u32>,
    pub tries_done: Option<u32>,
}

impl EntryName {
    pub fn parse(file: &str) -> Option<EntryName> {
        let stem = file.strip_suffix(".conf")?;
        let (id, counter) = match stem.rsplit_once('+') {
            Some((id, c)) => (id, Some(c)),
            None => (stem, None),
        };
        let (tries_left, tries_done) = match counter {
            None => (None, None),
            Some(c) => match c.split_once('-') {
                Some((l, d)) => (Some(l.parse().ok()?), Some(d.parse().ok()?)),
                None => (Some(c.parse().ok()?), None),
            },
        };
        let rest = id.strip_prefix("hull-")?;
        let (prio, rest) = rest.split_once('-')?;
        let (csum, serial) = rest.split_once('-')?;
        if csum.len() != 64 || !csum.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(EntryName {
            prio: prio.parse().ok()?,
            csum: csum.to_string(),
            serial: serial.parse().ok()?,
            tries_left,
            tries_done,
        })
    }

    pub fn file_name(&self) -> String {
        let counter = match (self.tries_left, self.tries_done) {
            (Some(l), Some(d)) => format!("+{l}-{d}"),
            (Some(l), None) => format!("+{l}"),
            _ => String::new(),
        };
        format!(
            "hull-{}-{}-{}{counter}.conf",
            self.prio, self.csum, self.serial
        )
    }

    /// True when systemd-boot will not pick this entry by default any more.
    pub fn exhausted(&self) -> bool {
        self.tries_left == Some(0)
    }

    /// True while the entry is on trial (has a counter).
    pub fn on_trial(&self) -> bool {
        self.tries_left.is_some()
    }

    pub fn is_for(&self, key: &DeploymentKey) -> bool {
        self.csum == key.csum && self.serial == key.serial
    }
}

/// One entry file to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryFile {
    pub name: String,
    pub text: String,
}

/// The entry files to add and remove to turn `existing` (the names in the
/// ESP's entries directory) into `planned`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntryChanges {
    /// Every planned entry, default first, with its file name and text.
    pub all: Vec<EntryFile>,
    /// The files of `all` not on the ESP yet.
    pub write: Vec<EntryFile>,
    /// Files to delete once `write` is on disk.
    pub remove: Vec<String>,
}

/// An entry file already on the ESP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingEntry {
    pub name: String,
    pub text: String,
}

/// The text of an entry file: the planned entry with hull's sort key and
/// its priority as the version.
fn entry_text(p: &PlannedEntry, prio: u64) -> String {
    let mut fields = p.entry.fields.clone();
    let at = fields
        .iter()
        .position(|(k, _)| k == "title")
        .map_or(0, |i| i + 1);
    fields.insert(at, ("sort-key".into(), SORT_KEY.into()));
    fields.insert(at + 1, ("version".into(), prio.to_string()));
    BlsEntry { fields }.render()
}

/// Names the planned entries so that systemd-boot sorts them in plan order.
/// An existing entry file is kept (and with it its boot counter) when its
/// text is still right and its place in the order allows; otherwise the
/// entry gets a new file, with a priority above every existing one and the
/// old file's counter, and the old file is removed once the new one is
/// written. No file is ever rewritten in place, so a power cut leaves the
/// old file or the new one, whole. `new_tries` gives a deployment that has
/// no entry yet a boot counter.
pub fn name_entries(
    planned: &[PlannedEntry],
    existing: &[ExistingEntry],
    new_tries: Option<(&DeploymentKey, u32)>,
) -> EntryChanges {
    let parsed: Vec<(&ExistingEntry, EntryName)> = existing
        .iter()
        .filter_map(|e| Some((e, EntryName::parse(&e.name)?)))
        .collect();
    let mut max_prio = parsed.iter().map(|(_, e)| e.prio).max().unwrap_or(0);
    let mut files: Vec<EntryFile> = Vec::with_capacity(planned.len());
    // From the last (lowest) to the default: each must sort above the one after it.
    let mut below: Option<u64> = None;
    for p in planned.iter().rev() {
        let current = parsed
            .iter()
            .filter(|(_, e)| e.is_for(&p.key))
            .max_by_key(|(_, e)| e.prio);
        let keep = current.filter(|(file, e)| {
            below.map_or(true, |b| e.prio > b) && file.text == entry_text(p, e.prio)
        });
        let (name, text) = match keep {
            Some((file, e)) => (e.clone(), file.text.clone()),
            None => {
                max_prio = max_prio.max(below.unwrap_or(0)) + 1;
                let (tries_left, tries_done) = match (current, new_tries) {
                    (Some((_, e)), _) => (e.tries_left, e.tries_done),
                    (None, Some((k, n))) if *k == p.key => (Some(n), None),
                    (None, _) => (None, None),
                };
                let name = EntryName {
                    prio: max_prio,
                    csum: p.key.csum.clone(),
                    serial: p.key.serial,
                    tries_left,
                    tries_done,
                };
                let text = entry_text(p, max_prio);
                (name, text)
            }
        };
        below = Some(name.prio);
        files.push(EntryFile {
            name: name.file_name(),
            text,
        });
    }
    files.reverse();
    let mut changes = EntryChanges::default();
    for file in files {
        if !existing.iter().any(|e| e.name == file.name) {
            changes.write.push(file.clone());
        }
        changes.all.push(file);
    }
    let keep: std::collections::BTreeSet<&str> =
        changes.all.iter().map(|e| e.name.as_str()).collect();
    changes.remove = existing
        .iter()
        .map(|e| e.name.clone())
        .filter(|n| n.ends_with(".conf") && !keep.contains(n.as_str()))
        .collect();
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSUM_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const CSUM_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    use super::super::test_key as key;
    #[test]
    fn entry_names_round_trip() {
        let cases = [
            (format!("hull-3-{CSUM_A}-0.conf"), Some((3, None, None))),
            (
                format!("hull-12-{CSUM_A}-1+3.conf"),
                Some((12, Some(3), None)),
            ),
            (
                format!("hull-2-{CSUM_A}-0+0-3.conf"),
                Some((2, Some(0), Some(3))),
            ),
            (format!("hull-2-{CSUM_A}-0+x.conf"), None),
            ("hull-2-abc-0.conf".to_string(), None),
            ("ostree-1-minimal.conf".to_string(), None),
            (format!("hull-2-{CSUM_A}-0"), None),
        ];
        for (name, want) in cases {
            let got = EntryName::parse(&name);
            assert_eq!(
                got.as_ref().map(|e| (e.prio, e.tries_left, e.tries_done)),
                want,
                "{name}"
            );
            if let Some(e) = got {
                assert_eq!(e.file_name(), name);
            }
        }
        assert!(EntryName::parse(&format!("hull-2-{CSUM_A}-0+0-3.conf"))
            .unwrap()
            .exhausted());
    }

    fn planned(keys: &[DeploymentKey]) -> Vec<PlannedEntry> {
        keys.iter()
            .map(|k| PlannedEntry {
                key: k.clone(),
                entry: BlsEntry::parse(&format!(
                    "title t\noptions ostree=/{}\nlinux /k\n",
                    k.dir()
                ))
                .unwrap(),
            })
            .collect()
    }

    /// Existing files: (name, whether its text is still what the plan
    /// would write). A stale file is one whose bootlink OSTree moved.
    fn on_esp(planned: &[PlannedEntry], files: &[(&str, bool)]) -> Vec<ExistingEntry> {
        files
            .iter()
            .map(|(name, current)| {
                let parsed = EntryName::parse(name);
                let plan = parsed
                    .as_ref()
                    .and_then(|e| planned.iter().find(|p| e.is_for(&p.key)));
                let text = match (parsed, plan) {
                    (Some(e), Some(p)) if *current => entry_text(p, e.prio),
                    _ => "title stale\noptions ostree=/ostree/boot.0/minimal/abc/0\n".into(),
                };
                ExistingEntry {
                    name: name.to_string(),
                    text,
                }
            })
            .collect()
    }

    /// Plan order, files on the ESP, new tries → names of all, written, removed.
    #[test]
    fn naming_keeps_files_and_counters_and_orders_by_priority() {
        let a = key(CSUM_A, 0);
        let b = key(CSUM_B, 0);
        let a1 = format!("hull-1-{CSUM_A}-0.conf");
        let b2 = |c: &str| format!("hull-2-{CSUM_B}-0{c}.conf");
        let a3 = format!("hull-3-{CSUM_A}-0.conf");
        type Case<'a> = (
            &'a str,
            Vec<DeploymentKey>,
            Vec<(String, bool)>,
            Option<(&'a DeploymentKey, u32)>,
            Vec<String>,
            Vec<String>,
            Vec<String>,
        );
        let cases: Vec<Case> = vec![
            (
                "first image",
                vec![a.clone()],
                vec![],
                None,
                vec![a1.clone()],
                vec![a1.clone()],
                vec![],
            ),
            (
                "update: B on top with 3 tries, A untouched",
                vec![b.clone(), a.clone()],
                vec![(a1.clone(), true)],
                Some((&b, 3)),
                vec![b2("+3"), a1.clone()],
                vec![b2("+3")],
                vec![],
            ),
            (
                "update that moved A's bootlink: A gets a new file, B goes above it",
                vec![b.clone(), a.clone()],
                vec![(a1.clone(), false)],
                Some((&b, 3)),
                vec![
                    format!("hull-3-{CSUM_B}-0+3.conf"),
                    format!("hull-2-{CSUM_A}-0.conf"),
                ],
                vec![
                    format!("hull-3-{CSUM_B}-0+3.conf"),
                    format!("hull-2-{CSUM_A}-0.conf"),
                ],
                vec![a1.clone()],
            ),
            (
                "B being tried keeps its file and counter",
                vec![b.clone(), a.clone()],
                vec![(a1.clone(), true), (b2("+1-2"), true)],
                Some((&b, 3)),
                vec![b2("+1-2"), a1.clone()],
                vec![],
                vec![],
            ),
            (
                "rollback: A moves above B with a new file; B keeps its counter",
                vec![a.clone(), b.clone()],
                vec![(a1.clone(), true), (b2("+0-3"), true)],
                None,
                vec![a3.clone(), b2("+0-3")],
                vec![a3.clone()],
                vec![a1.clone()],
            ),
            (
                "a stale entry with a counter is replaced, the counter carried over",
                vec![a.clone(), b.clone()],
                vec![(a3.clone(), true), (b2("+0-3"), false)],
                None,
                vec![
                    format!("hull-5-{CSUM_A}-0.conf"),
                    format!("hull-4-{CSUM_B}-0+0-3.conf"),
                ],
                vec![
                    format!("hull-5-{CSUM_A}-0.conf"),
                    format!("hull-4-{CSUM_B}-0+0-3.conf"),
                ],
                vec![a3.clone(), b2("+0-3")],
            ),
            (
                "prune: A gone, stale files gone",
                vec![b.clone()],
                vec![
                    (a1.clone(), true),
                    (b2(""), true),
                    ("ostree-1-minimal.conf".into(), false),
                    ("notes.txt".into(), false),
                ],
                None,
                vec![b2("")],
                vec![],
                vec![a1.clone(), "ostree-1-minimal.conf".into()],
            ),
        ];
        for (what, order, files, tries, all, write, remove) in cases {
            let plan = planned(&order);
            let files: Vec<(&str, bool)> = files.iter().map(|(n, c)| (n.as_str(), *c)).collect();
            let c = name_entries(&plan, &on_esp(&plan, &files), tries);
            let names = |v: &[EntryFile]| v.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
            assert_eq!(names(&c.all), all, "{what}: all");
            assert_eq!(names(&c.write), write, "{what}: write");
            assert_eq!(c.remove, remove, "{what}: remove");
            for e in &c.all {
                let prio = EntryName::parse(&e.name).unwrap().prio;
                assert!(
                    e.text
                        .contains(&format!("\nsort-key hull\nversion {prio}\n")),
                    "{what}: {}",
                    e.text
                );
            }
        }
    }
}
