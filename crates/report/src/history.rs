//! The history of runs: an SQLite database (default `bench-results/history.db`) that `bench`
//! appends every run to, and that `history list/show/trend` and `compare --against-history` read.
//!
//! Schema changes are numbered migrations applied in order inside a transaction; the version
//! reached is SQLite's `user_version`. A database written by a newer chipbench (a version this
//! build does not know) is refused rather than guessed at. Each run is stored whole (its JSON,
//! samples included) next to indexed columns for the queries.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chipbench_core::result::{CellResult, RunResult, Status};
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};
use serde::Serialize;

use crate::error::{ReportError, Result};
use crate::gate::CellKey;

/// Where `bench` records runs unless told otherwise.
pub const DEFAULT_PATH: &str = "bench-results/history.db";

/// How long a writer waits for another process's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Migration `i` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: [&str; 1] = ["CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL UNIQUE,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        tool_version TEXT NOT NULL,
        host_fingerprint TEXT NOT NULL,
        hostname TEXT NOT NULL,
        cpu_brand TEXT NOT NULL,
        quick INTEGER NOT NULL,
        run_json TEXT NOT NULL
    );
    CREATE INDEX runs_by_host ON runs (host_fingerprint, started_at);
    CREATE TABLE cells (
        run INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        model TEXT NOT NULL,
        variant TEXT NOT NULL,
        backend TEXT NOT NULL,
        device TEXT NOT NULL,
        scenario TEXT NOT NULL,
        threads INTEGER,
        status TEXT NOT NULL,
        samples INTEGER NOT NULL,
        p50_ms REAL,
        p90_ms REAL,
        p99_ms REAL,
        throughput_per_s REAL,
        PRIMARY KEY (run, position)
    );
    CREATE INDEX cells_by_key ON cells (model, variant, backend, device, scenario, threads);"];

/// The schema version this build writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

pub struct History {
    conn: Connection,
    path: PathBuf,
}

/// One line of `history list`.
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub started_at: String,
    pub tool_version: String,
    pub host_fingerprint: String,
    pub hostname: String,
    pub cpu_brand: String,
    pub quick: bool,
    pub cells: usize,
    pub cells_ok: usize,
}

