//! Policy scopes of the `docker` transport (containers-policy.json(5)): what a
//! `[containers.trust]` key may name.

/// Checks a policy scope of the `docker` transport (containers-policy.json(5)):
/// `host[:port]`, `host[:port]/path/...` with lowercase path components, or
/// `*.domain`. The host must look like a registry (a dot, a port, or
/// `localhost`), as image references tell registries from namespaces; tags
/// and digests are refused, as a scope names where images come from.
pub fn check_scope(scope: &str) -> Result<(), String> {
    let not = |why: &str| {
        Err(format!(
            "{scope:?} is not a registry or repository scope ({why}; \
             e.g. \"registry.example:5000\" or \"registry.example:5000/ns/repo\")"
        ))
    };
    if scope.is_empty() {
        return not("empty");
    }
    if scope.contains("://") {
        return not("no scheme: write the host without https://");
    }
    if let Some(domain) = scope.strip_prefix("*.") {
        if !is_dns_name(domain) || !domain.contains('.') {
            return not("a wildcard is *. and a domain with a dot, without port or path");
        }
        return Ok(());
    }
    if scope.contains('@') {
        return not("a digest names one image, not a scope");
    }
    let (host_port, path) = match scope.split_once('/') {
        Some((h, p)) => (h, Some(p)),
        None => (scope, None),
    };
    let (host, port) = match host_port.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (host_port, None),
    };
    if !is_dns_name(host) {
        return not("the registry host is not a host name or IPv4 address");
    }
    if let Some(p) = port {
        if p.parse::<u16>().map_or(true, |n| n == 0) {
            return not("the port is not a number from 1 to 65535");
        }
    }
    if port.is_none() && !host.contains('.') && host != "localhost" {
        return not(&format!(
            "{host:?} would be a Docker Hub namespace, not a registry: write docker.io/{scope}"
        ));
    }
    if let Some(path) = path {
        for component in path.split('/') {
            if component.contains(':') {
                return not("a tag names one image, not a scope");
            }
            if !is_path_component(component) {
                return not(&format!(
                    "path component {component:?}: lowercase letters and digits, \
                     separated by '.', '_', '__' or '-'"
                ));
            }
        }
    }
    Ok(())
}

/// A host name (labels of letters, digits and inner hyphens) or IPv4 address.
fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The distribution reference grammar's path component:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn is_path_component(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let b = s.as_bytes();
    if b.is_empty() || !alnum(b[0] as char) || !alnum(b[b.len() - 1] as char) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        if alnum(c) {
            i += 1;
            continue;
        }
        // A separator: '.', '_', '__' or a run of '-', then an alphanumeric.
        let start = i;
        match c {
            '.' => i += 1,
            '_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            '-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !alnum(b[i] as char) {
            return false;
        }
    }
    true
}
