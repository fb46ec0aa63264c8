"""The `honed` command line: one Typer app, one command per stage, no stage logic here.

Each command's options are generated from its pydantic config, so the flags, the YAML recipe
keys and the `key=value` overrides are the same names with the same descriptions.
"""

from __future__ import annotations

import inspect
import logging
import os
import signal
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, Optional

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from honed.config import (
    BenchConfig,
    ChatConfig,
    DistillConfig,
    EvalConfig,
    FinetuneConfig,
    QuantizeConfig,
    ReportConfig,
    ServeConfig,
    build_config,
)
from honed.errors import HonedError, PartialFailure

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="honed: make a small language model good at one job and fast, with numbers to prove it.",
)
err = Console(stderr=True)
out = Console()


def _quiet_libraries() -> None:
    """Keep library chatter out of the user's way; honed reports what matters."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)  # deprecation notes of libraries
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    handler = RichHandler(console=err, show_path=False, show_time=False)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[handler])
    logging.getLogger("honed").setLevel(logging.INFO)


def _config_params(cls: type[BaseModel]) -> list[inspect.Parameter]:
    """One keyword-only CLI option per config field, defaulting to None (= not given)."""
    params = []
    for name, info in cls.model_fields.items():
        flag = "--" + name.replace("_", "-")
        is_bool = info.annotation is bool
        decls = [f"{flag}/--no-{flag[2:]}"] if is_bool else [flag]
        help_text = f"{info.description} [default: {info.default}]"
        option = typer.Option(None, *decls, help=help_text, show_default=False)
        annotation = Optional[bool] if is_bool else Optional[str]  # noqa: UP045 (typer needs it)
        params.append(
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation
            )
        )
    return params


def stage_command(name: str, cls: type[BaseModel], help_text: str) -> Callable:
    """Register a command that builds `cls` from recipe + overrides + flags and runs it."""

    def decorator(run: Callable[[Any], None]) -> Callable:
        def command(
            config: Path | None = None,
            overrides: list[str] | None = None,
            **values: Any,
        ) -> None:
            _quiet_libraries()
            try:
                run(build_config(cls, config, overrides or [], values))
            except HonedError as exc:
                err.print(f"[bold red]honed:[/] {exc}", highlight=False, soft_wrap=True)
                raise typer.Exit(exc.exit_code) from None
            except KeyboardInterrupt:  # typer would exit 130 without a word
                err.print("honed: interrupted")
                raise typer.Exit(130) from None

        base = [
            inspect.Parameter(
                "config",
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                annotation=Optional[Path],  # noqa: UP045
                default=typer.Option(None, "--config", "-c", help="YAML recipe."),
            ),
            inspect.Parameter(
                "overrides",
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                annotation=Optional[list[str]],  # noqa: UP045
                default=typer.Argument(None, help="key=value overrides.", show_default=False),
            ),
        ]
        command.__signature__ = inspect.Signature([*base, *_config_params(cls)])  # type: ignore[attr-defined]
        command.__doc__ = help_text
        app.command(name)(command)
        return run

    return decorator


@stage_command(
    "finetune", FinetuneConfig, "Fine-tune a model (full, LoRA or QLoRA) into an artifact."
)
def run_finetune(cfg: FinetuneConfig) -> None:
    """Run the fine-tune stage and print what it made."""
    from honed.train.finetune import finetune

    run_training(finetune, cfg)


def run_training(stage: Callable[[Any], Any], cfg: Any) -> None:
    """Run a training stage (finetune, distill); Ctrl-C is exit 130 with where to resume."""
    from honed.train.finetune import Interrupted

    try:
        result = stage(cfg)
    except Interrupted as exc:
        err.print(f"[bold yellow]honed:[/] interrupted; {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    if result is not None:
        show_finetune(result.output, result.manifest)


def _eval_span(metrics: dict[str, Any]) -> str:
    """Validation loss before -> after, or why there is none."""
    if "eval_loss_before" not in metrics:
        return "- (no validation rows: --val-fraction or --eval-data)"
    return (
        f"{metrics['eval_loss_before']:.4f} -> {metrics.get('eval_loss_after', float('nan')):.4f}"
    )


def _taken(metrics: dict[str, Any]) -> str:
    """' (CPU time taken: ...)' where training recorded it (Linux)."""
    words = {"cpu_steal": "by the host", "cpu_others": "by other processes"}
    taken = [f"{metrics[key]:.0%} {who}" for key, who in words.items() if key in metrics]
    return f" (CPU time taken: {', '.join(taken)})" if taken else ""


def show_finetune(path: Path, manifest: dict[str, Any]) -> None:
    """A short table of what the run made."""
    metrics = manifest.get("metrics", {})
    table = Table(title=f"honed {manifest.get('stage', 'finetune')}: {path}", show_header=False)
    rows = [
        ("artifact", f"{manifest['kind']} ({manifest['format']})"),
        ("steps", str(metrics.get("steps"))),
        ("eval loss", _eval_span(metrics)),
        ("train time", f"{metrics.get('train_runtime_s')} s{_taken(metrics)}"),
        ("files", ", ".join(sorted(p.name for p in path.iterdir()))),
    ]
    for key, value in rows:
        table.add_row(key, value)
    out.print(table)


def stop_as_on_ctrl_c(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (kill, `timeout`, a job scheduler, `docker stop`) does what Ctrl-C does now:
    a training run checkpoints and stops, an eval keeps its samples for --resume. Where
    Ctrl-C is ignored (a background job of a script), it stops the same way as a first
    Ctrl-C outside training: KeyboardInterrupt."""
    on_ctrl_c = signal.getsignal(signal.SIGINT)
    if callable(on_ctrl_c):
        on_ctrl_c(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


def main() -> None:
    """Console entry point."""
    signal.signal(signal.SIGTERM, stop_as_on_ctrl_c)
    try:
        app()
    except KeyboardInterrupt:
        err.print("honed: interrupted")
        sys.exit(130)


@app.callback()
def root() -> None:
    """honed: make a small language model good at one job and fast, with numbers to prove it."""


@stage_command(
    "eval",
    EvalConfig,
    "Evaluate a model: pass@k on humaneval/mbpp/mbpp-sanitized/code:FILE (sandboxed), text "
    "metrics on text:SPEC.",
)
def run_eval(cfg: EvalConfig) -> None:
    """Run the eval stage and print its headline numbers."""
    from honed.evaluate.run import evaluate

    show_eval(evaluate(cfg))


def show_eval(summary: dict[str, Any]) -> None:
    """A short table of the eval summary."""
    from honed.evaluate.report import fmt_value, headline

    table = Table(title=f"honed eval: {summary['output']}", show_header=False)
    for key, value in headline(summary):
        table.add_row(key, fmt_value(value))
    out.print(table)


@stage_command(
    "quantize",
    QuantizeConfig,
    "Quantize or export a model (int8, int4-weight, nf4, onnx, onnx-int8, gguf-TYPE) into an "
    "artifact checked against its source.",
)
def run_quantize(cfg: QuantizeConfig) -> None:
    """Run the quantize stage and print what it made and how close it stayed."""
    from honed.quantize.stage import quantize

    result = quantize(cfg)
    show_quantize(result.output, result.manifest)


def greedy_line(agreement: dict[str, Any]) -> str:
    """Exact matches, near-tie flips and where each pair first diverged, in one line."""
    line = f"{agreement['exact_match']:.0%} of {agreement['prompts']} prompts exact"
    if "near_ties" in agreement:  # manifests written before the near-tie count lack it
        line += f", {agreement['near_ties']} more differ first at a near-tie"
    return f"{line} (first divergence at token {agreement['first_divergence']})"


def show_quantize(path: Path, manifest: dict[str, Any]) -> None:
    """Size, agreement and KL of the new variant against its source."""
    table = Table(title=f"honed quantize: {path}", show_header=False)
    table.add_row("artifact", f"{manifest['kind']} ({manifest['format']}, {manifest['backend']})")
    checks = manifest.get("checks")
    if checks:
        size = checks["size_bytes"]
        agreement = checks["agreement"]
        table.add_row("size", f"{size['source'] / 1e6:.1f} MB -> {size['export'] / 1e6:.1f} MB")
        table.add_row("greedy agreement", greedy_line(agreement))
        table.add_row("mean next-token KL", f"{checks['kl']['mean_kl']:.5f} nats")
        table.add_row("warnings", "; ".join(checks["warnings"]) or "none")
    out.print(table)


@stage_command(
    "bench",
    BenchConfig,
    "Benchmark models side by side (latency percentiles, TTFT, tokens/s, size, memory, "
    "roofline), each in its own process: honed bench MODEL [MODEL ...].",
)
def run_bench(cfg: BenchConfig) -> None:
    """Run the bench stage and print its table."""
    from honed.bench.run import bench
    from honed.bench.table import contention_warnings

    record = bench(cfg)
    out.print(f"wrote {cfg.output / 'bench.json'} and {cfg.output / 'bench.md'}")
    for warning in contention_warnings(record):
        err.print(f"[bold yellow]honed: warning:[/] {warning}", highlight=False)
    for r in record["results"]:
        if "error" in r:
            err.print(f"[bold red]honed:[/] {r['model']} failed: {r['error']}", highlight=False)
            continue
        out.print(
            f"{r['model']} ({r['backend']}): median latency {r['latency_s']['median']:.3f} s, "
            f"p95 {r['latency_s']['p95']:.3f} s, decode {r['decode_tok_s']['median']:.1f} tok/s",
            highlight=False,
        )
    failed = [r["model"] for r in record["results"] if "error" in r]
    if failed:
        raise PartialFailure(
            f"{len(failed)} of {len(record['results'])} models failed (why: above and in "
            "bench.md); fix them and bench them again, the others' rows are written"
        )


@stage_command(
    "report",
    ReportConfig,
    "Put every variant side by side: artifacts, eval summaries and bench results under "
    "DIR... into report.md and a self-contained report.html.",
)
def run_report(cfg: ReportConfig) -> None:
    """Run the report stage and say where the page is."""
    from honed.report.run import report

    out.print(f"wrote {report(cfg)} and {cfg.output / 'report.md'}")


@stage_command(
    "serve",
    ServeConfig,
    "Serve a model over an OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions, "
    "/v1/models, /health, /metrics): honed serve MODEL.",
)
def run_serve(cfg: ServeConfig) -> None:
    """Serve until Ctrl-C."""
    from honed.serve.run import serve

    serve(cfg, announce=lambda text: out.print(text, highlight=False))


@stage_command(
    "chat",
    ChatConfig,
    "Chat with a model in the terminal, with streaming and the time of every reply: "
    "honed chat MODEL (/help inside lists the commands).",
)
def run_chat(cfg: ChatConfig) -> None:
    """Chat until /quit or Ctrl-D."""
    from honed.serve.chat import chat

    chat(cfg)


@stage_command(
    "distill",
    DistillConfig,
    "Distill a teacher into a smaller student (logits: KD on cached teacher top-k; sequence: "
    "train on the teacher's answers that pass their tests).",
)
def run_distill(cfg: DistillConfig) -> None:
    """Run the distill stage and print what it made."""
    from honed.distill.stage import distill

    run_training(distill, cfg)
