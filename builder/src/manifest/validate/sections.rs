//! The smaller tables: `[units]`, `users`, `[image]`, `[health]`.

#[allow(unused_imports)]
use super::*;

pub(super) fn units_of(cx: &Cx, u: RawUnits) -> Result<Units> {
    let units = Units {
        enable: u.enable.unwrap_or_default(),
        disable: u.disable.unwrap_or_default(),
        mask: u.mask.unwrap_or_default(),
    };
    for (key, list) in [
        ("units.enable", &units.enable),
        ("units.disable", &units.disable),
        ("units.mask", &units.mask),
    ] {
        for (i, unit) in list.iter().enumerate() {
            check_unit(unit).map_err(|m| cx.err(&format!("{key}[{i}]"), m))?;
        }
    }
    let enabled: HashSet<&String> = units.enable.iter().collect();
    for (key, list) in [
        ("units.mask", &units.mask),
        ("units.disable", &units.disable),
    ] {
        if let Some((i, unit)) = list.iter().enumerate().find(|(_, u)| enabled.contains(u)) {
            return Err(cx.err(
                &format!("{key}[{i}]"),
                format!("{unit} is also in units.enable"),
            ));
        }
    }
    Ok(units)
}

pub(super) fn users_of(cx: &Cx, users: Vec<RawUser>) -> Result<Vec<User>> {
    let mut out = Vec::new();
    for (i, u) in users.into_iter().enumerate() {
        let at = format!("users[{i}]");
        let name = u
            .name
            .ok_or_else(|| cx.err(&format!("{at}.name"), "required"))?;
        check_account(&name).map_err(|m| cx.err(&format!("{at}.name"), m))?;
        if name == "root" {
            return Err(cx.err(
                &format!("{at}.name"),
                "root cannot be declared (its password is locked; add a user)",
            ));
        }
        if BASE_PASSWD_USERS.contains(&name.as_str()) {
            return Err(cx.err(
                &format!("{at}.name"),
                format!("{name} is one of Debian's system accounts (base-passwd): useradd would refuse it"),
            ));
        }
        if BASE_PASSWD_GROUPS.contains(&name.as_str()) {
            return Err(cx.err(
                &format!("{at}.name"),
                format!(
                    "{name} is one of Debian's system groups (base-passwd): useradd --user-group \
                     would refuse to make a group of that name (list it in groups instead)"
                ),
            ));
        }
        let groups = u.groups.unwrap_or_default();
        for (j, g) in groups.iter().enumerate() {
            check_account(g).map_err(|m| cx.err(&format!("{at}.groups[{j}]"), m))?;
        }
        let keys = u.ssh_authorized_keys.unwrap_or_default();
        for (j, k) in keys.iter().enumerate() {
            check_ssh_key(k).map_err(|m| cx.err(&format!("{at}.ssh-authorized-keys[{j}]"), m))?;
        }
        out.push(User {
            name,
            groups,
            ssh_authorized_keys: keys,
        });
    }
    Ok(out)
}

pub(super) fn image_of(cx: &Cx, i: RawImage) -> Result<ImageSize> {
    let size = match &i.size {
        Some(s) => size_of(s).map_err(|m| cx.err("image.size", m))?,
        None => DEFAULT_IMAGE_SIZE,
    };
    let esp_size = match &i.esp_size {
        Some(s) => size_of(s).map_err(|m| cx.err("image.esp-size", m))?,
        None => DEFAULT_ESP_SIZE,
    };
    if esp_size < MIN_ESP_SIZE {
        return Err(cx.err(
            "image.esp-size",
            format!("{} is below the minimum of 64 MiB", human(esp_size)),
        ));
    }
    if size <= esp_size.saturating_add(MIN_ROOT_SIZE) {
        return Err(cx.err(
            "image.size",
            format!(
                "{} leaves no room: it must exceed image.esp-size ({}) by more than 512 MiB",
                human(size),
                human(esp_size)
            ),
        ));
    }
    Ok(ImageSize { size, esp_size })
}

pub(super) fn health_of(cx: &Cx, h: RawHealth) -> Result<Health> {
    let required_units = h.required_units.unwrap_or_default();
    for (i, u) in required_units.iter().enumerate() {
        check_unit_instance(u).map_err(|m| cx.err(&format!("health.required-units[{i}]"), m))?;
    }
    Ok(Health { required_units })
}

pub(super) fn size_of(s: &RawSize) -> Result<u64, String> {
    match s {
        RawSize::Bytes(n) => Ok(*n),
        RawSize::Text(t) => parse_size(t),
    }
}