impl History {
    /// Opens (creating it and its folder if needed) and migrates the database.
    pub fn open(path: &Path) -> Result<History> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| ReportError::io(dir, e))?;
        }
        let conn = Connection::open(path).map_err(|e| db_error(path, e))?;
        let mut history = History {
            conn,
            path: path.to_path_buf(),
        };
        history
            .conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| db_error(path, e))?;
        history
            .conn
            .pragma_update(None, "foreign_keys", true)
            .map_err(|e| db_error(path, e))?;
        history.migrate()?;
        Ok(history)
    }

    /// Opens an existing database without creating one (for the read-only commands).
    pub fn open_existing(path: &Path) -> Result<History> {
        if !path.is_file() {
            return Err(ReportError::History {
                path: path.to_path_buf(),
                reason: "no such file (bench records runs there unless --no-history; --db chooses another)".into(),
            });
        }
        History::open(path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> ReportError + '_ {
        |e| db_error(&self.path, e)
    }

    fn migrate(&mut self) -> Result<()> {
        let path = self.path.clone();
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(|e| db_error(&path, e))?;
        let version = usize::try_from(version).unwrap_or(usize::MAX);
        if version > SCHEMA_VERSION {
            return Err(ReportError::History {
                path,
                reason: format!(
                    "schema version {version} was written by a newer chipbench (this one knows up to {SCHEMA_VERSION}); \
                     upgrade chipbench or use another --db"
                ),
            });
        }
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = self.conn.transaction().map_err(|e| db_error(&path, e))?;
            tx.execute_batch(sql).map_err(|e| db_error(&path, e))?;
            tx.pragma_update(None, "user_version", (index + 1) as i64)
                .map_err(|e| db_error(&path, e))?;
            tx.commit().map_err(|e| db_error(&path, e))?;
        }
        Ok(())
    }

    /// Records a run; a run already recorded (same run id) is an error.
    pub fn record(&mut self, run: &RunResult) -> Result<()> {
        let path = self.path.clone();
        let err = |e| db_error(&path, e);
        let run_json = serde_json::to_string(run)?;
        let tx = self.conn.transaction().map_err(err)?;
        let inserted = tx
            .execute(
                "INSERT INTO runs (run_id, started_at, finished_at, tool_version, host_fingerprint, hostname, \
                 cpu_brand, quick, run_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    run.run_id,
                    run.started_at,
                    run.finished_at,
                    run.tool_version,
                    run.host.fingerprint,
                    run.host.hostname,
                    run.host.cpu_brand,
                    run.config.quick,
                    run_json
                ],
            )
            .map_err(|e| match e.sqlite_error_code() {
                Some(ErrorCode::ConstraintViolation) => ReportError::History {
                    path: path.clone(),
                    reason: format!("run {} is already recorded", run.run_id),
                },
                _ => db_error(&path, e),
            })?;
        debug_assert_eq!(inserted, 1);
        let id = tx.last_insert_rowid();
        for (position, c) in run.cells.iter().enumerate() {
            let l = c.latency_ms.as_ref();
            tx.execute(
                "INSERT INTO cells (run, position, model, variant, backend, device, scenario, threads, status, \
                 samples, p50_ms, p90_ms, p99_ms, throughput_per_s) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                params![
                    id,
                    position as i64,
                    c.model.name,
                    c.model.variant,
                    c.backend.name,
                    c.backend.device,
                    c.scenario_label(),
                    c.backend.threads.map(|t| t as i64),
                    status_name(c.status),
                    c.samples_ms.len() as i64,
                    l.map(|l| l.p50),
                    l.map(|l| l.p90),
                    l.map(|l| l.p99),
                    c.throughput_per_s
                ],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// The most recent runs first, optionally of one host fingerprint only.
    pub fn list(&self, limit: usize, fingerprint: Option<&str>) -> Result<Vec<RunSummary>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT r.run_id, r.started_at, r.tool_version, r.host_fingerprint, r.hostname, r.cpu_brand, r.quick, \
                 (SELECT COUNT(*) FROM cells c WHERE c.run = r.id), \
                 (SELECT COUNT(*) FROM cells c WHERE c.run = r.id AND c.status = 'ok') \
                 FROM runs r WHERE (?1 IS NULL OR r.host_fingerprint = ?1) \
                 ORDER BY r.started_at DESC, r.id DESC LIMIT ?2",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![fingerprint, limit as i64], |row| {
                Ok(RunSummary {
                    run_id: row.get(0)?,
                    started_at: row.get(1)?,
                    tool_version: row.get(2)?,
                    host_fingerprint: row.get(3)?,
                    hostname: row.get(4)?,
                    cpu_brand: row.get(5)?,
                    quick: row.get(6)?,
                    cells: row.get::<_, i64>(7)? as usize,
                    cells_ok: row.get::<_, i64>(8)? as usize,
                })
            })
            .map_err(self.err())?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(self.err())
    }

    /// A run by its id, a unique prefix of it, or `latest`.
    pub fn load(&self, id: &str) -> Result<RunResult> {
        let ids: Vec<String> = if id == "latest" {
            self.list(1, None)?.into_iter().map(|r| r.run_id).collect()
        } else {
            let mut stmt = self
                .conn
                .prepare("SELECT run_id FROM runs WHERE substr(run_id, 1, length(?1)) = ?1 ORDER BY run_id LIMIT 3")
                .map_err(self.err())?;
            let rows = stmt.query_map([id], |row| row.get(0)).map_err(self.err())?;
            rows.collect::<std::result::Result<_, _>>()
                .map_err(self.err())?
        };
        match ids.as_slice() {
            [one] => self.load_exact(one),
            [] => Err(ReportError::Invalid(format!(
                "no run '{id}' in {}",
                self.path.display()
            ))),
            many => Err(ReportError::Invalid(format!(
                "run id '{id}' is ambiguous in {}: {} ...",
                self.path.display(),
                many.join(", ")
            ))),
        }
    }

    fn load_exact(&self, run_id: &str) -> Result<RunResult> {
        let json: String = self
            .conn
            .query_row(
                "SELECT run_json FROM runs WHERE run_id = ?1",
                [run_id],
                |row| row.get(0),
            )
            .map_err(self.err())?;
        serde_json::from_str(&json).map_err(|e| ReportError::History {
            path: self.path.clone(),
            reason: format!("run {run_id} is stored in a form this chipbench cannot read: {e}"),
        })
    }

    /// The last `n` runs of host `fingerprint` that have an ok cell `key`, newest first,
    /// leaving out `exclude` (the run being judged).
    pub fn recent_runs_with(
        &self,
        key: &CellKey,
        fingerprint: &str,
        n: usize,
        exclude: &str,
    ) -> Result<Vec<RunResult>> {
        let ids = self.run_ids_with(key, Some(fingerprint), n, exclude)?;
        ids.iter().map(|id| self.load_exact(id)).collect()
    }

    /// Runs that have an ok cell `key`, newest first.
    fn run_ids_with(
        &self,
        key: &CellKey,
        fingerprint: Option<&str>,
        n: usize,
        exclude: &str,
    ) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT r.run_id FROM runs r JOIN cells c ON c.run = r.id \
                 WHERE c.model = ?1 AND c.variant = ?2 AND c.backend = ?3 AND c.device = ?4 AND c.scenario = ?5 \
                 AND c.threads IS ?6 AND c.status = 'ok' AND r.run_id != ?7 \
                 AND (?8 IS NULL OR r.host_fingerprint = ?8) \
                 GROUP BY r.id ORDER BY r.started_at DESC, r.id DESC LIMIT ?9",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map(
                params![
                    key.model,
                    key.variant,
                    key.backend,
                    key.device,
                    key.scenario,
                    key.threads.map(|t| t as i64),
                    exclude,
                    fingerprint,
                    n as i64
                ],
                |row| row.get(0),
            )
            .map_err(self.err())?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(self.err())
    }

    /// The cell `key` of the last `n` runs that have it ok (any host unless `fingerprint`),
    /// oldest first, with the run it comes from.
    pub fn series(
        &self,
        key: &CellKey,
        fingerprint: Option<&str>,
        n: usize,
    ) -> Result<Vec<(RunSummary, CellResult)>> {
        let ids = self.run_ids_with(key, fingerprint, n, "")?;
        let mut out = Vec::new();
        for id in ids.iter().rev() {
            let run = self.load_exact(id)?;
            let summary = summarize(&run);
            if let Some(cell) = run
                .cells
                .into_iter()
                .find(|c| CellKey::of(c) == *key && c.status == Status::Ok)
            {
                out.push((summary, cell));
            }
        }
        Ok(out)
    }

    /// The distinct cells recorded, for finding the one a user means.
    pub fn cell_keys(&self) -> Result<Vec<CellKey>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT DISTINCT model, variant, backend, device, scenario, threads FROM cells \
                 ORDER BY model, variant, backend, device, scenario, threads",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |row| {
                Ok(CellKey {
                    model: row.get(0)?,
                    variant: row.get(1)?,
                    backend: row.get(2)?,
                    device: row.get(3)?,
                    scenario: row.get(4)?,
                    threads: row.get::<_, Option<i64>>(5)?.map(|t| t as usize),
                })
            })
            .map_err(self.err())?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(self.err())
    }

    /// Whether a run id is recorded.
    pub fn contains(&self, run_id: &str) -> Result<bool> {
        self.conn
            .query_row("SELECT 1 FROM runs WHERE run_id = ?1", [run_id], |_| Ok(()))
            .optional()
            .map(|found| found.is_some())
            .map_err(self.err())
    }
}

