//! The registry client: endpoints (scheme found by a `/v2/` ping, mirrors), authentication
//! (anonymous, Basic, Bearer tokens cached per scope set and refreshed on 401), and
//! repository sessions that the pull and push code send requests through.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use oci_spec::image::Digest;
use reqwest::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use tokio::sync::OnceCell;

use super::challenge::{AuthScheme, BearerChallenge, parse_www_authenticate, select_scheme};
use super::credentials::{Auth, Credentials, Secret};
use super::error::{Error, Result};
use super::progress::Progress;
use super::reference::api_host;
use super::transport::{self, ClientConfig, Transport, describe, display_url};

/// How to reach registries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegistryOptions {
    /// Registry host → mirror base URL, tried first for pulls.
    pub mirrors: std::collections::BTreeMap<String, String>,
    /// Hosts spoken to over plain HTTP / unverified TLS.
    pub insecure: Vec<String>,
}

/// A registry client for one build: it remembers endpoints, tokens and resolved tags, so a
/// tag is resolved once per client.
pub struct Client {
    pub(crate) options: RegistryOptions,
    pub(crate) credentials: Credentials,
    pub(crate) config: ClientConfig,
    pub(crate) transport: Transport,
    endpoints: Mutex<HashMap<String, Arc<OnceCell<Arc<Endpoint>>>>>,
    pub(crate) resolved_tags: Mutex<HashMap<String, Digest>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("options", &self.options)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

pub(crate) enum PullTarget {
    Mirror(String),
    Registry(String),
}

impl std::fmt::Display for PullTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PullTarget::Mirror(url) => write!(f, "mirror {url}"),
            PullTarget::Registry(registry) => f.write_str(registry),
        }
    }
}

/// One place registry requests go to: a registry's API host, or a mirror.
pub(crate) struct Endpoint {
    /// The registry name credentials and blob sources are filed under (`host:port`).
    pub host: String,
    /// `scheme://host[:port][/prefix]/`.
    pub base: Url,
    pub insecure: bool,
    auth: Option<Auth>,
    scheme: Mutex<Option<AuthScheme>>,
    tokens: tokio::sync::Mutex<HashMap<String, Token>>,
}

struct Token {
    value: Secret,
    expires: Instant,
}

impl Client {
    /// A client with the default tuning, trusting `SSL_CERT_FILE` besides the system roots.
    pub fn new(options: &RegistryOptions, credentials: Credentials) -> Result<Client> {
        Client::with_config(options, credentials, ClientConfig::from_env())
    }

    pub fn with_config(
        options: &RegistryOptions,
        credentials: Credentials,
        config: ClientConfig,
    ) -> Result<Client> {
        Ok(Client {
            transport: Transport::new(&config)?,
            options: options.clone(),
            credentials,
            config,
            endpoints: Mutex::new(HashMap::new()),
            resolved_tags: Mutex::new(HashMap::new()),
        })
    }

    /// Whether plain HTTP may be used for a host: listed with `--insecure-registry` (as
    /// `host` or `host:port`), or on the loopback, as Docker allows.
    pub fn allows_plain_http(&self, host: &str) -> bool {
        is_loopback(strip_port(host)) || self.is_listed_insecure(host)
    }

    /// Whether TLS certificates go unverified for a host: only for hosts listed with
    /// `--insecure-registry`. Unlike Docker, a loopback registry that speaks TLS is still
    /// verified (against the system roots and `SSL_CERT_FILE`); it may speak plain HTTP.
    pub fn is_listed_insecure(&self, host: &str) -> bool {
        let bare = strip_port(host);
        self.options
            .insecure
            .iter()
            .any(|entry| entry == host || entry == bare)
    }

    /// Where a pull from `registry` goes, in order: its mirror, then the registry itself.
    /// Endpoints are only contacted when their turn comes.
    /// Whether pulls from `registry` try a mirror first.
    pub fn has_mirror(&self, registry: &str) -> bool {
        self.options.mirrors.contains_key(registry)
    }

    pub(crate) fn pull_targets(&self, registry: &str) -> Vec<PullTarget> {
        let mut targets = Vec::new();
        if let Some(mirror) = self.options.mirrors.get(registry) {
            targets.push(PullTarget::Mirror(mirror.clone()));
        }
        targets.push(PullTarget::Registry(registry.to_owned()));
        targets
    }

    pub(crate) async fn pull_endpoint(
        &self,
        target: &PullTarget,
        progress: &dyn Progress,
    ) -> Result<Arc<Endpoint>> {
        match target {
            PullTarget::Mirror(url) => self.mirror_endpoint(url, progress).await,
            PullTarget::Registry(registry) => self.registry_endpoint(registry, progress).await,
        }
    }

