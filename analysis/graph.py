"""Per-layer records from an ONNX graph: every convolution and fully connected layer, with shapes.

Works on any ONNX classifier the pipeline exports (ours or the user's): shapes come from
``onnx.shape_inference``, weights from the initializers. Element counts are per image: a batch
dimension (symbolic or not) is taken as 1.

What a record holds (see ``LayerRecord``): the op, the input and output tensor shapes and element
counts, MACs, weight elements, groups/kernel/stride, and whether the input tensor is a
concatenation (the producer of the input, looked through element-wise ops such as Relu, is a
``Concat``). How those records add up to CIO is the business of ``analysis.cio``.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field

import onnx
from google.protobuf.message import DecodeError
from onnx import shape_inference

from deploy.errors import PipelineError

LOG = logging.getLogger(__name__)

# Ops that pass a tensor through element-wise: a Concat behind one of them still feeds the conv
# a concatenated tensor (Conv -> Relu -> Concat is common; so is Concat -> Relu in pre-activation nets).
_PASS_THROUGH = {"Relu", "Clip", "Identity", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish",
                 "Cast", "BatchNormalization", "Dropout"}
_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
                onnx.TensorProto.BFLOAT16}


class GraphError(PipelineError):
    """The ONNX graph cannot be analyzed (shapes unknown, unsupported layout)."""


@dataclass
class LayerRecord:
    name: str                 # the ONNX node name (or "<op>_<index>" when it has none)
    op: str                   # "conv" or "fc"
    kind: str                 # "conv", "pointwise", "depthwise", "grouped", "affine" or "fc"; "affine" is a
                              # 1x1 stride-1 depthwise conv: a BatchNorm left standalone by BN folding
    input: str                # tensor names
    output: str
    in_shape: list[int]       # NCHW (conv) or NK (fc), batch included
    out_shape: list[int]
    in_elems: int             # per image
    out_elems: int
    macs: int                 # per image
    weight_elems: int         # weights + bias
    kernel: list[int] = field(default_factory=list)
    stride: list[int] = field(default_factory=list)
    groups: int = 1
    concat_input: bool = False  # the input tensor is a Concat (through element-wise ops)
    concat_parts: int = 0       # how many tensors that Concat joins (0: not a concat)
    source: str = ""            # output tensor of the Conv/Gemm that feeds this layer through element-wise
                                # ops only; "" when the input comes from anything else (image, Concat, Add, pool)
    source_readers: int = 0     # how many nodes read that source layer's activated output

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class GraphSummary:
    layers: list[LayerRecord]
    params: int                 # float initializer elements (the deployed, BN-folded weights)
    input_name: str
    input_shape: list[int]
    output_names: list[str]


def _dims(value_info) -> list:
    """Dimensions: ints where known, the symbol (or None) where not."""
    shape = value_info.type.tensor_type.shape
    out: list[int | str | None] = []
    for d in shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        else:
            out.append(d.dim_param or None)
    return out


def set_input_size(model: onnx.ModelProto, size: int, batch: int = 1) -> onnx.ModelProto:
    """A copy of ``model`` whose single image input is ``batch x C x size x size``; shapes re-inferred.

    Lets ``analyze`` run a bundle's 320x320 graph at 224x224 (the paper's size): a classifier's
    convolutions do not depend on the input size, only its tensor shapes do.
    """
    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {i.name for i in m.graph.initializer}
    inputs = [i for i in m.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise GraphError(f"the graph has {len(inputs)} inputs; analyze reads single-image classifiers",
                         hint="export a model with one NCHW image input")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        raise GraphError(f"input {inputs[0].name!r} has rank {len(dims)}, not NCHW",
                         hint="export a model with one NCHW image input")
    dims[0].Clear()
    dims[0].dim_value = batch
    for d in (dims[2], dims[3]):
        d.Clear()
        d.dim_value = int(size)
    del m.graph.value_info[:]
    for out in m.graph.output:  # the declared output sizes may depend on the input size: let inference say
        if out.type.HasField("tensor_type") and out.type.tensor_type.HasField("shape"):
            for i, d in enumerate(out.type.tensor_type.shape.dim):
                if i >= 2:
                    d.Clear()
                    d.dim_param = f"{out.name}_dim{i}"
    return m


def infer(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        return shape_inference.infer_shapes(model, check_type=False, strict_mode=True, data_prop=True)
    except (shape_inference.InferenceError, onnx.checker.ValidationError, RuntimeError, ValueError) as exc:
        raise GraphError(f"ONNX shape inference failed: {str(exc).splitlines()[0] if str(exc) else exc!r}",
                         hint="check the model with onnx.checker, or export it with fixed input shapes") from exc


def _per_image(shape: list) -> int:
    if any(d is None or isinstance(d, str) for d in shape[1:]):
        raise GraphError(f"tensor shape {shape} is not fully known after shape inference",
                         hint="export the model with a fixed input size (dynamic batch is fine)")
    return int(math.prod(shape[1:])) if shape else 0


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def analyze_graph(model: onnx.ModelProto) -> GraphSummary:
    """Shape-infer ``model`` and return a record for every Conv, Gemm and weight MatMul, in graph order."""
    model = infer(model)
    g = model.graph
    shapes: dict[str, list] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        shapes[vi.name] = _dims(vi)
    inits = {i.name: i for i in g.initializer}
    for name, init in inits.items():
        shapes[name] = list(init.dims)
    # Constant nodes carrying weights (some exporters use them instead of initializers)
    const_dims: dict[str, list[int]] = {}
    for node in g.node:
        if node.op_type == "Constant" and node.output:
            t = _attr(node, "value")
            if t is not None and hasattr(t, "dims"):
                const_dims[node.output[0]] = list(t.dims)
    producer = {out: node for node in g.node for out in node.output}

    def weight_dims(name: str) -> list[int] | None:
        if name in inits:
            return list(inits[name].dims)
        if name in const_dims:
            return const_dims[name]
        # weights behind DequantizeLinear / Identity (QDQ or simplified graphs)
        node = producer.get(name)
        if node is not None and node.op_type in ("DequantizeLinear", "Identity", "Cast") and node.input:
            return weight_dims(node.input[0])
        return None

    def is_affine(node: onnx.NodeProto) -> bool:
        """A 1x1, stride-1 depthwise Conv: a per-channel scale and shift (a BatchNorm made a conv)."""
        if node.op_type != "Conv":
            return False
        wd = weight_dims(node.input[1])
        groups = int(_attr(node, "group", 1))
        strides = _attr(node, "strides") or [1, 1]
        return (wd is not None and len(wd) == 4 and groups > 1 and wd[0] == groups and wd[1] == 1
                and list(wd[2:]) == [1, 1] and all(int(v) == 1 for v in strides))

    readers: dict[str, int] = {}
    for node in g.node:
        for i in node.input:
            readers[i] = readers.get(i, 0) + 1

    def source_of(name: str) -> tuple[str, str]:
        """(producing Conv/Gemm output name, the tensor this layer actually reads) through element-wise ops."""
        seen = 0
        while name in producer and seen < 16:
            node = producer[name]
            if node.op_type in ("Conv", "Gemm", "MatMul") and not is_affine(node):
                return node.output[0], name
            if (node.op_type not in _PASS_THROUGH and not is_affine(node)) or not node.input:
                return "", name
            if readers.get(node.input[0], 0) != 1:
                return "", name  # the pre-activation tensor is read elsewhere too: not a private chain
            name = node.input[0]
            seen += 1
        return "", name

    def concat_of(name: str) -> int:
        seen = 0
        while name in producer and seen < 16:
            node = producer[name]
            if node.op_type == "Concat":
                return len(node.input)
            if (node.op_type not in _PASS_THROUGH and not is_affine(node)) or not node.input:
                return 0
            name = node.input[0]
            seen += 1
        return 0

    inputs = [i for i in g.input if i.name not in inits]
    if not inputs:
        raise GraphError("the graph has no input", hint="export the model with an image input")
    layers: list[LayerRecord] = []
    for idx, node in enumerate(g.node):
        name = node.name or f"{node.op_type}_{idx}"
        if node.op_type == "Conv":
            x, w = node.input[0], node.input[1]
            y = node.output[0]
            wd = weight_dims(w)
            if wd is None or x not in shapes or y not in shapes:
                raise GraphError(f"conv {name}: weight or tensor shape unknown",
                                 hint="export with constant weights and fixed input shapes")
            in_shape, out_shape = shapes[x], shapes[y]
            if len(in_shape) != 4:
                raise GraphError(f"conv {name} is {len(in_shape) - 2}-D; analyze reads 2-D convolutions",
                                 hint="analyze supports image classifiers with Conv2d layers")
            groups = int(_attr(node, "group", 1))
            kernel = [int(k) for k in wd[2:]]
            stride = [int(s) for s in (_attr(node, "strides") or [1] * len(kernel))]
            out_elems = _per_image(out_shape)
            cin_per_group = int(wd[1])
            macs = out_elems * cin_per_group * int(math.prod(kernel))
            welems = int(math.prod(wd))
            if len(node.input) > 2 and node.input[2]:
                bd = weight_dims(node.input[2])
                welems += int(math.prod(bd)) if bd else int(wd[0])
            cin = int(in_shape[1])
            if is_affine(node):
                kind = "affine"
            elif groups == 1:
                kind = "pointwise" if all(k == 1 for k in kernel) else "conv"
            elif groups == cin and cin_per_group == 1:
                kind = "depthwise"
            else:
                kind = "grouped"
            parts = concat_of(x)
            src, _ = source_of(x)
            layers.append(LayerRecord(
                name=name, op="conv", kind=kind, input=x, output=y,
                in_shape=[d if isinstance(d, int) else 1 for d in in_shape],
                out_shape=[d if isinstance(d, int) else 1 for d in out_shape],
                in_elems=_per_image(in_shape), out_elems=out_elems, macs=macs, weight_elems=welems,
                kernel=kernel, stride=stride, groups=groups, concat_input=parts > 0, concat_parts=parts,
                source=src, source_readers=readers.get(x, 0)))
        elif node.op_type in ("Gemm", "MatMul"):
            a, b = node.input[0], node.input[1]
            bd = weight_dims(b)
            if bd is None or len(bd) != 2:
                continue  # activation x activation MatMul: not a fully connected layer
            fc_in, fc_out = shapes.get(a), shapes.get(node.output[0])
            if not fc_in or not fc_out:
                raise GraphError(f"fully connected layer {name}: tensor shape unknown",
                                 hint="export with fixed input shapes")
            in_shape, out_shape = fc_in, fc_out
            trans_b = int(_attr(node, "transB", 0)) if node.op_type == "Gemm" else 0
            n_out, k_in = (bd[0], bd[1]) if trans_b else (bd[1], bd[0])
            rows = _per_image(in_shape) // int(k_in) if in_shape else 1
            welems = int(math.prod(bd))
            if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2]:
                cd = weight_dims(node.input[2])
                welems += int(math.prod(cd)) if cd else int(n_out)
            layers.append(LayerRecord(
                name=name, op="fc", kind="fc", input=a, output=node.output[0],
                in_shape=[d if isinstance(d, int) else 1 for d in in_shape],
                out_shape=[d if isinstance(d, int) else 1 for d in out_shape],
                in_elems=_per_image(in_shape), out_elems=_per_image(out_shape),
                macs=int(rows * n_out * k_in), weight_elems=welems))
    weight_inputs = {name for n in g.node if n.op_type in ("Conv", "Gemm", "MatMul") for name in n.input[1:]}
    # params: every layer's weights and bias, counted per layer even where an exporter shares one
    # initializer between layers (onnxsim and torch deduplicate identical tensors, e.g. the all-zero
    # biases of a randomly initialised folded model), plus any other float tensor of rank >= 1 (scalars,
    # such as Clip's bounds, are not parameters)
    params = sum(layer.weight_elems for layer in layers)
    params += sum(int(math.prod(i.dims)) for i in g.initializer
                  if i.data_type in _FLOAT_TYPES and i.dims and i.name not in weight_inputs)
    if not layers:
        raise GraphError("the graph has no Conv, Gemm or MatMul layer to analyze",
                         hint="analyze reads convolutional classifiers exported to ONNX")
    return GraphSummary(layers=layers, params=params, input_name=inputs[0].name,
                        input_shape=[d if isinstance(d, int) else 1 for d in _dims(inputs[0])],
                        output_names=[o.name for o in g.output])


def load(path: str) -> onnx.ModelProto:
    try:
        return onnx.load(str(path))
    except FileNotFoundError:
        raise GraphError(f"ONNX file {path} does not exist", hint="check the path or rebuild the bundle") from None
    except (OSError, ValueError, DecodeError) as exc:
        raise GraphError(f"cannot read ONNX file {path}: {exc}",
                         hint="give an ONNX model file (rebuild the bundle if it came from one)") from exc


__all__ = ["GraphError", "GraphSummary", "LayerRecord", "analyze_graph", "infer", "load", "set_input_size"]
