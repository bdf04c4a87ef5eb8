"""Weight masks: zeros in the dense ONNX weights, shared constants copied, the reference includes them."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxtrim import ir
from onnxtrim.errors import PassError, PlanError
from onnxtrim.masks import WeightMask
from onnxtrim.passes.apply_masks import apply_masks
from onnxtrim.plan import GroupPlan, PrunePlan, structure_fingerprint
from tests.helpers import models
from tests.helpers.plans import assert_masked_equivalent, random_feeds, random_plan, run


def initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def random_mask(model, node: str, tensor: str, rng, share=0.5) -> WeightMask:
    shape = initializers(model)[tensor].shape
    return WeightMask(node, 1, tensor, rng.random(shape) >= share)


def test_masked_weights_are_zeros_in_the_dense_model_and_nothing_else_changes():
    model = models.CHAIN
    rng = np.random.default_rng(0)
    mask = random_mask(model, "Gemm#5", "w2", rng)
    plan = PrunePlan(structure_fingerprint(model), "test", (), masks=(mask,))
    masked = apply_masks(model, plan)
    before, after = initializers(model), initializers(masked)
    assert set(before) == set(after)
    np.testing.assert_array_equal(after["w2"], np.where(mask.keep, before["w2"], 0))
    assert all(np.array_equal(before[n], after[n]) for n in before if n != "w2")
    assert [n.op_type for n in masked.graph.node] == [n.op_type for n in model.graph.node]
    onnx.checker.check_model(masked, full_check=True)


def test_a_shared_weight_is_masked_for_its_node_only():
    model = models.SHARED  # Conv(w) and Conv(Identity(w)) read one weight
    nodes = ir.to_graph(model).nodes
    users = [ir.node_label(n, i) for i, n in enumerate(nodes) if n.op == "Conv" and n.inputs[0].name == "x"]
    graph = ir.to_graph(model)
    label = users[0]
    tensor = graph.nodes[int(label.split("#")[1])].inputs[1].name
    rng = np.random.default_rng(1)
    shape = ir.const_value(graph.nodes[int(label.split("#")[1])].inputs[1]).shape
    plan = PrunePlan(structure_fingerprint(model), "test", (), masks=(WeightMask(label, 1, tensor, rng.random(shape) > 0.5),))
    masked = apply_masks(model, plan)
    feeds = random_feeds(model, rng)
    # The other user still reads the original weight: only the masked node's output changes.
    assert len(masked.graph.initializer) == len(model.graph.initializer) + 1
    assert not np.allclose(run(masked, feeds)[0], run(model, feeds)[0])


@pytest.mark.parametrize("name", ["CHAIN", "RESIDUAL", "CONCAT", "SPLIT_SLICE"])
def test_masks_and_channel_removal_together_equal_the_masked_reference(name):
    model = getattr(models, name)
    rng = np.random.default_rng(2)
    channels = random_plan(model, rng, 0.4)
    graph = ir.to_graph(model)
    ir.toposort(graph)
    masks = tuple(WeightMask(ir.node_label(n, i), 1, n.inputs[1].name, rng.random(ir.const_value(n.inputs[1]).shape) > 0.3)
                  for i, n in enumerate(graph.nodes) if n.op in ("Conv", "Gemm", "MatMul"))
    plan = PrunePlan(channels.fingerprint, "test", channels.groups, masks=masks)
    assert_masked_equivalent(model, plan, random_feeds(model, rng))


def test_bad_masks_are_refused():
    model = models.CHAIN
    fingerprint = structure_fingerprint(model)
    wrong_shape = WeightMask("Gemm#5", 1, "w2", np.ones((3, 3), bool))
    with pytest.raises(PassError, match="does not fit"):
        apply_masks(model, PrunePlan(fingerprint, "t", (), masks=(wrong_shape,)))
    with pytest.raises(PassError, match="does not have"):
        apply_masks(model, PrunePlan(fingerprint, "t", (), masks=(WeightMask("Gemm#99", 1, "w2", np.ones(2, bool)),)))
    body = WeightMask("Gemm#5", 1, "w2", np.ones((16, 128), bool)).to_json()
    body["keep_bits"] = body["keep_bits"][:8]
    with pytest.raises(PlanError, match="invalid weight mask"):
        WeightMask.from_json(body)


def test_masks_survive_the_plan_json():
    mask = WeightMask("Conv#0", 1, "w1", np.random.default_rng(3).random((8, 1, 3, 3)) > 0.5)
    plan = PrunePlan("f", "magnitude", (GroupPlan(0, ("Conv#0",), 8, (0, 1)),), masks=(mask,))
    again = PrunePlan.from_json(plan.to_json())
    np.testing.assert_array_equal(again.masks[0].keep, mask.keep)
    assert (again.masks[0].node, again.masks[0].input_index, again.masks[0].tensor) == ("Conv#0", 1, "w1")
