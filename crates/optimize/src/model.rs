//! Model files: loading with errors that say what is wrong with which file, saving, hashing,
//! the declared inputs and outputs, and tensor data kept in external files.

use std::borrow::Cow;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use chipbench_core::{DType, Dim, InputSpec};
use prost::Message;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::onnx::{
    DataType, ModelProto, TensorProto, TensorShapeProto, ValueInfoProto, tensor_shape_proto,
};

/// Protobuf readers refuse messages of 2 GiB or more; bigger models keep their weights in
/// external data files.
const PROTOBUF_LIMIT: usize = i32::MAX as usize;

/// Reads and decodes a model. The error names the file and says whether it is missing,
/// unreadable, not protobuf (truncated, corrupt) or protobuf that is not a model.
pub fn load(path: &Path) -> Result<ModelProto> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode(&bytes).map_err(|reason| Error::NotOnnx {
        path: path.to_path_buf(),
        reason,
    })
}

fn decode(bytes: &[u8]) -> std::result::Result<ModelProto, String> {
    if bytes.is_empty() {
        return Err("the file is empty".into());
    }
    let model = ModelProto::decode(bytes)
        .map_err(|e| format!("protobuf decoding failed ({e}); is the file truncated?"))?;
    if model.graph.is_none() {
        return Err("the protobuf message has no graph".into());
    }
    if model.opset_import.is_empty() {
        // Every model since IR 3 imports an operator set; a file cut at a field boundary can
        // decode and lose it.
        return Err("the model imports no operator set; is the file truncated?".into());
    }
    Ok(model)
}

/// Encodes and writes a model.
pub fn save(model: &ModelProto, path: &Path) -> Result<()> {
    let len = model.encoded_len();
    if len > PROTOBUF_LIMIT {
        return Err(Error::Unsupported {
            path: Some(path.to_path_buf()),
            reason: format!(
                "the model encodes to {len} bytes, more than the 2 GiB protobuf readers accept; \
                 store its weights as external data"
            ),
        });
    }
    std::fs::write(path, model.encode_to_vec()).map_err(|e| Error::io(path, e))
}

/// The SHA-256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The folder external data locations are relative to.
pub fn model_dir(model_path: &Path) -> &Path {
    match model_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The inputs a caller must feed: graph inputs that are not initializers (older exporters list
/// every weight as an input too). Symbolic dimensions keep their name; a dimension with neither
/// a value nor a name becomes `unk__N`, numbered across the model, so it can still be bound.
pub fn inputs(model: &ModelProto) -> Result<Vec<InputSpec>> {
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| Error::unsupported("the model has no graph"))?;
    let initializers: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name()).collect();
    let mut unknown = 0;
    graph
        .input
        .iter()
        .filter(|v| !initializers.contains(v.name()))
        .map(|v| {
            let decl = declared(v, &mut unknown);
            let what = format!("input '{}'", decl.name);
            let elem_type = decl.elem_type.ok_or_else(|| {
                Error::unsupported(format!("{what} is not a tensor of a known type"))
            })?;
            let dtype = elem_type.to_dtype().ok_or_else(|| {
                Error::unsupported(format!(
                    "{what} holds {} elements, which chipbench cannot feed",
                    elem_type.name()
                ))
            })?;
            let shape = decl.shape.ok_or_else(|| {
                Error::unsupported(format!(
                    "{what} has no declared shape; give one with --input {}:SHAPE",
                    decl.name
                ))
            })?;
            Ok(InputSpec {
                name: decl.name,
                dtype,
                shape,
                range: None,
            })
        })
        .collect()
}

/// A value as the model declares it. Declarations can be wrong (exporters write stale shapes):
/// use them to describe a model, never to size buffers.
#[derive(Clone, Debug, PartialEq)]
pub struct DeclaredValue {
    pub name: String,
    /// `None` when the value is not a tensor (a sequence, a map) or its element type is unknown.
    pub elem_type: Option<DataType>,
    /// `None` when no shape is declared (not even the rank).
    pub shape: Option<Vec<Dim>>,
}

impl DeclaredValue {
    pub fn dtype(&self) -> Option<DType> {
        self.elem_type.and_then(DataType::to_dtype)
    }
}

/// The graph outputs as declared.
pub fn outputs(model: &ModelProto) -> Vec<DeclaredValue> {
    let mut unknown = 0;
    model
        .graph
        .iter()
        .flat_map(|g| &g.output)
        .map(|v| declared(v, &mut unknown))
        .collect()
}

