//! The one line `hull update` prints for each outcome.

use crate::host;
/// ` (fetched 3 object(s), 2 delta part(s), 1234 bytes)` when something was pulled.
fn pulled(r: &host::update::UpdateReport) -> String {
    r.pulled
        .map(|p| format!(" ({})", p.describe()))
        .unwrap_or_default()
}

/// The one line `hull update` prints.
pub(super) fn update_line(r: &host::update::UpdateReport) -> String {
    use host::update::Outcome;
    let v = r.version.as_deref().unwrap_or("?");
    let c = r.available.as_deref().unwrap_or("?");
    match r.result {
        Outcome::UpToDate => format!("up to date: {v} ({c}) from {}", r.url),
        Outcome::Available => match r.not_before {
            Some(t) if t > crate::util::now() => format!(
                "update available: {v} ({c}), signed by a trusted key; this host's turn in its rollout wave comes at {} (`hull update --now` takes it before)",
                crate::repo::summary::utc(t)
            ),
            Some(t) => format!(
                "update available: {v} ({c}), signed by a trusted key; this host's turn in its rollout wave came at {}",
                crate::repo::summary::utc(t)
            ),
            None => format!("update available: {v} ({c}), signed by a trusted key"),
        },
        Outcome::NotYet => format!(
            "update {v} ({c}) available, but this host's turn in its rollout wave comes at {}: nothing staged (`hull update --now` takes it now)",
            crate::repo::summary::utc(r.not_before.unwrap_or(0))
        ),
        Outcome::Downloaded => format!(
            "downloaded and verified {v} ({c}){}; `hull update` deploys it",
            pulled(r)
        ),
        Outcome::Deployed => format!(
            "deployed {v} ({c}) as the default for the next boot, with {}{}; reboot to use it",
            crate::host::status::boot_tries(r.boot_tries.unwrap_or(0)),
            pulled(r)
        ),
    }
}
