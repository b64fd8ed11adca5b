#!/usr/bin/env python3
"""Writes crates/optimize/tests/data/all-fields.onnx: a model written by the `onnx` package's own
protobuf code that sets every field of every ONNX message at least once, so chipbench-optimize
can check that decoding and re-encoding a model gives the same bytes.

The model is not meant to run (it uses made-up operators and attributes); it is a protobuf
fixture. Its content is fixed, so rerunning the script rewrites the same bytes.

    pip install onnx numpy
    python3 scripts/make-onnx-fixture.py
"""

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = Path(__file__).resolve().parent.parent / "crates/optimize/tests/data/all-fields.onnx"


def props(**kv):
    return [onnx.StringStringEntryProto(key=k, value=v) for k, v in kv.items()]


def tensors():
    """One tensor per storage field: packed float/int32/int64/double/uint64 data, strings,
    raw_data, external data, a segment, a doc string and metadata."""
    floats = helper.make_tensor("floats", TensorProto.FLOAT, [2, 2], [1.0, -2.5, 3.25, 0.0])
    floats.doc_string = "float_data, packed"
    floats.metadata_props.extend(props(origin="fixture"))
    halves = TensorProto(name="halves", data_type=TensorProto.FLOAT16, dims=[3])
    halves.int32_data.extend(int(b) for b in np.array([0.5, -1, 65504], np.float16).view(np.uint16))
    int8s = TensorProto(name="int8s", data_type=TensorProto.INT8, dims=[2], int32_data=[-128, 127])
    int64s = helper.make_tensor("int64s", TensorProto.INT64, [3], [-1, 0, 2**40])
    doubles = helper.make_tensor("doubles", TensorProto.DOUBLE, [2], [1e-300, -2.0])
    uint64s = helper.make_tensor("uint64s", TensorProto.UINT64, [2], [0, 2**64 - 1])
    strings = helper.make_tensor("strings", TensorProto.STRING, [2], [b"a", "\u00e9".encode()])
    raw = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "raw")
    external = TensorProto(name="external", data_type=TensorProto.FLOAT, dims=[4])
    external.data_location = TensorProto.EXTERNAL
    external.external_data.extend(props(location="weights.bin", offset="0", length="16"))
    segment = helper.make_tensor("segment", TensorProto.INT32, [2], [7, -7])
    segment.segment.begin = 0
    segment.segment.end = 2
    return [floats, halves, int8s, int64s, doubles, uint64s, strings, raw, external, segment]


def sparse(name):
    values = helper.make_tensor(name, TensorProto.FLOAT, [2], [1.5, -1.5])
    indices = helper.make_tensor(name + "_indices", TensorProto.INT64, [2], [1, 5])
    return helper.make_sparse_tensor(values, indices, [2, 3])


def types():
    """Value infos of every TypeProto variant, with denotations."""
    tensor = helper.make_tensor_type_proto(TensorProto.FLOAT, ["batch", 3, None])
    tensor.tensor_type.shape.dim[1].denotation = "CHANNEL"
    tensor.denotation = "IMAGE"
    sequence = helper.make_sequence_type_proto(helper.make_tensor_type_proto(TensorProto.INT64, [2]))
    mapping = helper.make_map_type_proto(TensorProto.STRING, helper.make_tensor_type_proto(TensorProto.FLOAT, []))
    optional = helper.make_optional_type_proto(helper.make_tensor_type_proto(TensorProto.BOOL, [1]))
    sparse_type = helper.make_sparse_tensor_type_proto(TensorProto.FLOAT, [2, 3])
    opaque = onnx.TypeProto()
    opaque.opaque_type.domain = "com.example"
    opaque.opaque_type.name = "Handle"
    # denotation (field 6) falls between the oneof's fields: 7 and up must come after it.
    opaque.denotation = "HANDLE"
    sparse_type.denotation = "SPARSE"
    infos = []
    for name, tp in [("tensor", tensor), ("sequence", sequence), ("map", mapping),
                     ("optional", optional), ("sparse", sparse_type), ("opaque", opaque)]:
        vi = helper.make_value_info("vi_" + name, tp, doc_string="a " + name)
        vi.metadata_props.extend(props(kind=name))
        infos.append(vi)
    return infos


