//! The update agent's settings on a host: the image's
//! /usr/lib/hull/update.toml (written by `hull build` from the manifest's
//! `[update]`), then the node's optional /etc/hull/update.toml on top (the
//! provisioning step may set the strategy and group there).
//!
//! Both files take the agent keys of `[update]`: `auto`, `strategy`,
//! `[window]` (`days`, `start`, `length`), `fleet-lock-url`, `group`; the
//! image's file also `interval` (the timer's period is fixed in the image:
//! the node file refuses it rather than ignore it).

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::manifest::raw::RawWindow;
use crate::manifest::strategy::{
    check_group, Strategy, StrategyKind, Weekday, Window, DEFAULT_GROUP,
};

/// The image's settings, in the booted tree.
pub const IMAGE_FILE: &str = "/usr/lib/hull/update.toml";
/// The node's override.
pub const NODE_FILE: &str = "/etc/hull/update.toml";

/// One settings file as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawAgentFile {
    pub auto: Option<bool>,
    pub interval: Option<String>,
    pub strategy: Option<String>,
    pub window: Option<RawWindow>,
    pub fleet_lock_url: Option<String>,
    pub group: Option<String>,
}

/// The settings the agent runs with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentSettings {
    /// `auto`: whether the agent acts at all.
    pub enabled: bool,
    /// Seconds between two checks (the timer's period).
    pub interval: u64,
    /// When a staged update may reboot the host.
    pub strategy: Strategy,
    /// Whether /etc/hull/update.toml changed anything.
    pub node_override: bool,
}

/// The image's file for these settings (`auto = true`), in the format
/// [`parse`] reads: durations in seconds, the window's start as `HH:MM`.
pub fn render_image_file(interval: u64, strategy: &Strategy) -> String {
    let mut out = format!(
        "# written by hull build from [update]; /etc/hull/update.toml may override\n\
         auto = true\ninterval = \"{interval}s\"\n"
    );
    let q = |s: &str| serde_json::to_string(s).expect("a string");
    match strategy {
        Strategy::Immediate => out.push_str("strategy = \"immediate\"\n"),
        Strategy::Kured => out.push_str("strategy = \"kured\"\n"),
        Strategy::FleetLock { url, group } => out.push_str(&format!(
            "strategy = \"fleet-lock\"\nfleet-lock-url = {}\ngroup = {}\n",
            q(url),
            q(group)
        )),
        Strategy::Window(w) => {
            let days: Vec<String> = w.days.iter().map(|d| q(&day_name(*d))).collect();
            out.push_str(&format!(
                "strategy = \"window\"\n\n[window]\ndays = [{}]\nstart = \"{:02}:{:02}\"\nlength = \"{}s\"\n",
                days.join(", "),
                w.start_minute / 60,
                w.start_minute % 60,
                w.length
            ));
        }
    }
    out
}

fn day_name(d: Weekday) -> String {
    format!("{d:?}").to_lowercase()
}

/// Parses one file; errors name `origin`.
pub fn parse(text: &str, origin: &str) -> Result<RawAgentFile> {
    toml::from_str(text).with_context(|| format!("parsing {origin}"))
}

/// Reads the image's file and the node's (when it exists) and merges them.
/// `Ok(None)`: the image has no agent (built without `auto = true`).
pub fn load(image: &Path, node: &Path) -> Result<Option<AgentSettings>> {
    let text = match std::fs::read_to_string(image) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", image.display())),
    };
    let base = parse(&text, &image.display().to_string())?;
    let over = match std::fs::read_to_string(node) {
        Ok(t) => Some(parse(&t, &node.display().to_string())?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", node.display())),
    };
    merge(&base, over.as_ref(), &node.display().to_string()).map(Some)
}

