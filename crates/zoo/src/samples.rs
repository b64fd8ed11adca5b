//! Real sample inputs: built from files that packages ship (the `[[data]]` sets of the catalog),
//! each file checked against its SHA-256, preprocessed as the model expects, and cached beside
//! the model as two `.npz` files, one array per model input with the samples stacked on a new
//! first axis: `calibration.npz` (what int8-static calibrates on) and `held-out.npz` (what the
//! accuracy check and the timed loop run on). A stamp records what they were built from, so a
//! changed catalog rebuilds them and a warm check reads no data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use chipbench_core::{Tensor, TensorInfo};
use serde::{Deserialize, Serialize};

use crate::catalog::{Channels, DataSource, DataSpec, Layout, Package, Preprocess};
use crate::registry::Client;
use crate::store::sha256_hex;
use crate::{Catalog, Entry, Registries, Store, ZooError};

pub const CALIBRATION_FILE: &str = "calibration.npz";
pub const HELD_OUT_FILE: &str = "held-out.npz";
const STAMP_FILE: &str = "samples.json";

/// A model's real samples in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Samples {
    pub calibration: PathBuf,
    pub held_out: PathBuf,
    pub calibration_count: usize,
    pub held_out_count: usize,
    /// The data set in words, with its package: for provenance and `zoo list`.
    pub source: String,
}

/// How a model's samples came to be in the store.
#[derive(Debug, PartialEq, Eq)]
pub enum SamplesFetched {
    /// The model has no real samples; the reason is its catalog `samples` line.
    None,
    Cached(Samples),
    Built(Samples),
}

#[derive(Serialize, Deserialize, PartialEq)]
struct Stamp {
    spec: DataSpec,
    source: DataSource,
    inputs: Vec<TensorInfo>,
    /// Each `.npz` file's name, size and modification time when it was written.
    files: Vec<(String, u64, u128)>,
}

/// The model's inputs at the catalog's shapes.
pub fn bound_inputs(entry: &Entry) -> Result<Vec<TensorInfo>, String> {
    entry
        .inputs
        .iter()
        .map(|spec| spec.bind(&entry.dims).map_err(|e| e.to_string()))
        .collect()
}

/// The model's samples if they are built and unchanged since, without reading them.
pub fn cached(
    store: &Store,
    catalog: &Catalog,
    entry: &Entry,
) -> Result<Option<Samples>, ZooError> {
    let Some((spec, source)) = catalog.data_of(entry) else {
        return Ok(None);
    };
    let dir = store.model_dir(entry);
    let Ok(bytes) = std::fs::read(dir.join(STAMP_FILE)) else {
        return Ok(None);
    };
    let Ok(stamp) = serde_json::from_slice::<Stamp>(&bytes) else {
        return Ok(None);
    };
    let inputs = bound_inputs(entry).map_err(|cause| samples_error(entry, source, cause))?;
    let now = file_stamps(&dir);
    let fresh = &stamp.spec == spec
        && &stamp.source == source
        && stamp.inputs == inputs
        && now.as_ref() == Some(&stamp.files);
    Ok(fresh.then(|| samples(&dir, spec, source)))
}

/// Makes the samples of every entry available in the store (building them where they are
/// missing or stale); one result per entry, in order. Each archive is downloaded once.
pub fn fetch(
    store: &Store,
    registries: &Registries,
    client: &Client,
    catalog: &Catalog,
    entries: &[&Entry],
) -> Vec<Result<SamplesFetched, ZooError>> {
    let mut archives: BTreeMap<Package, Result<Vec<u8>, ZooError>> = BTreeMap::new();
    entries
        .iter()
        .map(|entry| {
            let Some((spec, source)) = catalog.data_of(entry) else {
                return Ok(SamplesFetched::None);
            };
            if let Some(samples) = cached(store, catalog, entry)? {
                return Ok(SamplesFetched::Cached(samples));
            }
            let archive = archives.entry(source.package()).or_insert_with(|| {
                crate::fetch::download(registries, client, source.package()).map(|(_, b)| b)
            });
            let archive = archive.as_ref().map_err(Clone::clone)?;
            let files = extract_verified(source, archive)?;
            build(store, entry, spec, source, &files).map(SamplesFetched::Built)
        })
        .collect()
}

