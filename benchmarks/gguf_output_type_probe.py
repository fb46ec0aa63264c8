"""Does keeping the output (and tied embedding) matrix in F16 rescue a GGUF quantization?

Quantizes the F16 GGUF export of a model (made by quantize_speed.py under runs/bench-quant/)
with llama.cpp's own quantizer, once as is and once with the output and token embedding
tensors kept in F16 (llama-quantize's --output-tensor-type / --token-embedding-type), and
prints each file's mean next-token KL and top-1 agreement against the F16 file on 400 tokens
of this repository's Python. Saves the table to benchmarks/results/.

    .venv/bin/python benchmarks/gguf_output_type_probe.py [--model smollm2-135m-instruct]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from honed.quantize.checks import log_softmax
from honed.quantize.methods import captured_stderr

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

TEXT = (ROOT / "src" / "honed" / "quantize" / "checks.py").read_text()[:3000]
VARIANTS = {  # name: (file type, output and embedding tensor type or None for llama.cpp's)
    "q8_0": ("Q8_0", None),
    "q8_0 + F16 output/embedding": ("Q8_0", "F16"),
    "q4_k_m": ("Q4_K_M", None),
    "q4_k_m + F16 output/embedding": ("Q4_K_M", "F16"),
}


def quantize(source: Path, target: Path, ftype: str, keep: str | None) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype}")
    if keep:
        params.output_tensor_type = params.token_embedding_type = getattr(
            llama_cpp, f"GGML_TYPE_{keep}"
        )
    with captured_stderr(target.with_suffix(".log")):
        status = llama_cpp.llama_model_quantize(
            str(source).encode(), str(target).encode(), ctypes.byref(params)
        )
    if status != 0:
        raise SystemExit(f"llama.cpp could not quantize {source} (status {status})")


def log_probs(path: Path, tokens: int = 400) -> np.ndarray:
    from llama_cpp import Llama

    model = Llama(str(path), n_ctx=1024, logits_all=True, verbose=False)
    ids = model.tokenize(TEXT.encode())[:tokens]
    model.eval(ids)
    scores = np.array(model.scores[: len(ids)], dtype=np.float64)
    model.close()
    return log_softmax(scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    args = parser.parse_args()
    found = sorted((ROOT / "runs" / "bench-quant" / f"{args.model}-gguf-f16").glob("*.gguf"))
    if not found:
        raise SystemExit(f"no F16 GGUF of {args.model}: run benchmarks/quantize_speed.py first")
    reference = log_probs(found[0])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (ftype, keep) in VARIANTS.items():
            target = Path(tmp) / f"{ftype}-{keep}.gguf"
            quantize(found[0], target, ftype, keep)
            ours = log_probs(target)
            kl = float((np.exp(reference) * (reference - ours)).sum(-1).mean())
            top1 = float((reference.argmax(-1) == ours.argmax(-1)).mean())
            rows.append({"variant": name, "mean_kl": kl, "top1_agreement": top1,
                         "size_mb": target.stat().st_size / 1e6})  # fmt: skip
            print(f"{name:32s} KL {kl:.4f}  top-1 {top1:.1%}  {rows[-1]['size_mb']:.0f} MB")
    record = {"benchmark": "gguf_output_type_probe", "model": args.model,
              "reference": str(found[0].relative_to(ROOT)), "tokens": len(reference),
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join(["python", *sys.argv]), "rows": rows}  # fmt: skip
    out = HERE / "results" / f"gguf_output_type_{args.model}.json"
    out.write_text(json.dumps(record, indent=2))
    print(f"saved {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
