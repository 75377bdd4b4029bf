"""Hugging Face models from tiny configs (random weights, no downloads): forward matches eager,
a new sequence length re-traces and stays correct, padding masks work."""

import pytest
import thunder
import torch

transformers = pytest.importorskip("transformers", reason="transformers is a test dependency (nox installs it)")

COMMON = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, vocab_size=256,
              max_position_embeddings=128)

CAUSAL_LMS = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(COMMON, num_key_value_heads=2)),
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(COMMON, num_key_value_heads=2)),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", dict(COMMON, num_key_value_heads=2)),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", dict(COMMON, num_key_value_heads=2, pad_token_id=0)),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", dict(COMMON, num_key_value_heads=2, head_dim=16)),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", dict(n_embd=64, n_layer=2, n_head=4, vocab_size=256, n_positions=128)),
    "gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM", dict(COMMON)),
    # Mixture of Experts with dense routing (top-k scores scattered into a full score matrix)
    "llama4_moe": ("Llama4TextConfig", "Llama4ForCausalLM",
                   dict(COMMON, intermediate_size=64, intermediate_size_mlp=128, num_key_value_heads=2, head_dim=16,
                        num_local_experts=4, num_experts_per_tok=1, interleave_moe_layer_step=1,
                        no_rope_layers=[1, 0], attention_chunk_size=8, attn_implementation="sdpa")),
}


def _build(config_name, model_name, kwargs):
    torch.manual_seed(0)
    config = getattr(transformers, config_name)(**kwargs)
    return getattr(transformers, model_name)(config).eval()


def _check(model, compiled, **inputs):
    with torch.no_grad():
        expected = model(**inputs)
        actual = compiled(**inputs)
    key = "logits" if "logits" in expected else "last_hidden_state"
    torch.testing.assert_close(actual[key], expected[key], atol=1e-4, rtol=1e-4)
    assert type(actual) is type(expected)


@pytest.mark.parametrize("name", sorted(CAUSAL_LMS))
def test_causal_lm_forward_and_new_sequence_length(name):
    model = _build(*CAUSAL_LMS[name])
    tm = thunder.compile(model)
    ids = torch.randint(0, 256, (2, 12))
    _check(model, tm, input_ids=ids)
    _check(model, tm, input_ids=ids)
    misses = thunder.cache_misses(tm)
    assert thunder.cache_hits(tm) >= 1
    _check(model, tm, input_ids=torch.randint(0, 256, (2, 17)))
    assert thunder.cache_misses(tm) == misses + 1


def test_llama_with_padding_mask_and_labels():
    model = _build(*CAUSAL_LMS["llama"])
    tm = thunder.compile(model)
    ids = torch.randint(0, 256, (2, 10))
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[0, :3] = 0  # left padding
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask, labels=ids)
        actual = tm(input_ids=ids, attention_mask=mask, labels=ids)
    torch.testing.assert_close(actual.logits, expected.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(actual.loss, expected.loss, atol=1e-4, rtol=1e-4)


def test_bert():
    model = _build("BertConfig", "BertModel", dict(COMMON))
    tm = thunder.compile(model)
    ids = torch.randint(0, 256, (2, 9))
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, 6:] = 0
    _check(model, tm, input_ids=ids, attention_mask=mask)


def test_t5():
    model = _build("T5Config", "T5ForConditionalGeneration",
                   dict(d_model=64, d_ff=128, num_layers=2, num_heads=4, vocab_size=256, d_kv=16))
    tm = thunder.compile(model)
    _check(model, tm, input_ids=torch.randint(0, 256, (2, 12)), decoder_input_ids=torch.randint(0, 256, (2, 5)))


def test_vit():
    model = _build("ViTConfig", "ViTModel", dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                                 num_attention_heads=4, image_size=32, patch_size=8))
    tm = thunder.compile(model)
    _check(model, tm, pixel_values=torch.randn(2, 3, 32, 32))


MIXTRAL = ("MixtralConfig", "MixtralForCausalLM", dict(COMMON, num_key_value_heads=2, num_local_experts=4,
                                                       num_experts_per_tok=2))


def test_mixtral_routing_is_data_dependent_and_runs_with_the_eager_fallback():
    model = _build(*MIXTRAL)
    ids = torch.randint(0, 256, (2, 12))
    # expert routing selects tokens with nonzero()/where() on router outputs: not traceable
    with pytest.raises(thunder.DataDependentError, match="nonzero") as info:
        with torch.no_grad():
            thunder.compile(model)(input_ids=ids)
    assert "modeling_mixtral.py" in "\n".join(info.value.__notes__)
    tm = thunder.compile(model, fallback="eager")
    with pytest.warns(thunder.FallbackWarning, match="nonzero"):
        _check(model, tm, input_ids=ids)
    _check(model, tm, input_ids=ids)  # the same path: eager again, no new acquisition, no warning
    assert (thunder.cache_misses(tm), thunder.cache_hits(tm)) == (1, 1)


