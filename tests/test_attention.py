"""The fast attention path computes what transformers' Longformer computes."""

from __future__ import annotations

import pytest
import torch
from transformers import LongformerConfig, LongformerForMaskedLM
from transformers.models.longformer.modeling_longformer import LongformerSelfAttention

from longzoo.errors import LongzooError
from longzoo.models.attention import FastLongformerSelfAttention, use_fast_attention, use_reference_attention


def tiny_model(windows=(16, 8), dropout=0.0, seed=0):
    torch.manual_seed(seed)
    config = LongformerConfig(
        hidden_size=64,
        num_hidden_layers=len(windows),
        num_attention_heads=4,
        intermediate_size=128,
        attention_window=list(windows),
        max_position_embeddings=600,
        vocab_size=120,
        attention_probs_dropout_prob=dropout,
        hidden_dropout_prob=0.0,
    )
    model = LongformerForMaskedLM(config)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0, 0.3)  # large weights: any misplaced key or mask shows
    return model


def inputs(length, globals_per_row, batch=3, seed=1):
    torch.manual_seed(seed)
    ids = torch.randint(3, 120, (batch, length))
    mask = torch.ones_like(ids)
    if batch >= 3:
        mask[1, length - max(1, length // 5) :] = 0  # right padding
        mask[2, length // 2 :] = 0
    glob = torch.zeros_like(ids)
    for row, count in enumerate(globals_per_row):
        glob[row, torch.randperm(length // 2)[:count]] = 1
    return dict(input_ids=ids, attention_mask=mask, global_attention_mask=glob)


def run(model, batch, fast: bool, backward: bool = False, compile_backend: str | None = None):
    (use_fast_attention if fast else use_reference_attention)(model)
    model.zero_grad()
    call = torch.compile(model, backend=compile_backend) if compile_backend else model
    out = call(**batch, labels=batch["input_ids"])
    if backward:
        out.loss.backward()
        return out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.logits.detach(), {}


def assert_same_as_reference(model, batch):
    """Logits and every parameter's gradient within 1e-5 of transformers' computation."""
    ref_out, ref_grads = run(model, batch, fast=False, backward=True)
    fast_out, fast_grads = run(model, batch, fast=True, backward=True)
    assert (fast_out - ref_out).abs().max() <= 1e-5
    assert ref_grads.keys() == fast_grads.keys()
    for name in ref_grads:
        assert (fast_grads[name] - ref_grads[name]).abs().max() <= 1e-5, name


@pytest.mark.parametrize("length", [16, 37, 64, 100])
@pytest.mark.parametrize("globals_per_row", [(0, 0, 0), (1, 1, 1), (3, 1, 0), (6, 2, 4)])
def test_outputs_and_gradients_match_the_reference(length, globals_per_row):
    model = tiny_model()
    batch = inputs(length, globals_per_row)
    assert_same_as_reference(model, batch)


@pytest.mark.parametrize("globals_per_row", [(15, 3, 0), (16, 3, 0), (24, 20, 17)])
def test_many_global_tokens_take_the_projecting_path(globals_per_row):
    """Up to hidden/heads global tokens are computed without projecting every key (64/4 = 16
    here); from there on, through key_global/value_global.  Both sides of the switch agree."""
    model = tiny_model()
    batch = inputs(100, globals_per_row)
    assert_same_as_reference(model, batch)


def test_same_parameters_and_round_trip(tmp_path):
    model = tiny_model()
    keys = list(model.state_dict())
    use_fast_attention(model)
    assert all(
        isinstance(m, FastLongformerSelfAttention) for m in model.modules() if isinstance(m, LongformerSelfAttention)
    )
    assert list(model.state_dict()) == keys
    model.save_pretrained(tmp_path)
    loaded = LongformerForMaskedLM.from_pretrained(tmp_path)  # a stock checkpoint
    assert type(loaded.longformer.encoder.layer[0].attention.self) is LongformerSelfAttention
    use_reference_attention(model)
    assert type(model.longformer.encoder.layer[0].attention.self) is LongformerSelfAttention


def test_output_attentions_falls_back_to_the_reference():
    model = use_fast_attention(tiny_model()).eval()
    out = model(**inputs(32, (1, 0, 2)), output_attentions=True)
    assert out.attentions[0].shape[-1] == 16 + 1 + 2  # window + self + global slots, as transformers gives


def test_half_precision_close_to_reference():
    model = tiny_model().to(torch.bfloat16).eval()
    batch = inputs(48, (2, 0, 1))
    ref, _ = run(model, batch, fast=False)
    fast, _ = run(model, batch, fast=True)
    mask = batch["attention_mask"].bool()
    assert (fast.float() - ref.float())[mask].abs().max() <= 0.1 * ref.float()[mask].abs().max()


def test_dropout_statistics_in_training():
    """Dropout on the attention probabilities behaves like the reference: same mean, same spread."""
    model = tiny_model(windows=(16,), dropout=0.3).train()
    batch = inputs(64, (1,), batch=1)
    samples = {}
    for fast in (False, True):
        (use_fast_attention if fast else use_reference_attention)(model)
        torch.manual_seed(0)
        outs = torch.stack([model(**batch).logits.detach() for _ in range(40)])
        samples[fast] = outs
    ref, fast = samples[False], samples[True]
    # per-element means agree (up to sampling noise), and so does the overall spread
    assert (ref.mean(0) - fast.mean(0)).abs().mean() < 0.1 * ref.mean(0).abs().mean()
    spread_ref, spread_fast = ref.std(0).mean(), fast.std(0).mean()
    assert spread_ref > 0 and abs(spread_fast - spread_ref) < 0.05 * spread_ref


def test_refuses_models_without_longformer_attention():
    with pytest.raises(LongzooError, match="no Longformer self-attention"):
        use_fast_attention(torch.nn.Linear(2, 2))
    with pytest.raises(LongzooError, match="backend"):
        use_fast_attention(tiny_model(), backend="flash")


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_flex_backend_matches_the_reference_in_inference(dtype):
    """Compiled flex_attention (CPU inference): every padding / global pattern, per-layer windows."""
    model = tiny_model().to(dtype).eval()
    for length in (16, 37, 100):
        for globals_per_row in [(0, 0, 0), (1, 1, 1), (3, 1, 0), (6, 2, 4)]:
            batch = inputs(length, globals_per_row)
            with torch.no_grad():
                ref = use_reference_attention(model)(**batch).logits.float()
                flex = use_fast_attention(model, backend="flex")(**batch).logits.float()
            if dtype == torch.float32:
                assert (flex - ref).abs().max() <= 1e-5, (length, globals_per_row)
            else:
                mask = batch["attention_mask"].bool()
                assert (flex - ref)[mask].abs().max() <= 0.1 * ref[mask].abs().max()


def test_backend_choice_follows_device_and_mode(monkeypatch):
    import longzoo.models.attention as attention

    calls = []
    monkeypatch.setattr(
        attention, "flex_band_attention", lambda *a: calls.append("flex") or attention.band_attention(*a)
    )
    model = tiny_model(dropout=0.1)
    batch = inputs(32, (1, 0, 2))
    use_fast_attention(model)  # auto: the SDPA blocks on CPU, in training and in inference
    model.train()(**batch)
    with torch.no_grad():
        model.eval()(**batch)
    assert calls == []
    use_fast_attention(model, backend="flex")
    with torch.no_grad():
        model.eval()(**batch)
    assert calls == ["flex"] * 2  # one per layer
    with pytest.raises(LongzooError, match="no attention dropout and no CPU backward"):
        model.train()(**batch)
    use_reference_attention(model)
    assert not hasattr(model.longformer.encoder.layer[0].attention.self, "_longzoo_backend")


@pytest.fixture
def fresh_dynamo():
    """Empty compile caches: the tests compile the same functions for new models, and past
    dynamo's recompile limit a function silently runs eagerly, which would test nothing."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.slow
@pytest.mark.parametrize("globals_per_row", [(0, 0, 0), (1, 0, 1), (3, 1, 2)], ids=["none", "one", "several"])
@pytest.mark.parametrize("compile_backend", ["aot_eager", "inductor"])
def test_compiled_gradients_match_the_reference(compile_backend, globals_per_row, fresh_dynamo):
    """torch.compile of the fast path: logits and every gradient are eager transformers'.

    Global tokens put a graph break (their count sizes the key blocks) in the middle of the
    band computation; values that cross it must not be overlapping views (AOTAutograd
    copies their incoming gradient into the overlapping layout and loses part of it).
    Padding rows and a length that is not a whole number of window blocks are included.
    """
    from torch._dynamo.utils import counters

    model = tiny_model(windows=(8, 8))
    batch = inputs(37, globals_per_row)
    ref_out, ref_grads = run(model, batch, fast=False, backward=True)
    out, grads = run(model, batch, fast=True, backward=True, compile_backend=compile_backend)
    assert counters["stats"]["unique_graphs"] > 0  # it did compile
    assert (out - ref_out).abs().max() <= 1e-4
    assert grads.keys() == ref_grads.keys()
    wrong = {n: (grads[n] - ref_grads[n]).abs().max().item() for n in ref_grads}
    assert {n: e for n, e in wrong.items() if e > 1e-4} == {}


def test_device_maps_never_split_a_fast_self_attention():
    """accelerate keeps the classes named in ``_no_split_modules`` whole, matching by class
    name; transformers lists LongformerSelfAttention.  Budgets of one to three self-attentions
    per device make accelerate split every module it may split."""
    from accelerate.utils import compute_module_sizes, infer_auto_device_map

    model = use_fast_attention(tiny_model(windows=(8, 8)))
    encoder = model.longformer.encoder
    self_size = compute_module_sizes(encoder)["layer.0.attention.self"]
    for budget in (1.1, 1.5, 3):
        max_memory = {**dict.fromkeys(range(3), int(budget * self_size)), "cpu": 1 << 30}
        device_map = infer_auto_device_map(
            encoder, max_memory=max_memory, no_split_module_classes=list(model._no_split_modules)
        )
        assert [name for name in device_map if ".attention.self." in name] == [], budget


def test_fast_attention_runs_under_accelerate_hooks(monkeypatch):
    """device_map / cpu_offload leave accelerate hooks: the instance's ``forward`` is replaced
    and the original bound method kept in ``_old_forward``, which a class swap alone misses."""
    from accelerate.hooks import ModelHook, add_hook_to_module, remove_hook_from_module

    import longzoo.models.attention as attention

    calls = []
    band = attention.band_attention
    monkeypatch.setattr(attention, "band_attention", lambda *a: calls.append(1) or band(*a))
    model = tiny_model()
    batch = inputs(37, (2, 0, 1))
    ref, _ = run(model, batch, fast=False)
    modules = [m for m in model.modules() if isinstance(m, LongformerSelfAttention)]
    for module in modules:
        add_hook_to_module(module, ModelHook())
    fast, _ = run(model, batch, fast=True)
    assert len(calls) == 2  # one per layer, through the hooks
    assert (fast - ref).abs().max() <= 1e-5
    calls.clear()
    run(model, batch, fast=False)
    assert calls == []
    # a hook removed while fast pins the bound forward on the instance; the swap back reaches it
    use_fast_attention(model)
    for module in modules:
        remove_hook_from_module(module)
    model(**batch)
    assert len(calls) == 2
    calls.clear()
    run(model, batch, fast=False)
    assert calls == []


def test_refuses_a_forward_replaced_by_unknown_code():
    """A forward wrapped by something else would keep running the reference silently."""
    model = tiny_model()
    module = model.longformer.encoder.layer[1].attention.self
    module.forward = lambda *args, **kwargs: LongformerSelfAttention.forward(module, *args, **kwargs)
    with pytest.raises(LongzooError, match="forward"):
        use_fast_attention(model)
    assert not any(isinstance(m, FastLongformerSelfAttention) for m in model.modules())  # nothing half-done
