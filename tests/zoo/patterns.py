"""Read-only descriptions of the graph patterns a channel-rule table has to know about.

Used by ``census.py`` to summarise exported zoo models; every function takes a loaded ``onnx.ModelProto``
(weights may stay external: only shapes and small constants are read) and returns plain data.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from tests.helpers.onnx_utils import DEFAULT_DOMAINS

SMALL = 64  # constants with at most this many elements are read (shapes, axes, split sizes)


@dataclass
class Graph:
    """Producer/consumer indexes over one (top-level) graph."""

    model: onnx.ModelProto
    producer: dict[str, onnx.NodeProto] = field(default_factory=dict)
    consumers: dict[str, list[onnx.NodeProto]] = field(default_factory=lambda: collections.defaultdict(list))
    inits: dict[str, onnx.TensorProto] = field(default_factory=dict)

    def __post_init__(self) -> None:
        g = self.model.graph
        self.inits = {t.name: t for t in g.initializer}
        for node in g.node:
            for out in node.output:
                self.producer[out] = node
            for inp in node.input:
                if inp:
                    self.consumers[inp].append(node)

    def const(self, name: str) -> np.ndarray | None:
        """Value of a small constant (initializer or Constant node output), else None."""
        if name in self.inits:
            t = self.inits[name]
            if t.data_location == onnx.TensorProto.EXTERNAL or int(np.prod(t.dims)) > SMALL:
                return None
            return numpy_helper.to_array(t)
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and int(np.prod(a.t.dims)) <= SMALL:
                    return numpy_helper.to_array(a.t)
                if a.name in ("value_ints", "value_int"):
                    return np.array(onnx.helper.get_attribute_value(a))
        return None

    def is_const(self, name: str) -> bool:
        """Initializer, Constant output, or Identity of one of those."""
        if name in self.inits:
            return True
        node = self.producer.get(name)
        if node is None:
            return False
        if node.op_type == "Constant":
            return True
        return node.op_type == "Identity" and self.is_const(node.input[0])

    def chain_up(self, name: str, depth: int, stop: Iterable[str] = ()) -> list[str]:
        """Op types met walking up the first non-constant input of each producer, nearest first."""
        ops: list[str] = []
        stop = set(stop)
        while len(ops) < depth:
            node = self.producer.get(name)
            if node is None:
                break
            ops.append(node.op_type)
            if node.op_type in stop:
                break
            data = [i for i in node.input if i and not self.is_const(i)]
            if not data:
                break
            name = data[0]
        return ops


def attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _fmt(value: np.ndarray | None) -> str:
    return "?" if value is None else str(value.tolist()).replace(" ", "")


def batchnorm(g: Graph) -> str:
    n = sum(node.op_type == "BatchNormalization" for node in g.model.graph.node)
    convs = sum(node.op_type == "Conv" for node in g.model.graph.node)
    return f"{n} BatchNormalization kept" if n else f"BN folded (0 BN, {convs} Conv)"


def shared_initializers(g: Graph) -> str:
    """Initializers used by more than one node, directly or through ``Identity`` nodes.

    The TorchScript exporter hands one copy of identical tensors to other users through ``Identity``
    nodes; the dynamo exporter's optimiser deduplicates identical initializers and feeds one name to all
    users directly, even across op types. Each kind of sharing is shown as the set of (op[input index]).
    """
    ids = [n for n in g.model.graph.node if n.op_type == "Identity"]
    const_ids = [n for n in ids if n.input[0] in g.inits]
    kinds: collections.Counter[str] = collections.Counter()
    shared = 0
    for name in g.inits:
        uses = sorted(set(_uses(g, name)))
        if len(list(_uses(g, name))) > 1:
            shared += 1
            kinds["{" + ",".join(uses) + "}"] += 1
    text = f"{len(ids)} Identity ({len(const_ids)} of initializers)" if ids else "no Identity"
    text += f"; {shared} initializers used by >1 node"
    if kinds:
        text += ": " + ", ".join(f"{k} x{v}" for k, v in kinds.most_common(4))
    return text


def _uses(g: Graph, name: str):
    """(op[input index]) of every node reading ``name``, looking through Identity nodes."""
    for node in g.consumers.get(name, []):
        if node.op_type == "Identity":
            yield from _uses(g, node.output[0])
        else:
            yield f"{node.op_type}[{list(node.input).index(name)}]"


def head(g: Graph) -> str:
    """The path from the classifier's first Gemm/MatMul back to the last spatial op."""
    out = g.model.graph.output[0].name
    node = g.producer.get(out)
    seen = 0
    # walk up to the earliest Gemm/MatMul of the classifier (it may be an MLP)
    gemm = None
    while node is not None and seen < 20:
        if node.op_type in ("Gemm", "MatMul"):
            gemm = node
        if node.op_type in ("Conv", "Concat", "Add", "Softmax") and gemm is not None:
            break
        data = [i for i in node.input if i and not g.is_const(i)]
        node = g.producer.get(data[0]) if data else None
        seen += 1
    if gemm is None:
        return "no Gemm/MatMul head: " + "<-".join(g.chain_up(out, 6))
    ops = g.chain_up(gemm.input[0], 6, stop=("Conv", "Add", "Concat", "Relu", "Clip", "HardSwish", "Mul"))
    text = " <- ".join([gemm.op_type, *ops])
    reshapes = [n for n in _nodes_on_chain(g, gemm.input[0], len(ops)) if n.op_type in ("Reshape", "Flatten")]
    for r in reshapes:
        if r.op_type == "Flatten":
            text += f"; Flatten(axis={attr(r, 'axis', 1)})"
        else:
            text += f"; Reshape shape {reshape_shape(g, r)}"
    return text


