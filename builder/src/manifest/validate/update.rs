//! `[update]`: where hosts pull from, the keys they trust, and the agent's
//! keys (strategy, window, FleetLock).

#[allow(unused_imports)]
use super::*;
use crate::manifest::strategy::{check_group, StrategyKind, DEFAULT_GROUP};

pub(super) fn update_of(cx: &Cx, u: RawUpdate, loaded: &Loaded) -> Result<Update> {
    let agent = agent_of(cx, &u)?;
    let url = u.url.ok_or_else(|| cx.err("update.url", "required"))?;
    check_update_url(&url).map_err(|m| cx.err("update.url", m))?;
    if let Some(r) = &u.ostree_ref {
        check_ref(r).map_err(|m| cx.err("update.ref", m))?;
    }
    let paths = u.keys.unwrap_or_default();
    if paths.is_empty() {
        return Err(cx.err(
            "update.keys",
            "at least one public key file is required: hosts refuse unsigned updates \
             (`hull keygen` makes a key pair)",
        ));
    }
    let mut keys = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        let at = format!("update.keys[{i}]");
        if p.is_empty() {
            return Err(cx.err(&at, "empty path"));
        }
        let path = PathBuf::from(p);
        let text = match loaded.update_keys.get(p) {
            Some(Ok(text)) => text,
            Some(Err(e)) => return Err(cx.err(&at, format!("cannot read {p}: {e}"))),
            None => return Err(cx.err(&at, format!("cannot read {p}: not loaded"))),
        };
        let parsed = crate::repo::sign::parse_public_keys(text, p).map_err(|e| cx.err(&at, e))?;
        if parsed.is_empty() {
            return Err(cx.err(&at, format!("{p} holds no key")));
        }
        for key in parsed {
            let public = crate::repo::sign::public_text(&key).trim().to_string();
            if !keys.iter().any(|k: &TrustedKey| k.public == public) {
                keys.push(TrustedKey {
                    path: path.clone(),
                    public,
                });
            }
        }
    }
    let boot_tries = match u.boot_tries {
        None => DEFAULT_BOOT_TRIES,
        Some(n) if (1..=i64::from(MAX_BOOT_TRIES)).contains(&n) => n as u32,
        Some(n) => {
            return Err(cx.err(
                "update.boot-tries",
                format!("{n} is not between 1 and {MAX_BOOT_TRIES}"),
            ))
        }
    };
    Ok(Update {
        url,
        ostree_ref: u.ostree_ref,
        keys,
        boot_tries,
        agent,
    })
}

/// The agent's default interval between checks.
pub(super) const DEFAULT_INTERVAL: u64 = 3600;

/// `auto`, `interval`, `strategy`, `[update.window]`, `fleet-lock-url`,
/// `group`: the agent's keys. Each setting is refused where it would do
/// nothing (without `auto = true`, or with another strategy).
pub(super) fn agent_of(cx: &Cx, u: &RawUpdate) -> Result<Option<UpdateAgent>> {
    use crate::manifest::strategy::Strategy;
    if u.auto != Some(true) {
        let set = [
            ("update.interval", u.interval.is_some()),
            ("update.strategy", u.strategy.is_some()),
            ("update.window", u.window.is_some()),
            ("update.fleet-lock-url", u.fleet_lock_url.is_some()),
            ("update.group", u.group.is_some()),
        ];
        if let Some((key, _)) = set.iter().find(|(_, is)| *is) {
            return Err(cx.err(
                key,
                "only with auto = true: a host that does not update by itself does not reboot by itself",
            ));
        }
        return Ok(None);
    }
    let interval = match &u.interval {
        None => DEFAULT_INTERVAL,
        Some(i) => duration_in(i, 60, 7 * 86_400).map_err(|m| cx.err("update.interval", m))?,
    };
    let kind = match u.strategy.as_deref() {
        None => StrategyKind::Immediate,
        Some(s) => StrategyKind::parse(s).map_err(|m| cx.err("update.strategy", m))?,
    };
    let only_with = |key: &str, wants: StrategyKind| {
        cx.err(
            key,
            format!("only with strategy = \"{wants}\" (this one is \"{kind}\")"),
        )
    };
    if u.window.is_some() && kind != StrategyKind::Window {
        return Err(only_with("update.window", StrategyKind::Window));
    }
    for (key, is) in [
        ("update.fleet-lock-url", u.fleet_lock_url.is_some()),
        ("update.group", u.group.is_some()),
    ] {
        if is && kind != StrategyKind::FleetLock {
            return Err(only_with(key, StrategyKind::FleetLock));
        }
    }
    let strategy = match kind {
        StrategyKind::Immediate => Strategy::Immediate,
        StrategyKind::Kured => Strategy::Kured,
        StrategyKind::Window => {
            let w = u
                .window
                .as_ref()
                .ok_or_else(|| cx.err("update.window", "required with strategy = \"window\""))?;
            Strategy::Window(window_of(cx, w)?)
        }
        StrategyKind::FleetLock => {
            let url = u.fleet_lock_url.clone().ok_or_else(|| {
                cx.err(
                    "update.fleet-lock-url",
                    "required with strategy = \"fleet-lock\"",
                )
            })?;
            check_update_url(&url).map_err(|m| cx.err("update.fleet-lock-url", m))?;
            let group = u.group.clone().unwrap_or_else(|| DEFAULT_GROUP.to_string());
            check_group(&group).map_err(|m| cx.err("update.group", m))?;
            Strategy::FleetLock { url, group }
        }
    };
    Ok(Some(UpdateAgent { interval, strategy }))
}