    /// The registry's own API endpoint (pushes never go to mirrors).
    pub(crate) async fn registry_endpoint(
        &self,
        registry: &str,
        progress: &dyn Progress,
    ) -> Result<Arc<Endpoint>> {
        let host = api_host(registry).to_owned();
        let schemes: &[&str] = if self.allows_plain_http(registry) || self.allows_plain_http(&host)
        {
            // Docker's order for insecure registries: TLS first, then plain HTTP.
            &["https", "http"]
        } else {
            &["https"]
        };
        let insecure = self.is_listed_insecure(registry) || self.is_listed_insecure(&host);
        let bases = schemes
            .iter()
            .map(|scheme| {
                Url::parse(&format!("{scheme}://{host}/")).map_err(|e| {
                    Error::Client(format!("`{host}` is not a usable registry host: {e}"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        self.endpoint(
            format!("registry {registry}"),
            registry,
            bases,
            insecure,
            progress,
        )
        .await
    }

    async fn mirror_endpoint(
        &self,
        mirror: &str,
        progress: &dyn Progress,
    ) -> Result<Arc<Endpoint>> {
        let mut base = Url::parse(mirror)
            .map_err(|e| Error::Client(format!("mirror `{mirror}` is not a URL: {e}")))?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let host = match (base.host_str(), base.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => return Err(Error::Client(format!("mirror `{mirror}` has no host"))),
        };
        let insecure = self.is_listed_insecure(&host);
        self.endpoint(
            format!("mirror {mirror}"),
            &host,
            vec![base],
            insecure,
            progress,
        )
        .await
    }

    async fn endpoint(
        &self,
        key: String,
        host: &str,
        bases: Vec<Url>,
        insecure: bool,
        progress: &dyn Progress,
    ) -> Result<Arc<Endpoint>> {
        let cell = {
            let mut endpoints = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
            endpoints.entry(key).or_default().clone()
        };
        cell.get_or_try_init(|| self.ping(host, bases, insecure, progress))
            .await
            .cloned()
    }

    /// `GET /v2/` on each candidate base until one answers: learns the scheme and the
    /// authentication challenge.
    async fn ping(
        &self,
        host: &str,
        bases: Vec<Url>,
        insecure: bool,
        progress: &dyn Progress,
    ) -> Result<Arc<Endpoint>> {
        let credentials = self.credentials.clone();
        let lookup_host = host.to_owned();
        let auth = tokio::task::spawn_blocking(move || credentials.lookup(&lookup_host))
            .await
            .map_err(|e| Error::Client(format!("credential lookup stopped: {e}")))??;
        let client = self.transport.client(insecure);
        let mut errors = Vec::new();
        let count = bases.len();
        for (i, base) in bases.into_iter().enumerate() {
            let via = if base.scheme() == "https" {
                "over HTTPS"
            } else {
                "over plain HTTP"
            }
            .to_owned();
            let url = base
                .join("v2/")
                .map_err(|e| Error::Client(format!("bad registry URL {base}: {e}")))?;
            let build = || client.get(url.clone());
            // With a fallback left, one quick try: a plain-HTTP registry answers a TLS
            // handshake with garbage, and retrying that would only waste time.
            let answer = if i + 1 < count {
                build().send().await.map_err(|e| Error::Transport {
                    request: describe(&Method::GET, &url),
                    attempts: 1,
                    source: e.without_url(),
                })
            } else {
                self.transport
                    .send(&Method::GET, &url, &build, progress)
                    .await
            };
            let response = match answer {
                Ok(r) => r,
                Err(e) => {
                    let chain = super::error::with_causes(&e);
                    let e = if chain.contains("certificate") {
                        Error::Client(format!(
                            "{chain} (trust its CA with SSL_CERT_FILE=FILE, or use \
                             --insecure-registry {host} to skip verification)"
                        ))
                    } else {
                        e
                    };
                    errors.push((via, e));
                    continue;
                }
            };
            let scheme = match response.status() {
                s if s.is_success() => None,
                StatusCode::UNAUTHORIZED => {
                    let challenges = challenges_of(&response);
                    match select_scheme(&challenges) {
                        Some(scheme) => Some(scheme),
                        None => {
                            return Err(Error::Client(format!(
                                "{} asks for authentication imgbuild cannot do ({})",
                                display_url(&url),
                                header_text(&response, WWW_AUTHENTICATE)
                            )));
                        }
                    }
                }
                _ => {
                    let request = describe(&Method::GET, &url);
                    let err = transport::status_error(&request, response).await;
                    errors.push((
                        via,
                        Error::Client(format!("{err}; is this a registry (distribution API v2)?")),
                    ));
                    break;
                }
            };
            return Ok(Arc::new(Endpoint {
                host: host.to_owned(),
                base,
                insecure,
                auth,
                scheme: Mutex::new(scheme),
                tokens: tokio::sync::Mutex::new(HashMap::new()),
            }));
        }
        Err(match errors.len() {
            1 => errors.remove(0).1,
            _ => Error::AllEndpointsFailed {
                what: format!("cannot reach {host}"),
                attempts: errors.into_iter().collect(),
            },
        })
    }

    pub(crate) fn session<'a>(
        &'a self,
        endpoint: Arc<Endpoint>,
        repository: &str,
        scopes: Vec<String>,
        progress: &'a dyn Progress,
    ) -> Session<'a> {
        Session {
            client: self,
            endpoint,
            repository: repository.to_owned(),
            scopes,
            progress,
        }
    }
}

/// Requests to one repository of one endpoint, authorised for a set of scopes.
pub(crate) struct Session<'a> {
    pub client: &'a Client,
    pub endpoint: Arc<Endpoint>,
    pub repository: String,
    pub scopes: Vec<String>,
    pub progress: &'a dyn Progress,
}

/// How a session request is retried.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Idempotent: connection errors, 5xx and 429 are retried here.
    Yes,
    /// Sent once (upload bodies); the caller restarts the whole transfer instead.
    No,
}

pub(crate) type Customize<'f> = &'f (dyn Fn(RequestBuilder) -> RequestBuilder + Send + Sync);

impl Session<'_> {
    /// `<base>/v2/<repository>/<path>`.
    pub fn url(&self, path: &str) -> Result<Url> {
        self.endpoint
            .base
            .join(&format!("v2/{}/{path}", self.repository))
            .map_err(|e| Error::Client(format!("cannot build a URL for {path}: {e}")))
    }

    /// An upload `Location`, absolute or relative to the endpoint.
    pub fn location(&self, response: &Response) -> Result<Url> {
        let value = header_text(response, reqwest::header::LOCATION);
        if value.is_empty() {
            return Err(Error::Client(format!(
                "{} answered {} without a Location",
                display_url(response.url()),
                response.status()
            )));
        }
        self.endpoint
            .base
            .join(&value)
            .map_err(|e| Error::Client(format!("the registry sent a bad Location: {e}")))
    }

    /// Sends a request with authorisation, answering one 401 with fresh credentials.
    pub async fn send(
        &self,
        method: Method,
        url: &Url,
        customize: Customize<'_>,
        retry: Retry,
    ) -> Result<Response> {
        let mut refreshed = false;
        // The token a 401 answered, so a concurrent request's fresh token is reused
        // rather than fetched again.
        let mut rejected: Option<Secret> = None;
        loop {
            let (authorization, token) = self.authorization(rejected.as_ref()).await?;
            let client = self.client.transport.client(self.endpoint.insecure);
            let build = || {
                let request = client.request(method.clone(), url.clone());
                let request = match &authorization {
                    Some(value) => request.header(AUTHORIZATION, value.clone()),
                    None => request,
                };
                customize(request)
            };
            let response = match retry {
                Retry::Yes => {
                    self.client
                        .transport
                        .send(&method, url, &build, self.progress)
                        .await?
                }
                Retry::No => build().send().await.map_err(|e| Error::Transport {
                    request: describe(&method, url),
                    attempts: 1,
                    source: e.without_url(),
                })?,
            };
            let status = response.status();
            if status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN {
                return Ok(response);
            }
            let challenges = challenges_of(&response);
            let new_scheme = select_scheme(&challenges);
            if status == StatusCode::UNAUTHORIZED && !refreshed {
                if let Some(scheme) = new_scheme {
                    let mut current = self
                        .endpoint
                        .scheme
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    *current = Some(scheme);
                }
                refreshed = true;
                rejected = token;
                continue;
            }
            let detail = transport::status_error(&describe(&method, url), response).await;
            return Err(self.auth_error(status, new_scheme.as_ref(), &detail));
        }
    }

    fn auth_error(&self, status: StatusCode, scheme: Option<&AuthScheme>, detail: &Error) -> Error {
        let reason = match (&self.endpoint.auth, scheme) {
            (None, _) => {
                format!("the registry requires credentials and none were found ({detail})")
            }
            (Some(Auth::Basic { username, .. }), Some(AuthScheme::Basic { .. })) => {
                format!("the registry rejected the password of user `{username}` ({detail})")
            }
            (Some(_), Some(AuthScheme::Bearer(BearerChallenge { error: Some(e), .. }))) => {
                format!("the token does not grant this access: {e} ({detail})")
            }
            (Some(_), _) if status == StatusCode::FORBIDDEN => {
                format!("access denied ({detail})")
            }
            (Some(_), _) => format!("the registry rejected the credentials ({detail})"),
        };
        self.auth_failure(reason)
    }

    fn auth_failure(&self, reason: String) -> Error {
        Error::Auth {
            registry: self.endpoint.host.clone(),
            scope: self.scopes.join(" "),
            reason,
            sources: self.client.credentials.describe_sources(),
        }
    }

    /// The `Authorization` header for the current scheme, fetching a token when needed.
    async fn authorization(
        &self,
        rejected: Option<&Secret>,
    ) -> Result<(Option<HeaderValue>, Option<Secret>)> {
        let scheme = self
            .endpoint
            .scheme
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let value = match (scheme, &self.endpoint.auth) {
            (None, _) | (Some(AuthScheme::Basic { .. }), None) => return Ok((None, None)),
            (Some(AuthScheme::Basic { .. }), Some(Auth::Basic { username, password })) => {
                let pair = format!("{username}:{}", password.expose());
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )
            }
            (Some(AuthScheme::Basic { .. }), Some(Auth::IdentityToken(_))) => {
                return Err(self.auth_failure(
                    "the registry wants a password (Basic), but only an identity token was found"
                        .into(),
                ));
            }
            (Some(AuthScheme::Bearer(challenge)), _) => {
                let token = self.token(&challenge, rejected).await?;
                let mut header = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                    .map_err(|_| {
                        self.auth_failure(
                            "the token service sent a token that is not valid in an HTTP header"
                                .into(),
                        )
                    })?;
                header.set_sensitive(true);
                return Ok((Some(header), Some(token)));
            }
        };
        let mut header = HeaderValue::from_str(&value).map_err(|_| {
            self.auth_failure("the credentials are not valid in an HTTP header".into())
        })?;
        header.set_sensitive(true);
        Ok((Some(header), None))
    }

