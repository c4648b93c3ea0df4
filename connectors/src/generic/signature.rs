//! Sign and verify the generic webhook signature (see the module above).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub const TIMESTAMP_HEADER: &str = "x-hub-timestamp";
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// How far a timestamp may be from now before the request is refused as stale.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the {0} header is missing")]
    Missing(&'static str),
    #[error("the x-hub-timestamp header is not a number of seconds")]
    BadTimestamp,
    #[error("the timestamp is more than {0} seconds from now; the request may be a replay")]
    Stale(i64),
    #[error("the signature does not match the body")]
    Mismatch,
}

impl SignatureError {
    /// Stable code for error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::Missing(_) => "signature_missing",
            SignatureError::BadTimestamp => "signature_timestamp_invalid",
            SignatureError::Stale(_) => "signature_stale",
            SignatureError::Mismatch => "signature_mismatch",
        }
    }
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut m =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The `X-Hub-Signature-256` value for `body` sent at `timestamp` (unix seconds).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Checks a request's headers against its body, in constant time.
pub fn verify(
    secret: &[u8],
    timestamp_header: Option<&str>,
    signature_header: Option<&str>,
    body: &[u8],
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let ts = timestamp_header.ok_or(SignatureError::Missing(TIMESTAMP_HEADER))?;
    let sig = signature_header.ok_or(SignatureError::Missing(SIGNATURE_HEADER))?;
    let ts: i64 = ts
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    if now_secs.abs_diff(ts) > tolerance_secs.unsigned_abs() {
        return Err(SignatureError::Stale(tolerance_secs));
    }
    let hex_sig = sig
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Mismatch)?;
    let raw = hex::decode(hex_sig).map_err(|_| SignatureError::Mismatch)?;
    mac(secret, ts, body)
        .verify_slice(&raw)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_body_verifies_and_tampering_does_not() {
        let s = sign(b"secret", 1_700_000_000, b"{\"a\":1}");
        assert_eq!(
            verify(
                b"secret",
                Some("1700000000"),
                Some(&s),
                b"{\"a\":1}",
                1_700_000_010,
                300
            ),
            Ok(())
        );
        assert_eq!(
            verify(
                b"secret",
                Some("1700000000"),
                Some(&s),
                b"{\"a\":2}",
                1_700_000_010,
                300
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                b"other",
                Some("1700000000"),
                Some(&s),
                b"{\"a\":1}",
                1_700_000_010,
                300
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                b"secret",
                Some("1700000000"),
                Some(&s),
                b"{\"a\":1}",
                1_700_001_000,
                300
            ),
            Err(SignatureError::Stale(300))
        );
        assert_eq!(
            verify(b"secret", None, Some(&s), b"", 0, 300),
            Err(SignatureError::Missing(TIMESTAMP_HEADER))
        );
        assert_eq!(
            verify(b"secret", Some("x"), Some(&s), b"", 0, 300),
            Err(SignatureError::BadTimestamp)
        );
        assert_eq!(
            verify(b"secret", Some("0"), Some("sha256=zz"), b"", 0, 300),
            Err(SignatureError::Mismatch)
        );
        let min = i64::MIN.to_string();
        assert_eq!(
            verify(b"secret", Some(&min), Some(&s), b"", i64::MAX, 300),
            Err(SignatureError::Stale(300))
        );
    }
}
