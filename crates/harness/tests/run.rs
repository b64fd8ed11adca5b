//! The harness with a mock executor: plan order, cells recorded without running, failed cells
//! leaving the others alone, further sessions in rounds, resume; and the worker protocol driven
//! in rounds over a pipe.

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Write};
use std::rc::Rc;

use chipbench_core::Backend;
use chipbench_core::result::{CellResult, Status, StopReason, TimedLoop};
use chipbench_harness::plan::{self, PLAN_FILE};
use chipbench_harness::protocol::{Job, JobContext, Message, PROTOCOL_VERSION};
use chipbench_harness::{Cell, Executor, Journal, Observer, Plan, Prepared, Resumed, Unavailable};
use chipbench_runner::{FreshSession, MeasureSettings, StopRule, WarmUp};

mod common;
use common::{Zeros, cpu_of, model};

fn quick() -> MeasureSettings {
    MeasureSettings {
        warmup: WarmUp {
            min_iterations: 1,
            min_duration: std::time::Duration::ZERO,
        },
        stop: StopRule {
            min_iterations: 5,
            min_duration: std::time::Duration::ZERO,
            max_duration: std::time::Duration::from_millis(50),
            ..StopRule::default()
        },
        accuracy_samples: 0,
        sessions: 3,
        ..MeasureSettings::default()
    }
}

/// Measures nothing: an ok cell per call, a failed one for the models named in `failing`, and
/// a log of every call (`measure mlp`, `session mlp`).
#[derive(Default)]
struct Mock {
    failing: Vec<&'static str>,
    log: Rc<RefCell<Vec<String>>>,
    in_rounds: bool,
}

impl Executor for Mock {
    fn measure(&mut self, cell: &Cell, _: &MeasureSettings) -> CellResult {
        let name = &cell.model.record.name;
        self.log.borrow_mut().push(format!("measure {name}"));
        if self.failing.contains(&name.as_str()) {
            return cell.failed("the cell's process ended with signal 11 (SIGSEGV)".into());
        }
        let mut result = cell.failed(String::new());
        result.status = Status::Ok;
        result.error = None;
        result.session_p50_ms = vec![1.0];
        result.session_loops = vec![TimedLoop {
            inferences: 10,
            stop_reason: StopReason::CiWithinTarget,
        }];
        result
    }

    fn rounds(&self) -> Option<&'static str> {
        self.in_rounds.then_some("by the mock")
    }

    fn further_session(
        &mut self,
        cell: &Cell,
        _: &MeasureSettings,
    ) -> std::result::Result<FreshSession, String> {
        self.log
            .borrow_mut()
            .push(format!("session {}", cell.model.record.name));
        Ok(FreshSession {
            p50_ms: 1.1,
            timed: TimedLoop {
                inferences: 10,
                stop_reason: StopReason::CiWithinTarget,
            },
        })
    }

    fn round_ended(&mut self) {
        self.log.borrow_mut().push("round ended".into());
    }
}

struct Quiet;
impl Observer for Quiet {}

#[test]
fn every_planned_cell_is_recorded_once_in_order_and_sessions_come_in_rounds() {
    let targets = [cpu_of(&Zeros)];
    let models = vec![
        Prepared::Ready(model("mlp")),
        Prepared::Ready(model("crashy")),
        Prepared::Broken {
            record: model("broken").record,
            error: "truncated ONNX".into(),
        },
        Prepared::Ready(model("bert")),
    ];
    let unavailable = [Unavailable {
        label: "ort:cuda".into(),
        reason: "no CUDA here".into(),
    }];
    let work = plan::plan(&models, &[Some(1)], &targets, &unavailable, &[None]);
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::create(dir.path()).unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    let mut mock = Mock {
        failing: vec!["crashy"],
        log: log.clone(),
        in_rounds: true,
    };
    let measured =
        chipbench_harness::run(&work, &quick(), &mut mock, &mut journal, None, &mut Quiet).unwrap();

    let summary: Vec<(String, String, Status)> = measured
        .cells
        .iter()
        .map(|c| (c.model.name.clone(), c.backend.name.clone(), c.status))
        .collect();
    let row = |m: &str, b: &str, s| (m.to_string(), b.to_string(), s);
    assert_eq!(
        summary,
        [
            row("mlp", "tract", Status::Ok),
            row("mlp", "ort", Status::Skipped),
            row("crashy", "tract", Status::Failed),
            row("crashy", "ort", Status::Skipped),
            row("broken", "tract", Status::Failed),
            row("broken", "ort", Status::Skipped),
            row("bert", "tract", Status::Ok),
            row("bert", "ort", Status::Skipped),
        ]
    );
    assert!(
        measured.cells[2]
            .error
            .as_deref()
            .unwrap()
            .contains("SIGSEGV")
    );
    assert_eq!(measured.cells[4].error.as_deref(), Some("truncated ONNX"));
    // Two further sessions of each ok cell, in rounds over the cells, none of a failed one;
    // the executor hears where each round ends (its processes must not serve the next one).
    assert_eq!(
        *log.borrow(),
        [
            "measure mlp",
            "measure crashy",
            "measure bert",
            "session mlp",
            "session bert",
            "round ended",
            "session mlp",
            "session bert",
            "round ended"
        ]
    );
    assert_eq!(measured.cells[0].session_p50_ms, [1.0, 1.1, 1.1]);
    assert!(measured.cells[0].provenance["session_p50_ms"].contains("by the mock"));
    // A speed check before the first cell and after each one that is not a skip.
    let before: Vec<usize> = measured
        .speed_checks
        .iter()
        .map(|c| c.before_cell)
        .collect();
    assert_eq!(before, [0, 1, 3, 5, 7]);
    let journaled = std::fs::read_to_string(dir.path().join("cells.jsonl")).unwrap();
    assert_eq!(journaled.lines().count(), 8);
}