def _nodes_on_chain(g: Graph, name: str, depth: int) -> list[onnx.NodeProto]:
    nodes = []
    while len(nodes) < depth:
        node = g.producer.get(name)
        if node is None:
            break
        nodes.append(node)
        data = [i for i in node.input if i and not g.is_const(i)]
        if not data:
            break
        name = data[0]
    return nodes


def reshape_shape(g: Graph, node: onnx.NodeProto) -> str:
    """A Reshape's shape input: its value if constant, else the ops computing it."""
    value = g.const(node.input[1])
    if value is not None:
        return f"const {_fmt(value)}"
    ops = _shape_subgraph_ops(g, node.input[1])
    return "computed by " + "/".join(f"{op}x{n}" if n > 1 else op for op, n in sorted(ops.items()))


def _shape_subgraph_ops(g: Graph, name: str, limit: int = 40) -> collections.Counter[str]:
    ops: collections.Counter[str] = collections.Counter()
    stack, seen = [name], set()
    while stack and sum(ops.values()) < limit:
        cur = stack.pop()
        node = g.producer.get(cur)
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        ops[node.op_type] += 1
        if node.op_type == "Shape":
            continue
        stack.extend(i for i in node.input if i)
    return ops


def reshapes(g: Graph) -> str:
    rs = [n for n in g.model.graph.node if n.op_type == "Reshape"]
    if not rs:
        return "none"
    kinds = collections.Counter(reshape_shape(g, n) for n in rs)
    return "; ".join(f"{k} x{v}" if v > 1 else k for k, v in kinds.most_common(6)) + (
        f"; (+{len(kinds) - 6} more kinds)" if len(kinds) > 6 else ""
    )


ACTIVATION_OPS = (
    "Gelu", "Erf", "Tanh", "Sigmoid", "HardSigmoid", "HardSwish", "Clip", "Softmax",
    "LayerNormalization", "ReduceMean", "Pow", "Sqrt", "Div", "Sub",
)  # fmt: skip


