//! `overlays`: named directories laid over the tree. The load step
//! ([`crate::manifest::load`]) finds and checks them on disk; this checks the
//! names and reports what it found.

#[allow(unused_imports)]
use super::*;

/// The overlays as loaded ([`Loaded::overlays`]): each name checked, then
/// its directory or the load step's message, under the key it belongs to.
pub(super) fn overlays_of(cx: &Cx, loaded: &Loaded, overlays: Vec<String>) -> Result<Vec<Overlay>> {
    if overlays.is_empty() {
        return Ok(Vec::new());
    }
    for (i, o) in overlays.iter().enumerate() {
        check_overlay_name(o).map_err(|m| cx.err(&format!("overlays[{i}]"), m))?;
    }
    let mut out = Vec::new();
    for (i, name) in overlays.into_iter().enumerate() {
        let at = format!("overlays[{i}]");
        let dir = match loaded.overlays.get(&name) {
            Some(Ok(dir)) => dir.clone(),
            Some(Err(OverlayError::Root(m))) => return Err(cx.err("overlays", m)),
            Some(Err(OverlayError::Dir(m))) => return Err(cx.err(&at, m)),
            None => return Err(cx.err(&at, format!("{name}: not loaded"))),
        };
        out.push(Overlay { name, dir });
    }
    Ok(out)
}

/// A relative path of plain components (no `..`, `.`, or root).
pub(in crate::manifest) fn check_overlay_name(o: &str) -> Result<(), String> {
    let p = Path::new(o);
    if o.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(format!(
            "{o:?} must be a relative path of plain names under {OVERLAY_ROOT} (no \"..\", \".\", or leading \"/\")"
        ));
    }
    Ok(())
}