/// The image's settings with the node's on top: each key the node sets
/// wins; keys of the image that belong to another strategy than the one
/// chosen are dropped with it. Errors name the node file and key.
pub fn merge(
    image: &RawAgentFile,
    node: Option<&RawAgentFile>,
    node_name: &str,
) -> Result<AgentSettings> {
    let empty = RawAgentFile::default();
    let n = node.unwrap_or(&empty);
    if n.interval.is_some() {
        bail!(
            "{node_name}: interval: the timer's period is the image's ([update] interval in the manifest); \
             remove it from this file"
        );
    }
    let image_interval = image.interval.as_deref().unwrap_or("3600s");
    let interval = duration(image_interval, IMAGE_FILE, "interval")?;
    let (kind, kind_from) = match (&n.strategy, &image.strategy) {
        (Some(s), _) => (s.as_str(), node_name),
        (None, Some(s)) => (s.as_str(), IMAGE_FILE),
        (None, None) => ("immediate", IMAGE_FILE),
    };
    let kind =
        StrategyKind::parse(kind).map_err(|m| anyhow::anyhow!("{kind_from}: strategy: {m}"))?;
    // A node key that the chosen strategy does not use is refused.
    let wrong = |key: &str, is: bool, wants: StrategyKind| -> Result<()> {
        if is && kind != wants {
            bail!("{node_name}: {key}: only with strategy = \"{wants}\" (this one is \"{kind}\")");
        }
        Ok(())
    };
    wrong("window", n.window.is_some(), StrategyKind::Window)?;
    wrong(
        "fleet-lock-url",
        n.fleet_lock_url.is_some(),
        StrategyKind::FleetLock,
    )?;
    wrong("group", n.group.is_some(), StrategyKind::FleetLock)?;
    // Where a key comes from, for errors.
    let pick = |node_v: Option<String>, image_v: Option<String>| match node_v {
        Some(v) => Some((v, node_name.to_string())),
        None => image_v.map(|v| (v, IMAGE_FILE.to_string())),
    };
    let strategy = match kind {
        StrategyKind::Immediate => Strategy::Immediate,
        StrategyKind::Kured => Strategy::Kured,
        StrategyKind::FleetLock => {
            let (url, from) = pick(n.fleet_lock_url.clone(), image.fleet_lock_url.clone())
                .with_context(|| {
                    format!("{node_name}: fleet-lock-url: required with strategy = \"fleet-lock\"")
                })?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("{from}: fleet-lock-url: {url:?} is not an http:// or https:// URL");
            }
            let (group, from) = pick(n.group.clone(), image.group.clone())
                .unwrap_or((DEFAULT_GROUP.into(), IMAGE_FILE.into()));
            check_group(&group).map_err(|m| anyhow::anyhow!("{from}: group: {m}"))?;
            Strategy::FleetLock { url, group }
        }
        StrategyKind::Window => {
            let (w, from) = match (&n.window, &image.window) {
                (Some(w), _) => (w, node_name),
                (None, Some(w)) => (w, IMAGE_FILE),
                (None, None) => {
                    bail!("{node_name}: window: required with strategy = \"window\"")
                }
            };
            Strategy::Window(window(w, from)?)
        }
    };
    Ok(AgentSettings {
        enabled: n.auto.or(image.auto).unwrap_or(false),
        interval,
        strategy,
        node_override: node.is_some_and(|n| n != &empty),
    })
}

fn duration(s: &str, file: &str, key: &str) -> Result<u64> {
    let d = humantime::parse_duration(s).map_err(|e| {
        anyhow::anyhow!("{file}: {key}: {s:?} is not a duration such as \"90m\": {e}")
    })?;
    let secs = d.as_secs();
    if !(60..=7 * 86_400).contains(&secs) {
        bail!("{file}: {key}: {s:?} is not between 1m and 7days");
    }
    Ok(secs)
}

