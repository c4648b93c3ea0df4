//! Envelope encryption for connector credentials and the tenant's other sealed records
//! (conflicts' values, dead letters' original records: [`crate::store::desk`]).
//!
//! Each tenant has its own 256-bit data key; credentials are sealed with it (AES-256-GCM, a
//! fresh 96-bit nonce per write). The data key itself is stored wrapped — sealed — by the
//! master key, which never touches the store: it comes from `HUB_MASTER_KEY` (base64) or the
//! file named by `HUB_MASTER_KEY_FILE`. Rotating the master key re-wraps the data keys only;
//! the credentials' ciphertexts do not change.
//!
//! The associated data binds every ciphertext to where it belongs (tenant and connector, or
//! tenant and master key version), so a row copied into another tenant or connector fails to
//! decrypt instead of handing one dealer's secret to another.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::auth::token::random_bytes;
use crate::error::{ControlError, Result};
use crate::secret::Secret;

pub const MASTER_KEY_ENV: &str = "HUB_MASTER_KEY";
pub const MASTER_KEY_FILE_ENV: &str = "HUB_MASTER_KEY_FILE";
pub const MASTER_KEY_VERSION_ENV: &str = "HUB_MASTER_KEY_VERSION";

/// The key that wraps every tenant's data key, with the version recorded beside each wrapped
/// key (so a node started with the wrong key says so instead of failing obscurely).
#[derive(Clone)]
pub struct MasterKey {
    version: i64,
    key: Secret<[u8; 32]>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("version", &self.version)
            .field("key", &self.key)
            .finish()
    }
}

impl MasterKey {
    pub fn new(version: i64, key: [u8; 32]) -> Self {
        MasterKey {
            version,
            key: Secret::new(key),
        }
    }

    /// A fresh random key (for tests and `hub` key generation).
    pub fn generate(version: i64) -> Self {
        MasterKey::new(version, random_bytes::<32>())
    }

    /// Parses a key given as standard base64 of 32 bytes (surrounding whitespace ignored).
    pub fn from_base64(version: i64, text: &str) -> Result<Self> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| ControlError::Config("the master key is not valid base64".to_string()))?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| {
            ControlError::Config("the master key must be 32 bytes (256 bits)".to_string())
        })?;
        Ok(MasterKey::new(version, key))
    }

    /// The key as base64, to hand to an operator once when generating it.
    pub fn to_base64(&self) -> Secret<String> {
        Secret::new(STANDARD.encode(self.key.expose()))
    }

    /// Reads the key from `HUB_MASTER_KEY` or else from the file named by
    /// `HUB_MASTER_KEY_FILE`; its version from `HUB_MASTER_KEY_VERSION` (default 1).
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let version = match var(MASTER_KEY_VERSION_ENV) {
            None => 1,
            Some(v) => v
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| {
                    ControlError::Config(format!(
                        "{MASTER_KEY_VERSION_ENV} must be a positive integer"
                    ))
                })?,
        };
        if let Some(text) = var(MASTER_KEY_ENV) {
            return Self::from_base64(version, &text);
        }
        if let Some(path) = var(MASTER_KEY_FILE_ENV) {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                ControlError::Config(format!("reading the master key file {path}: {e}"))
            })?;
            return Self::from_base64(version, &text);
        }
        Err(ControlError::Config(format!(
            "no master key: set {MASTER_KEY_ENV} (base64 of 32 random bytes) or {MASTER_KEY_FILE_ENV}"
        )))
    }

    pub fn version(&self) -> i64 {
        self.version
    }

    fn aad(&self, tenant: &str) -> Vec<u8> {
        format!("hub-data-key\0{tenant}\0{}", self.version).into_bytes()
    }

    /// Wraps a tenant's data key: `(ciphertext, nonce)`.
    pub(crate) fn wrap(&self, tenant: &str, data_key: &DataKey) -> Result<(Vec<u8>, Vec<u8>)> {
        seal(self.key.expose(), &self.aad(tenant), data_key.0.expose())
    }

    /// Unwraps a tenant's data key, which must have been wrapped by this key's version.
    pub(crate) fn unwrap(
        &self,
        tenant: &str,
        master_key_version: i64,
        wrapped: &[u8],
        nonce: &[u8],
    ) -> Result<DataKey> {
        if master_key_version != self.version {
            return Err(ControlError::Crypto(format!(
                "tenant {tenant}'s data key is wrapped by master key version \
                 {master_key_version}, this node has version {}",
                self.version
            )));
        }
        let plain = open(self.key.expose(), &self.aad(tenant), wrapped, nonce)?;
        let key: [u8; 32] = plain
            .try_into()
            .map_err(|_| ControlError::Crypto("a data key is not 32 bytes".to_string()))?;
        Ok(DataKey(Secret::new(key)))
    }
}

/// A tenant's data key, in clear only in memory.
#[derive(Debug)]
pub(crate) struct DataKey(Secret<[u8; 32]>);