fn declared(value: &ValueInfoProto, unknown: &mut usize) -> DeclaredValue {
    let tensor = value.r#type.as_ref().and_then(|t| t.as_tensor());
    DeclaredValue {
        name: value.name().to_string(),
        elem_type: tensor.and_then(|t| DataType::try_from(t.elem_type()).ok()),
        shape: tensor
            .and_then(|t| t.shape.as_ref())
            .map(|s| declared_shape(s, unknown)),
    }
}

fn declared_shape(shape: &TensorShapeProto, unknown: &mut usize) -> Vec<Dim> {
    use tensor_shape_proto::dimension::Value;
    shape
        .dim
        .iter()
        .map(|d| match &d.value {
            Some(Value::DimValue(v)) if *v >= 0 => Dim::Fixed(*v as usize),
            Some(Value::DimParam(name)) if !name.is_empty() => Dim::Named(name.clone()),
            _ => {
                let name = format!("unk__{unknown}");
                *unknown += 1;
                Dim::Named(name)
            }
        })
        .collect()
}

/// A tensor's data as `raw_data` would hold it, wherever it is stored: inline, or in an external
/// file named relative to `model_dir`. An external location that is absolute or climbs out of
/// the folder (`..`) is refused, so a model cannot make chipbench read arbitrary files.
pub fn tensor_bytes<'a>(tensor: &'a TensorProto, model_dir: &Path) -> Result<Cow<'a, [u8]>> {
    if !tensor.is_external() {
        return tensor.inline_bytes();
    }
    let fail = |path: Option<PathBuf>, reason: String| Error::Tensor {
        path: path.or_else(|| Some(model_dir.to_path_buf())),
        name: tensor.name().to_string(),
        reason,
    };
    let entry = |key: &str| {
        tensor
            .external_data
            .iter()
            .find(|e| e.key() == key)
            .map(|e| e.value())
    };
    let number = |key: &str| -> Result<Option<u64>> {
        entry(key)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| fail(None, format!("external data {key} '{v}' is not a number")))
            })
            .transpose()
    };
    let location =
        entry("location").ok_or_else(|| fail(None, "external data without a location".into()))?;
    let relative = Path::new(location);
    let escapes = relative.as_os_str().is_empty()
        || relative.is_absolute()
        || relative.components().any(|c| {
            matches!(
                c,
                Component::ParentDir | Component::RootDir | Component::Prefix(_)
            )
        });
    if escapes {
        return Err(fail(
            None,
            format!(
                "external data location '{location}' is not a path inside the model's folder \
                 (absolute paths and '..' are refused)"
            ),
        ));
    }
    let file = model_dir.join(relative);
    let offset = number("offset")?.unwrap_or(0);
    let length = number("length")?;
    let read = || -> std::io::Result<Vec<u8>> {
        let mut f = File::open(&file)?;
        let size = f.metadata()?.len();
        let length = length.unwrap_or(size.saturating_sub(offset));
        if offset.checked_add(length).is_none_or(|end| end > size) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "bytes {offset}..{} asked for, the file has {size}",
                    offset + length
                ),
            ));
        }
        f.seek(SeekFrom::Start(offset))?;
        let mut bytes = vec![0u8; length as usize];
        f.read_exact(&mut bytes)?;
        Ok(bytes)
    };
    let bytes = read().map_err(|e| fail(Some(file.clone()), e.to_string()))?;
    let expected = tensor.elem_type()?.bytes_for(tensor.element_count());
    if let Some(expected) = expected.filter(|&n| n != bytes.len() as u64) {
        return Err(fail(
            Some(file),
            format!(
                "{} bytes of external data for dims {:?} ({expected} expected)",
                bytes.len(),
                tensor.dims
            ),
        ));
    }
    Ok(Cow::Owned(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::{StringStringEntryProto, tensor_proto::DataLocation};

    fn external(location: &str, offset: u64, length: u64) -> TensorProto {
        TensorProto {
            name: Some("w".into()),
            dims: vec![2],
            data_type: Some(DataType::Float as i32),
            data_location: Some(DataLocation::External as i32),
            external_data: vec![
                StringStringEntryProto::new("location", location),
                StringStringEntryProto::new("offset", &offset.to_string()),
                StringStringEntryProto::new("length", &length.to_string()),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn reads_external_data_relative_to_the_model() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let mut bytes = vec![0xAAu8; 4];
        bytes.extend([1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()));
        std::fs::write(dir.path().join("data/w.bin"), &bytes).unwrap();
        let t = external("data/w.bin", 4, 8);
        let raw = tensor_bytes(&t, dir.path()).unwrap();
        assert_eq!(crate::onnx::values_f32(&t, &raw).unwrap(), vec![1.5, -2.0]);

        // Past the end of the file, and a length that does not fit the dims.
        let err = tensor_bytes(&external("data/w.bin", 8, 8), dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("w.bin") && err.contains("tensor 'w'"), "{err}");
        let err = tensor_bytes(&external("data/w.bin", 0, 12), dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("8 expected"), "{err}");
        let err = tensor_bytes(&external("data/none.bin", 0, 8), dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("none.bin"), "{err}");
    }

    #[test]
    fn refuses_external_data_outside_the_model_folder() {
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("model");
        std::fs::create_dir(&inner).unwrap();
        // The file exists, so only the location check can stop the read.
        std::fs::write(dir.path().join("x"), [0u8; 8]).unwrap();
        for location in ["../x", "sub/../../x", "/etc/passwd", ""] {
            let err = tensor_bytes(&external(location, 0, 8), &inner)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("not a path inside the model's folder"),
                "{location}: {err}"
            );
            assert!(err.contains("model"), "names the model folder: {err}");
        }
    }

    #[test]
    fn load_errors_name_the_file_and_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.onnx");
        let err = load(&missing).unwrap_err().to_string();
        assert!(
            err.contains("missing.onnx") && err.contains("No such file"),
            "{err}"
        );

        let good = crate::fixtures::constant_weights();
        let bytes = good.encode_to_vec();
        let truncated = dir.path().join("truncated.onnx");
        std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
        let err = load(&truncated).unwrap_err().to_string();
        assert!(
            err.contains("truncated.onnx") && err.contains("not a valid ONNX model"),
            "{err}"
        );

        // Random bytes, seeded so the test always sees the same ones.
        use rand::{RngCore, SeedableRng};
        let mut noise = vec![0u8; 4096];
        rand_chacha::ChaCha8Rng::seed_from_u64(3).fill_bytes(&mut noise);
        let random = dir.path().join("random.onnx");
        std::fs::write(&random, &noise).unwrap();
        let err = load(&random).unwrap_err().to_string();
        assert!(
            err.contains("random.onnx") && err.contains("not a valid ONNX model"),
            "{err}"
        );

        // Protobuf of another message, and a model message without its graph.
        let other = dir.path().join("entry.pb");
        std::fs::write(
            &other,
            StringStringEntryProto::new("k", "v").encode_to_vec(),
        )
        .unwrap();
        let err = load(&other).unwrap_err().to_string();
        assert!(
            err.contains("entry.pb") && err.contains("protobuf decoding failed"),
            "{err}"
        );
        let graphless = dir.path().join("graphless.onnx");
        let model = ModelProto {
            graph: None,
            ..crate::fixtures::constant_weights()
        };
        std::fs::write(&graphless, model.encode_to_vec()).unwrap();
        let err = load(&graphless).unwrap_err().to_string();
        assert!(
            err.contains("graphless.onnx") && err.contains("no graph"),
            "{err}"
        );

        let empty = dir.path().join("empty.onnx");
        std::fs::write(&empty, b"").unwrap();
        assert!(
            load(&empty)
                .unwrap_err()
                .to_string()
                .contains("empty.onnx: not a valid ONNX model: the file is empty")
        );
    }

    #[test]
    fn saves_loads_and_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.onnx");
        let model = crate::fixtures::constant_weights();
        save(&model, &path).unwrap();
        assert_eq!(load(&path).unwrap(), model);
        std::fs::write(dir.path().join("abc"), b"abc").unwrap();
        assert_eq!(
            sha256_file(&dir.path().join("abc")).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(
            save(&model, &dir.path().join("no/such/dir/m.onnx"))
                .unwrap_err()
                .to_string()
                .contains("m.onnx")
        );
    }

    #[test]
    fn declares_inputs_without_initializers_and_names_unknown_dims() {
        let model = crate::fixtures::misdeclared_shapes();
        let specs = inputs(&model).unwrap();
        assert_eq!(
            specs.len(),
            1,
            "the weight listed as a graph input is not a model input"
        );
        assert_eq!(
            specs[0].shape,
            vec![Dim::Named("batch".into()), Dim::Named("unk__0".into())]
        );
        let outs = outputs(&model);
        assert_eq!(outs[0].shape, Some(vec![Dim::Fixed(1), Dim::Fixed(4)]));
        assert_eq!(outs[0].dtype(), Some(DType::F32));

        let mut g = crate::builder::GraphBuilder::new("g");
        g.input("x", DataType::Double, &["2"]);
        let err = inputs(&g.into_model().unwrap()).unwrap_err();
        assert_eq!(
            err.in_file(Path::new("m.onnx")).to_string(),
            "m.onnx: input 'x' holds double elements, which chipbench cannot feed"
        );
    }
}
