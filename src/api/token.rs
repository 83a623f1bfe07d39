//! The admin bearer token: read from `admin.tokenFile`, or, when that is unset, generated once
//! into `dataDir/admin.token` (mode 0600) and announced by its path, never by its value. There
//! is no default secret. Presented tokens are compared in constant time over sha256 digests, so
//! neither the token's contents nor its length leak through timing.

use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Name of the generated token file in the data dir.
pub const TOKEN_FILE_NAME: &str = "admin.token";

/// Why the admin token could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the admin token file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write a new admin token to {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("the admin token file {0} is empty")]
    Empty(PathBuf),
}

/// The admin token, kept only as its digest.
#[derive(Clone)]
pub struct AdminToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    /// The token of `token_file`, or the one generated in `data_dir` (made on first use).
    pub fn load(token_file: Option<&Path>, data_dir: &Path) -> Result<Self, TokenError> {
        let path = match token_file {
            Some(path) => path.to_path_buf(),
            None => {
                let path = data_dir.join(TOKEN_FILE_NAME);
                generate_unless_present(&path)?;
                path
            }
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|source| TokenError::Read { path: path.clone(), source })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(TokenError::Empty(path));
        }
        Ok(Self::new(token))
    }

    pub fn new(token: &str) -> Self {
        Self { digest: Sha256::digest(token.as_bytes()).into() }
    }

    /// Whether `presented` is the token, in time independent of where they differ.
    pub fn verify(&self, presented: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let difference = presented.iter().zip(&self.digest).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(difference) == 0
    }
}

/// Writes a fresh random token to `path` unless the file exists; logs once when it does so. The
/// file (mode 0600) appears whole or not at all: written beside it, then moved into place.
fn generate_unless_present(path: &Path) -> Result<(), TokenError> {
    let write_error = |source| TokenError::Write { path: path.to_path_buf(), source };
    if path.exists() {
        return Ok(());
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(write_error)?;
    file.write_all(format!("{token}\n").as_bytes())
        .and_then(|()| file.as_file().sync_all())
        .map_err(write_error)?;
    match file.persist_noclobber(path) {
        Ok(_) => {}
        Err(err) if err.error.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(err) => return Err(write_error(err.error)),
    }
    tracing::info!("generated an admin token in {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_verifies() {
        let token = AdminToken::new("s3cret");
        assert!(token.verify("s3cret"));
        for wrong in ["", "s3cre", "s3cret ", "S3cret", "s3cret-and-more"] {
            assert!(!token.verify(wrong), "{wrong:?}");
        }
        assert_eq!(format!("{token:?}"), "AdminToken(..)", "never printed");
    }

    #[test]
    fn a_token_is_generated_once_with_mode_0600_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        AdminToken::load(None, dir.path()).unwrap();
        let path = dir.path().join(TOKEN_FILE_NAME);
        let first = std::fs::read_to_string(&path).unwrap();
        assert_eq!(first.trim().len(), 64, "256 random bits in hex");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let token = AdminToken::load(None, dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), first, "a restart keeps the token");
        assert!(token.verify(first.trim()));
    }

    #[test]
    fn a_configured_file_is_used_as_is_and_must_not_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "  from-the-operator \n").unwrap();
        assert!(AdminToken::load(Some(&file), dir.path()).unwrap().verify("from-the-operator"));
        assert!(!dir.path().join(TOKEN_FILE_NAME).exists(), "nothing generated");
        std::fs::write(&file, "\n").unwrap();
        assert!(matches!(AdminToken::load(Some(&file), dir.path()), Err(TokenError::Empty(_))));
        let missing = dir.path().join("missing");
        assert!(matches!(AdminToken::load(Some(&missing), dir.path()), Err(TokenError::Read { .. })));
    }
}