def activations(g: Graph) -> str:
    """How GELU / SiLU / HardSwish / LayerNorm appear: fused ops or decompositions."""
    nodes = g.model.graph.node
    found = []
    erf = [n for n in nodes if n.op_type == "Erf"]
    if erf:
        found.append(f"GELU decomposed x{len(erf)} ({'->'.join(_gelu_chain(g, erf[0]))})")
    gelu = [n for n in nodes if n.op_type == "Gelu"]
    if gelu:
        found.append(f"Gelu op x{len(gelu)} (approximate={attr(gelu[0], 'approximate', b'none')!r})")
    silu = [n for n in nodes if n.op_type == "Sigmoid" and _mul_with_input(g, n)]
    if silu:
        found.append(f"SiLU as x*Sigmoid(x) x{len(silu)}")
    hsw = [n for n in nodes if n.op_type == "HardSwish"]
    if hsw:
        found.append(f"HardSwish op x{len(hsw)}")
    hsig = [n for n in nodes if n.op_type == "HardSigmoid"]
    hsig_mul = [n for n in hsig if _mul_with_input(g, n)]
    if hsig_mul:
        found.append(f"HardSwish as x*HardSigmoid(x) x{len(hsig_mul)}")
    if len(hsig) > len(hsig_mul):
        found.append(f"HardSigmoid op x{len(hsig) - len(hsig_mul)} (alpha={attr(hsig[0], 'alpha')!r})")
    clip = [n for n in nodes if n.op_type == "Clip"]
    if clip:
        found.append(f"Clip x{len(clip)} (ReLU6: min/max {_clip_bounds(g, clip[0])})")
    ln = [n for n in nodes if n.op_type == "LayerNormalization"]
    if ln:
        found.append(f"LayerNormalization op x{len(ln)} (axis={attr(ln[0], 'axis', -1)})")
    sqrt = [n for n in nodes if n.op_type == "Sqrt"]
    if sqrt and not ln:
        found.append(f"LayerNorm decomposed? Sqrt x{len(sqrt)}")
    return "; ".join(found) or "ReLU only"


def _gelu_chain(g: Graph, erf: onnx.NodeProto) -> list[str]:
    up = g.chain_up(erf.input[0], 1)
    down: list[str] = []
    name = erf.output[0]
    for _ in range(3):
        cons = g.consumers.get(name, [])
        if not cons:
            break
        down.append(cons[0].op_type)
        name = cons[0].output[0]
    return list(reversed(up)) + ["Erf"] + down


def _mul_with_input(g: Graph, gate: onnx.NodeProto) -> bool:
    """gate(x) feeds a Mul whose other input is x itself (SiLU / HardSwish decomposition)."""
    x = gate.input[0]
    return any(c.op_type == "Mul" and x in c.input for c in g.consumers.get(gate.output[0], []))


def _clip_bounds(g: Graph, node: onnx.NodeProto) -> str:
    if len(node.input) >= 3:
        return f"{_fmt(g.const(node.input[1]))}/{_fmt(g.const(node.input[2]))}"
    return f"{attr(node, 'min')}/{attr(node, 'max')}"


def se_blocks(g: Graph) -> str:
    """Squeeze-excitation: Mul(x, gate) where gate's chain goes back to a pooling of x."""
    found: collections.Counter[str] = collections.Counter()
    for node in g.model.graph.node:
        if node.op_type != "Mul" or len(node.input) != 2:
            continue
        for x, gate in (node.input, reversed(node.input)):
            chain, pooled = _gate_chain(g, gate, x)
            if pooled:
                found["Mul <- " + " <- ".join(chain)] += 1
                break
    if not found:
        return "none"
    return "; ".join(f"{k} x{v}" for k, v in found.most_common(3))


def _gate_chain(g: Graph, gate: str, x: str) -> tuple[list[str], bool]:
    ops: list[str] = []
    name = gate
    for _ in range(8):
        node = g.producer.get(name)
        if node is None:
            return ops, False
        ops.append(node.op_type)
        if node.op_type in ("GlobalAveragePool", "ReduceMean", "AveragePool"):
            return ops, node.input[0] == x
        data = [i for i in node.input if i and not g.is_const(i)]
        if not data:
            return ops, False
        name = data[0]
    return ops, False


def channel_shuffle(g: Graph) -> str:
    """Reshape -> Transpose -> Reshape around a 5-D tensor (ShuffleNet's channel shuffle)."""
    found = collections.Counter()
    for node in g.model.graph.node:
        if node.op_type != "Transpose":
            continue
        perm = attr(node, "perm")
        before = g.producer.get(node.input[0])
        after = g.consumers.get(node.output[0], [])
        if perm and len(perm) == 5 and before is not None and before.op_type == "Reshape":
            after_desc = ",".join(
                f"{a.op_type}({reshape_shape(g, a)})" if a.op_type == "Reshape" else a.op_type for a in after
            )
            found[f"Reshape({reshape_shape(g, before)}) -> Transpose{list(perm)} -> {after_desc}"] += 1
    if not found:
        return "none"
    return "; ".join(f"{k} x{v}" for k, v in found.most_common(2)) + (
        f" (+{len(found) - 2} kinds)" if len(found) > 2 else ""
    )


