//! Fleets end to end: `chipbench plan` split into shards, each measured by its own `bench --plan`
//! (chosen by `--shard`, a Kubernetes Job's environment or a real Slurm job array), `merge`d into
//! one run checked against the schema; the runs and cells merge refuses; routed cells a host
//! cannot run; model files checked by hash.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{chipbench, chipbench_with, printed, validate};
use serde_json::Value;

/// Short cells: a fleet test measures the splitting and merging, not the models.
const FAST: [&str; 5] = ["--quick", "--sessions", "1", "--accuracy-samples", "0"];

fn read(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `chipbench plan` with `options` into `path`; panics with the output unless it succeeds.
fn plan(path: &Path, options: &[&str]) -> Value {
    let mut args = vec!["plan", "-o", s(path)];
    args.extend_from_slice(options);
    let o = chipbench(&args);
    assert!(o.status.success(), "{}", printed(&o));
    read(path)
}

/// `bench --plan` into `out` with `extra` options and `env`; returns its run.json.
fn shard(plan: &Path, out: &Path, extra: &[&str], env: &[(&str, &str)]) -> Value {
    let mut args = vec![
        "bench",
        "--plan",
        s(plan),
        "--out",
        s(out),
        "--no-history",
        "-q",
    ];
    args.extend_from_slice(extra);
    let o = chipbench_with(&args, env);
    assert!(o.status.success(), "{}", printed(&o));
    let run = read(&out.join("run.json"));
    validate(&run);
    run
}

/// The ids of a plan's cells, in order.
fn planned_ids(plan: &Value) -> Vec<String> {
    plan["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

/// A merged run's cells as plan ids (the plan left the thread counts to each host).
fn merged_ids(run: &Value) -> Vec<String> {
    run["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let scenario = match c["scenario_point"].as_str() {
                Some(point) => format!("{}/{point}", c["scenario"].as_str().unwrap()),
                None => c["scenario"].as_str().unwrap().to_string(),
            };
            format!(
                "{}.{}@{}:{}/{scenario}/tdefault",
                c["model"]["name"].as_str().unwrap(),
                c["model"]["variant"].as_str().unwrap(),
                c["backend"]["name"].as_str().unwrap(),
                c["backend"]["device"].as_str().unwrap()
            )
        })
        .collect()
}

/// A plan of three models on tract in three shards, each measured by its own `bench --plan`.
struct ThreeShards {
    dir: tempfile::TempDir,
    plan: Value,
}

impl ThreeShards {
    fn shard(&self, k: usize) -> PathBuf {
        self.dir.path().join(format!("shard-{k}"))
    }
}

fn three_shards() -> &'static ThreeShards {
    static SHARDS: OnceLock<ThreeShards> = OnceLock::new();
    SHARDS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        let mut options = vec![
            "-m",
            "mlp",
            "-m",
            "resnet-mini",
            "-m",
            "bert-tiny",
            "-b",
            "tract",
            "--shards",
            "3",
        ];
        options.extend_from_slice(&FAST);
        let plan = plan(&path, &options);
        let fixture = ThreeShards { dir, plan };
        for k in 0..3 {
            let run = shard(
                &path,
                &fixture.shard(k),
                &["--shard", &format!("{k}/3")],
                &[],
            );
            assert_eq!(run["schema"], "chipbench.run/2");
            assert_eq!(run["shard"]["index"], k);
            assert_eq!(run["shard"]["source"], "--shard");
            assert_eq!(
                run["cells"].as_array().unwrap().len(),
                1,
                "one model per shard"
            );
        }
        fixture
    })
}

fn merge(args: &[&str]) -> std::process::Output {
    let mut all = vec!["merge", "--no-history"];
    all.extend_from_slice(args);
    chipbench(&all)
}

