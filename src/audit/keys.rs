//! Receipt keys: the operator's master keys (the current one signs, older ones still verify
//! after a rotation) and the per-tenant keys derived from them with HKDF-SHA256. There is no
//! default key: without one configured, a node generates a key into its data dir (mode 0600).

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};

const MIN_KEY_BYTES: usize = 32;
const HKDF_SALT: &[u8] = b"gojinn receipts v1";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the audit key file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write the audit key file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("the audit key file {0} must hold at least 32 bytes as 64 or more hex digits")]
    TooShort(PathBuf),
}

/// A master key and its id (the first 8 bytes of its sha256, hex).
#[derive(Clone)]
pub struct MasterKey {
    id: String,
    secret: Vec<u8>,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({}, <redacted>)", self.id)
    }
}

impl MasterKey {
    pub fn from_bytes(secret: Vec<u8>) -> Self {
        let id = hex::encode(&Sha256::digest(&secret)[..8]);
        Self { id, secret }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Reads a key file holding hex digits (whitespace ignored).
    pub fn read(path: &Path) -> Result<Self, KeyError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| KeyError::Read { path: path.into(), source })?;
        let secret = hex::decode(text.trim()).map_err(|_| KeyError::TooShort(path.into()))?;
        if secret.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort(path.into()));
        }
        Ok(Self::from_bytes(secret))
    }

    /// Reads `path`, or creates it with a fresh random key (mode 0600) when it does not exist.
    /// Returns the key and whether it was generated.
    pub fn read_or_generate(path: &Path) -> Result<(Self, bool), KeyError> {
        if path.exists() {
            return Self::read(path).map(|key| (key, false));
        }
        let secret: [u8; 32] = rand::random();
        write_private(path, hex::encode(secret).as_bytes())
            .map_err(|source| KeyError::Write { path: path.into(), source })?;
        Ok((Self::from_bytes(secret.to_vec()), true))
    }

    /// The tenant's signing key.
    fn tenant_key(&self, tenant: &str) -> [u8; 32] {
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(Some(HKDF_SALT), &self.secret)
            .expand(tenant.as_bytes(), &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        key
    }
}

/// Writes a new file readable by its owner only (mode 0600), whole or not at all: written
/// beside it, then moved into place; an existing file is an error and is left as it is.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist_noclobber(path).map(drop).map_err(|err| err.error)
}

/// The current master key and the retired ones that still verify older receipts.
#[derive(Clone, Debug)]
pub struct Keyring {
    current: MasterKey,
    retired: Vec<MasterKey>,
}

type HmacSha256 = Hmac<Sha256>;

impl Keyring {
    pub fn new(current: MasterKey, retired: Vec<MasterKey>) -> Self {
        Self { current, retired }
    }

    /// The ids of its keys, the current one first.
    pub fn ids(&self) -> Vec<&str> {
        std::iter::once(&self.current).chain(&self.retired).map(MasterKey::id).collect()
    }

    /// `tenant`'s keys, derived once: sign and verify many receipts with them.
    pub fn tenant(&self, tenant: &str) -> TenantKeys {
        let keyed = |master: &MasterKey| {
            let mac =
                HmacSha256::new_from_slice(&master.tenant_key(tenant)).expect("HMAC takes any key length");
            (master.id.clone(), mac)
        };
        TenantKeys { keys: std::iter::once(&self.current).chain(&self.retired).map(keyed).collect() }
    }
}

/// One tenant's signing keys, the current one first, each as an HMAC already keyed (so a
/// signature costs the message's hashing only, not HKDF and key setup again).
#[derive(Clone)]
pub struct TenantKeys {
    keys: Vec<(String, HmacSha256)>,
}

impl fmt::Debug for TenantKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        write!(f, "TenantKeys({ids:?}, <redacted>)")
    }
}

impl TenantKeys {
    /// Id of the master key [`TenantKeys::sign`] uses.
    pub fn current_id(&self) -> &str {
        &self.keys[0].0
    }

    /// HMAC-SHA256 of `bytes` under the key derived from the current master key, hex.
    pub fn sign(&self, bytes: &[u8]) -> String {
        let mut mac = self.keys[0].1.clone();
        mac.update(bytes);
        super::receipt::hex_string(&mac.finalize().into_bytes().into())
    }

    /// Whether `signature` is valid for the concatenation of `parts` under the key derived from
    /// master key `key_id`; `None` when the key id is unknown. Constant-time comparison.
    pub fn verify(&self, key_id: &str, parts: &[&[u8]], signature: &str) -> Option<bool> {
        let (_, keyed) = self.keys.iter().find(|(id, _)| id == key_id)?;
        let mut expected = [0u8; 32];
        if hex::decode_to_slice(signature, &mut expected).is_err() {
            return Some(false);
        }
        let mut mac = keyed.clone();
        for part in parts {
            mac.update(part);
        }
        Some(mac.verify_slice(&expected).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_get_different_keys_and_old_keys_still_verify() {
        let old = MasterKey::from_bytes(vec![1; 32]);
        let new = MasterKey::from_bytes(vec![2; 32]);
        let before = Keyring::new(old.clone(), vec![]);
        let signature = before.tenant("acme").sign(b"data");
        assert_ne!(signature, before.tenant("beta").sign(b"data"), "per-tenant keys differ");
        let after = Keyring::new(new.clone(), vec![old.clone()]);
        assert_eq!(after.tenant("acme").verify(old.id(), &[b"da", b"ta"], &signature), Some(true));
        assert_eq!(after.tenant("beta").verify(old.id(), &[b"data"], &signature), Some(false));
        assert_eq!(after.tenant("acme").verify("ffffffffffffffff", &[b"data"], &signature), None);
        assert_eq!(after.tenant("acme").verify(old.id(), &[b"data"], "not hex"), Some(false));
        assert_eq!(after.tenant("acme").current_id(), new.id());
        assert!(!format!("{:?}", after.tenant("acme")).contains(&hex::encode(&new.secret)));
    }

    #[test]
    fn a_generated_key_is_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        let (generated, fresh) = MasterKey::read_or_generate(&path).unwrap();
        assert!(fresh);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let (again, fresh) = MasterKey::read_or_generate(&path).unwrap();
        assert!(!fresh);
        assert_eq!(generated.id(), again.id());
        assert!(!format!("{generated:?}").contains(&hex::encode(&generated.secret)), "Debug redacts");
    }
}
