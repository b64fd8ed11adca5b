//! The remote transport without ssh: a local shell stands in for the connection, and the device's
//! side (`follow`) reports a stand-in run.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chipbench_core::result::Status;
use chipbench_harness::Journal;
use chipbench_harness::Plan;

mod common;
use chipbench_harness::plan::{NotRun, PlannedCell, cell_id};
use chipbench_harness::protocol::Message;
use chipbench_harness::remote::{self, Lost};
use common::ok_cell;

fn plan_of(models: &[&str]) -> Plan {
    let cells: Vec<PlannedCell> = models
        .iter()
        .map(|m| {
            let c = ok_cell(m);
            PlannedCell {
                id: cell_id(&c.model, &c.backend, &c.scenario),
                model: c.model,
                backend: c.backend,
                scenario: None,
                not_run: None::<NotRun>,
            }
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "run_id": "remote-run", "tool_version": "0", "started_at": "t",
        "host": serde_json::to_value(chipbench_core::result::Host::default()).unwrap(),
        "config": serde_json::to_value(chipbench_core::result::RunConfig::default()).unwrap(),
        "cells": cells, "argv": ["-m", "a"],
    }))
    .unwrap()
}

fn lines(messages: &[Message]) -> String {
    let mut bytes = Vec::new();
    for m in messages {
        m.send(&mut bytes).unwrap();
    }
    String::from_utf8(bytes).unwrap()
}

/// A transport that prints `text` (after reading the script, as ssh would) and ends.
fn shell_printing(dir: &std::path::Path, text: &str) -> Command {
    let file = dir.join("stream.txt");
    std::fs::write(&file, text).unwrap();
    let mut command = Command::new("sh");
    command.arg("-c").arg(format!(
        "cat >/dev/null; cat '{}'; echo 'gone' >&2",
        file.display()
    ));
    command
}

#[test]
fn a_broken_connection_keeps_the_cells_that_arrived_and_fails_the_others_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let text = lines(&[
        Message::hello(),
        Message::Pid(42),
        Message::Plan(Box::new(plan_of(&["a", "b", "c"]))),
        Message::Cell {
            cell: Box::new(ok_cell("a")),
            observed: None,
        },
    ]) + "a line of the device's shell\n";
    let mut seen = Vec::new();
    let received = remote::receive(
        shell_printing(dir.path(), &text),
        "the run script",
        Instant::now() + Duration::from_secs(30),
        &mut |m| {
            seen.push(matches!(m, Message::Cell { .. }));
            Ok(())
        },
    )
    .unwrap()
    .unwrap();
    assert_eq!(seen, [false, false, true], "the hello is not passed on");
    assert_eq!(received.pid, Some(42));
    assert_eq!(received.other, ["a line of the device's shell"]);
    assert!(received.exit.is_none());
    let Some(Lost::Connection { last_words, .. }) = &received.lost else {
        panic!("the connection was lost")
    };
    assert_eq!(last_words.as_deref(), Some("gone"));

    let mut journal = Journal::create(&dir.path().join("run")).unwrap();
    let run = remote::partial_run(
        received.plan.unwrap(),
        received.cells,
        "connection lost",
        &mut journal,
    )
    .unwrap();
    let statuses: Vec<(String, Status)> = run
        .cells
        .iter()
        .map(|c| (c.model.name.clone(), c.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("a".to_string(), Status::Ok),
            ("b".into(), Status::Failed),
            ("c".into(), Status::Failed)
        ]
    );
    assert!(
        run.cells[1]
            .error
            .as_deref()
            .unwrap()
            .starts_with("connection lost")
    );
}

#[test]
fn a_device_of_another_protocol_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = "{\"hello\":{\"version\":99,\"tool_version\":\"9\"}}\n";
    let received = remote::receive(
        shell_printing(dir.path(), text),
        "",
        Instant::now() + Duration::from_secs(30),
        &mut |_| Ok(()),
    )
    .unwrap()
    .unwrap();
    assert!(matches!(&received.lost, Some(Lost::Incompatible(why)) if why.contains("version 99")));
}

#[test]
fn follow_reports_the_plan_each_journaled_cell_and_the_exit_of_its_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    plan_of(&["a", "b"]).write(&run).unwrap();
    let journal = run.join("cells.jsonl");
    let stderr = dir.path().join("run.stderr");
    let cell_line = |m: &str| serde_json::to_string(&ok_cell(m)).unwrap();
    // The stand-in run journals a cell, then another, complains and exits with 3.
    let script = format!(
        "echo '{a}' >> '{j}'; sleep 0.5; echo '{b}' >> '{j}'; echo 'it went wrong' >&2; exit 3",
        a = cell_line("a"),
        b = cell_line("b"),
        j = journal.display()
    );
    // `follow` reaps it: the run is its child, as on the device.
    #[allow(clippy::zombie_processes)]
    let child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()))
        .spawn()
        .unwrap();
    let mut out = Vec::new();
    remote::follow(&run, child.id() as i32, &stderr, &mut out).unwrap();
    let messages: Vec<Message> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| Message::parse(l).unwrap())
        .collect();
    assert!(messages[0].incompatible().is_none());
    assert!(matches!(messages[1], Message::Pid(pid) if pid == child.id()));
    assert!(matches!(&messages[2], Message::Plan(p) if p.cells.len() == 2));
    let cells: Vec<&str> = messages
        .iter()
        .filter_map(|m| match m {
            Message::Cell { cell, .. } => Some(cell.model.name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(cells, ["a", "b"]);
    let Some(Message::Exit { code, stderr }) = messages.last() else {
        panic!("no exit")
    };
    assert_eq!(*code, 3);
    assert_eq!(stderr, &["it went wrong"]);
}
