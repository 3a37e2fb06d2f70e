//! HTTP for the registry client: two reqwest clients (verified TLS, and the unverified one
//! only insecure registries get), root certificates, timeouts, retries with backoff, and
//! request descriptions safe to show.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};

use super::error::{Error, Result};
use super::progress::Progress;

/// How hard to try.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per request (and per blob transfer), the first included.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// A `Retry-After` longer than this is not waited for: the request fails at once.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Runs a whole transfer (`what`, e.g. `upload of blob sha256:…`) until it succeeds, a
    /// failure is not transient, or the attempts run out; every retry is reported.
    pub async fn run<T, F, Fut>(
        &self,
        what: &str,
        progress: &dyn Progress,
        mut transfer: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut attempt = 1;
        loop {
            match transfer().await {
                Ok(value) => return Ok(value),
                Err(e) if e.is_transient() && attempt < self.max_attempts => {
                    let delay = self.backoff(attempt);
                    progress.on_retry(what, attempt, delay, &super::error::with_causes(&e));
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) if e.is_transient() => {
                    return Err(Error::GaveUp {
                        what: what.to_owned(),
                        attempts: attempt,
                        source: Box::new(e),
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Exponential backoff with a little jitter, so parallel transfers do not retry in step.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        let capped = exp.min(self.max_backoff);
        let jitter_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::from(d.subsec_nanos() % 100))
            .unwrap_or(0);
        capped + Duration::from_millis(jitter_ms * capped.as_millis().min(1000) as u64 / 1000)
    }
}

/// Client tuning: concurrency, upload sizes, retries, timeouts, extra CA certificates.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub max_concurrent_downloads: usize,
    pub max_concurrent_uploads: usize,
    /// Blobs up to this size go up in one PUT; larger ones in PATCH chunks.
    pub monolithic_upload_max: u64,
    pub chunk_size: usize,
    pub retry: RetryPolicy,
    pub connect_timeout: Duration,
    /// No bytes for this long fails a request (a whole blob may take longer).
    pub read_timeout: Duration,
    /// PEM certificates trusted in addition to the system roots (`SSL_CERT_FILE`).
    pub extra_ca_file: Option<PathBuf>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            max_concurrent_downloads: 4,
            max_concurrent_uploads: 4,
            monolithic_upload_max: 16 << 20,
            chunk_size: 16 << 20,
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(120),
            extra_ca_file: None,
        }
    }
}

impl ClientConfig {
    /// The defaults, with `SSL_CERT_FILE` from the environment.
    pub fn from_env() -> ClientConfig {
        ClientConfig::from_env_with(|key| std::env::var_os(key))
    }

    pub fn from_env_with(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> ClientConfig {
        ClientConfig {
            extra_ca_file: env("SSL_CERT_FILE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            ..ClientConfig::default()
        }
    }
}

/// The system's CA bundle, where Linux distributions keep it (Go's list).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

pub struct Transport {
    verified: reqwest::Client,
    unverified: reqwest::Client,
    pub retry: RetryPolicy,
}

impl Transport {
    pub fn new(config: &ClientConfig) -> Result<Transport> {
        let builder = || {
            crate::http::client_builder()
                .connect_timeout(config.connect_timeout)
                .read_timeout(config.read_timeout)
        };
        let mut verified = builder();
        if let Some(path) = &config.extra_ca_file {
            // The platform verifier would read SSL_CERT_FILE *instead of* the system
            // roots; Docker trusts both, so build the root set here.
            let mut roots = Vec::new();
            if let Some(bundle) = SYSTEM_BUNDLES
                .iter()
                .find(|p| std::path::Path::new(p).is_file())
            {
                let pem =
                    std::fs::read(bundle).map_err(|e| Error::io(format!("reading {bundle}"), e))?;
                roots.extend(reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    Error::Client(format!("the system CA bundle {bundle} is invalid: {e}"))
                })?);
            }
            let pem = std::fs::read(path)
                .map_err(|e| Error::io(format!("reading SSL_CERT_FILE `{}`", path.display()), e))?;
            let extra = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::Client(format!(
                    "SSL_CERT_FILE `{}` holds no valid PEM certificates: {e}",
                    path.display()
                ))
            })?;
            if extra.is_empty() {
                return Err(Error::Client(format!(
                    "SSL_CERT_FILE `{}` holds no PEM certificates",
                    path.display()
                )));
            }
            roots.extend(extra);
            verified = verified.tls_certs_only(roots);
        }
        let build_err = |e: reqwest::Error| Error::Client(format!("cannot set up HTTP: {e}"));
        Ok(Transport {
            verified: verified.build().map_err(build_err)?,
            unverified: builder()
                .tls_danger_accept_invalid_certs(true)
                .build()
                .map_err(build_err)?,
            retry: config.retry.clone(),
        })
    }

    pub fn client(&self, insecure: bool) -> &reqwest::Client {
        if insecure {
            &self.unverified
        } else {
            &self.verified
        }
    }

    /// Sends a request built afresh for each attempt, retrying connection errors, 5xx and
    /// 429 (after `Retry-After` when given) up to the policy's bound. Any other answer,
    /// success or not, is returned for the caller to judge.
    pub async fn send(
        &self,
        method: &Method,
        url: &Url,
        build: &(dyn Fn() -> RequestBuilder + Send + Sync),
        progress: &dyn Progress,
    ) -> Result<Response> {
        let request = describe(method, url);
        let mut attempt = 1;
        loop {
            let last = attempt >= self.retry.max_attempts;
            let delay = match build().send().await {
                Ok(response) if !is_retryable_status(response.status()) => return Ok(response),
                Ok(response) => {
                    let status = response.status();
                    let retry_after = retry_after(response.headers());
                    if last {
                        return Err(status_error(&request, response).await);
                    }
                    if let Some(wait) = retry_after
                        && wait > self.retry.max_retry_after
                    {
                        return Err(Error::Status {
                            request,
                            status: status.as_u16(),
                            detail: format!(
                                ": the registry asked to retry after {}s, longer than imgbuild waits ({}s)",
                                wait.as_secs(),
                                self.retry.max_retry_after.as_secs()
                            ),
                        });
                    }
                    let delay = retry_after.unwrap_or_else(|| self.retry.backoff(attempt));
                    progress.on_retry(&request, attempt, delay, &format!("answered {status}"));
                    delay
                }
                Err(e) if e.is_builder() || e.is_redirect() || last => {
                    return Err(Error::Transport {
                        request,
                        attempts: attempt,
                        source: e.without_url(),
                    });
                }
                Err(e) => {
                    let delay = self.retry.backoff(attempt);
                    progress.on_retry(
                        &request,
                        attempt,
                        delay,
                        &super::error::with_causes(&e.without_url()),
                    );
                    delay
                }
            };
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }
}

fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || (status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED)
}

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// A non-success answer as an error, with the registry's error codes when it sent some.
pub async fn status_error(request: &str, response: Response) -> Error {
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    Error::Status {
        request: request.to_owned(),
        status,
        detail: registry_error_detail(&body),
    }
}

/// `: CODE: message; CODE: message` from a distribution error body, or empty.
pub fn registry_error_detail(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_str::<Errors>(body) {
        Ok(parsed) if !parsed.errors.is_empty() => {
            let entries: Vec<String> = parsed
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.code, e.message))
                .collect();
            format!(": {}", entries.join("; "))
        }
        _ => String::new(),
    }
}

/// `METHOD url` with any user info removed and query values other than the few that say
/// what the request is replaced by `…` (upload `_state` tokens are long and opaque).
pub fn describe(method: &Method, url: &Url) -> String {
    format!("{method} {}", display_url(url))
}

pub fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    if shown.query().is_some() {
        let pairs: Vec<(String, String)> = shown
            .query_pairs()
            .map(|(k, v)| {
                let keep = matches!(
                    k.as_ref(),
                    "digest" | "mount" | "from" | "service" | "scope"
                );
                (
                    k.into_owned(),
                    if keep { v.into_owned() } else { "…".into() },
                )
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_credentials_or_state() {
        let url = Url::parse(
            "https://user:pw@r.example.com/v2/a/blobs/uploads/x?_state=SECRETISH&digest=sha256:ab",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let shown = describe(&Method::PUT, &url);
        assert!(
            !shown.contains("pw") && !shown.contains("user") && !shown.contains("SECRETISH"),
            "{shown}"
        );
        assert!(
            shown.starts_with("PUT https://r.example.com/v2/a/blobs/uploads/x?"),
            "{shown}"
        );
        assert!(shown.contains("digest=sha256%3Aab"), "{shown}");
    }

    #[test]
    fn retry_after_in_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "3".parse().unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        let later = std::time::SystemTime::now() + Duration::from_secs(30);
        headers.insert(
            RETRY_AFTER,
            httpdate::fmt_http_date(later)
                .parse()
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let wait = retry_after(&headers).unwrap_or_default();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        headers.insert(
            RETRY_AFTER,
            "soon".parse().unwrap_or_else(|e| panic!("{e}")),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
            ..RetryPolicy::default()
        };
        let first = policy.backoff(1);
        assert!(first >= Duration::from_millis(100) && first < Duration::from_millis(120));
        assert!(policy.backoff(2) >= Duration::from_millis(200));
        assert!(policy.backoff(10) < Duration::from_millis(400));
    }

    #[test]
    fn registry_error_bodies() {
        assert_eq!(
            registry_error_detail(
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#
            ),
            ": MANIFEST_UNKNOWN: manifest unknown"
        );
        assert_eq!(registry_error_detail("<html>"), "");
    }

    #[test]
    fn ssl_cert_file_comes_from_the_environment() {
        let config =
            ClientConfig::from_env_with(|k| (k == "SSL_CERT_FILE").then(|| "/x.pem".into()));
        assert_eq!(config.extra_ca_file, Some(PathBuf::from("/x.pem")));
        assert_eq!(ClientConfig::from_env_with(|_| None).extra_ca_file, None);
    }
}