def axes(g: Graph) -> str:
    """Axes of Concat / Split / Slice (attributes or constant inputs) and Split sizes."""
    concat: collections.Counter[str] = collections.Counter()
    split: collections.Counter[str] = collections.Counter()
    slc: collections.Counter[str] = collections.Counter()
    for node in g.model.graph.node:
        if node.op_type == "Concat":
            concat[str(attr(node, "axis"))] += 1
        elif node.op_type == "Split":
            sizes = (
                _fmt(g.const(node.input[1]))
                if len(node.input) > 1 and node.input[1]
                else (str(attr(node, "num_outputs", attr(node, "split", "equal"))))
            )
            split[f"{attr(node, 'axis', 0)}:{sizes}"] += 1
        elif node.op_type == "Slice":
            ax = _fmt(g.const(node.input[3])) if len(node.input) > 3 and node.input[3] else "all"
            slc[ax] += 1
    parts = []
    if concat:
        parts.append("Concat axis " + ",".join(f"{k}x{v}" for k, v in concat.most_common()))
    if split:
        parts.append("Split axis:sizes " + ",".join(f"{k}x{v}" for k, v in split.most_common(4)))
    if slc:
        parts.append("Slice axes " + ",".join(f"{k}x{v}" for k, v in slc.most_common(4)))
    return "; ".join(parts) or "none"


def value_info(g: Graph) -> str:
    vi = g.model.graph.value_info
    if not vi:
        return "no value_info"
    full = sum(
        1
        for v in vi
        if v.type.HasField("tensor_type")
        and v.type.tensor_type.HasField("shape")
        and all(d.HasField("dim_value") or d.HasField("dim_param") for d in v.type.tensor_type.shape.dim)
    )
    return f"{len(vi)} value_info ({full} with full shapes)"


def convs(g: Graph) -> str:
    grouped = collections.Counter()
    for node in g.model.graph.node:
        if node.op_type != "Conv":
            continue
        group = attr(node, "group", 1)
        if group > 1:
            w = g.inits.get(node.input[1])
            depthwise = w is not None and w.dims[1] == 1
            grouped["depthwise" if depthwise else f"group={group}"] += 1
    return ", ".join(f"{k} x{v}" for k, v in grouped.most_common()) or "no grouped Conv"


def matmuls(g: Graph) -> str:
    mm = [n for n in g.model.graph.node if n.op_type == "MatMul"]
    if not mm:
        return ""
    const = sum(1 for n in mm if g.is_const(n.input[1]))
    return f"MatMul x{len(mm)} ({const} with constant weight, {len(mm) - const} activation x activation)"


def transposes(g: Graph) -> str:
    perms = collections.Counter(
        str(attr(n, "perm")).replace(" ", "") for n in g.model.graph.node if n.op_type == "Transpose"
    )
    return ", ".join(f"{k}x{v}" for k, v in perms.most_common(5))


def domains(model: onnx.ModelProto) -> str:
    odd = sorted({f"{n.domain}::{n.op_type}" for n in model.graph.node if n.domain not in DEFAULT_DOMAINS})
    fn = [f"{f.domain}::{f.name}" for f in model.functions]
    text = ", ".join(odd) if odd else "all default domain"
    return text + (f"; {len(fn)} local functions" if fn else "")


def initializer_names(g: Graph) -> str:
    names = list(g.inits)
    anon = sum(1 for n in names if n.startswith("onnx::") or n.split(".")[0].isdigit())
    sample = next((n for n in names if "weight" in n or n.startswith("onnx::")), names[0] if names else "")
    return f"{len(names)} initializers ({anon} anonymous), e.g. {sample!r}"


def describe(model: onnx.ModelProto) -> dict[str, str]:
    """All pattern summaries for ``model``, keyed by pattern name."""
    g = Graph(model)
    return {
        "batchnorm": batchnorm(g),
        "shared_initializers": shared_initializers(g),
        "head": head(g),
        "reshape": reshapes(g),
        "activations": activations(g),
        "se": se_blocks(g),
        "shuffle": channel_shuffle(g),
        "axes": axes(g),
        "conv_groups": convs(g),
        "matmul": matmuls(g),
        "transpose": transposes(g),
        "value_info": value_info(g),
        "domains": domains(model),
        "initializers": initializer_names(g),
        "constants": f"{sum(n.op_type == 'Constant' for n in model.graph.node)} Constant nodes",
    }
