//! The reconcile webhook, `POST /_gojinn/v1/reconcile`: queues a reconcile pass for whoever
//! proves it may. Three proofs are accepted: the admin bearer token; GitHub's
//! `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>` and GitLab's `X-Gitlab-Token`,
//! both with the secret in `reconcile.webhook.secretFile`, so a git host can call it directly.
//! Every comparison takes constant time; without a configured secret only the token is accepted.
//! The secret is read from a file, never from the config itself, and never logged.

use super::keys::{self, AccessError, Need};
use super::openapi::strict;
use super::{Admin, ApiError};
use crate::failure::{ErrorBody, Failure};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Limited};
use sha2::Sha256;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The largest body whose signature is checked. GitHub lists at most 2048 commits in a push
/// event, a few MiB; the body is only read when a signature comes with it.
pub const MAX_SIGNED_BODY: u64 = 8 << 20;
/// How long a git host may take to send that body.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

const GITHUB_SIGNATURE: &str = "x-hub-signature-256";
const GITLAB_TOKEN: &str = "x-gitlab-token";

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("cannot read the webhook secret file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the webhook secret file {0} is empty")]
    Empty(PathBuf),
}

/// The shared secret of the git hosts' webhooks.
pub struct WebhookSecret {
    key: Vec<u8>,
    /// The same secret, for `X-Gitlab-Token`, kept as a digest like the admin token.
    token: super::AdminToken,
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

impl WebhookSecret {
    /// The secret in `path` (surrounding whitespace trimmed), which must exist and not be empty.
    pub fn load(path: &Path) -> Result<Self, WebhookError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| WebhookError::Read { path: path.to_path_buf(), source })?;
        let secret = text.trim();
        if secret.is_empty() {
            return Err(WebhookError::Empty(path.to_path_buf()));
        }
        Ok(Self::new(secret))
    }

    pub fn new(secret: &str) -> Self {
        Self { key: secret.as_bytes().to_vec(), token: super::AdminToken::new(secret) }
    }

    /// Whether `signature` (`sha256=<hex>`) is the HMAC-SHA256 of `body` under the secret.
    pub fn verify_github(&self, signature: &[u8], body: &[u8]) -> bool {
        let Some(digest) = signature.strip_prefix(b"sha256=").and_then(|hex| hex::decode(hex).ok()) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(body);
        mac.verify_slice(&digest).is_ok()
    }

    /// Whether `token` is the secret.
    pub fn verify_gitlab(&self, token: &[u8]) -> bool {
        std::str::from_utf8(token).is_ok_and(|token| self.token.verify(token))
    }
}

/// The webhook's route; it authenticates its requests itself.
pub fn routes() -> OpenApiRouter<Arc<Admin>> {
    OpenApiRouter::new().routes(strict(routes!(request_reconcile)))
}

/// `POST /_gojinn/v1/reconcile` → 202 `{"queued": true}`: a pass is queued; requests arriving
/// while one is pending are one pass. Its outcome shows in `GET /_gojinn/v1/status`.
#[utoipa::path(
    post,
    path = "/_gojinn/v1/reconcile",
    tag = "reconcile",
    summary = "Queue a reconcile pass",
    description = "Queues a reconcile pass; requests arriving while one is pending are one pass. Takes the admin \
        token, or, with reconcile.webhook.secretFile set, GitHub's X-Hub-Signature-256 over the body or GitLab's \
        X-Gitlab-Token, so a git host can call it directly. The body is read only to check a GitHub signature.",
    security(("admin_token" = []), ("github_signature" = []), ("gitlab_token" = [])),
    responses(
        (status = 202, description = "`{queued: true}`: a pass is queued", body = inline(serde_json::Value)),
        (status = 400, description = "`bad_body`: the signed body could not be read in time", body = ErrorBody),
        (status = 401, description = "`unauthorized`: none of the proofs, or a wrong one", body = ErrorBody),
        (status = 403, description = "`forbidden`: a tenant's API key, which this route does not take", body = ErrorBody),
        (status = 413, description = "`body_too_large`: a signed body over 8 MiB", body = ErrorBody),
    ),
)]
pub async fn request_reconcile(
    State(admin): State<Arc<Admin>>,
    request: Request,
) -> Result<Response, Failure> {
    if !authorized(&admin, request).await? {
        return Err(ApiError::WebhookUnauthorized.into());
    }
    admin.passes.request();
    Ok((StatusCode::ACCEPTED, axum::Json(serde_json::json!({ "queued": true }))).into_response())
}

