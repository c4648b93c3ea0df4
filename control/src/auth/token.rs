//! Bearer secrets: 256 random bits, base64url, with a prefix that says what they are (so
//! secret scanners and people can tell a leaked API token from a session cookie). The store
//! keeps only the SHA-256 of a token: a copy of the database signs nobody in.

use aes_gcm::aead::OsRng;
use aes_gcm::aead::rand_core::RngCore;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::secret::Secret;

pub const SESSION_PREFIX: &str = "hubs_";
pub const API_TOKEN_PREFIX: &str = "hubt_";

/// `n` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    OsRng.fill_bytes(&mut b);
    b
}

/// A fresh token: `prefix` followed by 256 random bits in base64url.
pub fn new_token(prefix: &str) -> Secret<String> {
    Secret::new(format!(
        "{prefix}{}",
        URL_SAFE_NO_PAD.encode(random_bytes::<32>())
    ))
}

/// The digest the store keeps for a token (hex SHA-256). No salt is needed: the input is
/// 256 random bits, not something a person chose.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Compares two strings in time that depends only on their lengths (CSRF tokens).
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_unique_and_carry_256_bits() {
        let a = new_token(API_TOKEN_PREFIX);
        let b = new_token(API_TOKEN_PREFIX);
        assert!(a.expose().starts_with(API_TOKEN_PREFIX));
        assert_ne!(a.expose(), b.expose());
        // 32 bytes in unpadded base64 are 43 characters.
        assert_eq!(a.expose().len(), API_TOKEN_PREFIX.len() + 43);
        assert_eq!(token_hash(a.expose()).len(), 64);
        assert_ne!(token_hash(a.expose()), token_hash(b.expose()));
    }

    #[test]
    fn constant_time_eq_compares_content_and_length() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "abcd"));
    }
}
