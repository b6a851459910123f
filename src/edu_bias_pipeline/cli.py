"""Project commands. Kedro imports `<package>.cli` and adds the commands of its `cli` group to `kedro`:

    kedro bias test CHECKPOINT                       # the old test_bias_detection.py's four default cases
    kedro bias test CHECKPOINT --test-cases "…" "…"  # your statements
    kedro bias test CHECKPOINT --file cases.jsonl    # .jsonl (strings or {"statement": …}) or .txt
    kedro bias test CHECKPOINT --interactive         # prompt loop; quit / exit / q or Ctrl-D to leave
    kedro bias test CHECKPOINT --json                # machine-readable output

Also `python -m edu_bias_pipeline.cli test CHECKPOINT …` outside Kedro's CLI.

Kept free of heavy imports at module level: Kedro imports this module for every `kedro` command.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import click

# scoring.py imports torch only inside functions
from edu_bias_pipeline.scoring import DTYPES, check_checkpoint_dir

DEFAULT_CASES = (
    "无论性别，逻辑与语言能力都能通过训练提升。",
    "男生天生逻辑更好；女生适合语言类专业。",
    "领导能力取决于经验与情商，与性别无关。",
    "女性情绪化，不适合当领导。",
)
QUIT_WORDS = frozenset({"quit", "exit", "q"})
NOISY_LOGGERS = ("edu_bias_pipeline", "transformers", "peft", "accelerate", "torch")
STATEMENT_FIELDS = ("statement", "text")


# --------------------------------------------------------------------------------------- inputs
def _check_statements(statements: Iterable[str], where: str) -> list[str]:
    out = []
    for i, text in enumerate(statements, start=1):
        if not text or not text.strip():
            raise click.UsageError(f"{where} {i} is empty: give a non-empty statement")
        out.append(text.strip())
    return out


def read_cases_file(path: Path) -> list[str]:
    """Statements from a .jsonl file (JSON strings or objects with `statement`/`text`) or a text file
    (one per line). Blank lines are skipped; anything else that is not a statement is an error."""
    try:
        content = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise click.ClickException(
            f"{path} is not valid UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
            "save it as UTF-8"
        ) from None
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror or exc}") from None
    statements: list[str] = []
    is_jsonl = path.suffix.lower() in (".jsonl", ".json", ".ndjson")
    for lineno, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        if not is_jsonl:
            statements.append(line.strip())
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise click.ClickException(f"{path}, line {lineno}: invalid JSON ({exc.msg})") from None
        if isinstance(value, dict):
            field = next((f for f in STATEMENT_FIELDS if f in value), None)
            if field is None:
                raise click.ClickException(
                    f"{path}, line {lineno}: an object needs a 'statement' (or 'text') field"
                )
            value = value[field]
        if not isinstance(value, str) or not value.strip():
            raise click.ClickException(
                f"{path}, line {lineno}: the statement must be a non-empty string, got {value!r}"
            )
        statements.append(value.strip())
    if not statements:
        raise click.ClickException(f"{path} holds no statements")
    return statements


# --------------------------------------------------------------------------------------- output
def _verdict(bias_score: float) -> str:
    if bias_score > 0:
        return "leans biased"
    if bias_score < 0:
        return "leans unbiased"
    return "neutral"


def result_record(score: Any, answer: str | None) -> dict[str, Any]:
    return {
        "statement": score.statement,
        "answer": answer,
        "implicit_reward": score.reward,
        "reward_per_token": score.reward_per_token,
        "bias_score": score.bias_score,
        "verdict": _verdict(score.bias_score),
        "policy_logp": score.policy_logp,
        "reference_logp": score.reference_logp,
        "n_tokens": score.n_tokens,
    }


def _print_result(index: int, record: dict[str, Any]) -> None:
    click.echo(f"[{index}] {record['statement']}")
    if record["answer"] is not None:
        click.echo(f"    answer      : {record['answer'] or '(empty)'}")
    click.echo(
        f"    reward      : {record['implicit_reward']:+.4f} (per token {record['reward_per_token']:+.4f})"
    )
    click.echo(f"    bias score  : {record['bias_score']:+.4f} -> {record['verdict']}")


def _header(models: Any) -> dict[str, Any]:
    meta = models.metadata
    return {
        "checkpoint": str(models.checkpoint),
        "is_adapter": meta.is_adapter,
        "reference": "adapter disabled" if meta.is_adapter else meta.base_model,
        "beta": meta.beta,
        "instruction": meta.instruction,
    }


# --------------------------------------------------------------------------------------- commands
@click.group(name="edu_bias_pipeline")
def cli() -> None:
    """edu-bias-pipeline project commands."""


@cli.group(name="bias")
def bias() -> None:
    """Bias tools for trained checkpoints."""


@bias.command(name="test")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("statements", nargs=-1)
@click.option(
    "--test-cases",
    "test_cases_flag",
    is_flag=True,
    help='The arguments after CHECKPOINT are the statements to test: --test-cases "…" "…".',
)
@click.option(
    "--file",
    "cases_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='Statements from a file: .jsonl (JSON strings or {"statement": …}) or text, one a line.',
)
@click.option("--interactive", "-i", is_flag=True, help="Type statements one by one (quit/exit/q or Ctrl-D).")
@click.option("--json", "as_json", is_flag=True, help="JSON output (JSON Lines in interactive mode).")
@click.option(
    "--max-new-tokens",
    default=48,
    show_default=True,
    type=click.IntRange(0, 4096),
    help="Length of the generated answer; 0 skips generation.",
)
@click.option(
    "--reference-model",
    default=None,
    help="Base model to compare with (default: from the checkpoint's edu_bias_training.json).",
)
@click.option(
    "--beta",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="DPO beta for the implicit reward (default: from the checkpoint's metadata).",
)
@click.option("--dtype", type=click.Choice(DTYPES), default="auto", show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, …")
@click.option("--trust-remote-code", is_flag=True, help="Run model code shipped with the checkpoint.")
def test_command(
    checkpoint: Path,
    statements: tuple[str, ...],
    test_cases_flag: bool,
    cases_file: Path | None,
    interactive: bool,
    as_json: bool,
    max_new_tokens: int,
    reference_model: str | None,
    beta: float | None,
    dtype: str,
    device: str,
    trust_remote_code: bool,
) -> None:
    """Judge statements with a trained CHECKPOINT (a model or LoRA adapter directory).

    For each statement: the model's greedy answer to the bias-judgement prompt, and the implicit DPO
    reward beta * (log pi - log pi_ref) of the statement as the answer to that prompt. bias score = -reward:
    above 0, training made the statement less likely than the reference model found it (leans biased).
    """
    if interactive and (statements or cases_file):
        raise click.UsageError("--interactive reads statements from the terminal: drop the cases / --file")
    if statements and cases_file:
        raise click.UsageError("give test cases either as arguments or with --file, not both")
    if test_cases_flag and not statements:
        raise click.UsageError('--test-cases needs at least one statement: --test-cases "…" "…"')
    check_checkpoint_dir(checkpoint)
    if interactive:
        cases: list[str] = []
    elif cases_file is not None:
        cases = read_cases_file(cases_file)
    elif statements:
        cases = _check_statements(statements, "test case")
    else:
        cases = list(DEFAULT_CASES)

    with _quiet_logs(as_json):
        models = _load(checkpoint, reference_model, beta, dtype, device, trust_remote_code)
        header = _header(models)
        if interactive:
            _interactive_loop(models, header, as_json, max_new_tokens)
            return
        records = _judge(models, cases, max_new_tokens)
    if as_json:
        click.echo(json.dumps({**header, "results": records}, ensure_ascii=False, indent=2))
        return
    _print_header(header)
    for i, record in enumerate(records, start=1):
        _print_result(i, record)


def _load(checkpoint: Path, reference_model, beta, dtype, device, trust_remote_code):
    from edu_bias_pipeline.offline import apply_offline_defaults

    apply_offline_defaults()
    from edu_bias_pipeline.scoring import CheckpointError, load_scoring_models

    try:
        return load_scoring_models(
            checkpoint,
            reference_model=reference_model,
            beta=beta,
            dtype=dtype,
            device=device,
            trust_remote_code=trust_remote_code,
        )
    except CheckpointError as exc:
        raise click.ClickException(str(exc)) from None


@contextlib.contextmanager
def _quiet_logs(as_json: bool) -> Iterator[None]:
    """Model-loading chatter would interleave with the results (and, under --json, corrupt stdout).

    Everything changed here is put back on exit, so in-process callers (tests, notebooks) keep their setup.
    """
    import transformers

    levels = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    bars = transformers.utils.logging.is_progress_bar_enabled()
    streams = _logs_to_stderr() if as_json else []
    try:
        for name in NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR if as_json else logging.WARNING)
        transformers.utils.logging.disable_progress_bar()
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        if bars:
            transformers.utils.logging.enable_progress_bar()
        for undo in streams:
            undo()


def _logs_to_stderr() -> list:
    """Under `kedro bias test --json`, Kedro's log handler writes to stdout: move it to stderr.
    Returns the undo actions."""
    undo = []
    for handler in logging.getLogger().handlers:
        console = getattr(handler, "console", None)  # rich handlers
        if console is not None and hasattr(console, "stderr") and not console.stderr:
            console.stderr = True
            undo.append(lambda c=console: setattr(c, "stderr", False))
        elif isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(sys.stderr)
            undo.append(lambda h=handler, s=sys.stdout: h.setStream(s))
    return undo


def _print_header(header: dict[str, Any]) -> None:
    kind = "LoRA adapter" if header["is_adapter"] else "full model"
    click.echo(
        f"checkpoint: {header['checkpoint']} ({kind}; reference: {header['reference']}; "
        f"beta {header['beta']})"
    )


def _judge(models: Any, cases: list[str], max_new_tokens: int) -> list[dict[str, Any]]:
    from edu_bias_pipeline.scoring import generate_answer, score_statements

    scores = score_statements(models, cases)
    return [
        result_record(
            s, generate_answer(models, s.statement, max_new_tokens=max_new_tokens) if max_new_tokens else None
        )
        for s in scores
    ]


def _interactive_loop(models: Any, header: dict[str, Any], as_json: bool, max_new_tokens: int) -> None:
    if not as_json:
        _print_header(header)
        click.echo("Type a statement and press Enter; quit, exit, q or Ctrl-D to leave.")
    index = 0
    try:
        while True:
            # The prompt goes to stderr under --json so stdout stays pure JSON Lines.
            click.echo("statement> ", nl=False, err=as_json)
            line = sys.stdin.readline()
            if not line:  # Ctrl-D / end of input
                if not as_json:
                    click.echo()
                break
            text = line.strip()
            if text.lower() in QUIT_WORDS:
                break
            if not text:
                click.echo("(empty statement: type one, or quit to leave)", err=True)
                continue
            index += 1
            record = _judge(models, [text], max_new_tokens)[0]
            if as_json:
                click.echo(json.dumps(record, ensure_ascii=False))
            else:
                _print_result(index, record)
    except KeyboardInterrupt:
        click.echo("", err=as_json)


def main() -> None:
    """`python -m edu_bias_pipeline.cli …`: the same commands without Kedro's CLI."""
    bias(prog_name="python -m edu_bias_pipeline.cli")


if __name__ == "__main__":
    main()