/// The set's files out of the archive, each refused unless its hash is the catalog's.
fn extract_verified(source: &DataSource, archive: &[u8]) -> Result<Vec<Vec<u8>>, ZooError> {
    source
        .files
        .iter()
        .map(|f| {
            let data = crate::archive::extract(&source.file, archive, &f.path)?;
            let actual = sha256_hex(&data);
            if actual != f.sha256 {
                return Err(ZooError::DataHash {
                    file: source.file.clone(),
                    path: f.path.clone(),
                    expected: f.sha256.clone(),
                    actual,
                });
            }
            Ok(data)
        })
        .collect()
}

/// Preprocesses verified files into the two `.npz` splits and stamps them.
fn build(
    store: &Store,
    entry: &Entry,
    spec: &DataSpec,
    source: &DataSource,
    files: &[Vec<u8>],
) -> Result<Samples, ZooError> {
    let fail = |cause: String| samples_error(entry, source, cause);
    let inputs = bound_inputs(entry).map_err(fail)?;
    let all = sample_inputs(spec, &inputs, files).map_err(fail)?;
    let dir = store.model_dir(entry);
    std::fs::create_dir_all(&dir).map_err(|e| ZooError::io(&dir, e))?;
    let _ = std::fs::remove_file(dir.join(STAMP_FILE));
    let (calibration, held_out) = all.split_at(spec.calibration);
    for (file, split) in [(CALIBRATION_FILE, calibration), (HELD_OUT_FILE, held_out)] {
        let path = dir.join(file);
        chipbench_core::npz::save(&path, &inputs, split)
            .map_err(|e| ZooError::io(&path, std::io::Error::other(e.to_string())))?;
    }
    let stamp = Stamp {
        spec: spec.clone(),
        source: source.clone(),
        inputs,
        files: file_stamps(&dir).ok_or_else(|| fail("the written samples vanished".into()))?,
    };
    let path = dir.join(STAMP_FILE);
    std::fs::write(
        &path,
        serde_json::to_vec(&stamp).expect("a stamp serializes"),
    )
    .map_err(|e| ZooError::io(&path, e))?;
    Ok(samples(&dir, spec, source))
}

fn samples(dir: &Path, spec: &DataSpec, source: &DataSource) -> Samples {
    let total = match spec.preprocess {
        Preprocess::Audio { chunks, .. } => chunks,
        _ => source.files.len(),
    };
    Samples {
        calibration: dir.join(CALIBRATION_FILE),
        held_out: dir.join(HELD_OUT_FILE),
        calibration_count: spec.calibration,
        held_out_count: total - spec.calibration,
        source: format!(
            "{} ({} {} {}, {})",
            source.name,
            match source.registry {
                crate::Registry::Pypi => "pypi",
                crate::Registry::Npm => "npm",
            },
            source.package,
            source.version,
            source.description
        ),
    }
}

fn samples_error(entry: &Entry, source: &DataSource, cause: String) -> ZooError {
    ZooError::Samples {
        model: entry.name.clone(),
        source_name: source.name.clone(),
        cause,
    }
}

fn file_stamps(dir: &Path) -> Option<Vec<(String, u64, u128)>> {
    [CALIBRATION_FILE, HELD_OUT_FILE]
        .iter()
        .map(|name| {
            let meta = std::fs::metadata(dir.join(name)).ok()?;
            let modified = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
            Some((name.to_string(), meta.len(), modified.as_nanos()))
        })
        .collect()
}

