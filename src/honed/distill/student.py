"""Where a student comes from: a pre-trained model, a fresh config, or a depth-pruned teacher.

The last two are built here and saved (safetensors, with the teacher's tokenizer) into a
scratch directory that the training stage then loads like any other model.
- `--student-config SPEC`: a config.json path, or `TYPE:key=value,...` with Hugging Face
  config names, e.g. `llama:num_hidden_layers=12,hidden_size=768,num_attention_heads=12,
  intermediate_size=2048` (a ~125M GPT-style model with a 49k vocabulary). The vocabulary
  and special tokens always come from the teacher's tokenizer.
- `--student-from-teacher LAYERS`: keep some of the teacher's decoder layers, either listed
  (`0,3,6,9`) or a count N (N layers evenly spread, first and last included).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from honed.errors import HonedError
from honed.models.load import load_model, load_tokenizer, weights_dir
from honed.models.resolve import resolve

log = logging.getLogger(__name__)


def parse_value(text: str) -> Any:
    """A config value: JSON when it parses (numbers, true, lists), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def config_from_spec(spec: str, tokenizer: Any) -> Any:
    """A transformers config from a config.json path or TYPE:key=value,... ."""
    path = Path(spec)
    if path.is_file():
        values = json.loads(path.read_text())
        model_type = values.pop("model_type", None)
    else:
        model_type, _, rest = spec.partition(":")
        values = {}
        for item in filter(None, rest.split(",")):
            key, sep, value = item.partition("=")
            if not sep:
                raise HonedError(f"bad student config item '{item}': write key=value")
            values[key.strip()] = parse_value(value.strip())
    if not model_type:
        raise HonedError(f"student config '{spec}' names no model type: write TYPE:key=value,...")
    values.update(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    try:
        return AutoConfig.for_model(model_type, **values)
    except (ValueError, TypeError) as exc:
        raise HonedError(f"cannot build a '{model_type}' config from '{spec}': {exc}") from exc


def student_from_config(spec: str, teacher_ref: str, out: Path, seed: int) -> Path:
    """A randomly initialised student (seeded) with the teacher's tokenizer, saved to out."""
    tokenizer = load_tokenizer(tokenizer_dir(teacher_ref))
    config = config_from_spec(spec, tokenizer)
    torch.manual_seed(seed)
    try:
        model = AutoModelForCausalLM.from_config(config)
    except ValueError as exc:
        raise HonedError(f"'{config.model_type}' is not a causal LM type: {exc}") from exc
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def pick_layers(spec: str, total: int) -> list[int]:
    """Layer indices from '0,3,6' or a count N (evenly spread, first and last kept)."""
    spec = spec.strip()
    if "," not in spec:
        try:
            count = int(spec)
        except ValueError:
            raise HonedError(f"bad layers '{spec}': give a count or a list like 0,3,6") from None
        if not 1 <= count <= total:
            raise HonedError(f"the teacher has {total} layers: keep between 1 and {total}")
        if count == 1:
            return [0]
        return sorted({round(i * (total - 1) / (count - 1)) for i in range(count)})
    try:
        layers = sorted({int(x) for x in spec.split(",") if x.strip()})
    except ValueError:
        raise HonedError(f"bad layers '{spec}': list layer numbers like 0,3,6") from None
    if not layers or layers[0] < 0 or layers[-1] >= total:
        raise HonedError(f"layers {spec} are not all between 0 and {total - 1}")
    return layers


def student_from_teacher(spec: str, teacher_ref: str, out: Path, trust_remote_code: bool) -> Path:
    """The teacher with only the chosen decoder layers, saved to out."""
    loaded = load_model(resolve(teacher_ref), dtype="float32", trust_remote_code=trust_remote_code)
    model = loaded.model
    if loaded.is_seq2seq:
        raise HonedError("--student-from-teacher prunes decoder-only teachers; give --student")
    blocks = getattr(getattr(model, "model", None), "layers", None)
    if not isinstance(blocks, torch.nn.ModuleList):
        raise HonedError(
            f"cannot find the decoder layers of a {type(model).__name__}: "
            "use --student or --student-config"
        )
    keep = pick_layers(spec, len(blocks))
    model.model.layers = torch.nn.ModuleList(blocks[i] for i in keep)
    for new_index, block in enumerate(model.model.layers):
        if hasattr(getattr(block, "self_attn", None), "layer_idx"):
            block.self_attn.layer_idx = new_index  # the KV cache is indexed by position
    config = model.config
    config.num_hidden_layers = len(keep)
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = [config.layer_types[i] for i in keep]
    log.info("student keeps teacher layers %s of %d", keep, len(blocks))
    model.save_pretrained(out)
    loaded.tokenizer.save_pretrained(out)
    return out


def tokenizer_dir(ref: str) -> str:
    """Where a model's tokenizer is: an adapter (a fine-tuned teacher or student) keeps its own."""
    source = resolve(ref)
    return source.path if source.kind == "adapter" else weights_dir(source)


def parameter_count(ref: str, trust_remote_code: bool = False) -> int | None:
    """Parameters of a model from its config (no weights loaded); None when unknown."""
    try:
        source = resolve(ref)
        base = source.base or source  # an adapter: its base's config
        config = AutoConfig.from_pretrained(weights_dir(base), trust_remote_code=trust_remote_code)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except Exception:  # a seq2seq model, a config transformers cannot build
        return None
    return sum(p.numel() for p in model.parameters())
