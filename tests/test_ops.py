"""torch-language ops against eager: values, dtypes and gradients."""

import pytest
import thunder
import torch
import torch.nn.functional as F


def _randn(*shape, dtype=torch.float32, requires_grad=False):
    return torch.randn(*shape, dtype=dtype).requires_grad_(requires_grad)


CASES = {
    "add_scalar_promotion": (lambda x, i: x + i * 2 + 1, lambda: (_randn(3, 4), torch.arange(4))),
    "int_div": (lambda i, j: (i / j, i // j, i % j), lambda: (torch.arange(1, 7), torch.tensor([2, 3, 4, 5, 6, 7]))),
    "bool_mask": (lambda x: torch.where(x > 0, x, 0.5) * (x < 1), lambda: (_randn(5),)),
    "half_elementwise": (lambda x: torch.exp(x) + torch.tanh(x) * x.sigmoid(), lambda: (_randn(8, dtype=torch.bfloat16),)),
    "reductions": (lambda x: (x.sum(), x.mean(1), x.var(0), x.std(1, keepdim=True), x.amax(-1), x.argmax(1),
                              torch.logsumexp(x, 1), x.max(1).values, x.min()), lambda: (_randn(4, 6),)),
    "shapes": (lambda x: (x.view(2, 12), x.reshape(-1, 3).t(), x.permute(2, 0, 1), x.transpose(0, 1).flatten(1),
                          x.unsqueeze(1).expand(2, 5, 3, 4), x.squeeze(), x[0], x[:, 1:3], x[..., ::2], x[None, 1, -1],
                          torch.cat([x, x], 1), torch.stack([x, x]), x.split(1, 1), x.chunk(2, 2)),
               lambda: (_randn(2, 3, 4),)),
    "linear_gelu_layernorm": (lambda x, w, b: F.layer_norm(F.gelu(F.linear(x, w, b)), (6,)),
                              lambda: (_randn(2, 5, 4, requires_grad=True), _randn(6, 4, requires_grad=True),
                                       _randn(6, requires_grad=True))),
    "softmax_family": (lambda x: (F.softmax(x, -1), x.log_softmax(0), torch.softmax(x, dim=1)), lambda: (_randn(3, 7),)),
    "embedding": (lambda ids, w: F.embedding(ids, w), lambda: (torch.tensor([[0, 2], [3, 1]]), _randn(5, 3, requires_grad=True))),
    "cross_entropy": (lambda x, t: F.cross_entropy(x, t, ignore_index=1, label_smoothing=0.1),
                      lambda: (_randn(6, 4, requires_grad=True), torch.tensor([0, 1, 2, 3, 1, 0]))),
    "cross_entropy_plain": (lambda x, t, t3: (F.cross_entropy(x.float(), t, ignore_index=2),
                                              F.cross_entropy(x.float(), t, reduction="sum"),
                                              F.cross_entropy(x.float().reshape(2, 3, 4).transpose(1, 2), t3,
                                                              reduction="none")),
                            lambda: (_randn(6, 4, dtype=torch.bfloat16, requires_grad=True),
                                     torch.tensor([0, 1, 2, 3, 1, 2]), torch.tensor([[0, 1, 2], [3, 3, 1]]))),
    # deprecated, but eager still honours them: size_average=False sums, reduce=False reduces nothing
    "losses_legacy_reduction": (lambda x, t: (F.cross_entropy(x, t, size_average=False),
                                              F.nll_loss(x.log_softmax(1), t, reduce=False)),
                                lambda: (_randn(5, 3, requires_grad=True), torch.tensor([0, 2, 1, 1, 0]))),
    "sdpa_causal": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
                    lambda: (_randn(1, 2, 5, 4), _randn(1, 2, 5, 4), _randn(1, 2, 5, 4))),
    "masked_fill_tril": (lambda x: x.masked_fill(torch.ones(4, 4, dtype=torch.bool).tril() == 0, float("-inf")).softmax(-1),
                         lambda: (_randn(4, 4),)),
    "dropout_eval_and_silu": (lambda x: F.dropout(F.silu(x), 0.3, training=False), lambda: (_randn(3, 3),)),
    "creation": (lambda x: x + torch.ones(3, 3) + torch.zeros_like(x) + torch.full((3, 3), 2.0) + torch.arange(3),
                 lambda: (_randn(3, 3),)),
    "opaque_cumsum_and_index": (lambda x, i: x.cumsum(0)[i] + torch.sort(x, 1).values[0],
                                lambda: (_randn(4, 3, requires_grad=True), torch.tensor([0, 2]))),
}


def _total(out):
    """One number from an op's result (a tensor or a tuple of them), to differentiate."""
    return out.sum() if isinstance(out, torch.Tensor) else sum(o.float().sum() for o in out)


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_matches_eager(name):
    fn, make_args = CASES[name]
    args = make_args()
    expected = fn(*args)
    actual = thunder.compile(fn)(*args)
    torch.testing.assert_close(actual, expected, equal_nan=True)
    if any(isinstance(a, torch.Tensor) and a.requires_grad for a in args):
        grads_args = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
        g_expected = torch.autograd.grad(_total(expected), grads_args)
        g_actual = torch.autograd.grad(_total(actual), grads_args)
        torch.testing.assert_close(g_actual, g_expected)


def test_dtype_of_results_follows_torch_promotion():
    def f(a, b, c):
        return a + b, a * 2.5, c + 1, c / 2, a + c

    args = (torch.ones(2, dtype=torch.float16), torch.ones((), dtype=torch.float64),
            torch.ones(2, dtype=torch.int32))
    for actual, expected in zip(thunder.compile(f)(*args), f(*args)):
        assert actual.dtype == expected.dtype
        torch.testing.assert_close(actual, expected)


def test_inplace_ops_on_intermediates_and_inputs_keep_eager_semantics():
    def f(x, buf):
        y = x * 2
        y.add_(1)
        buf.mul_(3)
        return y + buf

    x, buf = torch.randn(3), torch.ones(3)
    expected_buf = buf.clone() * 3
    out = thunder.compile(f)(x, buf)
    torch.testing.assert_close(out, x * 2 + 1 + expected_buf)
    torch.testing.assert_close(buf, expected_buf)


def test_examine_reports_definition_and_executor_per_op(capsys):
    from thunder.executors.base import OperatorExecutor
    from thunder.executors.torchex import torch_executor

    def f(x, w):
        return F.linear(x, w).relu().cumsum(0) + torch.sort(x, 1).values.sum()

    args = (_randn(3, 4), _randn(5, 4))
    rows = {r.op: r for r in thunder.examine(f, *args)}
    assert rows["ltorch.linear"].kind == "torch language" and rows["ltorch.linear"].executors == "torch"
    assert rows["opaque.sort"].kind == "opaque" and rows["opaque.sort"].executors == "torch"
    assert any(op.startswith("opaque.") and "cumsum" in op for op in rows)
    assert "ltorch.linear" in capsys.readouterr().out  # the printed table

    # an executor claiming only primitives: torch-language ops are decomposed for it
    prims_only = OperatorExecutor("prims_only", priority=0)
    for sym_id in ("prims.linear", "prims.where", "prims.le"):
        prims_only.register(sym_id, torch_executor._implementations[sym_id][0].impl)
    rows = {r.op: r for r in thunder.examine(f, *args, executors=[prims_only])}
    assert rows["ltorch.linear"].executors == "prims_only (decomposed)"
    assert rows["ltorch.relu"].executors == "prims_only (decomposed)"
    assert rows["opaque.sort"].executors == "torch"


def test_device_moves_are_operations_of_the_program():
    """``.to(device)``, ``.cpu()`` and ``torch.device(...)`` inside a compiled program: a copy to
    the other device in the trace (here to "meta", the one other device a CPU machine has)."""
    def f(x):
        y = (x * 2).to("meta")
        return y, x.cpu() + 1, x.to(torch.device("cpu"), torch.float64), x.to(device="meta")

    compiled = thunder.compile(f)
    x = _randn(3, 4)
    for actual, expected in zip(compiled(x), f(x)):
        assert (actual.device, actual.dtype, actual.shape) == (expected.device, expected.dtype, expected.shape)
        if expected.device.type != "meta":
            torch.testing.assert_close(actual, expected)
    trace = str(thunder.last_traces(compiled)[-1])
    assert "meta f32[3, 4]" in trace and "torch.device('cpu')\n" not in trace


def test_math_on_python_numbers_gives_tensors_whose_values_python_may_use():
    """torch functions on Python numbers return tensors, as in eager; their values come from
    constants, so code may use them as sizes or in branches (Longformer's chunking does)."""
    def f(x, seq_len: int):
        chunks = torch.div(seq_len, 4, rounding_mode="trunc")
        fewer = chunks - 1
        if fewer > 0:
            x = x * 2
        return x.view(x.size(0), chunks, 4), torch.div(7, 2), torch.add(1.5, 2), torch.zeros(int(fewer) + 1)

    cf = thunder.compile(f)
    x = torch.randn(2, 8)
    for seq_len, xs in ((8, x), (4, torch.randn(2, 4))):
        for actual, expected in zip(cf(xs, seq_len), f(xs, seq_len)):
            assert actual.dtype == expected.dtype
            torch.testing.assert_close(actual, expected)
    # a size computed from the program's inputs is computed from them while tracing, checked per call
    reshape = thunder.compile(lambda t: t.view(t.sum().long(), -1))
    for t in (torch.ones(2, 2), torch.ones(2, 2) / 2):
        torch.testing.assert_close(reshape(t), t.view(t.sum().long(), -1))
    assert thunder.cache_misses(reshape) == 2


def test_positions_built_from_constants_have_values_python_may_use():
    """``arange`` positions, indexed, sliced, concatenated with ``new_tensor`` data (Funnel's
    relative positions; Mamba-2's ``if cache_position[0] > 0``)."""
    def f(x, cache):
        pos = torch.arange(0, x.shape[1]).to(torch.float32)
        pooled = torch.cat([pos.new_tensor([-1.0]), pos[1:][::2]], axis=0)
        cache.add_(1)  # an in-place write to other memory keeps the values
        rel = torch.arange(pooled[0] - pos[0], pos[-1] + 1, dtype=torch.long)
        if pos[0] > 0:
            x = x * 2
        return x[:, : len(pooled)] + rel.sum(), cache

    x = torch.randn(2, 8)
    actual = thunder.compile(f)(x, torch.zeros(3))
    expected = f(x, torch.zeros(3))
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e)