/// Every sample's inputs in the order of `inputs`: the preprocessed files for the data input,
/// the spec's values for the others.
pub fn sample_inputs(
    spec: &DataSpec,
    inputs: &[TensorInfo],
    files: &[Vec<u8>],
) -> Result<Vec<Vec<Tensor>>, String> {
    let target = inputs
        .iter()
        .find(|i| i.name == spec.input)
        .ok_or_else(|| format!("the model has no input '{}'", spec.input))?;
    let data: Vec<Tensor> = match &spec.preprocess {
        Preprocess::Image {
            layout,
            channels,
            mean,
            std,
        } => files
            .iter()
            .map(|f| {
                let image = decode_png(f)?;
                image_tensor(&image, target, *layout, *channels, *mean, *std)
            })
            .collect::<Result<_, String>>()?,
        Preprocess::Audio { scale, chunks } => {
            let [recording] = files else {
                return Err("an audio set holds one recording".into());
            };
            audio_chunks(&decode_wav(recording)?, target, *scale, *chunks)?
        }
        Preprocess::Bytes => files
            .iter()
            .map(|f| bytes_tensor(f, target))
            .collect::<Result<_, String>>()?,
    };
    let others: Vec<Option<Tensor>> = inputs
        .iter()
        .map(|info| {
            if info.name == spec.input {
                return Ok(None);
            }
            let value = spec
                .values
                .get(&info.name)
                .ok_or_else(|| format!("no value for the input '{}'", info.name))?;
            chipbench_core::spec::filled(info, *value)
                .map(Some)
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, String>>()?;
    Ok(data
        .into_iter()
        .map(|sample| {
            others
                .iter()
                .map(|o| o.clone().unwrap_or_else(|| sample.clone()))
                .collect()
        })
        .collect())
}

/// An 8-bit RGB image, row-major, three bytes a pixel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rgb8 {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

/// Decodes a PNG to 8-bit RGB: 16-bit samples are cut to 8, a palette expanded, grey copied to
/// the three channels and alpha dropped (what OpenCV's `imread` does, which the models' own
/// preprocessing uses).
pub fn decode_png(bytes: &[u8]) -> Result<Rgb8, String> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(|e| format!("not a PNG: {e}"))?;
    let size = reader
        .output_buffer_size()
        .ok_or("the PNG is too large to decode")?;
    let mut buf = vec![0; size];
    let frame = reader
        .next_frame(&mut buf)
        .map_err(|e| format!("a broken PNG: {e}"))?;
    let data = &buf[..frame.buffer_size()];
    let per_pixel = match frame.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => return Err("a palette PNG was not expanded".into()),
    };
    let (width, height) = (frame.width as usize, frame.height as usize);
    let mut pixels = Vec::with_capacity(width * height * 3);
    for row in data.chunks(frame.line_size).take(height) {
        for px in row[..width * per_pixel].chunks(per_pixel) {
            match per_pixel {
                1 | 2 => pixels.extend([px[0]; 3]),
                _ => pixels.extend(&px[..3]),
            }
        }
    }
    Ok(Rgb8 {
        width,
        height,
        pixels,
    })
}

/// Bilinear resize with half-pixel centres and edge clamping (OpenCV's `INTER_LINEAR`, without
/// its fixed-point rounding): `height x width x 3` values in 0..=255.
pub fn resize_bilinear(image: &Rgb8, height: usize, width: usize) -> Vec<f32> {
    // Source coordinate of each destination row or column, and its weights.
    fn taps(dst: usize, src: usize) -> Vec<(usize, usize, f32)> {
        let scale = src as f32 / dst as f32;
        (0..dst)
            .map(|d| {
                let x = ((d as f32 + 0.5) * scale - 0.5).clamp(0.0, (src - 1) as f32);
                let lo = x.floor() as usize;
                let hi = (lo + 1).min(src - 1);
                (lo, hi, x - lo as f32)
            })
            .collect()
    }
    let rows = taps(height, image.height);
    let cols = taps(width, image.width);
    let at = |y: usize, x: usize, c: usize| image.pixels[(y * image.width + x) * 3 + c] as f32;
    let mut out = Vec::with_capacity(height * width * 3);
    for &(y0, y1, fy) in &rows {
        for &(x0, x1, fx) in &cols {
            for c in 0..3 {
                let top = at(y0, x0, c) * (1.0 - fx) + at(y0, x1, c) * fx;
                let bottom = at(y1, x0, c) * (1.0 - fx) + at(y1, x1, c) * fx;
                out.push(top * (1.0 - fy) + bottom * fy);
            }
        }
    }
    out
}

