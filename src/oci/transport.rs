//! Source images named the way skopeo names them: `oci:DIR[:REF]`,
//! `oci-archive:FILE[:REF]`, `docker-archive:FILE[:REF]` (for `imgbuild push SRC REF`).

use std::path::Path;
use std::sync::Arc;

use crate::error::InputError;

use super::Platform;
use super::docker_archive::open_docker_archive;
use super::image::Image;
use super::layout::open_oci_layout;

/// Opens the image `spec` names. A malformed spec or a path that does not exist is an
/// [`InputError`]; a broken image is an ordinary error saying what is wrong with it.
pub fn open_image(spec: &str, platform: &Platform) -> anyhow::Result<Arc<dyn Image>> {
    let (transport, rest) = spec.split_once(':').unwrap_or(("", spec));
    // As skopeo does: the path ends at the first ':', the rest names the image.
    let (path, reference) = match rest.split_once(':') {
        Some((path, reference)) => (path, Some(reference).filter(|r| !r.is_empty())),
        None => (rest, None),
    };
    if path.is_empty() {
        return Err(bad_spec(spec).into());
    }
    let path = Path::new(path);
    if !path.exists() {
        return Err(InputError::new(format!("{} does not exist", path.display())).into());
    }
    let image: Arc<dyn Image> = match transport {
        "oci" | "oci-archive" => Arc::new(open_oci_layout(path, reference, platform)?),
        "docker-archive" => Arc::new(open_docker_archive(path, reference)?),
        _ => return Err(bad_spec(spec).into()),
    };
    Ok(image)
}

fn bad_spec(spec: &str) -> InputError {
    InputError::new(format!("`{spec}` does not name an image source"))
        .with_hint("use oci:DIR[:NAME], oci-archive:FILE[:NAME] or docker-archive:FILE[:TAG]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_specs_are_input_errors() {
        for spec in ["out", "tarball:x.tar", "oci:", "docker-archive::tag"] {
            let err = open_image(spec, &Platform::linux_amd64()).err().unwrap();
            assert!(crate::error::is_input_error(&err, &[]), "{spec}: {err}");
        }
    }

    #[test]
    fn a_missing_path_is_an_input_error_and_a_broken_layout_is_not() {
        let err = open_image("oci:/nonexistent/layout:app", &Platform::linux_amd64())
            .err()
            .unwrap();
        assert!(crate::error::is_input_error(&err, &[]));
        assert!(
            format!("{err:#}").contains("/nonexistent/layout"),
            "{err:#}"
        );
        let dir = tempfile::tempdir().unwrap();
        let spec = format!("oci:{}", dir.path().display());
        let err = open_image(&spec, &Platform::linux_amd64()).err().unwrap();
        assert!(!crate::error::is_input_error(&err, &[]));
        assert!(
            format!("{err:#}").contains("no readable oci-layout"),
            "{err:#}"
        );
    }
}