/// Whether the request proves it may ask for a pass: the admin token, or, with a configured
/// secret, a GitLab token or a GitHub signature of its body.
async fn authorized(admin: &Admin, request: Request) -> Result<bool, Failure> {
    let headers = request.headers();
    // A tenant's API key is a valid credential that does not open this route: 403, as on the
    // other admin routes; anything else unknown may still be a git host's proof.
    match keys::authorize(&admin.token, &admin.registry.current(), headers, Need::Admin) {
        Ok(_) => return Ok(true),
        Err(refused @ AccessError::AdminOnly) => return Err(refused.into()),
        Err(_) => {}
    }
    let Some(secret) = &admin.webhook else { return Ok(false) };
    if let Some(token) = headers.get(GITLAB_TOKEN) {
        return Ok(secret.verify_gitlab(token.as_bytes()));
    }
    let Some(signature) = headers.get(GITHUB_SIGNATURE).cloned() else { return Ok(false) };
    let body = read_signed_body(request).await.map_err(Failure::from)?;
    Ok(secret.verify_github(signature.as_bytes(), &body))
}

async fn read_signed_body(request: Request) -> Result<bytes::Bytes, ApiError> {
    let too_large = ApiError::BodyTooLarge(MAX_SIGNED_BODY);
    let declared = request.headers().get(axum::http::header::CONTENT_LENGTH);
    if declared.and_then(|v| v.to_str().ok()?.parse::<u64>().ok()).is_some_and(|len| len > MAX_SIGNED_BODY) {
        return Err(too_large);
    }
    let limited = Limited::new(request.into_body(), MAX_SIGNED_BODY as usize);
    match tokio::time::timeout(BODY_READ_TIMEOUT, limited.collect()).await {
        Err(_) => Err(ApiError::BadBody(format!("not received within {BODY_READ_TIMEOUT:?}"))),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => Err(too_large),
        Ok(Err(error)) => Err(ApiError::BadBody(error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    /// Headers with GitHub's signature of `body` under `secret`.
    fn signed(secret: &str, body: &[u8]) -> HeaderMap {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        let mut headers = HeaderMap::new();
        let value = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        headers.insert(GITHUB_SIGNATURE, value.parse().unwrap());
        headers
    }

    #[test]
    fn only_the_signature_of_the_body_under_the_secret_verifies() {
        let secret = WebhookSecret::new("It's a Secret to Everybody");
        // GitHub's documented example (docs: "Validating webhook deliveries").
        let example = b"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(secret.verify_github(example, b"Hello, World!"));
        assert!(!secret.verify_github(example, b"Hello, World?"), "another body");
        let signature = signed("It's a Secret to Everybody", b"{}");
        assert!(secret.verify_github(signature[GITHUB_SIGNATURE].as_bytes(), b"{}"));
        let other = signed("another secret", b"{}");
        assert!(!secret.verify_github(other[GITHUB_SIGNATURE].as_bytes(), b"{}"), "another secret");
        for malformed in
            [&b""[..], b"sha256=", b"sha256=zz", b"sha1=757107ea", b"757107ea0eb2509fc211221cce984b8a"]
        {
            assert!(!secret.verify_github(malformed, b"Hello, World!"), "{malformed:?}");
        }
    }

    #[test]
    fn only_the_secret_is_a_gitlab_token() {
        let secret = WebhookSecret::new("s3cret");
        assert!(secret.verify_gitlab(b"s3cret"));
        for wrong in [&b""[..], b"s3cre", b"s3cret ", b"\xff"] {
            assert!(!secret.verify_gitlab(wrong), "{wrong:?}");
        }
        assert_eq!(format!("{secret:?}"), "WebhookSecret(..)", "never printed");
    }

    #[test]
    fn the_secret_file_must_exist_and_hold_a_secret() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        assert!(matches!(WebhookSecret::load(&file), Err(WebhookError::Read { .. })));
        std::fs::write(&file, " \n").unwrap();
        assert!(matches!(WebhookSecret::load(&file), Err(WebhookError::Empty(_))));
        std::fs::write(&file, "s3cret\n").unwrap();
        assert!(WebhookSecret::load(&file).unwrap().verify_gitlab(b"s3cret"));
    }
}
