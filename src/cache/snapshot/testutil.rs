//! Test helpers: tar streams with any entry a layer may hold (hostile names included,
//! which the `tar` crate's builder refuses to write), and the root check.

use tar::{EntryType, Header};

/// Fails (never skips) when not root: the store needs root for owners, device nodes,
/// trusted xattrs and mounts, and CI runs as root.
pub fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the snapshot store tests need root (chown, mknod, trusted.* xattrs, overlay mounts); \
         run them as root, as CI does"
    );
}

/// One entry of a test tar.
pub struct TestEntry<'a> {
    pub path: &'a [u8],
    pub kind: EntryType,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub link: &'a [u8],
    pub data: &'a [u8],
    pub device: (u32, u32),
    pub pax: Vec<(String, Vec<u8>)>,
}

impl<'a> TestEntry<'a> {
    pub fn new(path: &'a str, kind: EntryType) -> Self {
        TestEntry {
            path: path.as_bytes(),
            kind,
            mode: if kind == EntryType::Directory {
                0o755
            } else {
                0o644
            },
            uid: 0,
            gid: 0,
            mtime: 1_000_000,
            link: b"",
            data: b"",
            device: (0, 0),
            pax: Vec::new(),
        }
    }
}

#[derive(Default)]
pub struct TestTar {
    out: Vec<u8>,
}

impl TestTar {
    pub fn new() -> Self {
        TestTar::default()
    }

    pub fn dir(&mut self, path: &str) -> &mut Self {
        self.add(TestEntry::new(path, EntryType::Directory))
    }

    pub fn file(&mut self, path: &str, data: &[u8]) -> &mut Self {
        self.add(TestEntry {
            data,
            ..TestEntry::new(path, EntryType::Regular)
        })
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.add(TestEntry {
            link: target.as_bytes(),
            mode: 0o777,
            ..TestEntry::new(path, EntryType::Symlink)
        })
    }

    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.add(TestEntry {
            link: target.as_bytes(),
            ..TestEntry::new(path, EntryType::Link)
        })
    }

    /// An empty regular file: how OCI layers write whiteouts.
    pub fn whiteout(&mut self, path: &str) -> &mut Self {
        self.file(path, b"")
    }

    pub fn add(&mut self, entry: TestEntry<'_>) -> &mut Self {
        let mut pax = entry.pax.clone();
        let mut header = Header::new_ustar();
        if entry.path.len() <= 100 {
            header.as_old_mut().name[..entry.path.len()].copy_from_slice(entry.path);
        } else {
            pax.push(("path".into(), entry.path.to_vec()));
            header.as_old_mut().name.copy_from_slice(&entry.path[..100]);
        }
        if entry.link.len() > 100 {
            pax.push(("linkpath".into(), entry.link.to_vec()));
            header.set_link_name_literal(&entry.link[..100]).unwrap();
        } else if !entry.link.is_empty() {
            header.set_link_name_literal(entry.link).unwrap();
        }
        header.set_entry_type(entry.kind);
        header.set_mode(entry.mode);
        header.set_uid(entry.uid);
        header.set_gid(entry.gid);
        header.set_mtime(entry.mtime);
        header.set_size(entry.data.len() as u64);
        header.set_device_major(entry.device.0).unwrap();
        header.set_device_minor(entry.device.1).unwrap();
        header.set_cksum();
        if !pax.is_empty() {
            let mut records = Vec::new();
            for (key, value) in &pax {
                records.extend(pax_record(key, value));
            }
            let mut pax_header = Header::new_ustar();
            pax_header.as_old_mut().name[..9].copy_from_slice(b"PaxHeader");
            pax_header.set_entry_type(EntryType::XHeader);
            pax_header.set_size(records.len() as u64);
            pax_header.set_mode(0o644);
            pax_header.set_cksum();
            self.out.extend_from_slice(pax_header.as_bytes());
            self.push_data(&records);
        }
        self.out.extend_from_slice(header.as_bytes());
        self.push_data(entry.data);
        self
    }

    fn push_data(&mut self, data: &[u8]) {
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.extend(std::iter::repeat_n(0, pad));
    }

    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.out);
        out.extend([0; 1024]);
        out
    }
}

/// `LEN KEY=VALUE\n`, where LEN counts the whole record, its own digits included.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut record = format!("{len} {key}=").into_bytes();
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

/// The diff ID of a tar stream.
pub fn diff_id(tar: &[u8]) -> oci_spec::image::Digest {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(tar)))
        .parse()
        .unwrap()
}

#[test]
fn pax_records_count_their_own_length() {
    assert_eq!(pax_record("path", b"abc"), b"12 path=abc\n");
    let long = vec![b'x'; 95];
    let record = pax_record("path", &long);
    assert_eq!(record.len(), 105);
    assert!(record.starts_with(b"105 path="));
}
