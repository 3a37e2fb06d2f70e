//! A token server for the registry's `auth: token` mode: it checks Basic credentials (GET)
//! or an OAuth2 refresh token (POST), and issues RS256 JWTs signed with openssl, carrying
//! an `x5c` certificate the registry trusts through its `rootcertbundle`.
//!
//! Authenticated users get every action they ask for; anonymous requests get none.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use hyper::{Request, Response};
use tokio::task::JoinHandle;

use super::proxy::{Handled, full, serve};
use super::run;

pub const SERVICE: &str = "imgbuild-test-registry";
pub const ISSUER: &str = "imgbuild-test-issuer";

#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub method: String,
    pub scopes: Vec<String>,
    /// The authenticated user, if any.
    pub user: Option<String>,
    pub status: u16,
}

struct State {
    key: PathBuf,
    cert_der_b64: String,
    users: HashMap<String, String>,
    /// identity (refresh) token → user
    refresh_tokens: HashMap<String, String>,
    log: Mutex<Vec<TokenRequest>>,
    /// The next N tokens grant only `pull`, whatever was asked (to make the registry
    /// answer 401 insufficient_scope and the client refresh).
    stingy: AtomicUsize,
    jti: AtomicUsize,
}

pub struct TokenServer {
    pub port: u16,
    /// The signing certificate, for the registry's `rootcertbundle`.
    pub cert: PathBuf,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl TokenServer {
    pub async fn start(
        dir: &Path,
        users: &[(&str, &str)],
        refresh_tokens: &[(&str, &str)],
    ) -> TokenServer {
        let key = dir.join("token-signer.key");
        let cert = dir.join("token-signer.crt");
        run(Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=imgbuild test token signer"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert));
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .unwrap_or_else(|e| panic!("openssl: {e}"));
        assert!(der.status.success());
        let state = Arc::new(State {
            key,
            cert_der_b64: base64::engine::general_purpose::STANDARD.encode(der.stdout),
            users: users
                .iter()
                .map(|(u, p)| ((*u).to_owned(), (*p).to_owned()))
                .collect(),
            refresh_tokens: refresh_tokens
                .iter()
                .map(|(t, u)| ((*t).to_owned(), (*u).to_owned()))
                .collect(),
            log: Mutex::new(Vec::new()),
            stingy: AtomicUsize::new(0),
            jti: AtomicUsize::new(0),
        });
        let shared = state.clone();
        let (port, task) = serve(move |request| {
            let state = shared.clone();
            async move { handle(state, request).await }
        })
        .await;
        TokenServer {
            port,
            cert,
            state,
            task,
        }
    }

    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn make_next_tokens_stingy(&self, count: usize) {
        self.state.stingy.store(count, Ordering::SeqCst);
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn handle(state: Arc<State>, request: Request<Bytes>) -> Handled {
    let method = request.method().as_str().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let pairs: Vec<(String, String)> = if method == "POST" {
        form_pairs(&String::from_utf8_lossy(request.body()))
    } else {
        form_pairs(&query)
    };
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let scopes: Vec<String> = if method == "POST" {
        get("scope")
            .map(|s| s.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default()
    } else {
        pairs
            .iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.clone())
            .collect()
    };
    let basic = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    // Ok(None): anonymous; Err: bad credentials.
    let user: Result<Option<String>, ()> = if method == "POST" {
        match (get("grant_type").as_deref(), get("refresh_token")) {
            (Some("refresh_token"), Some(token)) => state
                .refresh_tokens
                .get(&token)
                .cloned()
                .map(Some)
                .ok_or(()),
            _ => Err(()),
        }
    } else {
        match basic {
            Some(pair) => match pair.split_once(':') {
                Some((u, p)) if state.users.get(u).is_some_and(|known| known == p) => {
                    Ok(Some(u.to_owned()))
                }
                _ => Err(()),
            },
            None => Ok(None),
        }
    };
    let status = if user.is_ok() { 200 } else { 401 };
    state
        .log
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(TokenRequest {
            method: method.clone(),
            scopes: scopes.clone(),
            user: user.clone().ok().flatten(),
            status,
        });
    let Ok(user) = user else {
        return Response::builder()
            .status(401)
            .body(full(r#"{"details":"bad credentials"}"#))
            .ok();
    };
    let stingy = state
        .stingy
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let access: Vec<serde_json::Value> = match &user {
        None => Vec::new(),
        Some(_) => scopes
            .iter()
            .filter_map(|scope| {
                let mut parts = scope.splitn(3, ':');
                let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                let actions: Vec<&str> = if stingy {
                    vec!["pull"]
                } else {
                    actions.split(',').collect()
                };
                Some(serde_json::json!({"type": kind, "name": name, "actions": actions}))
            })
            .collect(),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": [state.cert_der_b64]});
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": user.clone().unwrap_or_default(),
        "aud": get("service").unwrap_or_default(),
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("jti-{}", state.jti.fetch_add(1, Ordering::SeqCst)),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let key = state.key.clone();
    let input = signing_input.clone();
    let signature = tokio::task::spawn_blocking(move || sign(&key, input.as_bytes()))
        .await
        .ok()?;
    let jwt = format!("{signing_input}.{}", b64url(&signature));
    let body = if method == "POST" {
        serde_json::json!({"access_token": jwt, "expires_in": 300})
    } else {
        serde_json::json!({"token": jwt, "access_token": jwt, "expires_in": 300})
    };
    Response::builder()
        .status(200)
        .header("Content-Type", "application/json")
        .body(full(body.to_string()))
        .ok()
}

/// RS256: PKCS#1 v1.5 over SHA-256, which is what `openssl dgst -sign` writes.
fn sign(key: &Path, input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("openssl: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).unwrap_or_else(|e| panic!("{e}"));
    }
    let output = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(output.status.success(), "openssl dgst -sign failed");
    output.stdout
}

fn form_pairs(encoded: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://form/?{encoded}"))
        .map(|url| {
            url.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}
