//! One Boot Loader Specification entry as text: its keys in file order.
//!
//! Why not libostree's `BootconfigParser` (which hosts use for the booted
//! deployment's `options`): it reads only from a file, answers only `get`
//! of a key it is asked for (no list of keys, so an entry cannot be copied
//! to the ESP key by key in its order), keeps a value's leading blanks,
//! drops indented lines, and accepts an entry with no key at all.

use anyhow::{bail, Result};

/// One Boot Loader Specification entry, keys in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlsEntry {
    pub fields: Vec<(String, String)>,
}

impl BlsEntry {
    /// Parses an entry's text: one `key value` per line (split at the first
    /// blank, the value trimmed), blank lines and `#` comments skipped.
    /// Errors when no key is left.
    pub fn parse(text: &str) -> Result<BlsEntry> {
        let mut fields = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            fields.push((k.to_string(), v.trim().to_string()));
        }
        if fields.is_empty() {
            bail!("empty boot entry");
        }
        Ok(BlsEntry { fields })
    }

    /// The first value of `key`, if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a key that may repeat (`initrd`).
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The entry's text: `key value` lines in order, each ending in `\n`.
    pub fn render(&self) -> String {
        self.fields
            .iter()
            .map(|(k, v)| format!("{k} {v}\n"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTRY: &str = "title Debian GNU/Linux 13 (trixie) 1.0.0 (ostree:0)\nversion 1\n\
options root=LABEL=hull-root rw console=ttyS0 ostree=/ostree/boot.1/minimal/abc/0\n\
linux /ostree/minimal-abc/vmlinuz-6.12\ninitrd /ostree/minimal-abc/initramfs-6.12.img\n";

    #[test]
    fn entry_roundtrip() {
        let e = BlsEntry::parse(ENTRY).unwrap();
        assert_eq!(e.get("version"), Some("1"));
        assert_eq!(e.get("linux"), Some("/ostree/minimal-abc/vmlinuz-6.12"));
        assert!(e
            .get("options")
            .unwrap()
            .contains("ostree=/ostree/boot.1/minimal/abc/0"));
        assert_eq!(BlsEntry::parse(&e.render()).unwrap(), e);
        assert!(BlsEntry::parse("\n# only a comment\n").is_err());
    }
}
