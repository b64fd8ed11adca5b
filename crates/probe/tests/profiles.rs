//! The device profiles parse, reference chips of the catalog, give every figure a source, and
//! refuse entries that break the rules.

use chipbench_probe::catalog;
use chipbench_probe::profile::{self, Unit};

#[test]
fn the_shipped_profiles_parse_and_reference_catalog_chips() {
    let chips = catalog::catalog().unwrap();
    let profiles = profile::profiles(&chips).unwrap();
    for id in [
        "rpi4",
        "rpi5",
        "jetson-orin-nano-cpu",
        "jetson-orin-nano-gpu",
        "phone-a55",
    ] {
        assert!(
            profile::find(&profiles, id).is_some(),
            "missing profile {id}"
        );
    }
    for p in &profiles {
        if let Some(chip) = &p.chip {
            assert!(chips.iter().any(|c| &c.id == chip), "{}: chip {chip}", p.id);
        }
        for figure in ["cores", "clock_ghz", "memory_gib", "isa"] {
            assert!(
                !p.source_of(figure).is_empty(),
                "{}: {figure} has no source",
                p.id
            );
        }
        assert!(p.memory_bytes() >= 1 << 30, "{}: RAM in bytes", p.id);
        assert!(!p.backends.is_empty());
    }
    let rpi4 = profile::find(&profiles, "rpi4").unwrap();
    assert_eq!((rpi4.cores, rpi4.memory_bytes()), (4, 4 << 30));
    assert_eq!(rpi4.chip.as_deref(), Some("raspberry-pi-4"));
    assert!(rpi4.cpu_backends().any(|b| b.label() == "tract:cpu"));
    assert!(
        rpi4.source_of("active_power_w").contains("5.1 V"),
        "the derived power shows its arithmetic: {}",
        rpi4.source_of("active_power_w")
    );
    let gpu = profile::find(&profiles, "jetson-orin-nano-gpu").unwrap();
    assert_eq!(
        gpu.cpu_backends().count(),
        0,
        "the GPU profile has nothing to emulate on a CPU"
    );
    assert!(gpu.backends.iter().all(|b| b.runs_on == Unit::Gpu));
    let phone = profile::find(&profiles, "phone-a55").unwrap();
    let phone_backends: Vec<String> = phone.backends.iter().map(|b| b.label()).collect();
    for wanted in ["ort:xnnpack", "ort:nnapi", "ort:qnn"] {
        assert!(
            phone_backends.contains(&wanted.to_string()),
            "{phone_backends:?}"
        );
    }
}

const MINIMAL: &str = r#"
[[profile]]
id = "my-board"
name = "My board"
chip = "raspberry-pi-4"
target = "aarch64-unknown-linux-gnu"
cpu = "1x Cortex-A72"
cores = 1
clock_ghz = 1.5
memory_gib = 0.5
isa = ["asimd"]
backends = [{ backend = "tract", device = "cpu", runs_on = "cpu", why = "test" }]
source = [{ title = "My datasheet", url = "https://example.com/board.pdf", gives = ["cores", "clock_ghz", "memory_gib", "isa"] }]
"#;

#[test]
fn a_users_profile_file_loads_and_bad_entries_name_the_file_and_the_cause() {
    let chips = catalog::catalog().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("board.toml");
    std::fs::write(&path, MINIMAL).unwrap();
    let loaded = profile::load(&path, &chips).unwrap();
    assert_eq!(loaded[0].memory_bytes(), 512 << 20);

    let cases = [
        (
            MINIMAL.replace("raspberry-pi-4", "no-such-chip"),
            "chip 'no-such-chip' is not in the chip catalog",
        ),
        (MINIMAL.replace("\"cores\", ", ""), "cores has no source"),
        (
            MINIMAL.replace("cores = 1", "cores = 0"),
            "cores must be at least 1",
        ),
        (
            MINIMAL.replace("memory_gib = 0.5", "memory_gib = -1.0"),
            "memory_gib = -1 is not a positive number",
        ),
        (
            MINIMAL.replace("\"asimd\"", "\"Advanced SIMD\""),
            "is not spelled as /proc/cpuinfo spells it",
        ),
        (
            MINIMAL.replace("\"isa\"]", "\"isa\", \"active_power_w\"]"),
            "names 'active_power_w', which the profile does not state",
        ),
        (
            MINIMAL.replace("https://example.com", "http://example.com"),
            "needs a title and an https:// URL",
        ),
        (
            MINIMAL.replace("id = \"my-board\"", "id = \"My Board\""),
            "lowercase letters",
        ),
        (format!("{MINIMAL}{MINIMAL}"), "the id is used twice"),
        (
            MINIMAL.replace(
                "clock_ghz = 1.5",
                "clock_ghz = 1.5\nactive_power_w = 3.0\nderived = { active_power_w = \"x\" }",
            ),
            "say what the power covers",
        ),
    ];
    for (text, expected) in cases {
        std::fs::write(&path, &text).unwrap();
        let err = profile::load(&path, &chips).unwrap_err().to_string();
        assert!(err.contains("board.toml"), "names the file: {err}");
        assert!(err.contains(expected), "expected '{expected}' in: {err}");
    }
    let missing = profile::load(&dir.path().join("nope.toml"), &chips)
        .unwrap_err()
        .to_string();
    assert!(missing.contains("nope.toml"), "{missing}");
}
