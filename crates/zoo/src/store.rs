//! The cached models: `<cache>/zoo/NAME/model.onnx`, each beside a stamp that records the hash it
//! was verified against and the file's size and modification time then. A file is only put in
//! place after its hash matched; later uses trust it while size and time are unchanged (a warm
//! `zoo fetch` stays fast) and hash it again otherwise.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Entry, ZooError};

pub struct Store {
    root: PathBuf,
}

/// What the store holds for a model.
#[derive(Debug, PartialEq, Eq)]
pub enum Cached {
    /// Verified against the catalog's hash, now or when it was stored.
    Verified(PathBuf),
    /// Not there.
    Missing,
    /// There, but its hash is not the catalog's (damaged, edited or from an older catalog).
    Damaged { actual: String },
}

#[derive(Serialize, Deserialize, PartialEq, Eq)]
struct Stamp {
    sha256: String,
    bytes: u64,
    modified_ns: u128,
}

pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Store {
    /// The zoo's folder under the cache root.
    pub fn new(root: impl Into<PathBuf>) -> Store {
        Store { root: root.into() }
    }

    pub fn model_path(&self, entry: &Entry) -> PathBuf {
        self.model_dir(entry).join("model.onnx")
    }

    /// The model's folder: its file, stamp and real samples.
    pub fn model_dir(&self, entry: &Entry) -> PathBuf {
        self.root.join(&entry.name)
    }

    fn stamp_path(&self, entry: &Entry) -> PathBuf {
        self.root.join(&entry.name).join("verified.json")
    }

    /// Whether the model is cached and verified; a file whose stamp no longer fits is hashed
    /// again (and re-stamped when it still matches).
    pub fn check(&self, entry: &Entry) -> Result<Cached, ZooError> {
        let path = self.model_path(entry);
        let meta = match std::fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Cached::Missing),
            Err(e) => return Err(ZooError::io(path, e)),
        };
        let now = stamp_of(&meta, &entry.source.sha256);
        let recorded: Option<Stamp> = std::fs::read(self.stamp_path(entry))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if recorded.as_ref() == Some(&now) {
            return Ok(Cached::Verified(path));
        }
        let data = std::fs::read(&path).map_err(|e| ZooError::io(&path, e))?;
        let actual = sha256_hex(&data);
        if actual != entry.source.sha256 {
            return Ok(Cached::Damaged { actual });
        }
        self.write_stamp(entry, &now)?;
        Ok(Cached::Verified(path))
    }

    /// Puts a model in place, refusing bytes whose hash is not the catalog's; the file appears
    /// whole or not at all (written beside it, then renamed).
    pub fn install(&self, entry: &Entry, data: &[u8]) -> Result<PathBuf, ZooError> {
        let actual = sha256_hex(data);
        if actual != entry.source.sha256 {
            return Err(ZooError::ModelHash {
                file: entry.source.file.clone(),
                path: entry.source.path.clone(),
                expected: entry.source.sha256.clone(),
                actual,
            });
        }
        let path = self.model_path(entry);
        let dir = path.parent().expect("model_path has a parent");
        std::fs::create_dir_all(dir).map_err(|e| ZooError::io(dir, e))?;
        let _ = std::fs::remove_file(self.stamp_path(entry));
        write_atomically(&path, data)?;
        let meta = std::fs::metadata(&path).map_err(|e| ZooError::io(&path, e))?;
        self.write_stamp(entry, &stamp_of(&meta, &entry.source.sha256))?;
        Ok(path)
    }

    fn write_stamp(&self, entry: &Entry, stamp: &Stamp) -> Result<(), ZooError> {
        let path = self.stamp_path(entry);
        let json = serde_json::to_vec(stamp).expect("a stamp serializes");
        write_atomically(&path, &json)
    }
}

/// Written beside `path` and renamed over it, so a reader sees the old file or the whole new one.
fn write_atomically(path: &Path, data: &[u8]) -> Result<(), ZooError> {
    let dir = path.parent().expect("a stamp path has a parent");
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| ZooError::io(dir, e))?;
    std::io::Write::write_all(&mut tmp, data).map_err(|e| ZooError::io(tmp.path(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| ZooError::io(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| ZooError::io(path, e.error))?;
    Ok(())
}

fn stamp_of(meta: &std::fs::Metadata, sha256: &str) -> Stamp {
    let modified_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Stamp {
        sha256: sha256.to_string(),
        bytes: meta.len(),
        modified_ns,
    }
}