/// `[update.window]`: `days` (`mon` … `sun`, each once), `start` (`HH:MM`,
/// UTC) and `length` (1 minute to 7 days).
pub(super) fn window_of(cx: &Cx, w: &RawWindow) -> Result<crate::manifest::strategy::Window> {
    use crate::manifest::strategy::Weekday;
    let names = w
        .days
        .as_ref()
        .ok_or_else(|| cx.err("update.window.days", "required"))?;
    if names.is_empty() {
        return Err(cx.err("update.window.days", "at least one day is required"));
    }
    let mut days = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let at = format!("update.window.days[{i}]");
        let d = Weekday::parse(n).ok_or_else(|| {
            cx.err(
                &at,
                format!("{n:?} is not a day: mon, tue, wed, thu, fri, sat or sun"),
            )
        })?;
        if days.contains(&d) {
            return Err(cx.err(&at, format!("{n:?} is listed twice")));
        }
        days.push(d);
    }
    days.sort();
    let start = w
        .start
        .as_ref()
        .ok_or_else(|| cx.err("update.window.start", "required"))?;
    let start_minute = parse_hh_mm(start).ok_or_else(|| {
        cx.err(
            "update.window.start",
            format!("{start:?} is not a time HH:MM from 00:00 to 23:59 (UTC)"),
        )
    })?;
    let length = w
        .length
        .as_ref()
        .ok_or_else(|| cx.err("update.window.length", "required"))?;
    let length =
        duration_in(length, 60, 7 * 86_400).map_err(|m| cx.err("update.window.length", m))?;
    Ok(crate::manifest::strategy::Window {
        days,
        start_minute,
        length,
    })
}

/// `HH:MM` as minutes after midnight.
pub(super) fn parse_hh_mm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// A duration such as `90m` or `1h 30m`, in whole seconds from `min` to `max`.
pub(super) fn duration_in(s: &str, min: u64, max: u64) -> Result<u64, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration such as \"90m\" or \"2h\": {e}"))?;
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 || secs < min || secs > max {
        return Err(format!(
            "{s:?} is not between {} and {}",
            humantime::format_duration(std::time::Duration::from_secs(min)),
            humantime::format_duration(std::time::Duration::from_secs(max))
        ));
    }
    Ok(secs)
}

/// An http(s) URL without whitespace, quotes or a fragment: it goes into an
/// OSTree remote config line.
pub(super) fn check_update_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{url:?} is not an http:// or https:// URL"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{url:?} has no host"));
    }
    if url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\\' | '#'))
    {
        return Err(format!(
            "{url:?} holds whitespace, a quote, a backslash or a #"
        ));
    }
    Ok(())
}

/// An OSTree ref: segments of `[A-Za-z0-9._-]` (and `{arch}`) separated by `/`.
pub(super) fn check_ref(r: &str) -> Result<(), String> {
    let plain = r.replace("{arch}", "arch");
    if plain.is_empty() || plain.len() > 255 {
        return Err("a ref is 1 to 255 characters".into());
    }
    for seg in plain.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." || seg.starts_with('-') {
            return Err(format!("{r:?}: empty, dot or dash-leading segment"));
        }
        if !seg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(format!(
                "{r:?}: only letters, digits, '.', '_', '-', '/' and {{arch}}"
            ));
        }
    }
    Ok(())
}