MORE_FAMILIES = {
    # alibi through Tensor.baddbmm(batch1=..., batch2=...)
    "bloom": ("BloomConfig", "BloomForCausalLM", dict(hidden_size=64, n_layer=2, n_head=4, vocab_size=256)),
    # a selective scan written as a Python loop over the sequence; marks its cache for torch.compile
    "mamba": ("MambaConfig", "MambaForCausalLM", dict(hidden_size=32, num_hidden_layers=2, vocab_size=256,
                                                      state_size=4, expand=2, conv_kernel=4)),
    # the Mixture-of-Experts model above: its router fills a score matrix in place from top-k values
    "llama4": CAUSAL_LMS["llama4_moe"],
    # relative positions computed in Python from arange positions (pooled, concatenated, indexed)
    "funnel": ("FunnelConfig", "FunnelModel", dict(d_model=64, n_head=4, d_head=16, d_inner=128, vocab_size=256,
                                                    block_sizes=[1, 1])),
    # convolutional audio encoder + decoder with cross-attention
    "whisper": ("WhisperConfig", "WhisperModel",
                dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                     decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, vocab_size=256,
                     num_mel_bins=16, max_source_positions=32, max_target_positions=32, pad_token_id=0,
                     bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)),
    # relative position buckets computed from arange positions; encoder-decoder
    "t5": ("T5Config", "T5ForConditionalGeneration",
           dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, vocab_size=256, decoder_start_token_id=0)),
    # two-stream relative attention with einsum
    "xlnet": ("XLNetConfig", "XLNetLMHeadModel", dict(d_model=32, n_layer=2, n_head=4, d_inner=64, vocab_size=256)),
    # alternating global and windowed local attention
    "gpt_neo": ("GPTNeoConfig", "GPTNeoForCausalLM",
                dict(hidden_size=32, num_layers=2, num_heads=4, attention_types=[[["global", "local"], 1]],
                     window_size=8, vocab_size=256, max_position_embeddings=64)),
    # an RNN: the time-mixing recurrence is a Python loop over the sequence
    "rwkv": ("RwkvConfig", "RwkvForCausalLM", dict(hidden_size=32, num_hidden_layers=2, attention_hidden_size=32,
                                                   intermediate_size=64, vocab_size=256, context_length=64)),
    # a vision transformer: patch convolution, class token, learned positions
    "clip_vision": ("CLIPVisionConfig", "CLIPVisionModel",
                    dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         image_size=32, patch_size=8)),
}


@pytest.mark.parametrize("name", sorted(MORE_FAMILIES))
def test_more_families_train_like_eager(name):
    """Forward values and every parameter's gradient (``.grad`` None where eager leaves it None)."""
    model = _build(*MORE_FAMILIES[name])
    if name == "rwkv":  # in eval mode it updates its state in place, which eager's backward rejects
        model.train()
    if name == "whisper":
        inputs = dict(input_features=torch.randn(2, 16, 64), decoder_input_ids=torch.randint(0, 256, (2, 5)))
    elif name == "t5":
        inputs = dict(input_ids=torch.randint(0, 256, (2, 12)), decoder_input_ids=torch.randint(0, 256, (2, 5)))
    elif name == "clip_vision":
        inputs = dict(pixel_values=torch.randn(2, 3, 32, 32))
    else:
        inputs = dict(input_ids=torch.randint(0, 256, (2, 12)))
    compiled = thunder.compile(model)
    results = []
    for fn in (model, compiled):
        model.zero_grad(set_to_none=True)
        out = fn(**inputs)
        out = out.logits if hasattr(out, "logits") else out.last_hidden_state
        out.float().square().mean().backward()
        results.append((out.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
    (expected, expected_grads), (actual, actual_grads) = results
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)
    assert actual_grads.keys() == expected_grads.keys()
    for n, g in expected_grads.items():
        torch.testing.assert_close(actual_grads[n], g, atol=2e-4, rtol=1e-3)


def test_mamba2_with_its_cache_branches_on_known_positions():
    """Mamba-2 inference makes its cache and ``cache_position = arange(conv_kernel)``, then branches
    on ``cache_position[0] > 0`` after writing the cache in place."""
    model = _build("Mamba2Config", "Mamba2ForCausalLM",
                   dict(hidden_size=64, num_hidden_layers=2, vocab_size=256, num_heads=4, head_dim=32, state_size=16,
                        n_groups=1, expand=2, chunk_size=8))
    _check(model, thunder.compile(model), input_ids=torch.randint(0, 256, (2, 12)), use_cache=True)