    /// A token for this session's scopes (and any the registry asked for), cached until it
    /// nearly expires.
    async fn token(
        &self,
        challenge: &BearerChallenge,
        rejected: Option<&Secret>,
    ) -> Result<Secret> {
        let scopes = merge_scopes(&self.scopes, &challenge.scopes);
        let key = scopes.join(" ");
        let mut tokens = self.endpoint.tokens.lock().await;
        if let Some(token) = tokens.get(&key)
            && token.expires > Instant::now()
            && rejected != Some(&token.value)
        {
            return Ok(token.value.clone());
        }
        let token = self.fetch_token(challenge, &scopes).await?;
        let value = token.value.clone();
        tokens.insert(key, token);
        Ok(value)
    }

    async fn fetch_token(&self, challenge: &BearerChallenge, scopes: &[String]) -> Result<Token> {
        let realm = Url::parse(&challenge.realm).map_err(|e| {
            self.auth_failure(format!(
                "the token realm `{}` is not a URL ({e})",
                challenge.realm
            ))
        })?;
        let realm_host = realm.host_str().unwrap_or_default().to_owned();
        let client = self
            .client
            .transport
            .client(self.client.is_listed_insecure(&realm_host));
        let auth = self.endpoint.auth.clone();
        let (method, url) = match &auth {
            Some(Auth::IdentityToken(_)) => (Method::POST, realm.clone()),
            _ => {
                let mut url = realm.clone();
                {
                    let mut query = url.query_pairs_mut();
                    if let Some(service) = &challenge.service {
                        query.append_pair("service", service);
                    }
                    for scope in scopes {
                        query.append_pair("scope", scope);
                    }
                }
                (Method::GET, url)
            }
        };
        let service = challenge.service.clone().unwrap_or_default();
        let scope_list = scopes.join(" ");
        let build = || match &auth {
            // OAuth2 refresh-token grant, as Docker does with an identity token.
            Some(Auth::IdentityToken(token)) => client.post(url.clone()).form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", token.expose()),
                ("service", service.as_str()),
                ("scope", scope_list.as_str()),
                ("client_id", "imgbuild"),
            ]),
            Some(Auth::Basic { username, password }) => client
                .get(url.clone())
                .basic_auth(username, Some(password.expose())),
            None => client.get(url.clone()),
        };
        let response = self
            .client
            .transport
            .send(&method, &url, &build, self.progress)
            .await?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let who = match &auth {
                Some(Auth::Basic { username, .. }) => {
                    format!("the credentials of user `{username}`")
                }
                Some(Auth::IdentityToken(_)) => "the identity token".to_owned(),
                None => "anonymous access".to_owned(),
            };
            return Err(self.auth_failure(format!(
                "the token service {} refused {who} ({status})",
                display_url(&realm)
            )));
        }
        if !status.is_success() {
            return Err(transport::status_error(&describe(&method, &url), response).await);
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let body: TokenResponse = response.json().await.map_err(|e| {
            self.auth_failure(format!(
                "the token service {} sent an unreadable answer ({})",
                display_url(&realm),
                e.without_url()
            ))
        })?;
        let value = body
            .token
            .or(body.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                self.auth_failure(format!(
                    "the token service {} sent no token",
                    display_url(&realm)
                ))
            })?;
        // The spec's default lifetime is 60 s; renew a little early.
        let lifetime = Duration::from_secs(body.expires_in.unwrap_or(60).max(10));
        Ok(Token {
            value: Secret::new(value),
            expires: Instant::now() + lifetime - Duration::from_secs(5),
        })
    }
}