/// The image resized to the input's height and width, normalised, in the input's layout.
pub fn image_tensor(
    image: &Rgb8,
    target: &TensorInfo,
    layout: Layout,
    channels: Channels,
    mean: [f32; 3],
    std: [f32; 3],
) -> Result<Tensor, String> {
    let (height, width) = match (layout, target.shape.as_slice()) {
        (Layout::Nchw, [1, 3, h, w]) | (Layout::Nhwc, [1, h, w, 3]) => (*h, *w),
        (_, shape) => {
            return Err(format!(
                "input '{}' {shape:?} is not one {} image of 3 channels",
                target.name,
                match layout {
                    Layout::Nchw => "NCHW",
                    Layout::Nhwc => "NHWC",
                }
            ));
        }
    };
    let resized = resize_bilinear(image, height, width);
    let source_channel = |c: usize| match channels {
        Channels::Rgb => c,
        Channels::Bgr => 2 - c,
    };
    let value = |pixel: usize, c: usize| {
        (resized[pixel * 3 + source_channel(c)] / 255.0 - mean[c]) / std[c]
    };
    let pixels = height * width;
    let data: Vec<f32> = match layout {
        Layout::Nchw => (0..3)
            .flat_map(|c| (0..pixels).map(move |p| (p, c)))
            .map(|(p, c)| value(p, c))
            .collect(),
        Layout::Nhwc => (0..pixels)
            .flat_map(|p| (0..3).map(move |c| (p, c)))
            .map(|(p, c)| value(p, c))
            .collect(),
    };
    Tensor::from_vec(target.shape.clone(), data).map_err(|e| e.to_string())
}

/// The samples of a 16-bit mono WAV file.
pub fn decode_wav(bytes: &[u8]) -> Result<Vec<i16>, String> {
    let reader =
        hound::WavReader::new(std::io::Cursor::new(bytes)).map_err(|e| format!("WAV: {e}"))?;
    let spec = reader.spec();
    if spec.channels != 1
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
    {
        return Err(format!(
            "WAV: {} channels of {}-bit {:?}; only 16-bit integer mono is read",
            spec.channels, spec.bits_per_sample, spec.sample_format
        ));
    }
    reader
        .into_samples::<i16>()
        .collect::<Result<_, _>>()
        .map_err(|e| format!("WAV: {e}"))
}

/// `chunks` consecutive chunks from the recording's start, each as long as the input's last
/// dimension (the others must be 1), values times `scale`.
pub fn audio_chunks(
    recording: &[i16],
    target: &TensorInfo,
    scale: f32,
    chunks: usize,
) -> Result<Vec<Tensor>, String> {
    let len = match target.shape.split_last() {
        Some((&n, rest)) if rest.iter().all(|&d| d == 1) => n,
        _ => {
            return Err(format!(
                "input '{}' {:?} is not one chunk of audio",
                target.name, target.shape
            ));
        }
    };
    if len * chunks > recording.len() {
        return Err(format!(
            "the recording has {} samples, fewer than {chunks} chunks of {len}",
            recording.len()
        ));
    }
    recording
        .chunks(len)
        .take(chunks)
        .map(|chunk| {
            let values = chunk.iter().map(|&s| s as f32 * scale).collect();
            Tensor::from_vec(target.shape.clone(), values).map_err(|e| e.to_string())
        })
        .collect()
}

