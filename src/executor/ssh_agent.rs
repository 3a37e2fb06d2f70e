//! `RUN --mount=type=ssh` with `--ssh`: the RUN gets a socket of its own, owned and moded
//! as the mount asks (`uid=`, `gid=`, `mode=`; root and 0600 by default), and every
//! connection to it is relayed to the agent `--ssh` named, as BuildKit's session forwards
//! the client's agent. A relay rather than a bind mount of the agent's socket: the owner
//! and mode are then the mount's, as in BuildKit, and the user's agent socket and its
//! directory are never shown to the build.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Relays connections while it lives; dropping it stops accepting (connections already
/// made end with the RUN's process).
pub struct AgentRelay {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AgentRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Listens on `socket` (which must not exist) and relays each connection to `agent`. Must
/// be called within the build's tokio runtime.
pub fn relay(agent: &Path, socket: &Path) -> anyhow::Result<AgentRelay> {
    let listener = std::os::unix::net::UnixListener::bind(socket)
        .with_context(|| format!("creating the ssh agent socket {}", socket.display()))?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(listener)
        .context("listening on the ssh agent socket")?;
    let agent: PathBuf = agent.to_owned();
    let task = tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let agent = agent.clone();
            tokio::spawn(async move {
                // An agent that went away gives the client a closed connection, as a dead
                // agent socket would.
                if let Ok(mut outbound) = tokio::net::UnixStream::connect(&agent).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    Ok(AgentRelay { task })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn connections_reach_the_agent_and_stop_with_the_relay() {
        let dir = tempfile::tempdir().unwrap();
        let agent_path = dir.path().join("agent");
        // A stand-in agent that answers every request with its bytes reversed.
        let agent = tokio::net::UnixListener::bind(&agent_path).unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = agent.accept().await {
                let mut request = [0u8; 5];
                stream.read_exact(&mut request).await.unwrap();
                request.reverse();
                stream.write_all(&request).await.unwrap();
            }
        });
        let socket = dir.path().join("relay");
        let relay = relay(&agent_path, &socket).unwrap();
        for _ in 0..2 {
            let mut client = tokio::net::UnixStream::connect(&socket).await.unwrap();
            client.write_all(b"hello").await.unwrap();
            let mut reply = [0u8; 5];
            client.read_exact(&mut reply).await.unwrap();
            assert_eq!(&reply, b"olleh");
        }
        drop(relay);
        tokio::task::yield_now().await;
        // The listener is gone with the task: nothing accepts any more.
        let refused = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            loop {
                match tokio::net::UnixStream::connect(&socket).await {
                    Err(_) => return,
                    Ok(_) => tokio::task::yield_now().await,
                }
            }
        })
        .await;
        assert!(
            refused.is_ok(),
            "the relay still accepts after it was dropped"
        );
    }
}
