"""First-call (acquisition + compile) time of a tiny Hugging Face Llama on CPU: Thunder vs
torch.compile.

Each measurement runs in a fresh Python process (imports and the model are built before the clock
starts; only the first compiled call is timed), with torch.compile's on-disk caches disabled, so
nothing is warm. Reported per compiler: the first call (cold), a call with a new sequence length
(a re-trace), and a cache hit. For Thunder the first call is also split into acquisition (the
bytecode interpreter producing the trace and prologue) and the rest of the pipeline.

    python examples/bench_acquisition.py [--layers 2] [--skip-inductor]
"""

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, sys, time
import torch, transformers
opts = json.loads(sys.argv[1])
torch.manual_seed(0)
config = transformers.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=opts["layers"],
                                  num_attention_heads=4, num_key_value_heads=2, vocab_size=256,
                                  max_position_embeddings=128)
model = transformers.LlamaForCausalLM(config).eval()
ids, ids2 = torch.randint(0, 256, (2, 12)), torch.randint(0, 256, (2, 17))
with torch.no_grad():
    expected = model(input_ids=ids).logits
    if opts["compiler"] == "thunder":
        import thunder
        compiled = thunder.compile(model)
    else:
        compiled = torch.compile(model, backend=opts["compiler"])

    def timed(x):
        start = time.perf_counter()
        out = compiled(input_ids=x).logits
        return out, time.perf_counter() - start

    out, first = timed(ids)
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)
    _, hit = timed(ids)
    _, hit = timed(ids)
    _, retrace = timed(ids2)
    model(input_ids=ids)
    start = time.perf_counter()
    model(input_ids=ids)
    result = {"first": first, "retrace": retrace, "hit": hit, "eager": time.perf_counter() - start}
    if opts["compiler"] == "thunder":
        from thunder.acquire.acquisition import acquire
        from thunder.compiled import _signature_source
        fn = compiled._thunder_compiled.fn
        start = time.perf_counter()
        acquire(fn, (), {"input_ids": ids}, module=compiled, signature_fn=_signature_source(fn, compiled))
        result["acquire"] = time.perf_counter() - start
        result["ops"] = len(thunder.last_traces(compiled)[0].bound_symbols)
print(json.dumps(result))
"""


def measure(compiler: str, layers: int) -> dict:
    env = dict(os.environ, TORCHINDUCTOR_FORCE_DISABLE_CACHES="1", TORCHINDUCTOR_CACHE_DIR="/tmp/bench_acq_inductor")
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps({"compiler": compiler, "layers": layers})],
                         capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{compiler} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--skip-inductor", action="store_true", help="skip torch.compile's inductor (slowest)")
    opts = parser.parse_args()
    compilers = ["thunder", "eager", "aot_eager"] + ([] if opts.skip_inductor else ["inductor"])
    names = {"thunder": "thunder.compile", "eager": "torch.compile(backend='eager')",
             "aot_eager": "torch.compile(backend='aot_eager')", "inductor": "torch.compile (inductor)"}
    print(f"tiny LlamaForCausalLM, {opts.layers} layers, CPU, torch {__import__('torch').__version__}")
    print(f"{'compiler':<38}{'first call s':>14}{'new length s':>14}{'hit ms':>10}{'eager ms':>10}")
    for compiler in compilers:
        r = measure(compiler, opts.layers)
        print(f"{names[compiler]:<38}{r['first']:>14.2f}{r['retrace']:>14.2f}{r['hit'] * 1e3:>10.2f}"
              f"{r['eager'] * 1e3:>10.2f}", flush=True)
        if compiler == "thunder":
            print(f"{'  of which acquisition (interpreter)':<38}{r['acquire']:>14.2f}"
                  f"{'':>14}{'':>10}   ({r['ops']} ops in the acquired trace)")


if __name__ == "__main__":
    main()