#[test]
fn a_resumed_run_measures_only_the_cells_its_journal_lacks() {
    let targets = [cpu_of(&Zeros)];
    let models = vec![
        Prepared::Ready(model("a")),
        Prepared::Ready(model("b")),
        Prepared::Ready(model("a")),
    ];
    let work = plan::plan(&models, &[Some(1)], &targets, &[], &[None]);
    let dir = tempfile::tempdir().unwrap();
    let write_plan = |work: &[chipbench_harness::Work]| {
        let plan: Plan = serde_json::from_value(serde_json::json!({
            "run_id": "r", "tool_version": "0", "started_at": "t",
            "host": serde_json::to_value(chipbench_core::result::Host::default()).unwrap(),
            "config": serde_json::to_value(chipbench_core::result::RunConfig::default()).unwrap(),
            "cells": work.iter().map(|w| &w.cell).collect::<Vec<_>>(),
            "argv": ["-m", "a"],
        }))
        .unwrap();
        plan.write(dir.path()).unwrap();
    };
    write_plan(&work);
    // The first run got as far as the first `a`, then died.
    let log = Rc::new(RefCell::new(Vec::new()));
    let mut mock = Mock {
        log: log.clone(),
        ..Mock::default()
    };
    let mut journal = Journal::create(dir.path()).unwrap();
    chipbench_harness::run(
        &work[..1],
        &quick(),
        &mut mock,
        &mut journal,
        None,
        &mut Quiet,
    )
    .unwrap();
    drop(journal);

    let mut resumed = Resumed::load(dir.path()).unwrap();
    resumed.check(&work).unwrap();
    let mut journal = Journal::create(dir.path()).unwrap();
    log.borrow_mut().clear();
    let measured = chipbench_harness::run(
        &work,
        &quick(),
        &mut mock,
        &mut journal,
        Some(&mut resumed),
        &mut Quiet,
    )
    .unwrap();
    assert_eq!(*log.borrow(), ["measure b", "measure a"]);
    let resumed_flags: Vec<bool> = measured.cells.iter().map(|c| c.resumed).collect();
    assert_eq!(resumed_flags, [false, true, true]);
    assert_eq!(resumed.left(), 0);

    // A model changed on disk is refused with the reason.
    let mut changed = models.clone();
    if let Prepared::Ready(m) = &mut changed[1] {
        m.record.sha256 = "new".into();
    }
    let now = plan::plan(&changed, &[Some(1)], &targets, &[], &[None]);
    let refused = resumed.check(&now).unwrap_err().to_string();
    assert!(refused.contains("changed on disk"), "{refused}");
    assert!(dir.path().join(PLAN_FILE).exists());
}

#[test]
fn a_worker_answers_request_after_request_until_stop() {
    let targets = [cpu_of(&Zeros)];
    let m = model("zeros");
    let cell = Cell {
        model: &m,
        target: &targets[0],
        threads: Some(1),
        scenario: None,
    };
    let job = || Box::new(Job::new(&cell, &quick(), &JobContext::default()));

    let (request_reader, mut requests) = std::io::pipe().unwrap();
    let (reply_reader, replies) = std::io::pipe().unwrap();
    let worker = std::thread::spawn(move || {
        let registry = |_: &_| -> Vec<Box<dyn Backend>> { vec![Box::new(Zeros)] };
        chipbench_harness::worker::serve(BufReader::new(request_reader), replies, &registry)
    });
    let mut replies = BufReader::new(reply_reader).lines();
    let mut next = || Message::parse(&replies.next().unwrap().unwrap()).unwrap();

    assert!(matches!(next(), Message::Hello { version, .. } if version == PROTOCOL_VERSION));
    Message::hello().send(&mut requests).unwrap();
    Message::MeasureCell(job()).send(&mut requests).unwrap();
    let Message::Cell { cell, .. } = next() else {
        panic!("not a cell")
    };
    assert_eq!(cell.status, Status::Ok, "{:?}", cell.error);
    // The same process, driven again: two more sessions, one after the other.
    for _ in 0..2 {
        Message::FurtherSession(job()).send(&mut requests).unwrap();
        assert!(matches!(next(), Message::Session(s) if s.timed.inferences > 0));
    }
    Message::Stop.send(&mut requests).unwrap();
    worker.join().unwrap().unwrap();
}

#[test]
fn a_worker_of_another_protocol_version_is_refused_with_both_versions() {
    let registry = |_: &_| -> Vec<Box<dyn Backend>> { vec![Box::new(Zeros)] };
    let mut out = Vec::new();
    let future = format!(
        "{{\"hello\":{{\"version\":{},\"tool_version\":\"9.9\"}}}}\n",
        PROTOCOL_VERSION + 1
    );
    chipbench_harness::worker::serve(future.as_bytes(), &mut out, &registry).unwrap();
    let text = String::from_utf8(out).unwrap();
    let last = Message::parse(text.lines().last().unwrap()).unwrap();
    let Message::Failed(why) = last else {
        panic!("{text}")
    };
    assert!(
        why.contains(&format!("protocol version {}", PROTOCOL_VERSION + 1)),
        "{why}"
    );
    let _ = std::io::sink().flush();
}
