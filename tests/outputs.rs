//! `chipbench outputs`: outputs written by one run are matched by another, and a changed output
//! beyond the tolerance is reported and fails (what scripts/build-arm.sh relies on under qemu).

use serde_json::Value;

mod common;
use common::chipbench;

#[test]
fn outputs_match_themselves_and_a_changed_output_fails_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("reference.json");
    let file_arg = file.to_str().unwrap();
    let o = chipbench(&[
        "outputs",
        "--model",
        "mlp",
        "--samples",
        "2",
        "--write",
        file_arg,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let o = chipbench(&[
        "outputs",
        "--model",
        "mlp",
        "--samples",
        "2",
        "--compare",
        file_arg,
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains("mlp: 2 samples, max abs err 0.000e0") && text.contains("within tolerance"),
        "{text}"
    );

    // Nudge one logit of the second sample by 1 % of the output's range: beyond 1e-4, within 0.1.
    let mut stored: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let values = stored["models"][0]["samples"][1][0]["values"]
        .as_array_mut()
        .unwrap();
    let range = values
        .iter()
        .map(|v| v.as_f64().unwrap().abs())
        .fold(0.0, f64::max);
    let first = values[0].as_f64().unwrap();
    values[0] = Value::from(first + 0.01 * range);
    std::fs::write(&file, serde_json::to_vec(&stored).unwrap()).unwrap();

    let o = chipbench(&[
        "outputs",
        "--model",
        "mlp",
        "--samples",
        "2",
        "--compare",
        file_arg,
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("DIFFERS") && text.contains("0 of 1 models match"),
        "{text}"
    );
    let o = chipbench(&[
        "outputs",
        "--model",
        "mlp",
        "--samples",
        "2",
        "--compare",
        file_arg,
        "--tolerance",
        "0.1",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));

    let o = chipbench(&[
        "outputs",
        "--compare",
        dir.path().join("missing.json").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.json: "));
}
