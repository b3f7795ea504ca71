"""Replace "Concat -> 1x1 Conv" by a chain of partial convolutions, so no Concat is copied.

Why: HarDNet concatenates earlier layers' outputs before almost every 1x1 convolution, and
ONNX Runtime copies every Concat (HarDNet68DS has 35; the split took 2.8-3.5 % off the HarDNets'
medians in bench/cpu_fallback.py). A convolution with group 1 is linear in its input channels, so

    Conv(Concat(a, b, c), W, B) = Conv(a, W_a, B) + Conv(b, W_b) + Conv(c, W_c)

where W_a, W_b, W_c are W's input-channel slices. ONNX Runtime's NCHWc layout fuses each Add
into the next convolution (its "Sum" input), so the parts accumulate into one output buffer and
the Concat disappears. One catch: the NCHWc pass fuses an activation after a plain Conv, but not
an activation (Clip, as in ReLU6) after such a Sum; that would drop the graph out of the blocked
layout around every former Concat. ``fuse_sum_activations`` therefore writes the last part, its
Add and the activation as ONNX Runtime's own ``com.microsoft.FusedConv`` (inputs X, W, B, Z; Y =
activation(Conv(X, W) + B + Z)), which the NCHWc pass takes whole.

Exact up to float summation order. Only 1x1 convolutions with group 1 whose input is a channel
Concat used by nothing else are rewritten (the case measured to help: bench/cpu_fallback.py).
ONNX Runtime only (FusedConv is its contrib operator); Python 3.6-compatible; needs ``onnx``.
"""
import logging

import numpy as np

LOG = logging.getLogger(__name__)

SPLIT_TAG = "__concat_split"
_ACTIVATIONS = ("Relu", "Clip")
_FLOAT_MAX = float(np.finfo(np.float32).max)


def _attrs(node):
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _channels(model):
    """Channel count (dim 1) of every 4-D tensor whose shape ONNX shape inference knows."""
    import onnx
    inferred = onnx.shape_inference.infer_shapes(model)
    out = {}
    for info in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = info.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].HasField("dim_value") and dims[1].dim_value > 0:
            out[info.name] = int(dims[1].dim_value)
    return out


def split_concat_convs(model):
    """A copy of ``model`` (onnx.ModelProto) with each Concat -> 1x1 Conv rewritten as partial convs
    summed with Add; None when there is nothing to rewrite."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = set(o.name for o in graph.output)
    channels = None
    plans = {}   # conv node name -> (concat node, conv node, weight array)
    for node in graph.node:
        if node.op_type != "Concat" or len(node.input) < 2 or node.output[0] in outputs:
            continue
        users = consumers.get(node.output[0], [])
        if len(users) != 1 or users[0].op_type != "Conv":
            continue
        conv = users[0]
        attrs = _attrs(conv)
        if conv.input[0] != node.output[0] or len(conv.input) < 2 or conv.input[1] not in inits:
            continue
        weight = numpy_helper.to_array(inits[conv.input[1]])
        if weight.ndim != 4 or weight.shape[2:] != (1, 1) or attrs.get("group", 1) != 1:
            continue
        if channels is None:
            channels = _channels(model)
        if _attrs(node).get("axis") not in (1, -3) or any(name not in channels for name in node.input):
            continue
        if sum(channels[name] for name in node.input) != weight.shape[1]:
            continue
        plans[conv.name or conv.output[0]] = (node, conv, weight)
    if not plans:
        return None

    copy = type(model)()
    copy.CopyFrom(model)
    new_nodes = []
    dropped = set(id(concat) for concat, _, _ in plans.values())
    for node in graph.node:
        key = node.name or (node.output[0] if node.output else None)
        if id(node) in dropped:
            continue
        if node.op_type != "Conv" or key not in plans:
            new_nodes.append(node)
            continue
        concat, conv, weight = plans[key]
        conv_attrs = _attrs(conv)
        prefix = (conv.name or conv.output[0]) + SPLIT_TAG
        offset, total = 0, None
        for index, part in enumerate(concat.input):
            width = channels[part]
            w_name = "{}.w{}".format(prefix, index)
            copy.graph.initializer.extend([numpy_helper.from_array(
                np.ascontiguousarray(weight[:, offset:offset + width]), w_name)])
            offset += width
            inputs = [part, w_name] + ([conv.input[2]] if index == 0 and len(conv.input) > 2 and conv.input[2] else [])
            last = index == len(concat.input) - 1
            partial = "{}.y{}".format(prefix, index)
            new_nodes.append(helper.make_node("Conv", inputs, [partial], name="{}.conv{}".format(prefix, index),
                                              **conv_attrs))
            if total is None:
                total = partial
                continue
            summed = conv.output[0] if last else "{}.sum{}".format(prefix, index)
            new_nodes.append(helper.make_node("Add", [partial, total], [summed], name="{}.add{}".format(prefix, index)))
            total = summed
    del copy.graph.node[:]
    copy.graph.node.extend(new_nodes)
    used = set(name for node in copy.graph.node for name in node.input)
    kept = [t for t in copy.graph.initializer if t.name in used]
    del copy.graph.initializer[:]
    copy.graph.initializer.extend(kept)
    del copy.graph.value_info[:]
    LOG.debug("split %d Concat -> 1x1 Conv pairs into partial convolutions", len(plans))
    return copy


def fuse_sum_activations(model):
    """Rewrite, in place, "partial Conv -> Add (of a split) -> Relu/Clip" as com.microsoft.FusedConv
    with the running sum as its Z input. Returns the number of fusions."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producer = {}
    consumers = {}
    for node in graph.node:
        for name in node.output:
            producer[name] = node
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    replace, drop = {}, set()
    for node in graph.node:
        if node.op_type != "Add" or SPLIT_TAG not in node.name:
            continue
        users = consumers.get(node.output[0], [])
        if len(users) != 1 or users[0].op_type not in _ACTIVATIONS:
            continue
        activation = users[0]
        conv = producer.get(node.input[0])
        if conv is None or conv.op_type != "Conv" or len(consumers.get(conv.output[0], [])) != 1:
            continue
        params = {"activation": activation.op_type}
        if activation.op_type == "Clip":
            bounds = []
            for position, default in ((1, -_FLOAT_MAX), (2, _FLOAT_MAX)):
                name = activation.input[position] if len(activation.input) > position else ""
                if name and name not in inits:
                    bounds = None
                    break
                bounds.append(float(numpy_helper.to_array(inits[name])) if name else default)
            if bounds is None:
                continue
            params["activation_params"] = bounds
        inputs = list(conv.input[:3])
        if len(inputs) < 3 or not inputs[2]:
            bias = conv.name + ".zero_bias"
            out_channels = int(inits[conv.input[1]].dims[0])
            graph.initializer.extend([numpy_helper.from_array(np.zeros(out_channels, np.float32), bias)])
            inputs = inputs[:2] + [bias]
        attrs = _attrs(conv)
        attrs.update(params)
        replace[id(activation)] = helper.make_node(
            "FusedConv", inputs + [node.input[1]], [activation.output[0]], name=conv.name + ".fused",
            domain="com.microsoft", **attrs)
        drop.update([id(conv), id(node)])
    if not replace:
        return 0
    kept = [replace.get(id(n), n) for n in graph.node if id(n) not in drop]
    del graph.node[:]
    graph.node.extend(kept)
    if not any(op.domain == "com.microsoft" for op in model.opset_import):
        model.opset_import.extend([helper.make_opsetid("com.microsoft", 1)])
    return len(replace)