impl DataKey {
    pub(crate) fn generate() -> Self {
        DataKey(Secret::new(random_bytes::<32>()))
    }

    fn aad(tenant: &str, connector: &str) -> Vec<u8> {
        format!("hub-credentials\0{tenant}\0{connector}").into_bytes()
    }

    pub(crate) fn seal(
        &self,
        tenant: &str,
        connector: &str,
        plain: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        seal(self.0.expose(), &Self::aad(tenant, connector), plain)
    }

    pub(crate) fn open(
        &self,
        tenant: &str,
        connector: &str,
        ct: &[u8],
        nonce: &[u8],
    ) -> Result<Vec<u8>> {
        open(self.0.expose(), &Self::aad(tenant, connector), ct, nonce)
    }
}

impl DataKey {
    fn record_aad(tenant: &str, object: &str) -> Vec<u8> {
        format!("hub-record\0{tenant}\0{object}").into_bytes()
    }

    /// Seals a tenant's record other than credentials (a conflict's two sides, a dead
    /// letter's original value), bound to the tenant and to `object` (e.g.
    /// `conflict/<id>`); a separate associated-data domain from credentials, so neither
    /// ciphertext can stand in for the other.
    pub(crate) fn seal_record(
        &self,
        tenant: &str,
        object: &str,
        plain: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        seal(self.0.expose(), &Self::record_aad(tenant, object), plain)
    }

    pub(crate) fn open_record(
        &self,
        tenant: &str,
        object: &str,
        ct: &[u8],
        nonce: &[u8],
    ) -> Result<Vec<u8>> {
        open(
            self.0.expose(),
            &Self::record_aad(tenant, object),
            ct,
            nonce,
        )
    }
}

fn seal(key: &[u8; 32], aad: &[u8], plain: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key));
    // Random 96-bit nonces: safe for far more writes per key than a tenant's credentials see.
    let nonce = random_bytes::<12>();
    let ct = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain, aad })
        .map_err(|_| ControlError::Crypto("encryption failed".to_string()))?;
    Ok((ct, nonce.to_vec()))
}

fn open(key: &[u8; 32], aad: &[u8], ct: &[u8], nonce: &[u8]) -> Result<Vec<u8>> {
    if nonce.len() != 12 {
        return Err(ControlError::Crypto(
            "a stored nonce is not 96 bits".to_string(),
        ));
    }
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key));
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
        .map_err(|_| {
            ControlError::Crypto(
                "decryption failed: wrong master key, or the stored row was altered".to_string(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_key_round_trips_and_is_bound_to_its_tenant() {
        let mk = MasterKey::generate(1);
        let dk = DataKey::generate();
        let (w, n) = mk.wrap("acme", &dk).unwrap();
        let back = mk.unwrap("acme", 1, &w, &n).unwrap();
        assert_eq!(back.0.expose(), dk.0.expose());
        assert!(mk.unwrap("globex", 1, &w, &n).is_err());
        assert!(MasterKey::generate(1).unwrap("acme", 1, &w, &n).is_err());
        let err = mk.unwrap("acme", 2, &w, &n).unwrap_err();
        assert!(err.to_string().contains("version 2"), "{err}");
    }

    #[test]
    fn credentials_are_bound_to_tenant_and_connector() {
        let dk = DataKey::generate();
        let (ct, n) = dk.seal("acme", "salesforce", b"{\"k\":1}").unwrap();
        assert_eq!(
            dk.open("acme", "salesforce", &ct, &n).unwrap(),
            b"{\"k\":1}"
        );
        assert!(dk.open("acme", "hubspot", &ct, &n).is_err());
        assert!(dk.open("globex", "salesforce", &ct, &n).is_err());
        let mut tampered = ct.clone();
        tampered[0] ^= 1;
        assert!(dk.open("acme", "salesforce", &tampered, &n).is_err());
    }

    #[test]
    fn master_key_comes_from_env_text_or_file_and_never_debug_prints() {
        let mk = MasterKey::generate(3);
        let b64 = mk.to_base64().into_inner();
        let from_var = MasterKey::from_lookup(|n| match n {
            MASTER_KEY_ENV => Some(b64.clone()),
            MASTER_KEY_VERSION_ENV => Some("3".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(from_var.version(), 3);
        assert_eq!(from_var.key.expose(), mk.key.expose());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        std::fs::write(&path, format!("{b64}\n")).unwrap();
        let p = path.to_string_lossy().to_string();
        let from_file =
            MasterKey::from_lookup(|n| (n == MASTER_KEY_FILE_ENV).then(|| p.clone())).unwrap();
        assert_eq!(from_file.version(), 1);
        assert_eq!(from_file.key.expose(), mk.key.expose());

        assert!(!format!("{mk:?}").contains(&b64));
        assert!(MasterKey::from_lookup(|_| None).is_err());
        assert!(MasterKey::from_base64(1, "c2hvcnQ=").is_err());
    }
}
