//! Writes entries as a canonical tar stream: USTAR headers with only normalised metadata
//! (no atime/ctime, clamped mtimes), PAX records where USTAR has no room (long names and
//! link targets, long user names, extended attributes).
//!
//! Written by hand over `tar::Header` because the `tar` crate (0.4.46) writes long names
//! only as GNU extensions and has no PAX writer; both are needed to control every byte.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;

use tar::{EntryType, Header};

use super::entries::{Data, Kind, Meta, Ordered, Sources};

const BLOCK: usize = 512;
const USTAR_NAME: usize = 100;
const USTAR_PREFIX: usize = 155;
const USTAR_USER: usize = 32;

pub(super) struct TarWriter<W: Write> {
    out: W,
    epoch: i64,
    buf: Vec<u8>,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W, epoch: i64) -> Self {
        TarWriter {
            out,
            epoch,
            buf: vec![0; 1 << 20],
        }
    }

    /// Writes one entry (header, PAX header if needed, content read from `sources`).
    pub fn write_entry(&mut self, item: &Ordered, sources: &Sources) -> io::Result<()> {
        let Ordered {
            name,
            entry,
            link_to,
        } = item;
        let (entry_type, size) = match (&entry.kind, link_to) {
            (Kind::File { .. }, Some(_)) => (EntryType::Link, 0),
            (Kind::File { size, .. }, None) => (EntryType::Regular, *size),
            (Kind::Dir, _) => (EntryType::Directory, 0),
            (Kind::Symlink(_), _) => (EntryType::Symlink, 0),
            (Kind::Char(..), _) => (EntryType::Char, 0),
            (Kind::Block(..), _) => (EntryType::Block, 0),
            (Kind::Fifo, _) => (EntryType::Fifo, 0),
            (Kind::Whiteout, _) => (EntryType::Regular, 0),
        };
        let link_name: Option<&[u8]> = match (&entry.kind, link_to) {
            (_, Some(holder)) => Some(holder),
            (Kind::Symlink(target), _) => Some(target),
            _ => None,
        };
        let meta = match entry.kind {
            // A whiteout only marks a deletion: nothing about it should vary.
            Kind::Whiteout => Meta::synthetic(0, 0, 0),
            _ => entry.meta.clone(),
        };

        let mut header = Header::new_ustar();
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        if !set_ustar_path(&mut header, name) {
            pax.push(("path".into(), name.clone()));
            set_ustar_path(&mut header, truncate(name, USTAR_NAME));
        }
        if let Some(link) = link_name {
            if link.len() <= USTAR_NAME {
                header.set_link_name_literal(link)?;
            } else {
                pax.push(("linkpath".into(), link.to_vec()));
                header.set_link_name_literal(truncate(link, USTAR_NAME))?;
            }
        }
        for (key, value, set) in [
            (
                "uname",
                &meta.uname,
                Header::set_username as fn(&mut Header, &str) -> io::Result<()>,
            ),
            ("gname", &meta.gname, Header::set_groupname),
        ] {
            if value.len() <= USTAR_USER {
                set(&mut header, value)?;
            } else {
                pax.push((key.into(), value.as_bytes().to_vec()));
            }
        }
        let mut xattrs = entry.xattrs.clone();
        xattrs.sort();
        pax.extend(
            xattrs
                .into_iter()
                .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v)),
        );

        let mtime = self.clamp(meta.mtime);
        header.set_entry_type(entry_type);
        header.set_mode(meta.mode & 0o7777);
        header.set_uid(meta.uid);
        header.set_gid(meta.gid);
        header.set_size(size);
        header.set_mtime(mtime);
        let (major, minor) = match entry.kind {
            Kind::Char(ma, mi) | Kind::Block(ma, mi) => (ma, mi),
            _ => (0, 0),
        };
        header.set_device_major(major)?;
        header.set_device_minor(minor)?;
        header.set_cksum();

        if !pax.is_empty() {
            self.write_pax(name, mtime, &pax)?;
        }
        self.out.write_all(header.as_bytes())?;
        if size > 0 {
            if let Kind::File { data, .. } = &entry.kind {
                self.write_data(name, data, size, sources)?;
            }
            self.pad(size)?;
        }
        Ok(())
    }

    /// The end-of-archive marker; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0; 2 * BLOCK])?;
        Ok(self.out)
    }

    fn clamp(&self, mtime: i64) -> u64 {
        u64::try_from(mtime.min(self.epoch)).unwrap_or(0)
    }

    fn write_pax(
        &mut self,
        name: &[u8],
        mtime: u64,
        records: &[(String, Vec<u8>)],
    ) -> io::Result<()> {
        let mut body = Vec::new();
        for (key, value) in records {
            body.extend_from_slice(&pax_record(key, value));
        }
        // Named like Go's archive/tar does, and fixed, so the bytes never vary.
        let base = name
            .split(|&b| b == b'/')
            .rfind(|s| !s.is_empty())
            .unwrap_or(b"entry");
        let mut pax_name = b"PaxHeaders.0/".to_vec();
        pax_name.extend_from_slice(base);
        let mut header = Header::new_ustar();
        set_ustar_path(&mut header, truncate(&pax_name, USTAR_NAME));
        header.set_entry_type(EntryType::XHeader);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(body.len() as u64);
        header.set_mtime(mtime);
        header.set_device_major(0)?;
        header.set_device_minor(0)?;
        header.set_cksum();
        self.out.write_all(header.as_bytes())?;
        self.out.write_all(&body)?;
        self.pad(body.len() as u64)
    }

    fn write_data(
        &mut self,
        name: &[u8],
        data: &Data,
        size: u64,
        sources: &Sources,
    ) -> io::Result<()> {
        let changed = |what: &str| {
            io::Error::other(format!(
                "{} {what} while the layer was being written; the layer would not be reproducible",
                String::from_utf8_lossy(name)
            ))
        };
        match data {
            Data::Bytes(bytes) => {
                if bytes.len() as u64 != size {
                    return Err(changed("changed size"));
                }
                self.out.write_all(bytes)
            }
            Data::Disk(_) | Data::Tree(_) => {
                let path = match data {
                    Data::Tree(tree) => sources.tree_path(*tree, name).ok_or_else(|| {
                        io::Error::other("entry outside the directory tree it came from")
                    })?,
                    Data::Disk(path) => path.clone(),
                    _ => return Err(io::Error::other("not a file on disk")),
                };
                let mut file = File::open(&path).map_err(|e| {
                    io::Error::new(e.kind(), format!("opening {}: {e}", path.display()))
                })?;
                let mut left = size;
                while left > 0 {
                    let want = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(self.buf.len());
                    let chunk = self.buf.get_mut(..want).unwrap_or_default();
                    let n = file.read(chunk)?;
                    if n == 0 {
                        return Err(changed("shrank"));
                    }
                    self.out.write_all(chunk.get(..n).unwrap_or_default())?;
                    left -= n as u64;
                }
                if file.read(self.buf.get_mut(..1).unwrap_or_default())? != 0 {
                    return Err(changed("grew"));
                }
                Ok(())
            }
            Data::Spool(offset) => {
                let spool = sources
                    .spool
                    .as_ref()
                    .ok_or_else(|| io::Error::other("spooled entry without a spool file"))?;
                let mut pos = *offset;
                let end = offset + size;
                while pos < end {
                    let want = usize::try_from(end - pos)
                        .unwrap_or(usize::MAX)
                        .min(self.buf.len());
                    let chunk = self.buf.get_mut(..want).unwrap_or_default();
                    let n = spool.read_at(chunk, pos)?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "spool file is short",
                        ));
                    }
                    self.out.write_all(chunk.get(..n).unwrap_or_default())?;
                    pos += n as u64;
                }
                Ok(())
            }
        }
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let rem = (size % BLOCK as u64) as usize;
        if rem != 0 {
            self.out
                .write_all([0; BLOCK].get(rem..).unwrap_or_default())?;
        }
        Ok(())
    }
}

