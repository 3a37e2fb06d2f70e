//! Reading a blob while it downloads: the native executor unpacks a base image's layer as
//! it streams in, instead of after the download (on a cold build of the Elixir showcase,
//! the 175 MiB toolchain layer took 0.3 s from a local registry before its unpack could
//! start; seconds from a remote one).
//!
//! The reader reads what the download has written to its temporary file, and waits for
//! more. It sees the end only once the download was verified against its digest and
//! stored; a failed download is an error for it. A retried download starts a new file from
//! byte 0; the reader goes on from where it was once the new file has caught up (the bytes
//! are the same blob's; whoever reads checks what it read, as an unpack checks the diff ID).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// A download that readers may follow ([`BlobFollow::reader`]).
#[derive(Default)]
pub struct BlobFollow {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// The current attempt's file, and how much of it is written.
    file: Option<Arc<File>>,
    written: u64,
    /// Set once: stored (`Ok`), or why not.
    end: Option<Result<(), String>>,
}

impl BlobFollow {
    pub fn new() -> Arc<BlobFollow> {
        Arc::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every writer leaves the state whole: a panic elsewhere does not spoil it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A (new) attempt writes the blob into `file` from its start.
    pub(super) fn attempt(&self, file: File) {
        let mut state = self.state();
        state.file = Some(Arc::new(file));
        state.written = 0;
        self.changed.notify_all();
    }

    /// The current attempt has written `written` bytes.
    pub(super) fn advance(&self, written: u64) {
        self.state().written = written;
        self.changed.notify_all();
    }

    /// The download ended; only the first end counts.
    pub(super) fn end(&self, result: Result<(), String>) {
        let mut state = self.state();
        if state.end.is_none() {
            state.end = Some(result);
        }
        self.changed.notify_all();
    }

    /// Ends the download as failed when dropped before [`FollowEnd::finish`] (a download
    /// task cancelled or panicking), so no reader waits forever.
    pub fn ender(self: &Arc<Self>) -> FollowEnd {
        FollowEnd(Some(self.clone()))
    }

    /// A reader of the blob from its first byte.
    pub fn reader(self: &Arc<Self>) -> FollowingReader {
        FollowingReader {
            follow: self.clone(),
            position: 0,
        }
    }
}

/// See [`BlobFollow::ender`].
pub struct FollowEnd(Option<Arc<BlobFollow>>);

impl FollowEnd {
    pub fn finish(mut self, result: Result<(), String>) {
        if let Some(follow) = self.0.take() {
            follow.end(result);
        }
    }
}

impl Drop for FollowEnd {
    fn drop(&mut self) {
        if let Some(follow) = self.0.take() {
            follow.end(Err("the download stopped before its end".into()));
        }
    }
}

/// Reads a followed blob; blocks while the download is behind. Meant for a thread of its
/// own (a decoder thread), never an async task.
pub struct FollowingReader {
    follow: Arc<BlobFollow>,
    position: u64,
}

impl Read for FollowingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut state = self.follow.state();
        loop {
            if let Some(file) = &state.file
                && state.written > self.position
            {
                let file = file.clone();
                let ready = usize::try_from(state.written - self.position).unwrap_or(usize::MAX);
                drop(state);
                let wanted = buf.len().min(ready);
                // `read_at`: the writer's file offset is not ours to move.
                let n = file.read_at(&mut buf[..wanted], self.position)?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the downloading blob's file is shorter than written",
                    ));
                }
                self.position += n as u64;
                return Ok(n);
            }
            match &state.end {
                Some(Ok(())) => return Ok(0),
                Some(Err(e)) => return Err(io::Error::other(e.clone())),
                None => {
                    state = self
                        .follow
                        .changed
                        .wait(state)
                        .unwrap_or_else(|p| p.into_inner())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(bytes: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut temp = tempfile::NamedTempFile::new().unwrap();
        temp.write_all(bytes).unwrap();
        let handle = temp.as_file().try_clone().unwrap();
        (temp, handle)
    }

    #[test]
    fn a_reader_follows_the_writes_and_ends_with_the_download() {
        let follow = BlobFollow::new();
        let mut temp = tempfile::NamedTempFile::new().unwrap();
        follow.attempt(temp.as_file().try_clone().unwrap());
        let reader = follow.reader();
        let reading = std::thread::spawn(move || {
            let mut reader = reader;
            let mut all = Vec::new();
            reader.read_to_end(&mut all).map(|_| all)
        });
        for part in [&b"abc"[..], b"defg", b"h"] {
            temp.write_all(part).unwrap();
            let written = temp.as_file().metadata().unwrap().len();
            follow.advance(written);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // Not over until the download says so.
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!reading.is_finished());
        follow.end(Ok(()));
        assert_eq!(reading.join().unwrap().unwrap(), b"abcdefgh");
    }

    #[test]
    fn a_retried_download_is_followed_from_where_the_reader_was() {
        let follow = BlobFollow::new();
        let (_first, handle) = file_with(b"abcd");
        follow.attempt(handle);
        follow.advance(4);
        let mut reader = follow.reader();
        let mut head = [0u8; 3];
        reader.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"abc");
        // The second attempt starts over; the reader waits until it passes byte 3.
        let (_second, handle) = file_with(b"abcdef");
        follow.attempt(handle);
        follow.advance(6);
        follow.end(Ok(()));
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"def");
    }

    #[test]
    fn a_failed_or_abandoned_download_is_an_error_for_its_reader() {
        let follow = BlobFollow::new();
        let (_file, handle) = file_with(b"ab");
        follow.attempt(handle);
        follow.advance(2);
        follow.end(Err("digest mismatch".into()));
        let mut all = Vec::new();
        let err = follow.reader().read_to_end(&mut all).unwrap_err();
        assert!(err.to_string().contains("digest mismatch"), "{err}");
        // What was written before the failure was read: the error comes at the end.
        assert_eq!(all, b"ab");

        let abandoned = BlobFollow::new();
        drop(abandoned.ender());
        let err = abandoned.reader().read(&mut [0u8; 4]).unwrap_err();
        assert!(err.to_string().contains("stopped"), "{err}");
        // A finished one is not failed by the guard.
        let finished = BlobFollow::new();
        finished.ender().finish(Ok(()));
        assert_eq!(finished.reader().read(&mut [0u8; 4]).unwrap(), 0);
    }
}
