//! `ADD https://…`: BuildKit's HTTP source. The file is downloaded into the blob store and
//! keyed on its content; what the server said about it (`ETag`, `Last-Modified`) is kept
//! per URL, so the next build asks `If-None-Match` and a `304 Not Modified` reuses the
//! stored copy. With `--checksum`, a stored copy of that content is used without asking.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256, Sha384, Sha512};

use super::{Algorithm, FetchedFile, Fetcher, HttpSource, redact_url, scrub};

/// BuildKit's front end names the file after the URL path's last component.
pub(super) fn filename(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    let end = after_scheme.find(['?', '#']).unwrap_or(after_scheme.len());
    let without_query = &after_scheme[..end];
    let path = without_query.find('/').map_or("", |i| &without_query[i..]);
    // Go's path.Base: trailing slashes do not count.
    let base = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    let base = percent_decode(base);
    if base.is_empty() || base == "." || base.contains('/') || base == ".." {
        "__unnamed__".into()
    } else {
        base
    }
}

/// `%XX` decoding (invalid escapes kept as written).
pub(super) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the last download of a URL left, in `fetch-v1/http/<sha256 of the URL>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    /// Redacted, for whoever looks.
    url: String,
    etag: Option<String>,
    last_modified: Option<String>,
    digest: String,
    size: u64,
}

fn record_path(fetcher: &Fetcher, url: &str) -> PathBuf {
    fetcher.root.join("http").join(format!(
        "{}.json",
        hex::encode(Sha256::digest(url.as_bytes()))
    ))
}

fn load_record(fetcher: &Fetcher, url: &str) -> Option<(Record, PathBuf)> {
    let text = std::fs::read(record_path(fetcher, url)).ok()?;
    let record: Record = serde_json::from_slice(&text).ok()?;
    let digest: oci_spec::image::Digest = record.digest.parse().ok()?;
    // A lookup that finds the download counts as a use of it, as any blob lookup does.
    fetcher
        .blobs
        .contains(&digest)
        .then(|| (record, fetcher.blobs.path(&digest)))
}

fn save_record(fetcher: &Fetcher, url: &str, record: &Record) -> anyhow::Result<()> {
    let path = record_path(fetcher, url);
    let dir = path.parent().unwrap_or(&fetcher.root);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut temp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    temp.write_all(&serde_json::to_vec_pretty(record)?)?;
    temp.persist(&path).map_err(|e| e.error)?;
    Ok(())
}

fn fetched(record: &Record, path: PathBuf) -> FetchedFile {
    FetchedFile {
        path,
        digest: record.digest.clone(),
        size: record.size,
        last_modified: record
            .last_modified
            .as_deref()
            .and_then(|t| httpdate::parse_http_date(t).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_secs()).ok()),
    }
}

/// `e` and its causes, joined, credentials scrubbed.
fn chain(e: &(dyn std::error::Error + 'static), url: &str) -> String {
    let mut parts = vec![e.to_string()];
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cause = c.source();
    }
    scrub(&parts.join(": "), url)
}

pub(super) async fn fetch(fetcher: &Fetcher, src: &HttpSource) -> anyhow::Result<FetchedFile> {
    let shown = redact_url(&src.url);
    let stored = load_record(fetcher, &src.url);
    if let (Some(sum), Some((record, path))) = (&src.checksum, &stored)
        && sum.algorithm == Algorithm::Sha256
        && record.digest == sum.to_string()
    {
        return Ok(fetched(record, path.clone()));
    }
    let mut url = reqwest::Url::parse(&src.url)
        .map_err(|e| anyhow::anyhow!("`{shown}` is not a valid URL: {e}"))?;
    // Credentials go in a header, so no message of the client can show them.
    let user = percent_decode(url.username());
    let password = url.password().map(percent_decode);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let mut request = fetcher.client.get(url);
    if !user.is_empty() || password.is_some() {
        request = request.basic_auth(user, password);
    }
    if let Some((record, _)) = &stored
        && let Some(etag) = &record.etag
    {
        request = request.header(reqwest::header::IF_NONE_MATCH, etag);
    }
    let response = request.send().await.map_err(|e| {
        anyhow::anyhow!(
            "failed to fetch {shown}: {}",
            chain(&e.without_url(), &src.url)
        )
    })?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_MODIFIED
        && let Some((record, path)) = stored
    {
        let file = fetched(&record, path);
        verify(src, &file)?;
        return Ok(file);
    }
    if !status.is_success() {
        bail!("failed to fetch {shown}: invalid response status {status}");
    }
    let header = |name: reqwest::header::HeaderName| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    // A weak ETag compares like a strong one (as BuildKit compares them).
    let etag = header(reqwest::header::ETAG);
    let last_modified = header(reqwest::header::LAST_MODIFIED);
    let temp = fetcher.blobs.temp_file()?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, temp.as_file());
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            anyhow::anyhow!(
                "failed to fetch {shown}: reading the response: {}",
                chain(&e.without_url(), &src.url)
            )
        })?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
        out.write_all(&chunk)
            .context("writing a download to the cache dir")?;
    }
    out.flush().context("writing a download to the cache dir")?;
    drop(out);
    let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
    let oci_digest: oci_spec::image::Digest = digest.parse()?;
    let path = fetcher.blobs.commit(temp, &oci_digest)?;
    let record = Record {
        url: shown.clone(),
        etag,
        last_modified,
        digest,
        size,
    };
    let file = fetched(&record, path);
    verify(src, &file)?;
    // Only a download that passed its checksum is remembered for the URL.
    save_record(fetcher, &src.url, &record)?;
    Ok(file)
}

/// `--checksum`: BuildKit's error is "digest mismatch for URL: GOT (expected: WANT)".
fn verify(src: &HttpSource, file: &FetchedFile) -> anyhow::Result<()> {
    let Some(sum) = &src.checksum else {
        return Ok(());
    };
    let got = match sum.algorithm {
        Algorithm::Sha256 => file.digest.clone(),
        Algorithm::Sha384 => hash_file::<Sha384>(&file.path, "sha384")?,
        Algorithm::Sha512 => hash_file::<Sha512>(&file.path, "sha512")?,
    };
    if got != sum.to_string() {
        bail!(
            "digest mismatch for {}: {got} (expected: {sum})",
            redact_url(&src.url)
        );
    }
    Ok(())
}

fn hash_file<D: sha2::Digest>(path: &std::path::Path, name: &str) -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut hasher = D::new();
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{name}:{}", hex::encode(hasher.finalize())))
}
