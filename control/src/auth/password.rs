//! Console passwords: argon2id with the crate's default parameters (OWASP's minimum:
//! 19 MiB, 2 passes, 1 lane), stored as PHC strings so parameters can be raised later
//! without invalidating existing hashes.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Argon2, PasswordHash, PasswordVerifier};

use crate::error::ControlError;
use crate::secret::Secret;

/// Shortest password accepted; length matters more than composition rules (NIST SP 800-63B).
pub const MIN_PASSWORD_LEN: usize = 12;

/// Hashes a new password, refusing one that is too short.
pub fn hash_password(password: &Secret<String>) -> Result<String, ControlError> {
    if password.expose().chars().count() < MIN_PASSWORD_LEN {
        return Err(ControlError::invalid(
            "password",
            "use at least 12 characters",
        ));
    }
    hash_unchecked(password.expose())
}

fn hash_unchecked(password: &str) -> Result<String, ControlError> {
    let salt = SaltString::generate(&mut aes_gcm::aead::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ControlError::Crypto(format!("hashing a password failed: {e}")))
}

/// Does `password` match the stored PHC string? A malformed stored hash answers false.
pub fn verify_password(password: &Secret<String>, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.expose().as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Spends the same time as a real verification, for sign-ins naming an unknown user, so that
/// response time does not reveal which e-mail addresses have accounts.
pub fn verify_against_dummy(password: &Secret<String>) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let phc = DUMMY.get_or_init(|| {
        hash_unchecked("not-a-real-password-but-a-timing-pad").expect("argon2 defaults hash")
    });
    let _ = verify_password(password, phc);
}

/// [`hash_password`] on the blocking pool: argon2id is deliberately slow (tens of
/// milliseconds of CPU), which must not stall the async workers serving other requests.
pub async fn hash_password_off_executor(password: &Secret<String>) -> Result<String, ControlError> {
    let password = password.clone();
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| ControlError::Crypto(format!("password hashing task failed: {e}")))?
}

/// [`verify_password`] (or, without a stored hash, [`verify_against_dummy`]) on the
/// blocking pool, for the same reason.
pub async fn verify_password_off_executor(password: &Secret<String>, phc: Option<String>) -> bool {
    let password = password.clone();
    tokio::task::spawn_blocking(move || match phc {
        Some(phc) => verify_password(&password, &phc),
        None => {
            verify_against_dummy(&password);
            false
        }
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_argon2id_and_verifies_only_the_same_password() {
        let pw = Secret::new("correct horse battery".to_string());
        let phc = hash_password(&pw).unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(!phc.contains("correct horse"));
        assert!(verify_password(&pw, &phc));
        assert!(!verify_password(
            &Secret::new("correct horse battery!".into()),
            &phc
        ));
        assert!(!verify_password(&pw, "not a phc string"));
    }

    #[test]
    fn short_passwords_are_refused_with_the_field_named() {
        let err = hash_password(&Secret::new("short".into())).unwrap_err();
        assert_eq!(err.code(), "invalid_input");
        assert!(err.to_string().contains("password"), "{err}");
    }
}