/// Our scopes plus those a challenge asked for, one per resource with the union of their
/// actions: `repository:a:pull,push` and `repository:a:push,pull` are one scope.
pub(crate) fn merge_scopes(ours: &[String], asked: &[String]) -> Vec<String> {
    let mut merged: Vec<(String, Vec<String>)> = Vec::new();
    for scope in ours.iter().chain(asked) {
        let (resource, actions) = match scope.rsplit_once(':') {
            Some((resource, actions)) if resource.contains(':') => (resource, actions),
            _ => (scope.as_str(), ""),
        };
        let entry = match merged.iter().position(|(r, _)| r == resource) {
            Some(i) => &mut merged[i].1,
            None => {
                merged.push((resource.to_owned(), Vec::new()));
                let last = merged.len() - 1;
                &mut merged[last].1
            }
        };
        for action in actions.split(',').filter(|a| !a.is_empty()) {
            if !entry.iter().any(|a| a == action) {
                entry.push(action.to_owned());
            }
        }
    }
    merged
        .into_iter()
        .map(|(resource, mut actions)| {
            // pull before push, as registries write them; others after, sorted.
            actions.sort_by_key(|a| match a.as_str() {
                "pull" => (0, String::new()),
                "push" => (1, String::new()),
                other => (2, other.to_owned()),
            });
            if actions.is_empty() {
                resource
            } else {
                format!("{resource}:{}", actions.join(","))
            }
        })
        .collect()
}

