//! Reading the small text files of sysfs, with errors that say what to do about them.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The trimmed contents of a sysfs attribute. `hint` is appended to a permission error, so the
/// user learns why the file is protected.
pub(crate) fn read_text(path: &Path, hint: &'static str) -> Result<String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| match source.kind() {
            ErrorKind::PermissionDenied => Error::PermissionDenied {
                path: path.to_path_buf(),
                hint,
            },
            _ => Error::Io {
                path: path.to_path_buf(),
                source,
            },
        })
}

pub(crate) fn read_u64(path: &Path, hint: &'static str) -> Result<u64> {
    let text = read_text(path, hint)?;
    text.parse().map_err(|_| Error::Parse {
        path: path.to_path_buf(),
        text,
    })
}

/// The path as it is on the real host: a fixture root is not shown.
pub(crate) fn host_path(root: &Path, path: &Path) -> String {
    match path.strip_prefix(root) {
        Ok(rel) => format!("/{}", rel.display()),
        Err(_) => path.display().to_string(),
    }
}

/// Entries of `dir` whose file name starts with `prefix`, sorted by name; none when `dir` does
/// not exist.
pub(crate) fn entries(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = read
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect();
    found.sort_by_key(|p| natural_key(p));
    found
}

/// Sorts `hwmon10` after `hwmon9` and `intel-rapl:0:1` after `intel-rapl:0`.
fn natural_key(path: &Path) -> Vec<(String, u64)> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut key = Vec::new();
    let mut text = String::new();
    let mut digits = String::new();
    for c in name.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            if !digits.is_empty() {
                key.push((std::mem::take(&mut text), digits.parse().unwrap_or(0)));
                digits.clear();
            }
            text.push(c);
        }
    }
    key.push((text, digits.parse().unwrap_or(0)));
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_numbers_numerically() {
        let mut v = vec![
            PathBuf::from("hwmon10"),
            PathBuf::from("hwmon9"),
            PathBuf::from("hwmon1"),
        ];
        v.sort_by_key(|p| natural_key(p));
        assert_eq!(
            v,
            [
                PathBuf::from("hwmon1"),
                PathBuf::from("hwmon9"),
                PathBuf::from("hwmon10")
            ]
        );
    }
}
