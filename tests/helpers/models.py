"""Hand-built ONNX graphs, one per coupling rule, written as ONNX text.

Weights are declared as graph inputs in the text and turned into random initializers, so a
graph reads like its sketch.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

HEADER = '<ir_version: 8, opset_import: ["" : 17]>\n'


def build(text: str, weights: list[str], seed: int = 0, positive: tuple[str, ...] = (),
          opset: int = 17) -> onnx.ModelProto:
    """Parse `text` and replace the named inputs by random initializers of their declared shape."""
    header = HEADER if opset == 17 else f'<ir_version: 10, opset_import: ["" : {opset}]>\n'
    model = onnx.parser.parse_model(header + text)
    rng = np.random.default_rng(seed)
    inputs = []
    for value in model.graph.input:
        if value.name not in weights:
            inputs.append(value)
            continue
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
        array = rng.standard_normal(dims).astype(np.float32) * 0.5
        if value.name in positive:
            array = np.abs(array) + 0.5
        model.graph.initializer.append(numpy_helper.from_array(array, value.name))
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    onnx.checker.check_model(model, full_check=True)
    return model


# x ─Conv─BN─Relu─MaxPool─Flatten─Gemm─Relu─Gemm─▶ y
CHAIN = build("""
chain (float[N,1,8,8] x, float[8,1,3,3] w1, float[8] b1, float[8] s, float[8] bb, float[8] m, float[8] v,
       float[16,128] w2, float[16] b2, float[10,16] w3, float[10] b3) => (float[N,10] y) {
  c = Conv<pads=[1,1,1,1]>(x, w1, b1)
  n = BatchNormalization(c, s, bb, m, v)
  r = Relu(n)
  p = MaxPool<kernel_shape=[2,2], strides=[2,2]>(r)
  f = Flatten<axis=1>(p)
  h = Gemm<transB=1>(f, w2, b2)
  hr = Relu(h)
  y = Gemm<transB=1>(hr, w3, b3)
}""", ["w1", "b1", "s", "bb", "m", "v", "w2", "b2", "w3", "b3"], positive=("v",))

# x ─Conv0─Relu─┬─Conv1─Relu─Conv2─Add─Relu─Conv3─▶ y
#               └─────────────────────┘   (residual: Conv0 and Conv2 share channels)
def residual(channels: int = 8, inputs: int = 4) -> onnx.ModelProto:
    """The residual block at any width (wide enough, onnxruntime moves it to its blocked layout)."""
    c, i = channels, inputs
    return build(f"""
