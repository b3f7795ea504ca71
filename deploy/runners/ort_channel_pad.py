"""Pad convolution channels to ONNX Runtime's NCHWc block so the whole CNN runs in blocked layout.

Why: on x86, ONNX Runtime (graph level ALL) rewrites convolutions into the NCHWc layout (channels
in blocks of 8 with AVX2, 16 with AVX-512) -- but only those whose channel counts are multiples of
the block. HarDNet's growth rates (14, 16, 20, 40 ...) leave many convolutions unaligned, so the
graph keeps switching layout: HarDNet39DS ends up with 48 ReorderInput/ReorderOutput nodes, 20
Concats in plain NCHW and 18 convolutions on the slower NCHW kernels. MobileNetV2's channels are
all multiples of 8 and need none of that.

What: every convolution's output channels are rounded up to the block with zero filters (zero
bias), and every consumer gets zero weights for the padding channels, so the padding carries
zeros and never reaches the logits; depthwise convolutions grow their group count to match.
Concat simply concatenates padded tensors (the channel map records where the real channels sit).
The arithmetic of the real channels is unchanged (tests check outputs against the original).

The pass handles Conv, Concat, elementwise activations, pooling, Add/Mul of equal layouts,
Flatten after global pooling, and Gemm/MatMul, and the prologue of a uint8-input graph (Cast,
Transpose to NCHW, the normalising Mul/Add before any padding); on anything else it gives up and returns None
(the original model is used). It expects BatchNorm already folded (run it on ONNX Runtime's
BASIC-optimised graph, which folds it). Python 3.6-compatible; needs the ``onnx`` package.
"""
import logging

import numpy as np

LOG = logging.getLogger(__name__)

_PASSTHROUGH = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu",
                "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Identity", "Dropout", "Resize",
                "Upsample"}


def nchwc_block_size(flags=None):
    """ONNX Runtime MLAS's NCHWc block: 16 with AVX-512, 8 with AVX/AVX2, 1 (no NCHWc) elsewhere."""
    import platform
    if flags is None:
        from deploy.environment import cpu_flags
        flags = cpu_flags()
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return 1
    if "avx512f" in flags:
        return 16
    if "avx2" in flags or "avx" in flags:
        return 8
    return 1


_UINT8 = 2          # onnx.TensorProto.UINT8
_NHWC = "nhwc"      # chmap marker: (_NHWC, channels) for a uint8 NHWC image and its Cast


def _visit_nhwc(node, chmap):
    """The prologue of a uint8-input graph: Cast keeps NHWC, Transpose(0, 3, 1, 2) makes it NCHW."""
    channels = chmap[node.input[0]][1]
    if node.op_type == "Cast":
        chmap[node.output[0]] = (_NHWC, channels)
    elif node.op_type == "Transpose" and [a.ints for a in node.attribute if a.name == "perm"] == [[0, 3, 1, 2]]:
        chmap[node.output[0]] = (channels, np.arange(channels))
    else:
        raise _GiveUp("{} {} on an NHWC image input".format(node.op_type, node.name))