def test_values_built_from_constants_read_as_python_and_boolean_indices():
    """``.item()``, ``.tolist()`` and boolean indexing with a mask built from constants use the
    known values (eager returns them; nothing is data-dependent): the positions of a known mask
    index like the mask does, in any position of the index."""
    def f(x):
        scale = torch.tensor([1.0, 2.5])[1].item()
        sizes = torch.arange(3).tolist()
        rows = torch.tensor([True, False, True, False])
        grid = torch.tensor([[True, False, True], [False, False, True]])
        return x[rows] * scale, x[:, torch.tensor([False, True, True])] + len(sizes), x[:2][grid], x[rows, 1:]

    x = torch.randn(4, 3)
    for a, e in zip(thunder.compile(f)(x), f(x)):
        torch.testing.assert_close(a, e)


def test_an_inplace_write_forgets_the_values_of_the_memory_it_changes():
    """Modifying a view of known positions changes them: their values are no longer assumed."""
    def f(x):
        pos = torch.arange(4)
        pos[1:].add_(10)
        if pos[1] > 5:
            return x * 2
        return x

    with pytest.raises(thunder.DataDependentError, match="values are not known while tracing"):
        thunder.compile(f)(torch.ones(2))


def test_size_given_by_keyword_to_factories_and_new_methods():
    def f(x):
        return x.new_ones(size=x.size()) + torch.zeros(size=(2, 3)), torch.ones(size=[3]), x.new_zeros(size=(2,))

    cf = thunder.compile(f)
    x = torch.randn(2, 3)
    for actual, expected in zip(cf(x), f(x)):
        torch.testing.assert_close(actual, expected)
