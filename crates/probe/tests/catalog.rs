//! The chip catalog parses, every entry has a source, and the figures are used as documented.

use chipbench_core::result::Host;
use chipbench_probe::catalog::{self, Class, Precision};

const REQUIRED: [&str; 17] = [
    "nvidia-h100-sxm",
    "nvidia-h200-sxm",
    "nvidia-a100-sxm4-80gb",
    "nvidia-l4",
    "nvidia-jetson-orin-nano-8gb",
    "nvidia-jetson-agx-orin-64gb",
    "google-tpu-v4",
    "google-tpu-v5e",
    "google-edge-tpu",
    "aws-inferentia2",
    "aws-trainium",
    "huawei-ascend-910b",
    "intel-movidius-myriad-x",
    "apple-m4-neural-engine",
    "raspberry-pi-4",
    "raspberry-pi-5",
    "generic-x86-server-core",
];

#[test]
fn the_catalog_parses_and_every_entry_has_a_source() {
    let chips = catalog::catalog().unwrap();
    for id in REQUIRED {
        assert!(chips.iter().any(|c| c.id == id), "missing {id}");
    }
    for chip in &chips {
        assert!(!chip.source.is_empty(), "{} has no source", chip.id);
        assert!(
            chip.source
                .iter()
                .all(|s| s.url.starts_with("https://") && !s.title.is_empty())
        );
        let has_figure = chip.peak_fp32_tflops.is_some()
            || chip.peak_fp16_tflops.is_some()
            || chip.peak_int8_tops.is_some()
            || chip.peak_unstated_tops.is_some();
        assert!(
            has_figure || chip.notes.is_some(),
            "{}: no peak and no note saying why",
            chip.id
        );
    }
    let classes: std::collections::BTreeSet<&str> = chips.iter().map(|c| c.class.label()).collect();
    assert_eq!(
        classes.into_iter().collect::<Vec<_>>(),
        ["edge", "general-purpose", "specialised"]
    );
}

#[test]
fn dense_rates_are_half_the_sparse_datasheet_rates() {
    let chips = catalog::catalog().unwrap();
    let h100 = chips.iter().find(|c| c.id == "nvidia-h100-sxm").unwrap();
    assert_eq!(h100.peak_int8_tops, Some(1979.0));
    assert!(h100.derived["peak_int8_tops"].contains("3,958"));
    assert_eq!(h100.peak(Precision::Fp32).unwrap().ops_per_s, 67e12);
    let edge = chips.iter().find(|c| c.id == "google-edge-tpu").unwrap();
    assert_eq!(edge.class, Class::Edge);
    assert!(
        edge.peak(Precision::Fp32).is_none(),
        "the Edge TPU runs int8 only"
    );
    let ane = chips
        .iter()
        .find(|c| c.id == "apple-m4-neural-engine")
        .unwrap();
    let peak = ane.peak(Precision::Int8).unwrap();
    assert!(!peak.precision_stated && peak.ops_per_s == 38e12);
    assert!(
        ane.peak(Precision::Fp32).is_none(),
        "an unstated rate never stands in for fp32"
    );
}

#[test]
fn bad_catalogs_are_rejected_with_the_reason() {
    let entry = |extra: &str| {
        format!(
            "[[chip]]\nid = \"x\"\nname = \"X\"\nvendor = \"V\"\nclass = \"edge\"\nkind = \"npu\"\n{extra}\n"
        )
    };
    let source = "source = [{ title = \"T\", url = \"https://example.com\" }]";
    let err = |text: &str| catalog::parse(text, "test.toml").unwrap_err().to_string();
    assert!(catalog::parse(&entry(source), "test.toml").is_ok());
    assert!(err(&entry("source = []")).contains("no source"));
    assert!(
        err(&entry(&format!("peak_int8_tops = -4.0\n{source}"))).contains("not a positive number")
    );
    assert!(
        err(&entry(&format!(
            "{source}\nderived = {{ tdp_w = \"guess\" }}"
        )))
        .contains("tdp_w")
    );
    assert!(err(&format!("{}{}", entry(source), entry(source))).contains("used twice"));
    assert!(err(&entry(&format!("{source}\nflops = 3"))).contains("test.toml"));
    assert!(err(&entry("source = [{ title = \"T\", url = \"ftp://x\" }]")).contains("https://"));
}

#[test]
fn hosts_and_gpus_find_their_entries() {
    let chips = catalog::catalog().unwrap();
    let x86 = Host {
        cpu_brand: "AMD EPYC".into(),
        arch: "x86_64".into(),
        ..Host::default()
    };
    assert_eq!(
        catalog::cpu_core_for(&chips, &x86).unwrap().id,
        "generic-x86-server-core"
    );
    let arm = Host {
        cpu_brand: "Some ARM core".into(),
        arch: "aarch64".into(),
        ..Host::default()
    };
    assert!(
        catalog::cpu_core_for(&chips, &arm).is_none(),
        "no guess for an unknown ARM core"
    );
    assert_eq!(
        catalog::gpu_for(&chips, "NVIDIA H100 80GB HBM3")
            .unwrap()
            .id,
        "nvidia-h100-sxm"
    );
    assert!(catalog::gpu_for(&chips, "llvmpipe (LLVM 15.0.6, 256 bits)").is_none());
}