fn challenges_of(response: &Response) -> Vec<super::challenge::Challenge> {
    response
        .headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(parse_www_authenticate)
        .collect()
}

pub(crate) const DOCKER_CONTENT_DIGEST: reqwest::header::HeaderName =
    reqwest::header::HeaderName::from_static("docker-content-digest");

pub(crate) fn header_text(response: &Response, name: reqwest::header::HeaderName) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h,
        _ => host,
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Runs blocking work (reading an image's blobs) without stalling the runtime's other
/// tasks where the runtime allows it.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_merge_per_resource() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            merge_scopes(
                &s(&["repository:team/app:pull,push", "repository:base:pull"]),
                &s(&[
                    "repository:team/app:push,pull",
                    "repository:base:delete",
                    "registry:catalog:*"
                ])
            ),
            s(&[
                "repository:team/app:pull,push",
                "repository:base:pull,delete",
                "registry:catalog:*"
            ])
        );
        assert_eq!(merge_scopes(&s(&["odd"]), &[]), s(&["odd"]));
    }

    #[test]
    fn loopback_and_listed_hosts_are_insecure() {
        let options = RegistryOptions {
            insecure: vec!["build.internal".into(), "other.example.com:5000".into()],
            ..RegistryOptions::default()
        };
        let client =
            Client::with_config(&options, Credentials::anonymous(), ClientConfig::default())
                .unwrap_or_else(|e| panic!("{e}"));
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "build.internal:443",
            "other.example.com:5000",
        ] {
            assert!(client.allows_plain_http(host), "{host}");
        }
        for host in [
            "docker.io",
            "other.example.com:5001",
            "example.com",
            "10.0.0.1:5000",
        ] {
            assert!(!client.allows_plain_http(host), "{host}");
        }
        // Loopback may be plain HTTP, but its certificates are still checked.
        assert!(!client.is_listed_insecure("127.0.0.1:5000"));
        assert!(client.is_listed_insecure("build.internal:443"));
    }
}
