//! A static HTTP file server on 127.0.0.1 for tests that fetch over HTTP (`ADD URL`, git's
//! dumb HTTP protocol): GET and HEAD of regular files under one directory, with
//! `Content-Length` and `Last-Modified` (the file's mtime) as BuildKit reads them, and 404
//! for anything else. Included with `#[path]` by the tests that need it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// A running server; it stops when dropped.
pub struct StaticServer {
    addr: SocketAddr,
    // Dropping the runtime ends the accept loop and every connection.
    _runtime: tokio::runtime::Runtime,
}

impl StaticServer {
    /// Serves `root` on a free port of 127.0.0.1, on its own small runtime.
    pub fn start(root: &Path) -> StaticServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start a runtime for the HTTP server: {e}"));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0 for the HTTP server: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("no local address: {e}"));
        let root = Arc::new(root.to_path_buf());
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let root = root.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let root = root.clone();
                        async move { Ok::<_, Infallible>(answer(&root, &request)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        StaticServer {
            addr,
            _runtime: runtime,
        }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn answer(root: &Path, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let status = |code: StatusCode| {
        Response::builder()
            .status(code)
            .body(Full::new(Bytes::new()))
            .unwrap_or_default()
    };
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return status(StatusCode::METHOD_NOT_ALLOWED);
    }
    let Some(path) = file_path(root, request.uri().path()) else {
        return status(StatusCode::NOT_FOUND);
    };
    let (Ok(metadata), Ok(content)) = (std::fs::metadata(&path), std::fs::read(&path)) else {
        return status(StatusCode::NOT_FOUND);
    };
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header("Content-Length", content.len())
        .header("Content-Type", "application/octet-stream");
    if let Ok(modified) = metadata.modified() {
        response = response.header("Last-Modified", httpdate::fmt_http_date(modified));
    }
    let body = if request.method() == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from(content)
    };
    response.body(Full::new(body)).unwrap_or_default()
}

/// The regular file a request path names under `root`; `None` for anything that would leave
/// it (`..`) or is not a regular file.
fn file_path(root: &Path, uri_path: &str) -> Option<PathBuf> {
    let relative = Path::new(uri_path.trim_start_matches('/'));
    if !relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return None;
    }
    let path = root.join(relative);
    path.is_file().then_some(path)
}