fn summarize(run: &RunResult) -> RunSummary {
    RunSummary {
        run_id: run.run_id.clone(),
        started_at: run.started_at.clone(),
        tool_version: run.tool_version.clone(),
        host_fingerprint: run.host.fingerprint.clone(),
        hostname: run.host.hostname.clone(),
        cpu_brand: run.host.cpu_brand.clone(),
        quick: run.config.quick,
        cells: run.cells.len(),
        cells_ok: run.cells.iter().filter(|c| c.status == Status::Ok).count(),
    }
}

fn status_name(status: Status) -> &'static str {
    match status {
        Status::Ok => "ok",
        Status::Failed => "failed",
        Status::Skipped => "skipped",
    }
}

/// SQLite's errors in words a user can act on.
fn db_error(path: &Path, e: rusqlite::Error) -> ReportError {
    let reason = match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => {
            "not an SQLite database (corrupt, or another file): move it away or choose another --db"
                .to_string()
        }
        Some(ErrorCode::DatabaseCorrupt) => {
            format!("the database is corrupt ({e}): move it away or choose another --db")
        }
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => format!(
            "locked by another process for more than {} s ({e}); try again when it has finished",
            BUSY_TIMEOUT.as_secs()
        ),
        Some(ErrorCode::ReadOnly)
        | Some(ErrorCode::PermissionDenied)
        | Some(ErrorCode::CannotOpen) => {
            format!("cannot be written or opened ({e})")
        }
        _ => e.to_string(),
    };
    ReportError::History {
        path: path.to_path_buf(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{cell, lognormal_samples, run_with, sample_run};

    fn key_of(run: &RunResult, i: usize) -> CellKey {
        CellKey::of(&run.cells[i])
    }

    #[test]
    fn records_and_reads_back_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/history.db");
        let mut h = History::open(&path).unwrap();
        let mut a = sample_run();
        a.run_id = "20261128T100000Z-aaaa".into();
        a.started_at = "2026-11-28T10:00:00Z".into();
        let mut b = sample_run();
        b.run_id = "20261128T110000Z-bbbb".into();
        b.started_at = "2026-11-28T11:00:00Z".into();
        h.record(&a).unwrap();
        h.record(&b).unwrap();
        let err = h.record(&a).unwrap_err().to_string();
        assert!(err.contains("already recorded"), "{err}");

        let list = h.list(10, None).unwrap();
        assert_eq!(
            list.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(),
            [b.run_id.as_str(), a.run_id.as_str()]
        );
        assert_eq!((list[0].cells, list[0].cells_ok), (5, 4));
        assert_eq!(
            h.load("20261128T10").unwrap(),
            a,
            "a unique prefix finds the run, samples included"
        );
        assert_eq!(h.load("latest").unwrap().run_id, b.run_id);
        assert!(
            h.load("2026")
                .unwrap_err()
                .to_string()
                .contains("ambiguous")
        );
        assert!(h.load("nope").is_err());
        assert!(h.contains(&a.run_id).unwrap());

        let key = key_of(&a, 0);
        let series = h.series(&key, None, 10).unwrap();
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].0.run_id, a.run_id, "oldest first");
        let recent = h
            .recent_runs_with(&key, &a.host.fingerprint, 5, &b.run_id)
            .unwrap();
        assert_eq!(recent.len(), 1);
        assert_eq!(recent[0].run_id, a.run_id);
        assert!(
            h.recent_runs_with(&key, "other-host", 5, "")
                .unwrap()
                .is_empty()
        );
        // The failed cell is recorded but never a baseline.
        assert!(
            h.recent_runs_with(&key_of(&a, 4), &a.host.fingerprint, 5, "")
                .unwrap()
                .is_empty()
        );
        assert_eq!(h.cell_keys().unwrap().len(), 5);

        drop(h);
        let h = History::open(&path).unwrap();
        assert_eq!(
            h.list(10, None).unwrap().len(),
            2,
            "reopening keeps the data and migrates nothing"
        );
    }

    #[test]
    fn a_file_that_is_not_a_database_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        std::fs::write(&path, vec![0x42u8; 4096]).unwrap();
        let err = History::open(&path).err().unwrap().to_string();
        assert!(
            err.starts_with(&format!(
                "history database {}: not an SQLite database",
                path.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        drop(History::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let err = History::open(&path).err().unwrap().to_string();
        assert!(
            err.contains("schema version 99 was written by a newer chipbench"),
            "{err}"
        );
    }

    #[test]
    fn a_locked_database_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        let mut h = History::open(&path).unwrap();
        h.conn.busy_timeout(Duration::from_millis(50)).unwrap();
        let locker = Connection::open(&path).unwrap();
        locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let run = run_with(
            "r",
            vec![cell(
                "m",
                "fp32",
                "tract",
                lognormal_samples(1.0, 0.05, 50, 1),
                None,
            )],
        );
        let err = h.record(&run).unwrap_err().to_string();
        assert!(err.contains("locked by another process"), "{err}");
        locker.execute_batch("ROLLBACK").unwrap();
        h.record(&run).unwrap();
    }
}
