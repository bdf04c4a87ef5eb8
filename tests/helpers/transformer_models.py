"""Hand-built ONNX graphs for the transformer rules (attention heads, residual streams, channel
shuffle, computed shapes, fused ops), in the style of `models.py`: ONNX text with a sketch.

Hidden width 12 = 3 heads x 4 dims throughout, so that both analysis modes have choices.
Every model ends in a small ReLU MLP so that the groups under test do not reach the output.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from tests.helpers.models import build

# The shared tail: o (12 channels) ─MatMul(w1)─Relu─MatMul(w2)─▶ y (3 outputs)
TAIL_WEIGHTS = ["w1", "w2"]


def _tail(source: str) -> str:
    return f"""
  h1 = MatMul({source}, w1)
  h1r = Relu(h1)
  y = MatMul(h1r, w2)"""


# x ─q,k,v: MatMul+Add─Reshape[0,0,3,4]─Transpose─┐ scores = q·kᵀ ×0.5 + mask ─Softmax─·v─Transpose
#                                                                        ─Reshape[0,0,12]─MatMul(wo)─tail─▶ y
ATTENTION_TEXT = """
attn (float[N,T,12] x, float[N,1,1,T] mask, float[12,12] wq, float[12] bq, float[12,12] wk, float[12] bk,
      float[12,12] wv, float[12] bv, float[12,12] wo, float[12] bo, float[12,16] w1, float[16,3] w2)
    => (float[N,T,3] y) {
  split = Constant<value = int64[4] {0, 0, 3, 4}>()
  merge = Constant<value = int64[3] {0, 0, 12}>()
  half = Constant<value = float {0.5}>()
  q = MatMul(x, wq)
  qb = Add(q, bq)
  qh = Reshape(qb, split)
  qt = Transpose<perm=[0, 2, 1, 3]>(qh)
  k = MatMul(x, wk)
  kb = Add(k, bk)
  kh = Reshape(kb, split)
  kt = Transpose<perm=[0, 2, 3, 1]>(kh)
  v = MatMul(x, wv)
  vb = Add(v, bv)
  vh = Reshape(vb, split)
  vt = Transpose<perm=[0, 2, 1, 3]>(vh)
  s = MatMul(qt, kt)
  ss = Mul(s, half)
  sm = Add(ss, mask)
  p = Softmax<axis=-1>(sm)
  c = MatMul(p, vt)
  ct = Transpose<perm=[0, 2, 1, 3]>(c)
  cm = Reshape(ct, merge)
  o = MatMul(cm, wo)
  ob = Add(o, bo)""" + _tail("ob") + "\n}"
ATTENTION = build(ATTENTION_TEXT, ["wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo", *TAIL_WEIGHTS])

# x ─MatMul(wqkv: 12→36)+b─Split(12,12,12)─q,k,v─(heads, scores scaled on q and kᵀ, as the dynamo
# exporter writes scaled_dot_product_attention)─Reshape─MatMul(wo)─tail─▶ y   (no mask)
FUSED_QKV = build("""
fused (float[N,T,12] x, float[12,36] wqkv, float[36] bqkv, float[12,12] wo, float[12,16] w1, float[16,3] w2)
    => (float[N,T,3] y) {
  split = Constant<value = int64[4] {0, 0, 3, 4}>()
  merge = Constant<value = int64[3] {0, 0, 12}>()
  sizes = Constant<value = int64[2] {12, 24}>()
  start = Constant<value = int64[1] {0}>()
  mid = Constant<value = int64[1] {12}>()
  end = Constant<value = int64[1] {24}>()
  axis = Constant<value = int64[1] {2}>()
  root = Constant<value = float {0.70710677}>()
  qkv = MatMul(x, wqkv)
  qkvb = Add(qkv, bqkv)
  q, kv = Split<axis=2>(qkvb, sizes)
  k = Slice(kv, start, mid, axis)
  v = Slice(kv, mid, end, axis)
  qh = Reshape(q, split)
  qt = Transpose<perm=[0, 2, 1, 3]>(qh)
  qs = Mul(qt, root)
  kh = Reshape(k, split)
  kt = Transpose<perm=[0, 2, 3, 1]>(kh)
  ks = Mul(kt, root)
  vh = Reshape(v, split)
  vt = Transpose<perm=[0, 2, 1, 3]>(vh)
  s = MatMul(qs, ks)
  p = Softmax<axis=-1>(s)
  c = MatMul(p, vt)
  ct = Transpose<perm=[0, 2, 1, 3]>(c)
  cm = Reshape(ct, merge)
  o = MatMul(cm, wo)""" + _tail("o") + "\n}", ["wqkv", "bqkv", "wo", *TAIL_WEIGHTS])

# torch's MultiheadAttention: x [T, N, 12] ─packed in-projection 12→36─Reshape[0,0,3,12]─Unsqueeze─Transpose
# ─Squeeze─Gather 0/1/2 (the Q, K, V parts)─Reshape[0,-1,4] (heads merged into the batch: [T, N·3, 4])
# ─Transpose─batched scores, softmax, context on [N·3, T, ·]─Transpose─Reshape[0,-1,12]─MatMul(wo)─tail─▶ y
MHA = build("""
mha (float[T,N,12] x, float[12,36] win, float[36] bin, float[12,12] wo, float[12,16] w1, float[16,3] w2)
    => (float[T,N,3] y) {
  parts = Constant<value = int64[4] {0, 0, 3, 12}>()
  heads = Constant<value = int64[3] {0, -1, 4}>()
  merge = Constant<value = int64[3] {0, -1, 12}>()
  zero = Constant<value = int64[1] {0}>()
  three = Constant<value = int64[1] {3}>()
  i0 = Constant<value = int64 {0}>()
  i1 = Constant<value = int64 {1}>()
  i2 = Constant<value = int64 {2}>()
  half = Constant<value = float {0.5}>()
  a = MatMul(x, win)
  ab = Add(a, bin)
  r = Reshape(ab, parts)
  u = Unsqueeze(r, zero)
  t = Transpose<perm=[3, 1, 2, 0, 4]>(u)
  sq = Squeeze(t, three)
  q = Gather<axis=0>(sq, i0)
  k = Gather<axis=0>(sq, i1)
  v = Gather<axis=0>(sq, i2)
  qh = Reshape(q, heads)
  qt = Transpose<perm=[1, 0, 2]>(qh)
  kh = Reshape(k, heads)
  kt = Transpose<perm=[1, 2, 0]>(kh)
  vh = Reshape(v, heads)
  vt = Transpose<perm=[1, 0, 2]>(vh)
  s = MatMul(qt, kt)
  ss = Mul(s, half)
  p = Softmax<axis=-1>(ss)
  c = MatMul(p, vt)
  ct = Transpose<perm=[1, 0, 2]>(c)
  cm = Reshape(ct, merge)
  o = MatMul(cm, wo)""" + _tail("o") + "\n}", ["win", "bin", "wo", *TAIL_WEIGHTS])

# ONNX Attention (opset 23) on [N, 3, T, 4] Q, K, V from projections (what the dynamo exporter writes at opset 23)
ATTENTION_OP = build("""
attn23 (float[N,T,12] x, float[12,12] wq, float[12,12] wk, float[12,12] wv, float[12,12] wo, float[12,16] w1,
        float[16,3] w2) => (float[N,T,3] y) {
  split = Constant<value = int64[4] {0, 0, 3, 4}>()
  merge = Constant<value = int64[3] {0, 0, 12}>()
  q = MatMul(x, wq)
  qh = Reshape(q, split)
  qt = Transpose<perm=[0, 2, 1, 3]>(qh)
  k = MatMul(x, wk)
  kh = Reshape(k, split)
  kt = Transpose<perm=[0, 2, 1, 3]>(kh)
  v = MatMul(x, wv)
  vh = Reshape(v, split)
  vt = Transpose<perm=[0, 2, 1, 3]>(vh)
  c = Attention(qt, kt, vt)
  ct = Transpose<perm=[0, 2, 1, 3]>(c)
  cm = Reshape(ct, merge)
  o = MatMul(cm, wo)""" + _tail("o") + "\n}", ["wq", "wk", "wv", "wo", *TAIL_WEIGHTS], opset=23)

# ids ─Gather(tok)─Add(Slice(pos, 0:T))─LayerNorm─┬─MatMul─Add─Erf-GELU─MatMul─Add─┐
#                                                 └────────────────────────────────┴─Add─LayerNorm─Gather(token 0)
#                                                                                              ─MatMul(head)─▶ y
STREAM = build("""
stream (int64[N,T] ids, float[20,12] tok, float[6,12] pos, float[12] g0, float[12] b0, float[12,16] wf1,
        float[16] bf1, float[16,12] wf2, float[12] bf2, float[12] g1, float[12] b1, float[12,3] wh) => (float[N,3] y) {
  start = Constant<value = int64[1] {0}>()
  axis0 = Constant<value = int64[1] {0}>()
  i0 = Constant<value = int64 {0}>()
  sqrt2 = Constant<value = float {1.4142135}>()
  halfc = Constant<value = float {0.5}>()
  onec = Constant<value = float {1.0}>()
  e = Gather(tok, ids)
  end = Shape<start = 1>(ids)
  pe = Slice(pos, start, end, axis0)
  x = Add(e, pe)
  n0 = LayerNormalization<axis=-1>(x, g0, b0)
  f1 = MatMul(n0, wf1)
  f1b = Add(f1, bf1)
  dv = Div(f1b, sqrt2)
  er = Erf(dv)
  er1 = Add(er, onec)
  hh = Mul(f1b, halfc)
  g = Mul(hh, er1)
  f2 = MatMul(g, wf2)
  f2b = Add(f2, bf2)
  r = Add(n0, f2b)
  n1 = LayerNormalization<axis=-1>(r, g1, b1)
  cls = Gather<axis=1>(n1, i0)
  y = MatMul(cls, wh)
}""", ["tok", "pos", "g0", "b0", "wf1", "bf1", "wf2", "bf2", "g1", "b1", "wh"], positive=("g0", "g1"))

# x ─Conv(patches 4x4, 3→12)─Reshape(computed [N, 12, -1])─Transpose─┬ Concat(axis 1) with Expand(cls, [N,1,1])
#   ─Add(pos)─LayerNorm─MatMul─Relu─MatMul─Add(residual)─LayerNorm─Gather(token 0)─Gemm(head)─▶ y
VIT = build("""
vit (float[N,3,8,8] x, float[12,3,4,4] wp, float[12] bp, float[1,1,12] cls, float[1,5,12] pos, float[12] g0,
     float[12] b0, float[12,16] wf1, float[16,12] wf2, float[12] g1, float[12] b1, float[3,12] wh) => (float[N,3] y) {
  c12 = Constant<value = int64[1] {12}>()
  m1 = Constant<value = int64[1] {-1}>()
  ones = Constant<value = int64[2] {1, 1}>()
  i0 = Constant<value = int64 {0}>()
  p = Conv<kernel_shape=[4, 4], strides=[4, 4]>(x, wp, bp)
  batch = Shape<start = 0, end = 1>(p)
  target = Concat<axis=0>(batch, c12, m1)
  f = Reshape(p, target)
  tokens = Transpose<perm=[0, 2, 1]>(f)
  bshape = Concat<axis=0>(batch, ones)
  ce = Expand(cls, bshape)
  seq = Concat<axis=1>(ce, tokens)
  xp = Add(seq, pos)
  n0 = LayerNormalization<axis=-1>(xp, g0, b0)
  f1 = MatMul(n0, wf1)
  f1r = Relu(f1)
  f2 = MatMul(f1r, wf2)
  r = Add(xp, f2)
  n1 = LayerNormalization<axis=-1>(r, g1, b1)
  first = Gather<axis=1>(n1, i0)
  y = Gemm<transB=1>(first, wh)
}""", ["wp", "bp", "cls", "pos", "g0", "b0", "wf1", "wf2", "g1", "b1", "wh"], positive=("g0", "g1"))

# x ─ConvA(4→6)─Relu─┐
#   ─ConvB(4→6)─Relu─┴─Concat─Reshape[0,2,6,4,4]─Transpose(0,2,1,3,4)─Reshape[0,12,4,4] (channel shuffle)
#   ─Split(6,6)─┬──────────────────────────┬─Concat─ConvO(12→5)─▶ y
#               └─ConvC(6→6)─Relu───────────┘
SHUFFLE = build("""
shuffle (float[N,4,4,4] x, float[6,4,1,1] wa, float[6,4,1,1] wb, float[6,6,1,1] wc, float[5,12,1,1] wo)
    => (float[N,5,4,4] y) {
  split = Constant<value = int64[5] {0, 2, 6, 4, 4}>()
  merge = Constant<value = int64[4] {0, 12, 4, 4}>()
  halves = Constant<value = int64[2] {6, 6}>()
  a = Conv(x, wa)
  ar = Relu(a)
  b = Conv(x, wb)
  br = Relu(b)
  cat = Concat<axis=1>(ar, br)
  s5 = Reshape(cat, split)
  st = Transpose<perm=[0, 2, 1, 3, 4]>(s5)
  sh = Reshape(st, merge)
  p, q = Split<axis=1>(sh, halves)
  qc = Conv(q, wc)
  qr = Relu(qc)
  cat2 = Concat<axis=1>(p, qr)
  y = Conv(cat2, wo)
}""", ["wa", "wb", "wc", "wo"])


def computed_pads(spatial: int | str = 7) -> onnx.ModelProto:
    """TF "same" padding computed from Shape, and a flatten target computed from Shape:

    x ─Conv(3→6, 3x3/2)─Relu─Pad(pads = max((⌈h/2⌉−1)·2 + 3 − h, 0), split before/after, from Shape)
      ─Conv(6→4, 3x3/2)─Relu─GlobalAveragePool─Reshape(Concat(Shape[0], -1))─Gemm─▶ y

    With a static `spatial` size the pads fold to constants; with a symbolic one they depend on
    runtime sizes, and the Pad is a barrier.
    """
    return build(f"""
pads (float[N,3,{spatial},{spatial}] x, float[6,3,3,3] wa, float[6] ba, float[4,6,3,3] wb, float[5,4] wh)
    => (float[N,5] y) {{
  two = Constant<value = int64 {{2}}>()
  one = Constant<value = int64 {{1}}>()
  three = Constant<value = int64 {{3}}>()
  zero = Constant<value = int64 {{0}}>()
  axes0 = Constant<value = int64[1] {{0}}>()
  z2 = Constant<value = int64[2] {{0, 0}}>()
  m1 = Constant<value = int64[1] {{-1}}>()
  a = Conv<kernel_shape=[3, 3], strides=[2, 2]>(x, wa, ba)
  ar = Relu(a)
  shape = Shape(ar)
  h = Gather(shape, two)
  h1 = Add(h, one)
  steps = Div(h1, two)
  s1 = Sub(steps, one)
  s2 = Mul(s1, two)
  s3 = Add(s2, three)
  s4 = Sub(s3, h)
  total = Max(s4, zero)
  before = Div(total, two)
  after = Sub(total, before)
  bu = Unsqueeze(before, axes0)
  au = Unsqueeze(after, axes0)
  pads = Concat<axis=0>(z2, bu, bu, z2, au, au)
  padded = Pad(ar, pads)
  b = Conv<kernel_shape=[3, 3], strides=[2, 2]>(padded, wb)
  br = Relu(b)
  g = GlobalAveragePool(br)
  batch = Shape<start = 0, end = 1>(g)
  target = Concat<axis=0>(batch, m1)
  f = Reshape(g, target)
  y = Gemm<transB=1>(f, wh)
}}""", ["wa", "ba", "wb", "wh"])


COMPUTED_PADS = computed_pads(7)


def fused(op: str) -> onnx.ModelProto:
    """x ─MatMul(w1: 8→16)─[com.microsoft op]─MatMul(w2: 16→8)─▶ y, built with onnx.helper.

    BiasGelu and FastGelu take a bias [16]; SkipLayerNormalization adds a skip input and
    normalises; the attention ops get Q, K, V projections (MultiHeadAttention: num_heads=4).
    """
    rng = np.random.default_rng(0)

    def init(name, *shape):
        return onnx.numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.5, name)

    inits = [init("w1", 8, 16), init("w2", 16, 8), init("b", 16), init("gamma", 16), init("beta", 16),
             init("wqkv", 16, 48), init("bqkv", 48)]
    attrs: dict = {}
    if op in ("BiasGelu", "FastGelu"):
        inputs = ["h", "b"]
    elif op == "SkipLayerNormalization":
        inputs = ["h", "h", "gamma", "beta"]
    elif op == "MultiHeadAttention":
        inputs, attrs = ["h", "h", "h"], {"num_heads": 4}
    elif op == "Attention":
        inputs, attrs = ["h", "wqkv", "bqkv"], {"num_heads": 4}
    else:
        raise ValueError(op)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
             helper.make_node(op, inputs, ["f"], name="fused", domain="com.microsoft", **attrs),
             helper.make_node("MatMul", ["f", "w2"], ["y"], name="fc2")]
    graph = helper.make_graph(nodes, op, [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 5, 8])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 5, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    return model


FUSED_OPS = ("BiasGelu", "FastGelu", "SkipLayerNormalization", "MultiHeadAttention", "Attention")