/// Puts `name` into the USTAR name (and prefix) fields; false when it does not fit.
fn set_ustar_path(header: &mut Header, name: &[u8]) -> bool {
    let Some(ustar) = header.as_ustar_mut() else {
        return false;
    };
    let (prefix, rest) = if name.len() <= USTAR_NAME {
        (&[][..], name)
    } else {
        // The shortest prefix (ending before a '/') that leaves at most 100 bytes of name.
        let split = name.iter().enumerate().position(|(i, &b)| {
            b == b'/' && i <= USTAR_PREFIX && name.len() - i - 1 <= USTAR_NAME && i + 1 < name.len()
        });
        match split {
            Some(i) => (
                name.get(..i).unwrap_or_default(),
                name.get(i + 1..).unwrap_or_default(),
            ),
            None => return false,
        }
    };
    ustar.name = [0; USTAR_NAME];
    ustar.prefix = [0; USTAR_PREFIX];
    if let Some(slot) = ustar.name.get_mut(..rest.len()) {
        slot.copy_from_slice(rest);
    }
    if let Some(slot) = ustar.prefix.get_mut(..prefix.len()) {
        slot.copy_from_slice(prefix);
    }
    true
}

fn truncate(bytes: &[u8], max: usize) -> &[u8] {
    bytes.get(..max).unwrap_or(bytes)
}

/// One PAX record, `"LEN KEY=VALUE\n"`, where LEN counts the whole record including itself.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body_len = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body_len + 1;
    while len != body_len + len.to_string().len() {
        len = body_len + len.to_string().len();
    }
    let mut record = format!("{len} {key}=").into_bytes();
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        assert_eq!(pax_record("path", b"abc"), b"12 path=abc\n");
        // Near 100 bytes the length field itself needs a third digit.
        let value = vec![b'x'; 92];
        let rec = pax_record("path", &value);
        let (len, _) = std::str::from_utf8(&rec).unwrap().split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), rec.len());
    }

    #[test]
    fn long_names_split_into_prefix_or_fall_back_to_pax() {
        let mut h = Header::new_ustar();
        let name = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        assert!(set_ustar_path(&mut h, name.as_bytes()));
        assert_eq!(h.path_bytes().as_ref(), name.as_bytes());
        let too_long = "x".repeat(120);
        assert!(!set_ustar_path(&mut h, too_long.as_bytes()));
    }
}
