//! An HTTP proxy in front of a real registry that logs every request (method, path,
//! status, bytes each way) and injects faults on request: a status (500, 429 with
//! `Retry-After`), a connection dropped before answering, a response cut short (connection
//! reset mid-blob), or a response body with a flipped byte.
//!
//! It keeps the client's `Host` (and sets `X-Forwarded-Host`), so the registry's upload
//! `Location`s point back at the proxy.

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub type Body = BoxBody<Bytes, std::io::Error>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// The answer of a test server's handler: a response, or `None` to drop the connection.
pub type Handled = Option<Response<Body>>;

/// Serves `handler` on a free port of 127.0.0.1 until the returned task is aborted.
pub async fn serve<F, Fut>(handler: F) -> (u16, JoinHandle<()>)
where
    F: Fn(Request<Bytes>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Handled> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .port();
    let handler = Arc::new(handler);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let handler = handler.clone();
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map_err(|e| std::io::Error::other(e.to_string()))?
                            .to_bytes();
                        match handler(Request::from_parts(parts, body)).await {
                            Some(response) => Ok(response),
                            // An error makes hyper close the connection without answering.
                            None => Err(std::io::Error::other("dropped by the test")),
                        }
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (port, task)
}

#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    /// Path and query.
    pub path: String,
    /// 0 when the connection was dropped.
    pub status: u16,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

#[derive(Debug, Clone)]
pub enum Action {
    /// Answer this status (with `Retry-After: n` when given) instead of forwarding.
    Status(u16, Option<u64>),
    /// Close the connection without answering (after reading the request).
    Drop,
    /// Forward, but send only this many body bytes, then reset the connection.
    CutResponseAfter(usize),
    /// Forward with one byte of the response body flipped.
    CorruptResponse,
    /// Wait this many milliseconds, then forward (to make transfers overlap).
    Delay(u64),
}

#[derive(Debug, Clone)]
pub struct Fault {
    pub method: &'static str,
    /// Matches when the request's path and query contain this.
    pub path_contains: String,
    pub action: Action,
    /// How many matching requests it applies to.
    pub times: usize,
}

struct State {
    in_flight: std::sync::atomic::AtomicUsize,
    max_in_flight: std::sync::atomic::AtomicUsize,
    upstream: String,
    client: reqwest::Client,
    log: Mutex<Vec<Logged>>,
    faults: Mutex<Vec<Fault>>,
}