res (float[N,{i},6,6] x, float[{c},{i},3,3] w0, float[{c},{c},3,3] w1, float[{c},{c},3,3] w2, float[3,{c},1,1] w3)
    => (float[N,3,6,6] y) {{
  a = Conv<pads=[1,1,1,1]>(x, w0)
  ar = Relu(a)
  b = Conv<pads=[1,1,1,1]>(ar, w1)
  br = Relu(b)
  c = Conv<pads=[1,1,1,1]>(br, w2)
  s = Add(c, ar)
  sr = Relu(s)
  y = Conv(sr, w3)
}}""", ["w0", "w1", "w2", "w3"])


RESIDUAL = residual()

# x ─┬─ConvA─Relu─┐
#    ├─ConvB─Relu─┤ Concat(a, b, a, x) ─ConvC─▶ y   (offsets; `a` twice; x fixed)
#    └────────────┘
CONCAT = build("""
cat (float[N,3,5,5] x, float[4,3,1,1] wa, float[6,3,1,1] wb, float[5,17,1,1] wc) => (float[N,5,5,5] y) {
  a = Conv(x, wa)
  ar = Relu(a)
  b = Conv(x, wb)
  br = Relu(b)
  k = Concat<axis=1>(ar, br, ar, x)
  y = Conv(k, wc)
}""", ["wa", "wb", "wc"])

# x ─Conv0─Relu─DWConv─Relu─┬──────────────────────────────────────────┬─Mul─Conv1─▶ y
#                           └─GAP─Conv─Relu─Conv─HardSigmoid (squeeze-excite)┘
DEPTHWISE_SE = build("""
dwse (float[N,3,6,6] x, float[8,3,1,1] w0, float[8,1,3,3] wd, float[8] bd, float[2,8,1,1] ws1, float[2] bs1,
      float[8,2,1,1] ws2, float[8] bs2, float[5,8,1,1] w1) => (float[N,5,6,6] y) {
  a = Conv(x, w0)
  ar = Relu(a)
  d = Conv<group=8, pads=[1,1,1,1]>(ar, wd, bd)
  dr = Relu(d)
  g = GlobalAveragePool(dr)
  s1 = Conv(g, ws1, bs1)
  s1r = Relu(s1)
  s2 = Conv(s1r, ws2, bs2)
  sg = HardSigmoid(s2)
  m = Mul(dr, sg)
  y = Conv(m, w1)
}""", ["w0", "wd", "bd", "ws1", "bs1", "ws2", "bs2", "w1"])

# x ─Conv0─Relu─GroupedConv(group=2, 4 in / 4 out per group)─Relu─Conv1─▶ y
GROUPED = build("""
grouped (float[N,4,5,5] x, float[8,4,1,1] w0, float[8,4,3,3] wg, float[3,8,1,1] w1) => (float[N,3,5,5] y) {
  a = Conv(x, w0)
  ar = Relu(a)
  g = Conv<group=2, pads=[1,1,1,1]>(ar, wg)
  gr = Relu(g)
  y = Conv(gr, w1)
}""", ["w0", "wg", "w1"])

# x ─Conv(w)─Relu─┬─Conv(Identity(w))─Relu─┐
#                 └─────────────────────────┴─Concat─ConvO─▶ y   (one weight, two slicings)
SHARED = build("""
shared (float[N,4,5,5] x, float[4,4,1,1] w, float[2,8,1,1] wo) => (float[N,2,5,5] y) {
  wi = Identity(w)
  a = Conv(x, w)
  ar = Relu(a)
  b = Conv(ar, wi)
  br = Relu(b)
  k = Concat<axis=1>(ar, br)
  y = Conv(k, wo)
}""", ["w", "wo"])

# x ─Conv─Relu─LRN─Conv─▶ y     (LRN mixes channels: a barrier)
UNKNOWN_OP = build("""
lrn (float[N,3,5,5] x, float[6,3,1,1] w0, float[2,6,1,1] w1) => (float[N,2,5,5] y) {
  a = Conv(x, w0)
  ar = Relu(a)
  l = LRN<size=3>(ar)
  y = Conv(l, w1)
}""", ["w0", "w1"])

# x ─Conv─Relu─Reshape([-1, 128])─Gemm─▶ y   (the dynamo exporter's flatten)
RESHAPE = build("""
reshape (float[N,2,8,8] x, float[8,2,3,3] w0, int64[2] shape, float[10,512] w1) => (float[N,10] y) {
  a = Conv<pads=[1,1,1,1]>(x, w0)
  ar = Relu(a)
  f = Reshape<allowzero=1>(ar, shape)
  y = Gemm<transB=1>(f, w1)
}""", ["w0", "w1"])
RESHAPE.graph.initializer.append(numpy_helper.from_array(np.array([-1, 512], dtype=np.int64), "shape"))
del RESHAPE.graph.input[1:]

# x ─MatMul─Add─GELU(Erf form)─MatMul─Add─┬─Add(x)─LayerNorm─▶ y   (transformer MLP)
MLP = build("""
mlp (float[N,4,6] x, float[6,12] w1, float[12] b1, float[12,6] w2, float[6] b2, float[6] gamma, float[6] beta)
    => (float[N,4,6] y) {
  h = MatMul(x, w1)
  hb = Add(h, b1)
  sqrt2 = Constant<value = float {1.4142135}>()
  half = Constant<value = float {0.5}>()
  one = Constant<value = float {1.0}>()
  dv = Div(hb, sqrt2)
  e = Erf(dv)
  hh = Mul(hb, half)
  e1 = Add(e, one)
  g = Mul(hh, e1)
  o = MatMul(g, w2)
  ob = Add(o, b2)
  r = Add(ob, x)
  y = LayerNormalization<axis=-1>(r, gamma, beta)
}""", ["w1", "b1", "w2", "b2", "gamma", "beta"])

# x ─Conv─Add(bias: an initializer that is also a graph input)─Relu─Conv─▶ y
OVERRIDABLE = onnx.parser.parse_model(HEADER + """
over (float[N,3,4,4] x, float[1,6,1,1] bias) => (float[N,2,4,4] y)
    <float[6,3,1,1] w0 = {""" + ",".join(["0.1"] * 18) + """},
     float[1,6,1,1] bias = {0.0, 0.1, 0.2, 0.3, 0.4, 0.5},
     float[2,6,1,1] w1 = {""" + ",".join(["0.2"] * 12) + """}> {
  a = Conv(x, w0)
  ab = Add(a, bias)
  ar = Relu(ab)
  y = Conv(ar, w1)
}""")

# x ─Conv─Relu─Split(3, 5)─┬─ConvA─┐
#                          └─Slice[1:4]─ConvB─┴─Add─▶ y   (split sizes and slice bounds follow the channels)
SPLIT_SLICE = build("""
split (float[N,3,5,5] x, float[8,3,1,1] w0, float[2,3,1,1] wa, float[2,3,1,1] wb, int64[1] st, int64[1] en,
       int64[1] ax, int64[2] sizes) => (float[N,2,5,5] y) {
  a = Conv(x, w0)
  ar = Relu(a)
  p, q = Split<axis=1>(ar, sizes)
  qs = Slice(q, st, en, ax)
  ya = Conv(p, wa)
  yb = Conv(qs, wb)
  y = Add(ya, yb)
}""", ["w0", "wa", "wb"])
for _name, _value in (("st", [1]), ("en", [4]), ("ax", [1]), ("sizes", [3, 5])):
    SPLIT_SLICE.graph.initializer.append(numpy_helper.from_array(np.array(_value, dtype=np.int64), _name))
del SPLIT_SLICE.graph.input[1:]

# x ─Conv(3→4)─Relu─┬─▶ feat (a second graph output: these channels must stay)
#                   └─Conv(4→1, group=1)─Relu─Conv(1→2)─▶ y   (one output channel is not depthwise)
MULTI_OUTPUT = build("""
multi (float[N,3,5,5] x, float[4,3,1,1] w0, float[1,4,3,3] w1, float[2,1,1,1] w2)
    => (float[N,4,5,5] feat, float[N,2,5,5] y) {
  a = Conv(x, w0)
  feat = Relu(a)
  b = Conv<pads=[1,1,1,1]>(feat, w1)
  br = Relu(b)
  y = Conv(br, w2)
}""", ["w0", "w1", "w2"])
