//! Decoding and re-encoding a model written by Python's `onnx` package gives the same bytes.
//! The fixture, `tests/data/all-fields.onnx`, sets every field of every message; it is made by
//! `scripts/make-onnx-fixture.py`.

use std::path::Path;

use chipbench_optimize::model;
use chipbench_optimize::onnx::{
    DataType, ModelProto, TypeProto, simple_sharded_dim_proto, tensor_proto::DataLocation,
    type_proto,
};
use prost::Message;

fn fixture() -> (Vec<u8>, ModelProto) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/all-fields.onnx");
    let bytes = std::fs::read(&path).unwrap();
    let model = model::load(&path).unwrap();
    (bytes, model)
}

#[test]
fn every_field_survives_a_round_trip_byte_for_byte() {
    let (bytes, model) = fixture();
    let encoded = model.encode_to_vec();
    if encoded != bytes {
        let at = encoded
            .iter()
            .zip(&bytes)
            .position(|(a, b)| a != b)
            .unwrap_or(encoded.len().min(bytes.len()));
        panic!(
            "re-encoded model differs from byte {at} ({} vs {} bytes)",
            encoded.len(),
            bytes.len()
        );
    }
}

#[test]
fn presence_and_values_are_kept() {
    let (_, model) = fixture();
    assert_eq!(model.ir_version, Some(11));
    assert_eq!(
        model.domain.as_deref(),
        Some(""),
        "explicit empty model domain"
    );
    assert_eq!(model.model_version, Some(0), "explicit zero model version");
    assert_eq!(model.metadata_props.len(), 2);
    assert_eq!(model.configuration[0].device, ["cuda:0", "cuda:1"]);
    assert_eq!(
        model.training_info[0].update_binding[0].value(),
        "floats_next"
    );
    let function = &model.functions[0];
    assert_eq!((function.name(), function.overload()), ("Scale", "v1"));
    assert_eq!(function.node[0].attribute[0].ref_attr_name(), "alpha");

    let graph = model.graph.as_ref().unwrap();
    assert_eq!(graph.metadata_props[0].key(), "stage");
    assert_eq!(
        graph.node[0].domain.as_deref(),
        Some(""),
        "explicit empty node domain"
    );
    assert_eq!(graph.node[1].domain, None, "absent node domain");
    assert_eq!(graph.node[1].name, None);
    assert_eq!(graph.node[0].metadata_props[0].value(), "layer1");
    let sharding = &graph.node[0].device_configurations[0].sharding_spec[0];
    assert_eq!(
        sharding.sharded_dim[0].simple_sharding[1].dim,
        Some(simple_sharded_dim_proto::Dim::DimParam("batch".into()))
    );
    assert_eq!(
        graph.quantization_annotation[0]
            .quant_parameter_tensor_names
            .len(),
        2
    );

    let custom = &graph.node[2];
    assert_eq!(custom.input, ["c", ""]);
    assert_eq!(custom.attribute.len(), 14, "one attribute of every kind");
    assert_eq!(custom.attr_ints("ints"), Some(&[1, -1, 1 << 40][..]));
    assert_eq!(custom.attr_floats("floats"), Some(&[1.0, -1.0, 0.5][..]));
    assert_eq!(custom.attr_f("f"), Some(0.25));
    assert_eq!(custom.attr_s("s"), Some("text"));
    assert_eq!(custom.attr_g("g").unwrap().name(), "body");
    assert_eq!(custom.subgraphs().count(), 2);

    let init = |name: &str| graph.initializer.iter().find(|t| t.name() == name).unwrap();
    assert_eq!(init("floats").to_f32().unwrap(), [1.0, -2.5, 3.25, 0.0]);
    assert_eq!(init("halves").to_f32().unwrap(), [0.5, -1.0, 65504.0]);
    assert_eq!(init("int8s").to_i64().unwrap(), [-128, 127]);
    assert_eq!(init("int64s").to_i64().unwrap(), [-1, 0, 1 << 40]);
    assert_eq!(init("doubles").to_f32().unwrap(), [0.0, -2.0]);
    assert_eq!(init("uint64s").uint64_data, [0, u64::MAX]);
    assert_eq!(
        init("raw").to_f32().unwrap(),
        [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    );
    assert_eq!(init("segment").segment.as_ref().unwrap().end, Some(2));
    assert_eq!(init("strings").elem_type().unwrap(), DataType::String);
    let external = init("external");
    assert_eq!(external.data_location, Some(DataLocation::External as i32));
    let err = model::tensor_bytes(external, Path::new("nowhere"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("weights.bin") && err.contains("tensor 'external'"),
        "{err}"
    );
    assert_eq!(graph.sparse_initializer[0].dims, [2, 3]);

    let ty = |name: &str| -> &TypeProto {
        graph
            .value_info
            .iter()
            .find(|v| v.name() == name)
            .unwrap()
            .r#type
            .as_ref()
            .unwrap()
    };
    assert!(matches!(
        ty("vi_opaque").value,
        Some(type_proto::Value::OpaqueType(_))
    ));
    assert_eq!(ty("vi_opaque").denotation.as_deref(), Some("HANDLE"));
    assert!(matches!(
        ty("vi_map").value,
        Some(type_proto::Value::MapType(_))
    ));
    assert!(matches!(
        ty("vi_optional").value,
        Some(type_proto::Value::OptionalType(_))
    ));
    assert!(matches!(
        ty("vi_sequence").value,
        Some(type_proto::Value::SequenceType(_))
    ));
    assert!(matches!(
        ty("vi_sparse").value,
        Some(type_proto::Value::SparseTensorType(_))
    ));
    let shape = ty("vi_tensor").as_tensor().unwrap().shape.as_ref().unwrap();
    assert_eq!(shape.dim[1].denotation.as_deref(), Some("CHANNEL"));
    assert_eq!(
        shape.dim[2].value, None,
        "a dimension with neither value nor name"
    );
}