def _round_up(value, block):
    return ((value + block - 1) // block) * block


class _GiveUp(Exception):
    pass


def pad_channels(model, block):
    """Return a padded copy of ``model`` (onnx.ModelProto), or None when nothing to do or unsupported."""
    from onnx import numpy_helper

    if block <= 1:
        return None
    model = _unshare_weights(model)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    needs = False
    for node in graph.node:
        if node.op_type == "Conv" and node.input[1] in inits:
            cout = inits[node.input[1]].dims[0]
            if cout % block:
                needs = True
    if not needs:
        return None

    new_arrays = {}  # initializer name -> new numpy array
    chmap = {}       # tensor name -> (padded channels, index array of the real channels)
    for inp in graph.input:
        if inp.name in inits:
            continue
        dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
        if inp.type.tensor_type.elem_type == _UINT8 and len(dims) == 4 and dims[3] > 0:
            chmap[inp.name] = (_NHWC, dims[3])   # an image input (build --input uint8): NCHW after its Transpose
        elif len(dims) == 4 and dims[1] > 0:
            chmap[inp.name] = (dims[1], np.arange(dims[1]))
    try:
        for node in graph.node:
            _visit(node, chmap, inits, new_arrays, block, numpy_helper)
        for out in graph.output:
            if out.name in chmap:
                padded, idx = chmap[out.name]
                if padded != len(idx) or not np.array_equal(idx, np.arange(len(idx))):
                    raise _GiveUp("graph output {} would be padded".format(out.name))
    except _GiveUp as exc:
        LOG.info("channel padding skipped: %s", exc)
        return None

    padded = model
    for tensor in padded.graph.initializer:
        if tensor.name in new_arrays:
            tensor.CopyFrom(numpy_helper.from_array(new_arrays[tensor.name].astype(
                numpy_helper.to_array(tensor).dtype), tensor.name))
    for node in padded.graph.node:
        if node.op_type == "Conv":
            group = _attr(node, "group", 1)
            if group > 1:
                w = new_arrays.get(node.input[1])
                if w is not None:
                    for a in node.attribute:
                        if a.name == "group":
                            a.i = int(w.shape[0])
    del padded.graph.value_info[:]   # shapes changed: let ONNX Runtime infer them again
    return padded


def _unshare_weights(model):
    """A copy of ``model`` where no Conv/Gemm/MatMul weight or bias initializer has two consumers."""
    copy = type(model)()
    copy.CopyFrom(model)
    graph = copy.graph
    inits = {t.name: t for t in graph.initializer}
    seen = {}
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        for position in range(1, len(node.input)):
            name = node.input[position]
            if name not in inits:
                continue
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > 1:
                clone = graph.initializer.add()
                clone.CopyFrom(inits[name])
                clone.name = "{}__copy{}".format(name, seen[name])
                node.input[position] = clone.name
    return copy


def _attr(node, name, default):
    for a in node.attribute:
        if a.name == name:
            return a.i
    return default


def _get(name, inits, new_arrays, numpy_helper):
    if name in new_arrays:
        return new_arrays[name]
    return numpy_helper.to_array(inits[name])


def _visit(node, chmap, inits, new_arrays, block, numpy_helper):
    op = node.op_type
    ins = [n for n in node.input if n and n not in inits]
    if not any(n in chmap for n in ins):
        return  # not on the activation path of a 4D tensor (shapes, constants)
    if any(chmap[n][0] is _NHWC for n in ins if n in chmap):
        _visit_nhwc(node, chmap)
        return
    if op == "Conv":
        if node.input[1] not in inits or (len(node.input) > 2 and node.input[2] and node.input[2] not in inits):
            raise _GiveUp("Conv {} has non-constant weights".format(node.name))
        p_in, idx_in = chmap[node.input[0]]
        w = _get(node.input[1], inits, new_arrays, numpy_helper)
        group = _attr(node, "group", 1)
        cout, cin_g = w.shape[0], w.shape[1]
        if group == 1:
            if cin_g != len(idx_in):
                raise _GiveUp("Conv {} input channels do not match".format(node.name))
            cout_p = _round_up(cout, block)
            w2 = np.zeros((cout_p, p_in) + w.shape[2:], dtype=w.dtype)
            w2[:cout][:, idx_in] = w
            new_arrays[node.input[1]] = w2
            if len(node.input) > 2 and node.input[2]:
                b = _get(node.input[2], inits, new_arrays, numpy_helper)
                b2 = np.zeros((cout_p,), dtype=b.dtype)
                b2[:cout] = b
                new_arrays[node.input[2]] = b2
            chmap[node.output[0]] = (cout_p, np.arange(cout))
        elif group == len(idx_in) and cin_g == 1 and cout == group:
            w2 = np.zeros((p_in,) + w.shape[1:], dtype=w.dtype)
            w2[idx_in] = w
            new_arrays[node.input[1]] = w2
            if len(node.input) > 2 and node.input[2]:
                b = _get(node.input[2], inits, new_arrays, numpy_helper)
                b2 = np.zeros((p_in,), dtype=b.dtype)
                b2[idx_in] = b
                new_arrays[node.input[2]] = b2
            chmap[node.output[0]] = (p_in, idx_in)
        else:
            raise _GiveUp("grouped Conv {} (group {})".format(node.name, group))
    elif op == "Concat":
        if _attr(node, "axis", 0) != 1 or not all(n in chmap for n in node.input):
            raise _GiveUp("Concat {} not on channels of mapped tensors".format(node.name))
        offset, parts = 0, []
        for name in node.input:
            p, idx = chmap[name]
            parts.append(idx + offset)
            offset += p
        chmap[node.output[0]] = (offset, np.concatenate(parts))
    elif op in _PASSTHROUGH:
        chmap[node.output[0]] = chmap[node.input[0]]
    elif op in ("Add", "Mul", "Sum", "Sub", "Div"):
        maps = [chmap[n] for n in node.input if n in chmap]
        if any(n in inits for n in node.input):
            p, idx = maps[0]
            if len(maps) != 1 or p != len(idx) or not np.array_equal(idx, np.arange(p)):
                raise _GiveUp("{} {} with a constant operand".format(op, node.name))
            # not padded yet (the image normalisation before the first Conv): nothing to keep at zero
            chmap[node.output[0]] = maps[0]
            return
        first = maps[0]
        for m in maps[1:]:
            if m[0] != first[0] or not np.array_equal(m[1], first[1]):
                raise _GiveUp("{} {} joins differently padded tensors".format(op, node.name))
        chmap[node.output[0]] = first
    elif op == "Flatten":
        p, idx = chmap[node.input[0]]
        chmap[node.output[0]] = (p, idx)   # only valid after global pooling (1x1): checked at Gemm
    elif op in ("Gemm", "MatMul"):
        p, idx = chmap[node.input[0]]
        if node.input[1] not in inits:
            raise _GiveUp("{} {} with non-constant weights".format(op, node.name))
        w = _get(node.input[1], inits, new_arrays, numpy_helper)
        trans_b = _attr(node, "transB", 0) if op == "Gemm" else 0
        if trans_b:
            if w.shape[1] != len(idx):
                raise _GiveUp("Gemm {} input size does not match the channels".format(node.name))
            w2 = np.zeros((w.shape[0], p), dtype=w.dtype)
            w2[:, idx] = w
        else:
            if w.shape[0] != len(idx):
                raise _GiveUp("{} {} input size does not match the channels".format(op, node.name))
            w2 = np.zeros((p, w.shape[1]), dtype=w.dtype)
            w2[idx] = w
        new_arrays[node.input[1]] = w2
        # the output (logits) is not padded: no map
    else:
        raise _GiveUp("unsupported op {} on the activation path".format(op))