fn window(w: &RawWindow, file: &str) -> Result<Window> {
    let names = w
        .days
        .as_ref()
        .filter(|d| !d.is_empty())
        .with_context(|| format!("{file}: window.days: at least one day is required"))?;
    let mut days = Vec::new();
    for n in names {
        let d = Weekday::parse(n).with_context(|| {
            format!("{file}: window.days: {n:?} is not a day: mon, tue, wed, thu, fri, sat or sun")
        })?;
        if days.contains(&d) {
            bail!("{file}: window.days: {n:?} is listed twice");
        }
        days.push(d);
    }
    days.sort();
    let start = w
        .start
        .as_deref()
        .with_context(|| format!("{file}: window.start: required"))?;
    let start_minute = start
        .split_once(':')
        .filter(|(h, m)| h.len() == 2 && m.len() == 2)
        .and_then(|(h, m)| Some((h.parse::<u32>().ok()?, m.parse::<u32>().ok()?)))
        .filter(|&(h, m)| h < 24 && m < 60)
        .map(|(h, m)| h * 60 + m)
        .with_context(|| {
            format!("{file}: window.start: {start:?} is not a time HH:MM from 00:00 to 23:59 (UTC)")
        })?;
    let length = w
        .length
        .as_deref()
        .with_context(|| format!("{file}: window.length: required"))?;
    let length = duration(length, file, "window.length")?;
    Ok(Window {
        days,
        start_minute,
        length,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fl(url: &str, group: &str) -> Strategy {
        Strategy::FleetLock {
            url: url.into(),
            group: group.into(),
        }
    }

    #[test]
    fn image_files_round_trip() {
        let w = Strategy::Window(Window {
            days: vec![Weekday::Tue, Weekday::Sat],
            start_minute: 23 * 60 + 5,
            length: 5400,
        });
        for s in [
            Strategy::Immediate,
            Strategy::Kured,
            fl("http://10.0.2.101/", "default"),
            w,
        ] {
            let text = render_image_file(900, &s);
            let raw = parse(&text, "update.toml").unwrap();
            let got = merge(&raw, None, NODE_FILE).unwrap();
            assert!(got.enabled);
            assert_eq!(got.interval, 900);
            assert_eq!(got.strategy, s, "{text}");
        }
        let text = render_image_file(3600, &fl("http://lock:3333", "web-eu"));
        let got = merge(&parse(&text, "f").unwrap(), None, NODE_FILE).unwrap();
        assert_eq!(got.strategy, fl("http://lock:3333", "web-eu"));
        assert!(!got.node_override);
    }

    #[test]
    fn the_node_file_overrides_key_by_key() {
        let image = parse(
            &render_image_file(3600, &fl("http://lock:3333", "default")),
            "i",
        )
        .unwrap();
        for (node, want) in [
            ("", Ok(fl("http://lock:3333", "default"))),
            ("group = \"canary\"", Ok(fl("http://lock:3333", "canary"))),
            (
                "fleet-lock-url = \"https://lock.example/\"",
                Ok(fl("https://lock.example/", "default")),
            ),
            ("strategy = \"kured\"", Ok(Strategy::Kured)),
            (
                "strategy = \"window\"\n[window]\ndays = [\"sun\"]\nstart = \"03:00\"\nlength = \"1h\"",
                Ok(Strategy::Window(Window {
                    days: vec![Weekday::Sun],
                    start_minute: 180,
                    length: 3600,
                })),
            ),
            (
                "interval = \"5m\"",
                Err("/etc/hull/update.toml: interval: the timer's period is the image's"),
            ),
            (
                "strategy = \"window\"",
                Err("/etc/hull/update.toml: window: required with strategy = \"window\""),
            ),
            (
                "strategy = \"kured\"\ngroup = \"g\"",
                Err("/etc/hull/update.toml: group: only with strategy = \"fleet-lock\" (this one is \"kured\")"),
            ),
            (
                "group = \"a/b\"",
                Err("/etc/hull/update.toml: group: \"a/b\" is not 1 to 64"),
            ),
            (
                "strategy = \"sometimes\"",
                Err("/etc/hull/update.toml: strategy: unknown strategy \"sometimes\""),
            ),
            (
                "strategy = \"window\"\n[window]\ndays = [\"sun\"]\nstart = \"3:00\"\nlength = \"1h\"",
                Err("/etc/hull/update.toml: window.start: \"3:00\" is not a time HH:MM"),
            ),
            (
                "strategy = \"window\"\n[window]\ndays = [\"sun\", \"sun\"]\nstart = \"03:00\"\nlength = \"1h\"",
                Err("/etc/hull/update.toml: window.days: \"sun\" is listed twice"),
            ),
            (
                "strategy = \"window\"\n[window]\ndays = [\"sun\"]\nstart = \"03:00\"\nlength = \"8d\"",
                Err("/etc/hull/update.toml: window.length: \"8d\" is not between 1m and 7days"),
            ),
        ] {
            let n = parse(node, NODE_FILE).unwrap();
            match (merge(&image, Some(&n), NODE_FILE), want) {
                (Ok(got), Ok(want)) => {
                    assert_eq!(got.strategy, want, "{node}");
                    assert_eq!(got.node_override, !node.is_empty(), "{node}");
                }
                (Err(e), Err(want)) => {
                    let e = format!("{e:#}");
                    assert!(e.starts_with(want), "{node}: {e}");
                }
                (got, want) => panic!("{node}: got {got:?}, want {want:?}"),
            }
        }
        // auto = false on the node switches the agent off.
        let off = parse("auto = false", NODE_FILE).unwrap();
        assert!(!merge(&image, Some(&off), NODE_FILE).unwrap().enabled);
        // Unknown keys are refused with the file's name.
        let e = format!("{:#}", parse("grup = \"x\"", NODE_FILE).unwrap_err());
        assert!(
            e.starts_with("parsing /etc/hull/update.toml") && e.contains("unknown field"),
            "{e}"
        );
    }

    #[test]
    fn load_reads_both_files() {
        let t = tempfile::tempdir().unwrap();
        let (image, node) = (t.path().join("image.toml"), t.path().join("node.toml"));
        assert_eq!(load(&image, &node).unwrap(), None);
        std::fs::write(&image, render_image_file(600, &Strategy::Immediate)).unwrap();
        let s = load(&image, &node).unwrap().unwrap();
        assert_eq!((s.interval, &s.strategy), (600, &Strategy::Immediate));
        std::fs::write(&node, "strategy = \"kured\"\n").unwrap();
        let s = load(&image, &node).unwrap().unwrap();
        assert_eq!(s.strategy, Strategy::Kured);
        assert!(s.node_override);
        std::fs::write(&node, "strategy = 1\n").unwrap();
        let e = format!("{:#}", load(&image, &node).unwrap_err());
        assert!(e.starts_with(&format!("parsing {}", node.display())), "{e}");
    }
}
