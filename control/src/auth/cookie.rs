//! The console's session cookie, built in one place so its attributes cannot drift:
//! `HttpOnly` (no script reads it), `SameSite=Strict` (no cross-site request carries it, the
//! first CSRF defence; the per-session CSRF header is the second), `Secure` whenever the
//! console is served over TLS, `Path=/`, and a `Max-Age` matching the session's expiry.

/// The cookie's name. The `__Host-` prefix (browsers then insist on `Secure`, `Path=/` and
/// no `Domain`) is only possible over TLS.
pub fn session_cookie_name(tls: bool) -> &'static str {
    if tls {
        "__Host-hub_session"
    } else {
        "hub_session"
    }
}

/// The `Set-Cookie` value for a new session valid for `max_age_ms`.
pub fn session_cookie(token: &str, max_age_ms: i64, tls: bool) -> String {
    let secure = if tls { "; Secure" } else { "" };
    format!(
        "{}={token}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
        session_cookie_name(tls),
        (max_age_ms / 1000).max(0)
    )
}

/// The `Set-Cookie` value that ends the session in the browser (sign-out).
pub fn cleared_session_cookie(tls: bool) -> String {
    session_cookie("", 0, tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_cookie_is_http_only_strict_and_secure_over_tls() {
        let c = session_cookie("hubs_abc", 3_600_000, true);
        assert_eq!(
            c,
            "__Host-hub_session=hubs_abc; Path=/; Max-Age=3600; HttpOnly; SameSite=Strict; Secure"
        );
        let plain = session_cookie("hubs_abc", 3_600_000, false);
        assert!(plain.starts_with("hub_session=hubs_abc;"));
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict"));
        assert!(!plain.contains("Secure"));
        assert!(cleared_session_cookie(true).contains("Max-Age=0"));
    }
}
