"""The counting rules on small hand-built ONNX graphs, against values worked out by hand."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from analysis.cio import is_pooling_depthwise, layer_cio, moc
from analysis.graph import GraphError, analyze_graph, set_input_size
from analysis.report import analyze_model
from analysis.roofline import HARDWARE, get_hardware, layer_time, ridge_moc
from deploy.errors import UsageError


def _w(name, *shape):
    return numpy_helper.from_array(np.ones(shape, dtype=np.float32), name)


def _conv(name, x, w, y, *, k=3, stride=1, group=1):
    pad = k // 2
    return helper.make_node("Conv", [x, w], [y], name=name, kernel_shape=[k, k], strides=[stride, stride],
                            pads=[pad] * 4, group=group)


def _model(nodes, inits, in_shape, out_name, out_shape=None):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, out_shape)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return model


def concat_graph():
    """input 4x8x8 -> A (3x3, 6 ch) and B (1x1, 2 ch) -> Concat (8 ch) -> C (1x1, 4 ch) and Relu -> D (3x3, 8 ch)."""
    nodes = [
        _conv("A", "input", "wA", "a", k=3),
        _conv("B", "input", "wB", "b", k=1),
        helper.make_node("Concat", ["a", "b"], ["cat"], name="cat", axis=1),
        _conv("C", "cat", "wC", "c", k=1),
        helper.make_node("Relu", ["cat"], ["cat_relu"], name="relu"),
        _conv("D", "cat_relu", "wD", "d", k=3),
        helper.make_node("Concat", ["c", "d"], ["out"], name="out", axis=1),
    ]
    inits = [_w("wA", 6, 4, 3, 3), _w("wB", 2, 4, 1, 1), _w("wC", 4, 8, 1, 1), _w("wD", 8, 8, 3, 3)]
    return _model(nodes, inits, [1, 4, 8, 8], "out", [1, 12, 8, 8])


def test_concat_read_by_two_convs_is_counted_at_each():
    s = analyze_graph(concat_graph())
    by = {layer.name: layer for layer in s.layers}
    assert [layer.name for layer in s.layers] == ["A", "B", "C", "D"]
    # elements: input 4*64=256, a 6*64=384, b 2*64=128, cat 8*64=512, c 4*64=256, d 8*64=512
    assert [by[n].in_elems for n in "ABCD"] == [256, 256, 512, 512]
    assert [by[n].out_elems for n in "ABCD"] == [384, 128, 256, 512]
    assert layer_cio(s.layers) == [640, 384, 768, 1024]
    assert sum(layer_cio(s.layers)) == 2816     # the 512-element concat counted twice: at C and at D
    assert [by[n].concat_input for n in "ABCD"] == [False, False, True, True]   # D reads it through Relu
    assert by["C"].concat_parts == 2
    # MACs = output elements x (input channels / groups) x kernel area
    assert [by[n].macs for n in "ABCD"] == [384 * 4 * 9, 128 * 4, 256 * 8, 512 * 8 * 9]
    assert s.params == 6 * 4 * 9 + 2 * 4 + 4 * 8 + 8 * 8 * 9
    assert by["D"].kind == "conv" and by["C"].kind == "pointwise"


def depthwise_graph():
    """input 8x16x16 -> depthwise 3x3 (stride 1) -> pointwise 8->16 -> GAP -> Flatten -> Gemm 16->10."""
    nodes = [
        _conv("dw", "input", "wdw", "x1", k=3, group=8),
        helper.make_node("Clip", ["x1"], ["x1r"], name="relu6"),
        _conv("pw", "x1r", "wpw", "x2", k=1),
        helper.make_node("GlobalAveragePool", ["x2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flat", axis=1),
        helper.make_node("Gemm", ["flat", "wfc", "bfc"], ["logits"], name="fc", transB=1),
    ]
    inits = [_w("wdw", 8, 1, 3, 3), _w("wpw", 16, 8, 1, 1), _w("wfc", 10, 16), _w("bfc", 10)]
    return _model(nodes, inits, [1, 8, 16, 16], "logits", [1, 10])


def test_depthwise_conv_and_classifier():
    s = analyze_graph(depthwise_graph())
    dw, pw, fc = s.layers
    assert (dw.kind, dw.groups, dw.in_elems, dw.out_elems) == ("depthwise", 8, 2048, 2048)
    assert dw.macs == 2048 * 1 * 9            # one input channel per group
    assert pw.macs == 16 * 256 * 8
    assert pw.source == "x1"                  # the pointwise reads the depthwise through Clip
    assert (fc.op, fc.macs, fc.weight_elems) == ("fc", 160, 170)
    # the FC layer counts MACs but no CIO; the stride-1 depthwise counts in full
    assert layer_cio(s.layers) == [4096, 2048 + 4096, 0]
    a = analyze_model(depthwise_graph(), "dw", HARDWARE["jetson-nano"], "fp16")
    assert a.macs == 18432 + 32768 + 160 and a.cio == 10240
    assert a.moc == pytest.approx((18432 + 32768 + 160) / 10240, abs=1e-4)


def strided_graph():
    """input 3x32x32 -> conv 3x3 stride 2 (16 ch) -> depthwise 3x3 stride 2, read by a 1x1 conv and a Concat."""
    nodes = [
        _conv("stem", "input", "w0", "s", k=3, stride=2),
        _conv("pool_dw", "s", "w1", "p", k=3, stride=2, group=16),
        _conv("pw", "p", "w2", "q", k=1),
        helper.make_node("Concat", ["p", "q"], ["out"], name="out", axis=1),
    ]
    inits = [_w("w0", 16, 3, 3, 3), _w("w1", 16, 1, 3, 3), _w("w2", 8, 16, 1, 1)]
    return _model(nodes, inits, [1, 3, 32, 32], "out", [1, 24, 8, 8])


def test_strided_conv_and_the_stem_image():
    s = analyze_graph(strided_graph())
    stem, pool_dw, pw = s.layers
    assert stem.out_shape == [1, 16, 16, 16] and stem.stride == [2, 2]
    assert (stem.in_elems, stem.out_elems, stem.macs) == (3072, 4096, 4096 * 27)   # the image counts
    assert pool_dw.out_shape == [1, 16, 8, 8] and pool_dw.macs == 1024 * 9
    # a stride-2 depthwise conv not paired with a single pointwise conv stands in for pooling:
    # 'paper' does not count it, 'eq1' does
    assert is_pooling_depthwise(pool_dw, s.layers)
    assert layer_cio(s.layers, "eq1") == [7168, 4096 + 1024, 1024 + 512]
    assert layer_cio(s.layers, "paper") == [7168, 0, 1024 + 512]


def test_strided_depthwise_in_a_separable_pair_counts():
    nodes = [
        _conv("dw", "input", "w1", "p", k=3, stride=2, group=16),
        _conv("pw", "p", "w2", "out", k=1),
    ]
    model = _model(nodes, [_w("w1", 16, 1, 3, 3), _w("w2", 8, 16, 1, 1)], [1, 16, 16, 16], "out", [1, 8, 8, 8])
    s = analyze_graph(model)
    assert not is_pooling_depthwise(s.layers[0], s.layers)
    assert layer_cio(s.layers, "paper") == [4096 + 1024, 1024 + 512]


def test_affine_conv_from_a_standalone_batchnorm_counts_nothing():
    nodes = [
        _conv("bn_as_conv", "input", "wa", "a", k=1, group=4),
        helper.make_node("Relu", ["a"], ["ar"], name="relu"),
        _conv("conv", "ar", "wc", "out", k=3),
    ]
    model = _model(nodes, [_w("wa", 4, 1, 1, 1), _w("wc", 2, 4, 3, 3)], [1, 4, 8, 8], "out", [1, 2, 8, 8])
    s = analyze_graph(model)
    assert [layer.kind for layer in s.layers] == ["affine", "conv"]
    assert layer_cio(s.layers) == [0, 256 + 128]
    a = analyze_model(model, "affine", HARDWARE["jetson-nano"], "fp16")
    assert a.macs == 128 * 4 * 9 and a.conv_layers == 1


def test_set_input_size_reinfers_every_shape():
    s = analyze_graph(set_input_size(strided_graph(), 64))
    assert s.layers[0].in_shape == [1, 3, 64, 64] and s.layers[0].out_shape == [1, 16, 32, 32]
    assert s.layers[1].out_shape == [1, 16, 16, 16]


def test_unknown_shapes_are_refused():
    model = concat_graph()
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].Clear()
    dims[2].dim_param = "height"
    with pytest.raises(GraphError) as err:
        analyze_graph(model)
    assert err.value.hint


def test_ridge_point_and_layer_time_by_hand():
    nano = HARDWARE["jetson-nano"]
    assert nano.peak_flops["fp32"] == pytest.approx(235.9e9, rel=1e-3)
    assert nano.peak_flops["fp16"] == pytest.approx(471.9e9, rel=1e-3)
    # (471.9e9 / 2 MAC/s) / (25.6e9 / 2 elements/s) = 18.43 MACs per element
    assert ridge_moc(nano, "fp16") == pytest.approx(471.8592e9 / 2 / 12.8e9)
    compute, memory, bound = layer_time(nano, "fp16", macs=1e6, elements_moved=1e6)
    assert compute == pytest.approx(2e6 / 471.8592e9) and memory == pytest.approx(2e6 / 25.6e9)
    assert bound == memory                       # MoC 1 is far below the ridge: memory-bound
    assert moc(10, 0) == 0.0


def test_hardware_overrides_and_missing_figures():
    with pytest.raises(UsageError):
        get_hardware("x86-gpu")
    custom = get_hardware("x86-gpu", peak_gflops=1000, bandwidth_gbs=100, precision="fp16")
    assert ridge_moc(custom, "fp16") == pytest.approx(500e9 / 50e9)
    with pytest.raises(UsageError):
        ridge_moc(custom, "fp32")
