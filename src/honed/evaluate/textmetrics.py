"""Text tasks: exact match, BLEU and chrF (sacrebleu), ROUGE-L, perplexity, and their eval.

BLEU and chrF are corpus-level sacrebleu scores with its default settings (13a tokenizer,
so they compare with published numbers); ROUGE-L is the mean F-measure of rouge-score with
stemming. All are on a 0-100 scale. Perplexity is exp(mean negative log-likelihood) of the
reference tokens given the prompt, computed with transformers on a loaded torch model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from honed.config import EvalConfig
from honed.data.format import detect_fields
from honed.data.sources import BadRows, load_splits
from honed.errors import HonedError
from honed.evaluate.report import read_samples
from honed.evaluate.run import GenStats, chats, choose_prompting, generate_in_batches, params_for
from honed.evaluate.tasks import choose_template, template_prefix, text_stops
from honed.runtime.base import Backend

TEXT_METRICS = ("exact_match", "bleu", "chrf", "rouge_l")


def normalize(text: str) -> str:
    """Whitespace-normalized text (exact match ignores spacing differences only)."""
    return " ".join(text.split())


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Share of predictions equal to their reference after whitespace normalization, 0-100."""
    if not predictions:
        return 0.0
    hits = sum(normalize(p) == normalize(r) for p, r in zip(predictions, references, strict=True))
    return 100.0 * hits / len(predictions)


def bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (sacrebleu defaults)."""
    import sacrebleu

    return sacrebleu.corpus_bleu(list(predictions), [list(references)]).score


def chrf(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF (sacrebleu defaults)."""
    import sacrebleu

    return sacrebleu.corpus_chrf(list(predictions), [list(references)]).score


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F-measure (rouge-score, with stemming), 0-100."""
    from rouge_score import rouge_scorer

    if not predictions:
        return 0.0
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    pairs = zip(predictions, references, strict=True)
    scores = [scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in pairs]
    return 100.0 * sum(scores) / len(scores)


def text_scores(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """All four generation metrics, keyed by name, rounded to 4 decimals."""
    if len(predictions) != len(references):
        raise ValueError("honed: predictions and references differ in number")
    metrics = {"exact_match": exact_match, "bleu": bleu, "chrf": chrf, "rouge_l": rouge_l}
    return {name: round(fn(predictions, references), 4) for name, fn in metrics.items()}


def _causal_nll(model: Any, tokenizer: Any, prompt: str, answer: str, max_tokens: int) -> tuple:
    """Summed NLL and token count of `answer` after `prompt` for a causal LM."""
    import torch

    n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) if prompt else 0
    ids = tokenizer(prompt + answer, add_special_tokens=False, return_tensors="pt")["input_ids"]
    if not prompt and tokenizer.bos_token_id is not None:  # score the first token too
        ids = torch.cat([torch.tensor([[tokenizer.bos_token_id]]), ids], dim=1)
        n_prompt = 1
    cut = max(0, ids.shape[1] - max_tokens)  # keep the end: the answer is what is scored
    ids = ids[:, cut:]
    labels = ids.clone()
    labels[:, : max(1, n_prompt - cut)] = -100
    n = int((labels[:, 1:] != -100).sum())
    if n == 0:
        return 0.0, 0
    loss = model(input_ids=ids.to(model.device), labels=labels.to(model.device)).loss
    return float(loss) * n, n


def _seq2seq_nll(model: Any, tokenizer: Any, prompt: str, answer: str, max_tokens: int) -> tuple:
    """Summed NLL and token count of `answer` as the decoder target for `prompt`."""
    enc = tokenizer(prompt, return_tensors="pt", truncation=True, max_length=max_tokens)
    labels = tokenizer(answer, return_tensors="pt", truncation=True, max_length=max_tokens)
    labels = labels["input_ids"].to(model.device)
    loss = model(**enc.to(model.device), labels=labels).loss
    return float(loss) * labels.shape[1], int(labels.shape[1])


def perplexity(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[tuple[str, str]],
    *,
    is_seq2seq: bool,
    max_tokens: int = 1024,
) -> dict[str, float]:
    """Perplexity of the references (second of each pair) given their prompts."""
    import torch

    score = _seq2seq_nll if is_seq2seq else _causal_nll
    total, tokens = 0.0, 0
    model.eval()
    with torch.no_grad():
        for prompt, answer in pairs:
            nll, n = score(model, tokenizer, prompt, answer, max_tokens)
            total, tokens = total + nll, tokens + n
    if tokens == 0:
        raise ValueError("honed: no reference tokens to score")
    loss = total / tokens
    return {"perplexity": round(math.exp(loss), 4), "loss": round(loss, 6), "tokens": tokens}


# The text-task eval (`honed eval --task text:SPEC`): load rows, generate, score.


@dataclass(frozen=True)
class TextExample:
    """One text-to-text row: the prompt and the reference answer ('' prompt: raw text)."""

    prompt: str
    reference: str


@dataclass
class TextPlan:
    """A checked text eval: the rows to generate for, or the samples to re-score."""

    split: str
    examples: list[TextExample]
    rescore: list[dict[str, Any]] | None = None
    needs_backend: bool = True


def _fields(row: dict[str, Any], cfg: EvalConfig) -> tuple[str, str]:
    try:
        return detect_fields(row, cfg.prompt_field, cfg.completion_field)
    except HonedError:
        raw = cfg.metric == "perplexity" and not (cfg.prompt_field or cfg.completion_field)
        if raw and "text" in row:
            return "", "text"
        raise


def text_examples(spec: str, cfg: EvalConfig) -> tuple[str, list[TextExample]]:
    """The evaluation split of a data spec (test, else validation, else train) and its rows."""
    if not spec:
        raise HonedError("task 'text:' needs data: text:FILE.jsonl, text:canard or text:quotes")
    bad = BadRows(cfg.skip_bad_rows)
    splits = load_splits(spec, bad)
    split = next((name for name in ("test", "validation", "train") if splits.get(name)), None)
    if split is None:
        raise HonedError(f"data '{spec}' has no rows: check the file")
    prompt_key, answer_key = _fields(splits[split][0], cfg)
    examples = []
    for row in splits[split]:
        prompt, answer = row.get(prompt_key, "") if prompt_key else "", row.get(answer_key)
        if not isinstance(prompt, str) or not isinstance(answer, str) or not answer.strip():
            bad.report(str(row.get("_where", spec)), f"'{answer_key}' is not a non-empty string")
            continue
        examples.append(TextExample(prompt, answer))
    if not examples:
        raise HonedError(f"data '{spec}': every row was malformed ({bad.first}): fix the data")
    return split, examples[: cfg.limit]


def _rescore_rows(cfg: EvalConfig) -> list[dict[str, Any]]:
    assert cfg.samples is not None
    rows = []
    for where, row in read_samples(cfg.samples):
        if not all(isinstance(row.get(key), str) for key in ("completion", "reference")):
            raise HonedError(
                f"{where}: a text-task sample needs 'completion' and 'reference' strings: "
                "pass a samples.jsonl written by honed eval --task text:..."
            )
        rows.append(row)
    return rows


def plan_text(cfg: EvalConfig) -> TextPlan:
    """Check the data (or the samples to re-score) before anything is loaded or written."""
    if cfg.samples is not None:
        return TextPlan("", [], _rescore_rows(cfg), needs_backend=False)
    split, examples = text_examples(cfg.task.removeprefix("text:"), cfg)
    return TextPlan(split, examples, needs_backend=cfg.metric != "perplexity")


def base_prefix(cfg: EvalConfig, is_seq2seq: bool) -> str:
    """The base-prompting template: the artifact's or the named one, else what finetune uses."""
    chosen = choose_template(cfg.template, cfg.model)
    return chosen or template_prefix("plain" if is_seq2seq else "task")