#[test]
fn a_plan_split_into_three_shards_merges_back_into_every_cell_once() {
    let f = three_shards();
    // The split is stored: three shards of one model each, balanced.
    let shards: Vec<u64> = f.plan["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["shard"].as_u64().unwrap())
        .collect();
    let mut sorted = shards.clone();
    sorted.sort();
    assert_eq!(sorted, [0, 1, 2], "{shards:?}");
    for m in f.plan["models"].as_array().unwrap() {
        assert_eq!(m["sha256"].as_str().unwrap().len(), 64, "{m}");
    }

    let out = f.dir.path().join("fleet");
    let history = f.dir.path().join("history.db");
    let o = chipbench(&[
        "merge",
        s(&f.shard(2)),
        s(&f.shard(0)),
        s(&f.shard(1)),
        "-o",
        s(&out),
        "--history-db",
        s(&history),
    ]);
    assert!(o.status.success(), "{}", printed(&o));
    let run = read(&out.join("run.json"));
    validate(&run);
    assert_eq!(run["schema"], "chipbench.run/2");
    assert_eq!(
        merged_ids(&run),
        planned_ids(&f.plan),
        "every planned cell once, in plan order"
    );
    assert_eq!(run["fleet"]["missing"], Value::Array(vec![]));
    let hosts = run["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 3);
    for cell in run["cells"].as_array().unwrap() {
        let host = hosts
            .iter()
            .find(|h| h["id"] == cell["host"])
            .expect("the cell's host");
        let shard_run = read(
            &f.shard(host["shard"]["index"].as_u64().unwrap() as usize)
                .join("run.json"),
        );
        assert_eq!(host["id"], shard_run["run_id"]);
        assert_eq!(
            host["host"]["fingerprint"],
            shard_run["host"]["fingerprint"]
        );
        assert_eq!(
            cell["latency_ms"], shard_run["cells"][0]["latency_ms"],
            "the cell's figures are its shard's"
        );
    }
    // Each host's cells are in the history as that host's run.
    let o = chipbench(&["history", "list", "--db", s(&history), "--json"]);
    assert!(o.status.success(), "{}", printed(&o));
    let listed: Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut recorded: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    let mut expected: Vec<&str> = hosts.iter().map(|h| h["id"].as_str().unwrap()).collect();
    recorded.sort();
    expected.sort();
    assert_eq!(recorded, expected);
}

#[test]
fn merge_refuses_a_cell_twice_and_another_plans_run_and_lists_missing_cells() {
    let f = three_shards();
    let out = tempfile::tempdir().unwrap();
    let fleet = out.path().join("fleet");

    // The same shard twice: refused with the cell, then kept once with --prefer newest.
    let o = merge(&[s(&f.shard(0)), s(&f.shard(0)), "-o", s(&fleet)]);
    assert_eq!(o.status.code(), Some(2), "{}", printed(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("was delivered twice") && err.contains("--prefer newest"),
        "{err}"
    );
    assert!(!fleet.join("run.json").exists(), "nothing written");
    let o = merge(&[
        s(&f.shard(0)),
        s(&f.shard(1)),
        s(&f.shard(2)),
        s(&f.shard(1)),
        "--prefer",
        "newest",
        "-o",
        s(&fleet),
    ]);
    assert!(o.status.success(), "{}", printed(&o));
    let run = read(&fleet.join("run.json"));
    assert_eq!(merged_ids(&run), planned_ids(&f.plan));
    assert_eq!(run["fleet"]["replaced"].as_array().unwrap().len(), 1);

    // A shard missing: merged, its cells listed, exit 1.
    let o = merge(&[s(&f.shard(0)), s(&f.shard(2)), "-o", s(&fleet)]);
    assert_eq!(o.status.code(), Some(1), "{}", printed(&o));
    let run = read(&fleet.join("run.json"));
    validate(&run);
    let missing_run = read(&f.shard(1).join("run.json"));
    let cell = &missing_run["cells"][0];
    let missing = run["fleet"]["missing"].as_array().unwrap();
    assert_eq!(missing.len(), 1);
    let id = missing[0].as_str().unwrap();
    assert!(
        id.starts_with(&format!("{}.", cell["model"]["name"].as_str().unwrap())),
        "{id}"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("1 planned cells no shard delivered") && err.contains(id),
        "{err}"
    );

    // A run of another plan (another seed): refused, naming both plans.
    let other = out.path().join("other.json");
    let mut options = vec!["-m", "mlp", "-b", "tract", "--seed", "7"];
    options.extend_from_slice(&FAST);
    let other_plan = plan(&other, &options);
    shard(&other, &out.path().join("other-0"), &[], &[]);
    let o = merge(&[
        s(&f.shard(0)),
        s(&out.path().join("other-0")),
        "-o",
        s(&fleet),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", printed(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let short = |p: &Value| p["id"].as_str().unwrap()[..12].to_string();
    assert!(
        err.contains("runs of different plans cannot be merged")
            && err.contains(&short(&other_plan))
            && err.contains(&short(&f.plan)),
        "{err}"
    );
}

/// A plan that routes ort:cuda to `h100` hosts: the h100 host without CUDA records the cell as
/// skipped, saying why; a host of no label measures the unrouted tract cell only.
#[test]
fn a_routed_cell_a_host_cannot_run_is_recorded_as_skipped_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.json");
    let mut options = vec![
        "-m",
        "mlp",
        "-b",
        "tract",
        "-b",
        "ort:cuda",
        "--on",
        "h100=ort:cuda",
    ];
    options.extend_from_slice(&FAST);
    let plan = plan(&path, &options);
    assert_eq!(plan["shards"], serde_json::json!({"": 1, "h100": 1}));
    let h100 = shard(
        &path,
        &dir.path().join("h100"),
        &[],
        &[("CHIPBENCH_HOST_LABEL", "h100")],
    );
    assert_eq!(h100["shard"]["pool"], "h100");
    assert_eq!(h100["shard"]["host_label"], "h100");
    let cells = h100["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 1);
    assert_eq!(cells[0]["backend"]["device"], "cuda");
    assert_eq!(cells[0]["status"], "skipped");
    let reason = cells[0]["error"].as_str().unwrap();
    assert!(
        reason.contains(
            "routed to 'h100', but ort:cuda is not available on this host (label 'h100')"
        ),
        "{reason}"
    );
    let any = shard(&path, &dir.path().join("any"), &[], &[]);
    assert_eq!(any["shard"]["pool"], Value::Null);
    let cells = any["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 1);
    assert_eq!(
        (
            cells[0]["backend"]["name"].as_str(),
            cells[0]["status"].as_str()
        ),
        (Some("tract"), Some("ok"))
    );
    // Both together are the plan; merge says nothing is missing.
    let fleet = dir.path().join("fleet");
    let o = merge(&[
        s(&dir.path().join("h100")),
        s(&dir.path().join("any")),
        "-o",
        s(&fleet),
    ]);
    assert!(o.status.success(), "{}", printed(&o));
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        said.contains("1 cells were delivered without figures (skipped or failed; reasons in report.md): mlp fp32 on ort:cuda"),
        "{said}"
    );
    let run = read(&fleet.join("run.json"));
    assert_eq!(run["fleet"]["missing"], Value::Array(vec![]));
    // Routing belongs to the plan: a plain bench refuses it.
    let o = chipbench(&[
        "bench",
        "-m",
        "mlp",
        "--on",
        "h100=ort:cuda",
        "--no-history",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", printed(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("give them to `chipbench plan`"));
    let labels: Vec<&str> = run["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels[0], "h100");
}

/// A user model travels by hash: found by name under --models-dir on a host where its path is
/// missing; another file of that name is refused, naming it.
#[test]
fn a_user_model_is_found_under_models_dir_and_checked_by_hash() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let planned = dir.path().join("planned");
    std::fs::create_dir(&planned).unwrap();
    let model = planned.join("net.onnx");
    std::fs::copy(root.join("models/mlp.onnx"), &model).unwrap();
    let path = dir.path().join("plan.json");
    let mut options = vec!["-m", s(&model), "--dim", "batch=1", "-b", "tract"];
    options.extend_from_slice(&FAST);
    plan(&path, &options);
    std::fs::remove_dir_all(&planned).unwrap();

    let here = dir.path().join("here");
    std::fs::create_dir(&here).unwrap();
    std::fs::copy(root.join("models/resnet-mini.onnx"), here.join("net.onnx")).unwrap();
    let o = chipbench(&[
        "bench",
        "--plan",
        s(&path),
        "--models-dir",
        s(&here),
        "--out",
        s(&dir.path().join("bad")),
        "--no-history",
        "-q",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", printed(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("{} has sha256", here.join("net.onnx").display()))
            && err.contains(&format!("made with {}", model.display())),
        "{err}"
    );

    std::fs::copy(root.join("models/mlp.onnx"), here.join("net.onnx")).unwrap();
    // What to measure is the plan's: a shard's own -m, scenario or timing option is refused,
    // not silently dropped.
    for (given, named) in [
        (vec!["-m", "mlp"], "--model"),
        (vec!["--scenario", "offline"], "--scenario"),
        (vec!["--min-duration", "2s"], "--min-duration"),
        (vec!["--seed", "7"], "--seed"),
    ] {
        let mut args = vec!["bench", "--plan", s(&path), "--no-history"];
        args.extend(&given);
        let o = chipbench(&args);
        assert_eq!(o.status.code(), Some(2), "{}", printed(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!("{named} with --plan: the plan says")),
            "{err}"
        );
    }
    let run = shard(
        &path,
        &dir.path().join("good"),
        &["--models-dir", s(&here)],
        &[],
    );
    assert_eq!(run["cells"][0]["status"], "ok");
    assert_eq!(run["cells"][0]["model"]["path"], s(&here.join("net.onnx")));
}

/// `deploy/k8s`: the Indexed Job parses (kubectl takes JSON), has as many completions as its
/// CHIPBENCH_SHARDS, and its command with its environment and a pod's JOB_COMPLETION_INDEX
/// measures that shard of the label's cells.
#[test]
fn the_kubernetes_indexed_job_selects_its_shard_from_its_environment() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let job = read(&root.join("deploy/k8s/chipbench-shards.json"));
    let merge_job = read(&root.join("deploy/k8s/chipbench-merge.json"));
    assert_eq!(
        (job["kind"].as_str(), merge_job["kind"].as_str()),
        (Some("Job"), Some("Job"))
    );
    assert_eq!(job["spec"]["completionMode"], "Indexed");
    let pod = &job["spec"]["template"]["spec"];
    assert!(
        !pod["nodeSelector"].as_object().unwrap().is_empty(),
        "pods go to the label's nodes"
    );
    let container = &pod["containers"][0];
    let env: Vec<(String, String)> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().into(),
                e["value"].as_str().unwrap().into(),
            )
        })
        .collect();
    let var = |name: &str| {
        env.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let shards: u64 = var("CHIPBENCH_SHARDS").parse().unwrap();
    assert_eq!(job["spec"]["completions"], shards);
    let label = var("CHIPBENCH_HOST_LABEL");

    // The volumes of the pod, here folders.
    let dir = tempfile::tempdir().unwrap();
    let mut script = container["args"][0].as_str().unwrap().to_string();
    for mount in container["volumeMounts"].as_array().unwrap() {
        let at = mount["mountPath"].as_str().unwrap();
        let local = dir.path().join(mount["name"].as_str().unwrap());
        std::fs::create_dir_all(&local).unwrap();
        script = script.replace(&format!("{at}/"), &format!("{}/", local.display()));
    }
    let route = format!("{label}=tract");
    let mut options = vec![
        "-m",
        "mlp",
        "-m",
        "resnet-mini",
        "-b",
        "tract",
        "--on",
        &route,
    ];
    let shards_option = format!("{label}={shards}");
    options.extend_from_slice(&["--shards", &shards_option]);
    options.extend_from_slice(&FAST);
    let plan_path = dir.path().join("plan/plan.json");
    let plan = plan(&plan_path, &options);
    let index = shards - 1;
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_chipbench")).parent().unwrap();
    let o = Command::new(container["command"][0].as_str().unwrap())
        .arg(container["command"][1].as_str().unwrap())
        .arg(&script)
        .envs(env.iter().map(|(n, v)| (n, v)))
        .env("JOB_COMPLETION_INDEX", index.to_string())
        .env(
            "PATH",
            format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap()),
        )
        .current_dir(root)
        .output()
        .unwrap();
    assert!(o.status.success(), "{script}\n{}", printed(&o));
    let run = read(
        &dir.path()
            .join(format!("results/shard-{label}-{index}/run.json")),
    );
    validate(&run);
    assert_eq!(run["shard"]["source"], "JOB_COMPLETION_INDEX");
    assert_eq!(run["shard"]["index"], index);
    assert_eq!(run["shard"]["count"], shards);
    assert_eq!(run["shard"]["pool"], label.as_str());
    assert_eq!(run["shard"]["plan_id"], plan["id"]);
}

/// The processes of a single-node Slurm this test started, stopped by their ids at the end.
struct Slurm {
    dir: tempfile::TempDir,
    conf: PathBuf,
    daemons: Vec<Child>,
    munged_pid: Option<String>,
}

impl Drop for Slurm {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            let _ = d.kill();
            let _ = d.wait();
        }
        if let Some(pid) = &self.munged_pid {
            let _ = Command::new("kill").arg(pid).status();
        }
    }
}

/// Why Slurm cannot run here: the test then skips saying so, unless CHIPBENCH_REQUIRE_SLURM=1.
fn no_slurm(reason: String) -> Option<Slurm> {
    if std::env::var("CHIPBENCH_REQUIRE_SLURM").as_deref() == Ok("1") {
        panic!("CHIPBENCH_REQUIRE_SLURM=1 but Slurm cannot start: {reason}");
    }
    eprintln!("skipped: Slurm cannot start here: {reason}");
    None
}

fn succeeds(command: &str, args: &[&str]) -> bool {
    Command::new(command)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// munged (when not running), slurmctld and slurmd on this machine, in the configuration of
/// PLATFORM.md's "Slurm on one machine", with its files in a temporary folder.
fn start_slurm() -> Option<Slurm> {
    for tool in ["sbatch", "sinfo", "slurmctld", "slurmd", "munged", "munge"] {
        if !succeeds("sh", &["-c", &format!("command -v {tool}")]) {
            return no_slurm(format!(
                "{tool} is not installed (Debian: apt-get install slurm-wlm munge)"
            ));
        }
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return no_slurm("slurmd runs jobs as root here (SlurmUser=root): run as root".into());
    }
    let mut munged_pid = None;
    if !succeeds("sh", &["-c", "munge -n | unmunge"]) {
        let setup = "chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key \
                     && mkdir -p /run/munge && chown munge:munge /run/munge \
                     && su -s /bin/sh munge -c /usr/sbin/munged";
        if !succeeds("sh", &["-c", setup]) || !succeeds("sh", &["-c", "munge -n | unmunge"]) {
            return no_slurm("munged does not start (is /etc/munge/munge.key there?)".into());
        }
        munged_pid = std::fs::read_to_string("/run/munge/munged.pid")
            .ok()
            .map(|p| p.trim().to_string());
    }
    let dir = tempfile::tempdir().unwrap();
    let host = String::from_utf8(Command::new("hostname").arg("-s").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string();
    let d = dir.path();
    for sub in ["ctld", "d"] {
        std::fs::create_dir(d.join(sub)).unwrap();
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let conf = d.join("slurm.conf");
    std::fs::write(
        &conf,
        format!(
            "ClusterName=chipbenchtest\nSlurmctldHost={host}\nSlurmctldPort={}\nSlurmdPort={}\n\
             AuthType=auth/munge\nProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n\
             ReturnToService=2\nSchedulerType=sched/backfill\nSelectType=select/cons_tres\n\
             SelectTypeParameters=CR_Core\nSlurmctldPidFile={d}/ctld.pid\nSlurmdPidFile={d}/d.pid\n\
             SlurmdSpoolDir={d}/d\nStateSaveLocation={d}/ctld\nSlurmctldLogFile={d}/ctld.log\n\
             SlurmdLogFile={d}/d.log\nSlurmUser=root\nNodeName={host} CPUs={cpus} State=UNKNOWN\n\
             PartitionName=bench Nodes={host} Default=YES MaxTime=INFINITE State=UP\n",
            free_port(),
            free_port(),
            d = d.display()
        ),
    )
    .unwrap();
    let mut slurm = Slurm {
        dir,
        conf,
        daemons: Vec::new(),
        munged_pid,
    };
    for daemon in ["slurmctld", "slurmd"] {
        let child = Command::new(daemon)
            .arg("-D")
            .env("SLURM_CONF", &slurm.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match child {
            Ok(c) => slurm.daemons.push(c),
            Err(e) => return no_slurm(format!("{daemon} does not start: {e}")),
        }
        if daemon == "slurmctld" {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    let start = Instant::now();
    loop {
        let o = Command::new("sinfo")
            .args(["-h", "-o", "%T"])
            .env("SLURM_CONF", &slurm.conf)
            .output()
            .unwrap();
        if String::from_utf8_lossy(&o.stdout).trim() == "idle" {
            return Some(slurm);
        }
        if start.elapsed() > Duration::from_secs(60) {
            let log =
                std::fs::read_to_string(slurm.dir.path().join("ctld.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            return no_slurm(format!(
                "the node is not idle after 60 s (sinfo: {}); slurmctld's log ends:\n{}",
                String::from_utf8_lossy(&o.stdout).trim(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// deploy/slurm/chipbench-array.sbatch on a real single-node Slurm: a 2-task array of --quick
/// shards, `sbatch --wait`, merged; every planned cell exactly once, schema valid.
#[test]
fn a_slurm_job_array_measures_the_shards_that_merge_into_the_plan() {
    let Some(slurm) = start_slurm() else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = slurm.dir.path();
    let plan_path = dir.join("plan.json");
    let mut options = vec![
        "-m",
        "mlp",
        "-m",
        "resnet-mini",
        "-b",
        "tract",
        "--shards",
        "2",
    ];
    options.extend_from_slice(&FAST);
    let plan = plan(&plan_path, &options);
    let results = dir.join("results");
    let mut sbatch = Command::new("sbatch")
        .args(["--wait", "--array=0-1", "--chdir", s(root)])
        .arg(format!("--output={}/task-%a.log", dir.display()))
        .arg(root.join("deploy/slurm/chipbench-array.sbatch"))
        .args([s(&plan_path), s(&results)])
        .env("SLURM_CONF", &slurm.conf)
        .env("CHIPBENCH", env!("CARGO_BIN_EXE_chipbench"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = sbatch.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(300) {
            let _ = sbatch.kill();
            panic!("the job array did not end within 300 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let logs: String = (0..2)
        .map(|k| std::fs::read_to_string(dir.join(format!("task-{k}.log"))).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n---\n");
    assert!(
        status.success(),
        "sbatch --wait: {status}; the tasks' logs:\n{logs}"
    );

    let fleet = dir.join("fleet");
    let o = merge(&[
        s(&results.join("shard-0")),
        s(&results.join("shard-1")),
        "-o",
        s(&fleet),
    ]);
    assert!(o.status.success(), "{}", printed(&o));
    let run = read(&fleet.join("run.json"));
    validate(&run);
    assert_eq!(
        merged_ids(&run),
        planned_ids(&plan),
        "every planned cell exactly once"
    );
    for host in run["hosts"].as_array().unwrap() {
        assert_eq!(host["shard"]["source"], "SLURM_ARRAY_TASK_ID");
        assert_eq!(host["shard"]["count"], 2);
    }
    assert!(
        run["cells"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "ok")
    );
}

/// The fleet report of two hosts (two shards of different labels: tract cells on `alpha`, ONNX
/// Runtime's on `beta`): one table per model comparing them, with the catalog class, the price
/// given for `alpha`, speedups naming the host and device, in Markdown and in HTML that headless
/// Chromium renders with its charts and without a console message.
#[test]
fn the_fleet_report_of_two_labelled_hosts_compares_them_in_markdown_and_html() {
    if !common::backend_available("ort", "CHIPBENCH_REQUIRE_ORT") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.json");
    let mut options = vec![
        "-m",
        "mlp",
        "-m",
        "resnet-mini",
        "-b",
        "tract",
        "-b",
        "ort",
        "--on",
        "alpha=tract",
        "--on",
        "beta=ort",
    ];
    options.extend_from_slice(&FAST);
    plan(&path, &options);
    for label in ["alpha", "beta"] {
        let run = shard(
            &path,
            &dir.path().join(label),
            &["--host-label", label],
            &[],
        );
        assert_eq!(run["shard"]["pool"], label);
    }
    let fleet = dir.path().join("fleet");
    let o = merge(&[
        s(&dir.path().join("alpha")),
        s(&dir.path().join("beta")),
        "-o",
        s(&fleet),
    ]);
    assert!(o.status.success(), "{}", printed(&o));

    let o = chipbench(&["report", s(&fleet), "--price", "alpha=1.5"]);
    assert!(o.status.success(), "{}", printed(&o));
    let md = String::from_utf8_lossy(&o.stdout);
    let section = &md[md.find("## Fleet: 2 hosts").expect("the fleet section")..];
    for model in ["mlp", "resnet-mini"] {
        let table = &section[section
            .find(&format!("### {model} fp32 single-stream"))
            .unwrap()..];
        let rows: Vec<&str> = table
            .lines()
            .skip(4)
            .take_while(|l| l.starts_with('|'))
            .collect();
        assert_eq!(rows.len(), 2, "{table}");
        let alpha = rows
            .iter()
            .find(|r| r.starts_with("| alpha | tract:cpu"))
            .unwrap();
        let beta = rows
            .iter()
            .find(|r| r.starts_with("| beta | ort:cpu"))
            .unwrap();
        assert!(
            alpha.contains("general-purpose") && beta.contains("general-purpose"),
            "{table}"
        );
        // A price for alpha only: inferences per dollar there, none for beta.
        let per_dollar = |row: &str| row.split(" | ").nth(6).unwrap().to_string();
        assert!(per_dollar(alpha).contains('e'), "{alpha}");
        assert_eq!(per_dollar(beta), "-");
        // One of the two is the slowest, the other's speedup names it.
        let named = rows
            .iter()
            .filter(|r| r.contains("x vs alpha tract:cpu") || r.contains("x vs beta ort:cpu"))
            .count();
        assert_eq!(named, 1, "{table}");
        assert_eq!(
            rows.iter()
                .filter(|r| r.contains("1.00x (the slowest)"))
                .count(),
            1
        );
    }
    let o = chipbench(&["report", s(&fleet), "--price", "gamma=1"]);
    assert_eq!(o.status.code(), Some(2), "{}", printed(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("no host of these runs is labelled 'gamma' (fleet hosts: alpha, beta)")
    );

    let page = dir.path().join("fleet.html");
    let o = chipbench(&[
        "report",
        s(&fleet),
        "-f",
        "html",
        "-o",
        s(&page),
        "--price",
        "alpha=1.5",
    ]);
    assert!(o.status.success(), "{}", printed(&o));
    let Some(browser) = common::chromium() else {
        let reason = "chromium is not installed (Debian: apt-get install chromium)";
        if std::env::var_os("CI").is_some() {
            panic!("{reason}, and CI requires the browser test");
        }
        eprintln!("skipping the browser check: {reason}");
        return;
    };
    let (dom, log) = common::headless(
        &browser,
        &dir.path().join("profile"),
        &["--dump-dom"],
        &page,
    );
    let fleet_html = &dom[dom
        .find("<section id=\"fleet\">")
        .expect("the fleet section")..];
    let fleet_html = &fleet_html[..fleet_html.find("</section>").unwrap()];
    assert_eq!(
        fleet_html.matches("<table class=\"fleet\">").count(),
        2,
        "a table per model"
    );
    assert_eq!(
        fleet_html.matches("<svg").count(),
        2,
        "a throughput chart per model"
    );
    assert!(fleet_html.contains("alpha") && fleet_html.contains("beta"));
    assert!(fleet_html.contains("x vs "), "named speedups");
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:?}");
}
