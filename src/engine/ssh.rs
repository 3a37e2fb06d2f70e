//! `ssh://[user@]host[:port]` engines, reached as the docker CLI reaches them: every
//! connection is an `ssh … -- HOST docker system dial-stdio` process, whose standard input
//! and output carry the engine's HTTP API.
//!
//! Written here rather than taken from bollard's `ssh` feature: that transport hands its
//! ssh library the destination without the `ssh://` it needs to read a port from, so
//! `ssh://host:2222` cannot work, and it starts a control master per connection. Keys come
//! from ssh itself: the agent (`SSH_AUTH_SOCK`), `~/.ssh/config`, the default identities.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bollard::Docker;
use hyper::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// A client for the engine at `ssh://destination`; `timeout` (seconds) as for any other.
pub fn client(address: &str, timeout: u64) -> Result<Docker, bollard::errors::Error> {
    let connector = SshConnector {
        args: Arc::new(ssh_args(address)),
    };
    let client = Client::builder(TokioExecutor::new()).build(connector);
    Docker::connect_with_custom_transport(
        move |request: bollard::BollardRequest| {
            let client = client.clone();
            async move {
                client
                    .request(request)
                    .await
                    .map_err(bollard::errors::Error::from)
            }
        },
        // The host is not used: every connection goes through ssh.
        Some("http://engine.ssh"),
        timeout,
        bollard::API_DEFAULT_VERSION,
    )
}

/// The ssh command line that checks an engine by hand, for hints:
/// `ssh -p 2222 -l me box docker version`.
pub fn check_command(address: &str) -> String {
    let args = ssh_args(address);
    let options: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .skip(2)
        .take_while(|a| *a != "--")
        .collect();
    let host = args
        .iter()
        .skip_while(|a| *a != "--")
        .nth(1)
        .map_or("", String::as_str);
    let mut line = vec!["ssh"];
    line.extend(options);
    line.extend([host, "docker", "version"]);
    line.join(" ")
}

/// `ssh://me@box:2222` → `ssh -p 2222 -l me -- box docker system dial-stdio`. BatchMode:
/// ssh never asks for a password or passphrase on a terminal the build shares.
fn ssh_args(address: &str) -> Vec<String> {
    let destination = address.strip_prefix("ssh://").unwrap_or(address);
    let (user, host_port) = match destination.rsplit_once('@') {
        Some((user, rest)) => (Some(user), rest),
        None => (None, destination),
    };
    // `[v6]:port`, `host:port`, or a host alone.
    let (host, port) = match host_port.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((host, rest)) => (host, rest.strip_prefix(':')),
            None => (host_port, None),
        },
        None => match host_port.rsplit_once(':') {
            Some((host, port)) if port.parse::<u16>().is_ok() => (host, Some(port)),
            _ => (host_port, None),
        },
    };
    let mut args = vec!["-o".to_owned(), "BatchMode=yes".to_owned()];
    if let Some(port) = port {
        args.extend(["-p".to_owned(), port.to_owned()]);
    }
    if let Some(user) = user {
        args.extend(["-l".to_owned(), user.to_owned()]);
    }
    args.extend(
        ["--", host, "docker", "system", "dial-stdio"]
            .into_iter()
            .map(str::to_owned),
    );
    args
}

#[derive(Clone)]
struct SshConnector {
    args: Arc<Vec<String>>,
}

impl tower_service::Service<Uri> for SshConnector {
    type Response = TokioIo<SshStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<SshStream>>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let args = self.args.clone();
        Box::pin(async move { SshStream::open(&args).map(TokioIo::new) })
    }
}

/// One `ssh … docker system dial-stdio` process as a connection. What ssh says on standard
/// error is kept, so a refused key or an unknown host is reported in ssh's words.
struct SshStream {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    stderr: Arc<Mutex<Stderr>>,
    /// Whether the engine has answered anything yet.
    answered: bool,
}

impl SshStream {
    fn open(args: &[String]) -> io::Result<SshStream> {
        let mut child = Command::new("ssh")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run ssh: {e}")))?;
        let (Some(stdin), Some(stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(io::Error::other("ssh started without its pipes"));
        };
        let said = Arc::new(Mutex::new(Stderr::default()));
        let sink = said.clone();
        tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            if let Ok(mut said) = sink.lock() {
                said.text = Some(text);
                if let Some(waker) = said.waiting.take() {
                    waker.wake();
                }
            }
        });
        Ok(SshStream {
            child,
            stdin,
            stdout,
            stderr: said,
            answered: false,
        })
    }

    /// Why the stream ended before the engine answered: ssh's last words, once ssh has
    /// closed its standard error too (pending until then).
    fn closed_early(&self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let Ok(mut said) = self.stderr.lock() else {
            return Poll::Ready(io::Error::other("ssh closed the connection"));
        };
        let Some(text) = &said.text else {
            said.waiting = Some(cx.waker().clone());
            return Poll::Pending;
        };
        let last = text
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("the connection closed before the engine answered");
        Poll::Ready(io::Error::other(format!("ssh: {last}")))
    }
}

/// What ssh wrote on standard error, once it closed it, and who waits for that.
#[derive(Default)]
struct Stderr {
    text: Option<String>,
    waiting: Option<std::task::Waker>,
}

impl Connection for SshStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl tokio::io::AsyncRead for SshStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.stdout).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before && !this.answered => {
                // The end before any answer: ssh failed, and says why on standard error.
                let _ = this.child.start_kill();
                this.closed_early(cx).map(Err)
            }
            Poll::Ready(Ok(())) => {
                this.answered |= buf.filled().len() > before;
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl tokio::io::AsyncWrite for SshStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stdin).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stdin).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stdin).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_destination_becomes_ssh_s_own_options() {
        let dial = ["--", "box", "docker", "system", "dial-stdio"];
        let args = |a: &str| ssh_args(a);
        assert_eq!(args("ssh://box")[2..], dial);
        assert_eq!(
            args("ssh://me@box:2222")[..6],
            ["-o", "BatchMode=yes", "-p", "2222", "-l", "me"]
        );
        assert_eq!(args("ssh://me@box:2222")[6..], dial);
        let v6 = args("ssh://[::1]:22");
        assert_eq!(v6[2..4], ["-p", "22"]);
        assert_eq!(v6[5], "::1");
        assert_eq!(
            check_command("ssh://me@box:2222"),
            "ssh -p 2222 -l me box docker version"
        );
        assert_eq!(check_command("ssh://box"), "ssh box docker version");
    }
}
