"""The TorchScript ops of FLA's fused inference form that X2Paddle 1.6 cannot map, added to its aten table before a
conversion: baddbmm (bias + bmm), maximum (elementwise, two tensors), ones_like, and layer_norm without affine
weights (X2Paddle's own mapper needs them as parameters; FLA folds them into the next projection).

A mapper reads one TorchScript node and adds Paddle layers to the graph (X2Paddle's mapper interface: mapper, graph,
node -> (input names, output names)); each is written here for the forms FLA uses.
"""

from __future__ import annotations

from typing import List, Tuple

Names = Tuple[List[str], List[str]]


def _inputs(mapper, graph, node, count: int) -> Tuple[str, List[str], List[str]]:
    """(scope, input names, [output name]) with the first count inputs made available in the graph."""
    scope = mapper.normalize_scope_name(node)
    out = [mapper._get_outputs_name(node)[0]]
    names, nodes = mapper._get_inputs_name(node)
    for i in range(count):
        mapper._check_input(graph, nodes[i], names[i], out, scope)
    return scope, names, out


def baddbmm(mapper, graph, node) -> Names:
    """aten::baddbmm(input, batch1, batch2, beta=1, alpha=1) -> paddle.bmm then paddle.add (broadcasting input)."""
    scope, names, out = _inputs(mapper, graph, node, 3)
    scales = [mapper.attrs.get(n, None) for n in names[3:5]]
    if any(s not in (None, 1, 1.0) for s in scales):
        raise NotImplementedError(f"baddbmm with beta / alpha {scales} (only 1 is mapped)")
    prod = f"{out[0]}_bmm"
    graph.add_layer("paddle.bmm", inputs={"x": names[1], "y": names[2]}, outputs=[prod], scope_name=scope)
    graph.add_layer("paddle.add", inputs={"x": names[0], "y": prod}, outputs=out, scope_name=scope)
    return names[:3], out


def maximum(mapper, graph, node) -> Names:
    """aten::maximum(a, b) of two tensors -> paddle.maximum."""
    scope, names, out = _inputs(mapper, graph, node, 2)
    graph.add_layer("paddle.maximum", inputs={"x": names[0], "y": names[1]}, outputs=out, scope_name=scope)
    return names[:2], out


def ones_like(mapper, graph, node) -> Names:
    """aten::ones_like(x, dtype, layout, device, pin_memory, memory_format) -> paddle.ones_like (x's dtype when the
    dtype is None)."""
    from x2paddle.op_mapper.pytorch2paddle.aten import dtype_dict

    scope, names, out = _inputs(mapper, graph, node, 1)
    dtype = mapper.attrs.get(names[1]) if len(names) > 1 else None
    attrs = {} if dtype is None else {"dtype": dtype_dict[dtype]}
    graph.add_layer("paddle.ones_like", inputs={"x": names[0]}, outputs=out, scope_name=scope, **attrs)
    return names[:1], out


def layer_norm_without_affine(original):
    """aten::layer_norm(x, shape, weight, bias, eps, cudnn): original's mapper when weight is a parameter, else
    paddle.nn.functional.layer_norm without weight and bias."""

    def mapper_fn(mapper, graph, node) -> Names:
        names, _ = mapper._get_inputs_name(node)
        if names[2] in mapper.pytorch_params and mapper.pytorch_params[names[2]] is not None:
            return original(mapper, graph, node)
        scope, names, out = _inputs(mapper, graph, node, 1)
        attrs = {"normalized_shape": mapper.attrs[names[1]], "epsilon": mapper.attrs[names[4]]}
        graph.add_layer("paddle.nn.functional.layer_norm", inputs={"x": names[0]}, outputs=out, scope_name=scope,
                        **attrs)  # fmt: skip
        return names[:1], out

    mapper_fn.without_affine = True
    return mapper_fn


def register() -> None:
    """Add the mappers to X2Paddle's aten table where it has none (a newer X2Paddle's own are kept); wrap its
    layer_norm once."""
    from x2paddle.op_mapper.pytorch2paddle import aten

    for name, fn in (("aten_baddbmm", baddbmm), ("aten_maximum", maximum), ("aten_ones_like", ones_like)):
        if not hasattr(aten, name):
            setattr(aten, name, fn)
    if not getattr(aten.aten_layer_norm, "without_affine", False):
        aten.aten_layer_norm = layer_norm_without_affine(aten.aten_layer_norm)