/// Magika's features of a file (its standard_v3 models): the first half of the input out of at
/// most the first 4096 bytes with leading whitespace stripped, padded after with 256; the second
/// half out of at most the last 4096 bytes with trailing whitespace stripped, padded before.
pub fn bytes_tensor(file: &[u8], target: &TensorInfo) -> Result<Tensor, String> {
    const BLOCK: usize = 4096;
    const PADDING: i32 = 256;
    let total = match target.shape.as_slice() {
        [1, n] if n % 2 == 0 && n / 2 < BLOCK => *n,
        shape => {
            return Err(format!(
                "input '{}' {shape:?} is not [1, 2 x half]",
                target.name
            ));
        }
    };
    let half = total / 2;
    // Python's bytes.strip(): space, \t, \n, \r, \x0b, \x0c.
    let space = |b: &u8| b" \t\n\r\x0b\x0c".contains(b);
    let begin = &file[..file.len().min(BLOCK)];
    let begin = &begin[begin.iter().position(|b| !space(b)).unwrap_or(begin.len())..];
    let end = &file[file.len().saturating_sub(BLOCK)..];
    let end = &end[..end.iter().rposition(|b| !space(b)).map_or(0, |i| i + 1)];
    let mut values: Vec<i32> = begin.iter().take(half).map(|&b| b as i32).collect();
    values.resize(half, PADDING);
    let tail = &end[end.len().saturating_sub(half)..];
    values.extend(std::iter::repeat_n(PADDING, half - tail.len()));
    values.extend(tail.iter().map(|&b| b as i32));
    Tensor::from_vec(target.shape.clone(), values).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chipbench_core::DType;

    fn info(name: &str, dtype: DType, shape: &[usize]) -> TensorInfo {
        TensorInfo {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
        }
    }

    /// A PNG of `width x height` with the given color type and raw rows.
    fn png(width: u32, height: u32, color: png::ColorType, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(color);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(data).unwrap();
        writer.finish().unwrap();
        out
    }

    #[test]
    fn png_grey_and_rgba_become_rgb() {
        let grey = decode_png(&png(2, 1, png::ColorType::Grayscale, &[10, 200])).unwrap();
        assert_eq!(grey.pixels, [10, 10, 10, 200, 200, 200]);
        let rgba = png(1, 2, png::ColorType::Rgba, &[1, 2, 3, 0, 4, 5, 6, 255]);
        let rgba = decode_png(&rgba).unwrap();
        assert_eq!((rgba.width, rgba.height), (1, 2));
        assert_eq!(rgba.pixels, [1, 2, 3, 4, 5, 6]);
        let e = decode_png(b"GIF89a").unwrap_err();
        assert!(e.contains("not a PNG"), "{e}");
    }

    #[test]
    fn bilinear_resize_by_hand() {
        // Two grey pixels 0 and 100 across; to 4 columns the half-pixel centres fall at source
        // x = -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1): 0, 25, 75, 100.
        let image = Rgb8 {
            width: 2,
            height: 1,
            pixels: vec![0, 0, 0, 100, 100, 100],
        };
        let out = resize_bilinear(&image, 1, 4);
        let red: Vec<f32> = out.chunks(3).map(|p| p[0]).collect();
        assert_eq!(red, [0.0, 25.0, 75.0, 100.0]);
        // Down to one pixel: the centre, 0.5 between them.
        assert_eq!(resize_bilinear(&image, 1, 1), [50.0, 50.0, 50.0]);
    }

    #[test]
    fn image_tensor_normalises_in_layout_and_channel_order() {
        // One pixel, R=255 G=0 B=51.
        let image = Rgb8 {
            width: 1,
            height: 1,
            pixels: vec![255, 0, 51],
        };
        let half = [0.5; 3];
        let nchw = info("x", DType::F32, &[1, 3, 1, 2]);
        let t = image_tensor(&image, &nchw, Layout::Nchw, Channels::Bgr, half, half).unwrap();
        // BGR: channel 0 is blue (51/255 = 0.2 -> -0.6), 1 green (-1), 2 red (1); both columns.
        let v = t.as_slice::<f32>().unwrap();
        let expected = [-0.6, -0.6, -1.0, -1.0, 1.0, 1.0];
        assert!(
            v.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-6),
            "{v:?}"
        );
        let nhwc = info("x", DType::F32, &[1, 1, 1, 3]);
        let mean = [0.0, 0.5, 0.0];
        let std = [1.0, 0.5, 0.2];
        let t = image_tensor(&image, &nhwc, Layout::Nhwc, Channels::Rgb, mean, std).unwrap();
        let v = t.as_slice::<f32>().unwrap();
        let expected = [1.0, -1.0, 1.0];
        assert!(
            v.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-6),
            "{v:?}"
        );
        let e = image_tensor(
            &image,
            &info("x", DType::F32, &[1, 1, 4, 4]),
            Layout::Nchw,
            Channels::Rgb,
            half,
            half,
        )
        .unwrap_err();
        assert!(e.contains("'x'") && e.contains("NCHW"), "{e}");
    }

    fn wav(samples: &[i16], channels: u16) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        let spec = hound::WavSpec {
            channels,
            sample_rate: 16000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::new(&mut out, spec).unwrap();
        for &s in samples {
            writer.write_sample(s).unwrap();
        }
        writer.finalize().unwrap();
        out.into_inner()
    }

    #[test]
    fn wav_chunks_in_order_scaled() {
        let recording = decode_wav(&wav(&[16384, -32768, 1, 2, 3, 4, 5], 1)).unwrap();
        assert_eq!(recording, [16384, -32768, 1, 2, 3, 4, 5]);
        let input = info("input", DType::F32, &[1, 2]);
        let chunks = audio_chunks(&recording, &input, 1.0 / 32768.0, 2).unwrap();
        assert_eq!(chunks[0].as_slice::<f32>().unwrap(), [0.5, -1.0]);
        assert_eq!(
            chunks[1].as_slice::<f32>().unwrap(),
            [1.0 / 32768.0, 2.0 / 32768.0]
        );
        let e = audio_chunks(&recording, &input, 1.0, 4).unwrap_err();
        assert!(e.contains("7 samples"), "{e}");
        let e = decode_wav(&wav(&[1, 2], 2)).unwrap_err();
        assert!(e.contains("2 channels"), "{e}");
    }

    #[test]
    fn magika_features_strip_whitespace_and_pad() {
        let input = info("bytes", DType::I32, &[1, 8]);
        let t = bytes_tensor(b"  ab\n", &input).unwrap();
        // Begin: "ab\n" (leading spaces stripped), padded; end: "  ab" (the newline stripped).
        assert_eq!(
            t.as_slice::<i32>().unwrap(),
            [97, 98, 10, 256, 32, 32, 97, 98]
        );
        let t = bytes_tensor(b"abcdefgh", &input).unwrap();
        assert_eq!(
            t.as_slice::<i32>().unwrap(),
            [97, 98, 99, 100, 101, 102, 103, 104]
        );
        let t = bytes_tensor(b" \n ", &input).unwrap();
        assert_eq!(t.as_slice::<i32>().unwrap(), [256; 8]);
    }

    #[test]
    fn other_inputs_get_their_values() {
        let spec = DataSpec {
            source: "s".into(),
            input: "input".into(),
            calibration: 1,
            preprocess: Preprocess::Audio {
                scale: 1.0,
                chunks: 2,
            },
            values: [("state".to_string(), 0.0), ("sr".to_string(), 16000.0)].into(),
        };
        let inputs = [
            info("input", DType::F32, &[1, 2]),
            info("state", DType::F32, &[2, 1, 3]),
            info("sr", DType::I64, &[]),
        ];
        let samples = sample_inputs(&spec, &inputs, &[wav(&[1, 2, 3, 4], 1)]).unwrap();
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[1][0].as_slice::<f32>().unwrap(), [3.0, 4.0]);
        assert_eq!(samples[1][1].as_slice::<f32>().unwrap(), [0.0; 6]);
        assert_eq!(samples[1][2].as_slice::<i64>().unwrap(), [16000]);
    }
}