def generate_text(cfg: EvalConfig, plan: TextPlan, backend: Backend) -> tuple[str, list, dict]:
    """Prompting, prediction rows and generation stats for every example."""
    prompting = choose_prompting(cfg.prompting, chats(backend))
    if prompting == "chat":
        chat = [[{"role": "user", "content": ex.prompt}] for ex in plan.examples]
        prompts, stops = [backend.chat_prompt(messages) for messages in chat], ()
    else:
        prefix = base_prefix(cfg, bool(getattr(backend, "is_seq2seq", False)))
        prompts = [prefix.format(prompt=ex.prompt) for ex in plan.examples]
        stops = text_stops(prefix)
    stats, rows = GenStats(), []
    params = params_for(cfg, 0, stops)
    label = f"{cfg.task}: generating"
    for i, text, _ in generate_in_batches(backend, prompts, params, cfg.batch_size, stats, label):
        reference = plan.examples[i].reference
        rows.append(
            {"id": i, "prompt": prompts[i], "completion": text.strip(), "reference": reference}
        )
    return prompting, rows, stats.as_dict()


def perplexity_eval(cfg: EvalConfig, plan: TextPlan) -> dict[str, Any]:
    """Perplexity of the references with the model loaded by transformers."""
    from honed.models.load import load_model
    from honed.models.resolve import resolve

    loaded = load_model(
        resolve(cfg.model), dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code
    )
    if cfg.device:
        loaded.model.to(cfg.device)
    tok = loaded.tokenizer
    has_chat = bool(getattr(tok, "chat_template", None)) and not loaded.is_seq2seq
    prompting = choose_prompting(cfg.prompting, has_chat)
    prefix = base_prefix(cfg, loaded.is_seq2seq)

    def render(prompt: str) -> str:
        if not prompt:
            return ""
        if prompting == "chat":
            messages = [{"role": "user", "content": prompt}]
            return tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return prefix.format(prompt=prompt)

    pairs = [(render(ex.prompt), ex.reference) for ex in plan.examples]
    scores = perplexity(
        loaded.model, tok, pairs, is_seq2seq=loaded.is_seq2seq, max_tokens=cfg.n_ctx or 1024
    )
    return {"prompting": prompting, "backend": "transformers", "metrics": scores}


def run_text(cfg: EvalConfig, plan: TextPlan, backend: Backend | None) -> tuple[dict, list]:
    """Generate (or re-score) and compute the text metrics, or compute perplexity."""
    summary: dict[str, Any] = {"split": plan.split or None, "metric": cfg.metric}
    if cfg.metric == "perplexity" and plan.rescore is None:
        return {**summary, "rows": len(plan.examples), **perplexity_eval(cfg, plan)}, []
    if plan.rescore is not None:
        rows, prompting, generation = plan.rescore, None, {}
    else:
        assert backend is not None
        prompting, rows, generation = generate_text(cfg, plan, backend)
    predictions = [row["completion"] for row in rows]
    references = [row["reference"] for row in rows]
    for row in rows:
        row["exact"] = normalize(row["completion"]) == normalize(row["reference"])
    metrics = text_scores(predictions, references)
    summary |= {"prompting": prompting, "rows": len(rows), "metrics": metrics, **generation}
    return summary, rows