def every_attribute(subgraph):
    attrs = [
        helper.make_attribute("f", 0.25),
        helper.make_attribute("i", -3),
        helper.make_attribute("s", b"text"),
        helper.make_attribute("t", helper.make_tensor("at", TensorProto.FLOAT, [1], [2.0])),
        helper.make_attribute("g", subgraph),
        helper.make_attribute("sparse", sparse("attr_sparse")),
        helper.make_attribute("tp", helper.make_tensor_type_proto(TensorProto.INT8, [4])),
        helper.make_attribute("floats", [1.0, -1.0, 0.5]),
        helper.make_attribute("ints", [1, -1, 2**40]),
        helper.make_attribute("strings", [b"x", b""]),
        helper.make_attribute("tensors", [helper.make_tensor("t1", TensorProto.INT64, [1], [9])]),
        helper.make_attribute("graphs", [subgraph]),
        helper.make_attribute("sparse_tensors", [sparse("attr_sparse2")]),
        helper.make_attribute("type_protos", [helper.make_tensor_type_proto(TensorProto.UINT8, [])]),
    ]
    attrs[0].doc_string = "an attribute with a doc string"
    return attrs


def subgraph():
    g = helper.make_graph(
        [helper.make_node("Identity", ["outer"], ["inner"], name="inner_identity")],
        "body", [], [helper.make_tensor_value_info("inner", TensorProto.FLOAT, [1])])
    g.doc_string = "a subgraph reading an outer value"
    return g


def function():
    f = helper.make_function(
        "com.example", "Scale", ["x"], ["y"],
        [helper.make_node("Mul", ["x", "x"], ["y"], name="square", domain="")],
        [helper.make_opsetid("", 17)], attributes=["alpha"],
        attribute_protos=[helper.make_attribute("beta", 1.0)], doc_string="a local function")
    f.overload = "v1"
    ref = helper.make_attribute_ref("gamma", onnx.AttributeProto.FLOAT)
    ref.ref_attr_name = "alpha"
    f.node[0].attribute.append(ref)
    f.value_info.append(helper.make_tensor_value_info("x", TensorProto.FLOAT, [None]))
    f.metadata_props.extend(props(author="fixture"))
    return f


def device_configuration(node):
    config = onnx.NodeDeviceConfigurationProto(configuration_id="two-gpus", pipeline_stage=1)
    spec = config.sharding_spec.add(tensor_name="a", device=[0, 1])
    spec.index_to_device_group_map.add(key=0, value=[0, 1])
    dim = spec.sharded_dim.add(axis=0)
    dim.simple_sharding.add(dim_value=4, num_shards=2)
    dim.simple_sharding.add(dim_param="batch", num_shards=2)
    node.device_configurations.append(config)


def main():
    plain = helper.make_node("Relu", ["a"], ["b"], name="relu", domain="")  # explicit empty domain
    plain.doc_string = "a standard node"
    plain.metadata_props.extend(props(source="layer1"))
    device_configuration(plain)
    no_domain = helper.make_node("Identity", ["b"], ["c"])  # no name, no domain at all
    custom = helper.make_node("Frobnicate", ["c", ""], ["d"], name="frob", domain="com.example")
    custom.overload = "v1"
    custom.attribute.extend(every_attribute(subgraph()))
    call = helper.make_node("Scale", ["d"], ["e"], name="call", domain="com.example", overload="v1")

    graph = helper.make_graph(
        [plain, no_domain, custom, call], "all_fields",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 3, None])],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, ["batch", 3, None])],
        initializer=tensors(), doc_string="every field", value_info=types(),
        sparse_initializer=[sparse("sparse_init")])
    graph.metadata_props.extend(props(stage="graph"))
    annotation = graph.quantization_annotation.add(tensor_name="b")
    annotation.quant_parameter_tensor_names.extend(props(SCALE_TENSOR="floats", ZERO_POINT_TENSOR="int8s"))

    model = helper.make_model(
        graph, producer_name="make-onnx-fixture", producer_version="1",
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)],
        doc_string="a model that sets every field", domain="", model_version=0)
    model.ir_version = 11
    model.metadata_props.extend(props(license="MIT", note="\u00fcnicode"))
    model.functions.append(function())
    model.configuration.add(name="two-gpus", num_devices=2, device=["cuda:0", "cuda:1"])
    training = model.training_info.add()
    training.initialization.CopyFrom(helper.make_graph([], "init", [], []))
    training.algorithm.CopyFrom(helper.make_graph([], "step", [], []))
    training.initialization_binding.extend(props(floats="floats_init"))
    training.update_binding.extend(props(floats="floats_next"))

    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(model.SerializeToString(deterministic=True))
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes) with onnx {onnx.__version__}")


if __name__ == "__main__":
    main()
