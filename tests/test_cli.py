"""`kedro bias test`: batch, --json, --file, interactive (through stdin) and error paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tiny_checkpoints as tc
from click.testing import CliRunner
from conftest import PROJECT_ROOT, make_project_copy

from edu_bias_pipeline.cli import DEFAULT_CASES, cli


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    return tc.get_checkpoints(tmp_path_factory)


def invoke(*args, input=None):
    return CliRunner().invoke(cli, ["bias", "test", *map(str, args)], input=input)


def test_batch_mode_runs_the_old_scripts_default_cases(ck):
    result = invoke(ck.full, "--max-new-tokens", "4")
    assert result.exit_code == 0, result.output
    for i, case in enumerate(DEFAULT_CASES, start=1):
        assert f"[{i}] {case}" in result.stdout
    assert result.stdout.count("answer      :") == 4
    assert result.stdout.count("bias score  :") == 4
    assert "full model" in result.stdout


def test_test_cases_as_json(ck):
    cases = ["女生学不好物理。", "农村学生同样可以考上好大学。"]
    result = invoke(ck.lora, "--json", "--max-new-tokens", "3", "--dtype", "float64", "--test-cases", *cases)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["is_adapter"] is True and doc["beta"] == tc.BETA
    assert [r["statement"] for r in doc["results"]] == cases
    policy, reference = tc.float64_models(ck, "lora")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ck.base)
    for r in doc["results"]:
        assert isinstance(r["answer"], str)
        want = tc.BETA * (
            tc.plain_logp_float64(policy, tok, None, r["statement"])
            - tc.plain_logp_float64(reference, tok, None, r["statement"])
        )
        assert r["implicit_reward"] == pytest.approx(want, abs=1e-5)
        assert r["bias_score"] == -r["implicit_reward"]
        assert r["verdict"] == ("leans biased" if r["bias_score"] > 0 else "leans unbiased")


def test_cases_from_jsonl_and_txt_files(ck, tmp_path):
    jsonl = tmp_path / "cases.jsonl"
    lines = [
        '"女生学不好物理。"',
        "",
        '{"statement": "老师关心每个学生。"}',
        '{"text": "穷人家的孩子天生笨。"}',
    ]
    jsonl.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = invoke(ck.full, "--file", jsonl, "--json", "--max-new-tokens", "0")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    want = ["女生学不好物理。", "老师关心每个学生。", "穷人家的孩子天生笨。"]
    assert [r["statement"] for r in doc["results"]] == want
    assert all(r["answer"] is None for r in doc["results"])

    txt = tmp_path / "cases.txt"
    txt.write_text("女生学不好物理。\n\n  老师关心每个学生。  \n", encoding="utf-8")
    result = invoke(ck.full, "--file", txt, "--max-new-tokens", "0")
    assert result.exit_code == 0, result.output
    assert "[2] 老师关心每个学生。" in result.stdout and "[3]" not in result.stdout


def test_interactive_mode_through_stdin(ck):
    result = invoke(
        ck.full,
        "--interactive",
        "--max-new-tokens",
        "2",
        input="女生学不好物理。\n\n老师关心每个学生。\nquit\n不应被处理\n",
    )
    assert result.exit_code == 0, result.output
    assert "[1] 女生学不好物理。" in result.stdout and "[2] 老师关心每个学生。" in result.stdout
    assert "不应被处理" not in result.stdout
    assert "empty statement" in result.stderr

    # End of input (Ctrl-D) leaves cleanly too; --json gives one JSON object per line on stdout.
    result = invoke(ck.full, "-i", "--json", "--max-new-tokens", "0", input="女生学不好物理。\nQ\n")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["statement"] for r in lines] == ["女生学不好物理。"]
    result = invoke(ck.full, "-i", "--max-new-tokens", "0", input="老师关心每个学生。\n")
    assert result.exit_code == 0 and "[1] 老师关心每个学生。" in result.stdout


def test_error_paths(ck, tmp_path):
    result = invoke(tmp_path / "no_such_checkpoint")
    assert result.exit_code != 0 and "not found" in result.output and "no_such_checkpoint" in result.output

    # Training's record of a run is the file a user reaches for: the message names the model it points to.
    record = tmp_path / "trained_model.json"
    record.write_text(json.dumps({"model_dir": "data/06_models/dpo_model/final"}), encoding="utf-8")
    result = invoke(record)
    assert result.exit_code != 0 and "training's record of a run" in result.output
    assert "'data/06_models/dpo_model/final'" in result.output
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"\x80\x00")
    result = invoke(weights)
    assert result.exit_code != 0 and "is a file: pass a model or LoRA adapter directory" in result.output

    result = invoke(ck.full, "--test-cases", "女生学不好物理。", "  ")
    assert result.exit_code != 0 and "test case 2 is empty" in result.output

    latin1 = tmp_path / "cases.txt"
    latin1.write_bytes("caf\u00e9 statement\n".encode("latin-1"))
    result = invoke(ck.full, "--file", latin1)
    assert result.exit_code != 0 and "not valid UTF-8" in result.output and "cases.txt" in result.output

    bad = tmp_path / "bad.jsonl"
    bad.write_text('"ok"\n{"statement": ""}\n', encoding="utf-8")
    result = invoke(ck.full, "--file", bad)
    assert result.exit_code != 0 and "line 2" in result.output

    result = invoke(ck.full, "--interactive", "--test-cases", "x")
    assert result.exit_code != 0 and "--interactive" in result.output

    result = invoke(ck.full, "--test-cases")
    assert result.exit_code != 0 and "at least one statement" in result.output


@pytest.mark.parametrize("entry", ["kedro", "module"])
def test_real_entry_points(ck, tmp_path, entry):
    """`kedro bias test` is discovered by Kedro's CLI in a project; `python -m` works anywhere."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}
    if entry == "kedro":
        cwd = make_project_copy(tmp_path / "project")
        cmd = [str(bin_dir / "kedro"), "bias", "test", str(ck.full), "--interactive", "--max-new-tokens", "0"]
        proc = subprocess.run(
            cmd,
            cwd=cwd,
            input="女生学不好物理。\nexit\n",
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
        )
        assert proc.returncode == 0, proc.stderr
        assert "[1] 女生学不好物理。" in proc.stdout
    else:
        cmd = [sys.executable, "-m", "edu_bias_pipeline.cli", "test", str(tmp_path / "missing")]
        proc = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, env=env, timeout=180)
        assert proc.returncode != 0 and "not found" in proc.stderr
