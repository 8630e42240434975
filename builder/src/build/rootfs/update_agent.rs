//! The update agent in the tree (`[update] auto = true`): its settings
//! (/usr/lib/hull/update.toml), hull-update.service and hull-update.timer,
//! whose period is the manifest's `interval`, spread by a random delay so a
//! fleet does not check all at once.

use anyhow::Result;
use cap_std::fs::Dir;

use super::ostree_layout::write_file;
use crate::manifest::agent_config;
use crate::manifest::{Manifest, UpdateAgent};

/// hull-update.service, as installed.
pub const SERVICE: &str = include_str!("../../../../boot/hull-update.service");
const SERVICE_PATH: &str = "usr/lib/systemd/system/hull-update.service";
const TIMER_PATH: &str = "usr/lib/systemd/system/hull-update.timer";
/// The agent's settings in the tree.
pub const SETTINGS_PATH: &str = "usr/lib/hull/update.toml";

/// hull-update.timer for `interval` seconds: the first check one interval
/// after boot, then one interval after each run, each delayed by up to a
/// tenth of the interval (at most an hour) at random.
pub fn timer(interval: u64) -> String {
    let spread = (interval / 10).min(3600);
    format!(
        "# written by hull build from [update] interval\n\
         [Unit]\nDescription=hull update agent: check for updates every {interval} s\n\n\
         [Timer]\nOnBootSec={interval}s\nOnUnitActiveSec={interval}s\n\
         RandomizedDelaySec={spread}s\n\n[Install]\nWantedBy=timers.target\n"
    )
}

fn agent_of(manifest: &Manifest) -> Option<&UpdateAgent> {
    manifest.update.as_ref().and_then(|u| u.agent.as_ref())
}

/// What the agent adds to the tree, as text: for the build's input digest.
pub fn digest_text(manifest: &Manifest) -> String {
    match agent_of(manifest) {
        Some(a) => format!(
            "{}{SERVICE}{}",
            timer(a.interval),
            agent_config::render_image_file(a.interval, &a.strategy)
        ),
        None => String::new(),
    }
}

/// Installs the agent's settings and units when the manifest says `auto =
/// true`; returns the units to enable (none otherwise).
pub fn install(root: &Dir, manifest: &Manifest) -> Result<Vec<&'static str>> {
    let Some(a) = agent_of(manifest) else {
        return Ok(Vec::new());
    };
    write_file(
        root,
        SETTINGS_PATH,
        agent_config::render_image_file(a.interval, &a.strategy).as_bytes(),
        0o644,
    )?;
    write_file(root, SERVICE_PATH, SERVICE.as_bytes(), 0o644)?;
    write_file(root, TIMER_PATH, timer(a.interval).as_bytes(), 0o644)?;
    Ok(vec!["hull-update.timer"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_spread_checks() {
        for (interval, spread) in [(3600, 360), (60, 6), (7 * 86_400, 3600)] {
            let t = timer(interval);
            assert!(t.contains(&format!("OnBootSec={interval}s\n")), "{t}");
            assert!(t.contains(&format!("OnUnitActiveSec={interval}s\n")), "{t}");
            assert!(
                t.contains(&format!("RandomizedDelaySec={spread}s\n")),
                "{t}"
            );
            assert!(t.contains("WantedBy=timers.target"), "{t}");
        }
        assert!(SERVICE.contains("ExecStart=/usr/bin/hull update --auto\n"));
    }

    #[test]
    fn installed_only_with_auto() {
        let t = tempfile::tempdir().unwrap();
        let dir = Dir::open_ambient_dir(t.path(), cap_std::ambient_authority()).unwrap();
        // k.pub, which the manifest names.
        crate::repo::sign::write_keypair(&t.path().join("k")).unwrap();
        let manifest = |extra: &str| {
            let p = t.path().join("m.toml");
            std::fs::write(
                &p,
                format!(
                    "name = \"t\"\nversion = \"1\"\n[update]\nurl = \"http://u/repo\"\nkeys = [\"k.pub\"]\n{extra}"
                ),
            )
            .unwrap();
            Manifest::load(&p).unwrap()
        };
        assert!(install(&dir, &manifest("")).unwrap().is_empty());
        assert!(!t.path().join(SETTINGS_PATH).exists());
        let m = manifest(
            "auto = true\ninterval = \"2h\"\nstrategy = \"fleet-lock\"\nfleet-lock-url = \"http://lock/\"\ngroup = \"web\"\n",
        );
        assert_eq!(install(&dir, &m).unwrap(), ["hull-update.timer"]);
        let settings = std::fs::read_to_string(t.path().join(SETTINGS_PATH)).unwrap();
        let got = agent_config::merge(
            &agent_config::parse(&settings, SETTINGS_PATH).unwrap(),
            None,
            agent_config::NODE_FILE,
        )
        .unwrap();
        assert_eq!(got.interval, 7200);
        assert_eq!(
            got.strategy,
            crate::manifest::strategy::Strategy::FleetLock {
                url: "http://lock/".into(),
                group: "web".into()
            }
        );
        let timer = std::fs::read_to_string(t.path().join(TIMER_PATH)).unwrap();
        assert!(timer.contains("OnUnitActiveSec=7200s"), "{timer}");
        assert!(t.path().join(SERVICE_PATH).is_file());
        assert!(digest_text(&m).contains("7200s"));
        assert_eq!(digest_text(&manifest("")), "");
    }
}
