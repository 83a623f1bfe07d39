//! A client of a running node's admin API, for `gojinn jobs` and `gojinn audit verify --url`. It
//! reads the token from a file (never from the command line, where other users could see it in
//! the process list) and turns the API's JSON errors back into their code and message.

use crate::audit::log::{AuditPage, Stored, StoredRecord};
use crate::jobs::{JobId, status_name};
use crate::state::{JobRecord, JobStatus};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long one admin request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read the admin token from {path}: {source} (pass --token-file)")]
    Token { path: PathBuf, source: std::io::Error },
    #[error("cannot reach the node at {url}: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("the node answered {status}: {message} ({code})")]
    Api { status: u16, code: String, message: String },
}

/// The JSON error body every failure of the API has.
#[derive(Deserialize)]
struct ErrorBody {
    code: String,
    message: String,
}

#[derive(Deserialize)]
struct JobList {
    jobs: Vec<JobRecord>,
}

pub struct AdminClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl AdminClient {
    /// A client of the node at `url` (`http://host:port`), with the token in `token_file`.
    pub fn new(url: &str, token_file: &Path) -> Result<Self, ClientError> {
        let token = std::fs::read_to_string(token_file)
            .map_err(|source| ClientError::Token { path: token_file.to_path_buf(), source })?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|source| ClientError::Http { url: url.to_owned(), source })?;
        Ok(Self { base: url.trim_end_matches('/').to_owned(), token: token.trim().to_owned(), http })
    }

    /// A tenant's jobs, newest first.
    pub async fn list(
        &self,
        tenant: &str,
        status: Option<JobStatus>,
        limit: usize,
    ) -> Result<Vec<JobRecord>, ClientError> {
        let mut path = format!("/_gojinn/v1/tenants/{tenant}/jobs?limit={limit}");
        if let Some(status) = status {
            path.push_str(&format!("&status={}", status_name(status)));
        }
        Ok(self.send::<JobList>(reqwest::Method::GET, &path).await?.jobs)
    }

    pub async fn show(&self, id: &JobId) -> Result<JobRecord, ClientError> {
        self.send(reqwest::Method::GET, &format!("/_gojinn/v1/tenants/{}/jobs/{id}", id.tenant())).await
    }

    pub async fn redrive(&self, id: &JobId) -> Result<JobRecord, ClientError> {
        let path = format!("/_gojinn/v1/tenants/{}/jobs/{id}/redrive", id.tenant());
        self.send(reqwest::Method::POST, &path).await
    }

    /// The reconcile status: applied commit and every resource's state.
    pub async fn status(&self) -> Result<crate::reconcile::Status, ClientError> {
        self.send(reqwest::Method::GET, "/_gojinn/v1/status").await
    }

    /// Up to `limit` records of `tenant`'s audit log after sequence `after`, as stored.
    pub async fn audit_records(
        &self,
        tenant: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Stored>, ClientError> {
        let path = format!("/_gojinn/v1/tenants/{tenant}/audit?after={after}&limit={limit}");
        let page: AuditPage = self.send(reqwest::Method::GET, &path).await?;
        Ok(page.records.into_iter().map(StoredRecord::into_stored).collect())
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let http_error = |source| ClientError::Http { url: url.clone(), source };
        let response =
            self.http.request(method, &url).bearer_auth(&self.token).send().await.map_err(http_error)?;
        let status = response.status();
        if status.is_success() {
            return response.json().await.map_err(http_error);
        }
        let body = response.bytes().await.map_err(http_error)?;
        let error = serde_json::from_slice::<ErrorBody>(&body).unwrap_or_else(|_| ErrorBody {
            code: "unknown".into(),
            message: String::from_utf8_lossy(&body).into_owned(),
        });
        Err(ClientError::Api { status: status.as_u16(), code: error.code, message: error.message })
    }
}
