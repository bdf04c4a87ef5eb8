"""How each ONNX op treats a channel axis: the rule table of the analysis.

An op that is not in `RULES` is a barrier: channels that reach it are left alone and the
reason is reported. Every rule states an equivalence it preserves: removing a set of
channel elements from the rewritten graph computes the same values as zeroing those
elements at every tensor that carries them in the original graph.
"""

from __future__ import annotations

from .rule_context import Rule
from .rules_attention import attention
from .rules_index import concat, flatten, gather, shape_op, slice_op, split, squeeze, transpose, unsqueeze
from .rules_pointwise import (
    channel_first,
    dropout,
    elementwise,
    layer_norm,
    pad,
    pool,
    reduce,
    resize,
    softmax,
    unary,
)
from .rules_produce import conv, gemm, matmul
from .rules_reshape import reshape

UNARY_OPS = (
    "Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu", "Celu",
    "Softplus", "Softsign", "ThresholdedRelu", "Erf", "Gelu", "Mish", "Identity", "Neg", "Abs", "Sqrt",
    "Exp", "Log", "Reciprocal", "Sign", "Floor", "Ceil", "Round", "Cast", "Sin", "Cos",
)
ELEMENTWISE_OPS = ("Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean", "Pow", "PRelu", "Where")
POOL_OPS = ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "GlobalLpPool")
REDUCE_OPS = ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
              "ReduceSumSquare", "ReduceLogSumExp", "ReduceLogSum")

RULES: dict[str, Rule] = {
    "Conv": conv,
    "Gemm": gemm,
    "MatMul": matmul,
    "BatchNormalization": channel_first(params=(1, 2, 3, 4)),
    "InstanceNormalization": channel_first(params=(1, 2)),
    "Pad": pad,
    "Resize": resize,
    "Upsample": resize,
    "LayerNormalization": layer_norm,
    "Softmax": softmax,
    "LogSoftmax": softmax,
    "Flatten": flatten,
    "Reshape": reshape,
    "Transpose": transpose,
    "Squeeze": squeeze,
    "Unsqueeze": unsqueeze,
    "Concat": concat,
    "Shape": shape_op,
    "Split": split,
    "Slice": slice_op,
    "Dropout": dropout,
    "Gather": gather,
    "Attention": attention,
    **{op: unary for op in UNARY_OPS},
    **{op: elementwise for op in ELEMENTWISE_OPS},
    **{op: pool for op in POOL_OPS},
    **{op: reduce for op in REDUCE_OPS},
}
