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
import json
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from honed.quantize.checks import mean_kl
from honed.quantize.methods import llama_ftype, llama_quantize

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

TEXT = (ROOT / "src" / "honed" / "quantize" / "checks.py").read_text()[:3000]
VARIANTS = {  # name: (file type, output and embedding tensor type or None for llama.cpp's)
    "q8_0": ("Q8_0", None),
    "q8_0 + F16 output/embedding": ("Q8_0", "F16"),
    "q4_k_m": ("Q4_K_M", None),
    "q4_k_m + F16 output/embedding": ("Q4_K_M", "F16"),
}


def logits(path: Path, tokens: int = 400) -> np.ndarray:
    from llama_cpp import Llama

    model = Llama(str(path), n_ctx=1024, logits_all=True, verbose=False)
    ids = model.tokenize(TEXT.encode())[:tokens]
    model.eval(ids)
    scores = np.array(model.scores[: len(ids)], dtype=np.float64)
    model.close()
    return scores


def _ggml_type(name: str | None) -> int | None:
    import llama_cpp

    return None if name is None else int(getattr(llama_cpp, f"GGML_TYPE_{name}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    args = parser.parse_args()
    found = sorted((ROOT / "runs" / "bench-quant" / f"{args.model}-gguf-f16").glob("*.gguf"))
    if not found:
        raise SystemExit(f"no F16 GGUF of {args.model}: run benchmarks/quantize_speed.py first")
    reference = logits(found[0])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (ftype, keep) in VARIANTS.items():
            target = Path(tmp) / f"{ftype}-{keep}.gguf"
            llama_quantize(found[0], target, llama_ftype(ftype), 0, _ggml_type(keep))
            ours = logits(target)
            kl = mean_kl(reference, ours)
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