pub struct Proxy {
    pub port: u16,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// A proxy to `http://127.0.0.1:<upstream_port>`.
    pub async fn start(upstream_port: u16) -> Proxy {
        let state = Arc::new(State {
            in_flight: Default::default(),
            max_in_flight: Default::default(),
            upstream: format!("http://127.0.0.1:{upstream_port}"),
            client: imgbuild::http::client_builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_else(|e| panic!("{e}")),
            log: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
        });
        let shared = state.clone();
        let (port, task) = serve(move |request| {
            let state = shared.clone();
            async move { handle(state, request).await }
        })
        .await;
        Proxy { port, state, task }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn add_fault(
        &self,
        method: &'static str,
        path_contains: &str,
        action: Action,
        times: usize,
    ) {
        lock(&self.state.faults).push(Fault {
            method,
            path_contains: path_contains.to_owned(),
            action,
            times,
        });
    }

    /// Faults that have not fired yet.
    pub fn pending_faults(&self) -> Vec<Fault> {
        lock(&self.state.faults).clone()
    }

    pub fn requests(&self) -> Vec<Logged> {
        lock(&self.state.log).clone()
    }

    pub fn clear(&self) {
        lock(&self.state.log).clear();
        self.state
            .max_in_flight
            .store(0, std::sync::atomic::Ordering::SeqCst);
    }

    /// The most requests handled at the same time since the last `clear`.
    pub fn max_in_flight(&self) -> usize {
        self.state
            .max_in_flight
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Requests whose method is `method` and whose path contains `part`.
    pub fn count(&self, method: &str, part: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method && r.path.contains(part))
            .count()
    }

    /// Bytes the client sent in request bodies.
    pub fn bytes_up(&self) -> u64 {
        self.requests().iter().map(|r| r.request_bytes).sum()
    }

    /// Bytes of response bodies.
    pub fn bytes_down(&self) -> u64 {
        self.requests().iter().map(|r| r.response_bytes).sum()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn take_fault(state: &State, method: &str, path: &str) -> Option<Action> {
    let mut faults = lock(&state.faults);
    let index = faults
        .iter()
        .position(|f| f.method == method && path.contains(&f.path_contains) && f.times > 0)?;
    let action = faults[index].action.clone();
    faults[index].times -= 1;
    if faults[index].times == 0 {
        faults.remove(index);
    }
    Some(action)
}

async fn handle(state: Arc<State>, request: Request<Bytes>) -> Handled {
    use std::sync::atomic::Ordering;
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let handled = forward(&state, request).await;
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    handled
}

async fn forward(state: &State, request: Request<Bytes>) -> Handled {
    let method = request.method().as_str().to_owned();
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let request_bytes = request.body().len() as u64;
    let log = |status: u16, response_bytes: u64| {
        lock(&state.log).push(Logged {
            method: method.clone(),
            path: path.clone(),
            status,
            request_bytes,
            response_bytes,
        });
    };
    let fault = take_fault(state, &method, &path);
    if let Some(Action::Delay(ms)) = &fault {
        tokio::time::sleep(std::time::Duration::from_millis(*ms)).await;
    }
    match &fault {
        Some(Action::Status(status, retry_after)) => {
            let body =
                r#"{"errors":[{"code":"UNAVAILABLE","message":"injected by the test proxy"}]}"#;
            log(*status, body.len() as u64);
            let mut response = Response::builder()
                .status(*status)
                .header("Content-Type", "application/json");
            if let Some(seconds) = retry_after {
                response = response.header("Retry-After", seconds.to_string());
            }
            return response.body(full(body)).ok();
        }
        Some(Action::Drop) => {
            log(0, 0);
            return None;
        }
        _ => {}
    }
    let proxy_host = request
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let method_for_upstream = reqwest::Method::from_bytes(method.as_bytes()).ok()?;
    let mut upstream = state
        .client
        .request(method_for_upstream, format!("{}{path}", state.upstream));
    for (name, value) in request.headers() {
        if !matches!(
            name.as_str(),
            "host" | "connection" | "content-length" | "transfer-encoding"
        ) {
            upstream = upstream.header(name.as_str(), value.as_bytes());
        }
    }
    let sent = upstream
        .header("Host", proxy_host.as_str())
        .header("X-Forwarded-Host", proxy_host.as_str())
        .header("X-Forwarded-Proto", "http")
        .body(request.into_body())
        .send()
        .await;
    let upstream_response = match sent {
        Ok(r) => r,
        Err(e) => {
            log(502, 0);
            return Response::builder()
                .status(502)
                .body(full(format!("proxy: {e}")))
                .ok();
        }
    };
    let status = upstream_response.status().as_u16();
    let mut response = Response::builder().status(status);
    for (name, value) in upstream_response.headers() {
        if !matches!(name.as_str(), "connection" | "transfer-encoding") {
            response = response.header(name.as_str(), value.as_bytes());
        }
    }
    let mut body = upstream_response.bytes().await.unwrap_or_default().to_vec();
    match fault {
        Some(Action::CorruptResponse) => {
            let middle = body.len() / 2;
            if let Some(b) = body.get_mut(middle) {
                *b ^= 0x55;
            }
            log(status, body.len() as u64);
            response.body(full(body)).ok()
        }
        Some(Action::CutResponseAfter(n)) => {
            let n = n.min(body.len().saturating_sub(1));
            log(status, n as u64);
            let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
                Ok(Frame::data(Bytes::copy_from_slice(&body[..n]))),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "reset by the test proxy",
                )),
            ];
            response
                .body(BodyExt::boxed(StreamBody::new(futures_util::stream::iter(
                    frames,
                ))))
                .ok()
        }
        _ => {
            log(status, body.len() as u64);
            response.body(full(body)).ok()
        }
    }
}
