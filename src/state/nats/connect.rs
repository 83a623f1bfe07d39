//! The one way a node connects to NATS: the `state:` settings applied to async-nats's
//! `ConnectOptions` (credentials read from their files, TLS with a CA and a client
//! certificate), the plaintext rule enforced first, and a refused connection told apart from an
//! unreachable server: bad credentials and untrusted certificates are named as such, with the
//! servers and the setting to look at. It never puts a secret in a message or a log.

use crate::state::{NatsAuth, StateError, StateSettings};
use async_nats::{ConnectError, ConnectErrorKind, ConnectOptions};
use std::path::Path;

/// `options` with the credentials and TLS of `settings`; `InvalidArgument` naming the setting
/// when the settings cannot connect (plaintext to another machine, an incomplete form) or a file
/// they name cannot be read.
pub(super) async fn secure(
    options: ConnectOptions,
    settings: &StateSettings,
) -> Result<ConnectOptions, StateError> {
    if let Some((setting, problem)) = settings.nats_problems().into_iter().next() {
        return Err(StateError::InvalidArgument(format!("{setting}: {problem}")));
    }
    let mut options = options.require_tls(settings.uses_tls());
    if let Some(auth) = &settings.auth {
        options = authenticate(options, auth).await?;
    }
    if let Some(tls) = &settings.tls {
        if let Some(ca) = &tls.ca_file {
            readable("state.tls.caFile", ca)?;
            options = options.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            readable("state.tls.certFile", cert)?;
            readable("state.tls.keyFile", key)?;
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
    }
    Ok(options)
}

/// `options` with the one credential form of `auth` (`nats_problems` has checked there is one).
async fn authenticate(options: ConnectOptions, auth: &NatsAuth) -> Result<ConnectOptions, StateError> {
    if let Some(path) = &auth.token_file {
        return Ok(options.token(secret("state.auth.tokenFile", path)?));
    }
    if let Some(path) = &auth.nkey_seed_file {
        return Ok(options.nkey(secret("state.auth.nkeySeedFile", path)?));
    }
    if let Some(path) = &auth.creds_file {
        return options.credentials_file(path).await.map_err(|error| {
            StateError::InvalidArgument(format!(
                "state.auth.credsFile: cannot use {}: {error}",
                path.display()
            ))
        });
    }
    match (&auth.user, &auth.password_file) {
        (Some(user), Some(path)) => {
            Ok(options.user_and_password(user.clone(), secret("state.auth.passwordFile", path)?))
        }
        _ => Ok(options),
    }
}

/// The secret in `path` (named by `setting`), surrounding whitespace trimmed; never empty.
fn secret(setting: &str, path: &Path) -> Result<String, StateError> {
    let text = std::fs::read_to_string(path).map_err(|error| unreadable(setting, path, error))?;
    match text.trim() {
        "" => Err(StateError::InvalidArgument(format!("{setting}: {} is empty", path.display()))),
        secret => Ok(secret.to_owned()),
    }
}

/// Checks now that a file async-nats reads when it connects can be read, to name its setting.
fn readable(setting: &str, path: &Path) -> Result<(), StateError> {
    std::fs::File::open(path).map(drop).map_err(|error| unreadable(setting, path, error))
}

fn unreadable(setting: &str, path: &Path, error: std::io::Error) -> StateError {
    StateError::InvalidArgument(format!("{setting}: cannot read {}: {error}", path.display()))
}

/// What the node presented to NATS, as an error can say it.
fn credentials(settings: &StateSettings) -> String {
    match &settings.auth {
        None => "no credentials (state.auth is not set)".to_owned(),
        Some(NatsAuth { token_file: Some(_), .. }) => "the token of state.auth.tokenFile".to_owned(),
        Some(NatsAuth { nkey_seed_file: Some(_), .. }) => "the NKey of state.auth.nkeySeedFile".to_owned(),
        Some(NatsAuth { creds_file: Some(_), .. }) => "the credentials of state.auth.credsFile".to_owned(),
        Some(NatsAuth { user, .. }) => {
            format!(
                "user {:?} with the password of state.auth.passwordFile",
                user.as_deref().unwrap_or_default()
            )
        }
    }
}

/// The error of a connection to `servers` that did not come up, saying what was refused.
pub(super) fn refused(error: ConnectError, servers: &str, settings: &StateSettings) -> StateError {
    match error.kind() {
        ConnectErrorKind::ServerParse => {
            StateError::InvalidArgument(format!("invalid NATS URL {servers:?}: {error}"))
        }
        ConnectErrorKind::AuthorizationViolation => {
            StateError::Unavailable(format!("NATS at {servers} refused {}: {error}", credentials(settings)))
        }
        ConnectErrorKind::Authentication => StateError::Unavailable(format!(
            "cannot authenticate to NATS at {servers} with {}: {error}",
            credentials(settings)
        )),
        _ => match tls_failure(&error) {
            Some(why) => {
                StateError::Unavailable(format!("the TLS handshake with NATS at {servers} failed: {why}"))
            }
            None => StateError::Unavailable(format!("cannot connect to NATS at {servers}: {error}")),
        },
    }
}

/// Why the TLS handshake failed, with the setting to check, if that is what `error` is
/// (async-nats reports a refused handshake as an I/O error around rustls's).
fn tls_failure(error: &ConnectError) -> Option<String> {
    let io = std::error::Error::source(error)?.downcast_ref::<std::io::Error>()?;
    let tls = io.get_ref()?.downcast_ref::<rustls::Error>()?;
    let hint = match tls {
        rustls::Error::InvalidCertificate(_) => {
            "the server's certificate is not trusted (state.tls.caFile names the CA that signed it; \
             without it, the system's roots are used)"
        }
        rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired) => {
            "the server requires a client certificate (state.tls.certFile and keyFile)"
        }
        rustls::Error::AlertReceived(_) => "the server refused the handshake (check state.tls)",
        _ => "check state.tls",
    };
    Some(format!("{tls}: {hint}"))
}
