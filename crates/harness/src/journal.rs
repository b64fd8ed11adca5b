//! The run folder: every finished cell is appended to `cells.jsonl` and synced to disk before the
//! next cell starts, so a crash or Ctrl-C loses at most the cell in flight; `run.json` is written
//! at the end through a temporary file and a rename, so it is either complete or absent.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use chipbench_core::result::{CellResult, RunResult};

#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct JournalError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

pub struct Journal {
    dir: PathBuf,
    cells: File,
}

pub const CELLS_FILE: &str = "cells.jsonl";
pub const RUN_FILE: &str = "run.json";

impl Journal {
    /// Creates the run folder and the cell journal up front, so that an unwritable output path
    /// fails before anything is measured.
    pub fn create(dir: &Path) -> Result<Journal, JournalError> {
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| JournalError { path, source }
        };
        fs::create_dir_all(dir).map_err(err(dir))?;
        let path = dir.join(CELLS_FILE);
        let cells = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(err(&path))?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            cells,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends one cell as a JSON line and syncs it to disk.
    pub fn append(&mut self, cell: &CellResult) -> Result<(), JournalError> {
        let path = self.dir.join(CELLS_FILE);
        let mut line = serde_json::to_vec(cell).map_err(|e| JournalError {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        line.push(b'\n');
        self.cells
            .write_all(&line)
            .and_then(|_| self.cells.sync_data())
            .map_err(|source| JournalError { path, source })
    }

    /// Writes `run.json` atomically and returns its path.
    pub fn finish(&self, run: &RunResult) -> Result<PathBuf, JournalError> {
        let path = self.dir.join(RUN_FILE);
        let json = serde_json::to_vec_pretty(run).map_err(|e| JournalError {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        write_atomically(&path, &json)?;
        Ok(path)
    }
}

/// Writes a file through a temporary sibling and a rename, syncing both.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), JournalError> {
    let tmp = path.with_extension("tmp");
    let err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| JournalError { path: p, source }
    };
    let mut file = File::create(&tmp).map_err(err(&tmp))?;
    file.write_all(bytes)
        .and_then(|_| file.sync_all())
        .map_err(err(&tmp))?;
    fs::rename(&tmp, path).map_err(err(path))?;
    if let Some(parent) = path.parent()
        && let Ok(dir) = File::open(parent)
    {
        // Makes the rename itself durable; not every platform can sync a directory.
        let _ = dir.sync_all();
    }
    Ok(())
}
