"""Multi-node training: the stage's own launch lines, two "machines" on one host (CPU, gloo).

Machine 0 runs `kedro run --pipelines training` (its training node writes the run spec and starts the launcher
of machine rank 0); machine 1 runs `python -m edu_bias_pipeline.dpo.launch RUN.json --machine-rank 1`,
which waits for that spec and starts the same line with machine rank 1. Both rendezvous on 127.0.0.1. These
are the commands scripts/slurm/train_multinode.sbatch gives each node (checked below with a faked Slurm).
The DeepSpeed launcher reaches other machines over pdsh/ssh; here, as under Slurm, each machine starts its
own runner (`--no_ssh --node_rank N`), which runs the per-node `deepspeed.launcher.launch --world_info=…
--node_rank=…` line pdsh would have run there.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, make_project_copy

from edu_bias_pipeline.dpo.config import TrainingConfigError, resolve_training_config
from edu_bias_pipeline.dpo.hardware import Hardware
from edu_bias_pipeline.dpo.launch import node_plan, plan_launch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipelines" / "training"))
from training_fixtures import free_port, write_splits  # noqa: E402

SBATCH = PROJECT_ROOT / "scripts" / "slurm" / "train_multinode.sbatch"
CPU = Hardware()
GPU8 = Hardware(True, 8, True)
HOSTS = ["127.0.0.1", "localhost"]  # two names for this host: a hostfile may not repeat one
OUTPUT_DIR = "data/06_models/dpo_model"
# A few optimizer steps, no evaluation or checkpoints: the launch is under test, not the training.
TINY = (
    "training.max_steps=2,training.logging_steps=1,training.per_device_train_batch_size=4,"
    "training.eval_strategy=no,training.save_strategy=no,training.eval_per_bias_type=false"
)
MODES = {
    "accelerate": "training.mode=accelerate",
    "deepspeed": "training.mode=deepspeed,training.deepspeed.launcher=deepspeed",
    # ZeRO through `accelerate launch --use_deepspeed`: torchrun on each machine (no_ssh)
    "deepspeed_accelerate": "training.mode=deepspeed,training.deepspeed.launcher=accelerate",
}


def machine_commands(hostfile: str, port: str, train_params: str, wait_s: int = 600) -> list[list[str]]:
    """What each of two machines runs (the sbatch script's lines for nodes 0 and 1): bin/kedro on machine 0,
    the interpreter it picks ($EDU_BIAS_PYTHON) on machine 1."""
    launch = (
        f"training.launch.num_machines=2,training.launch.machine_rank=0,training.launch.num_processes=2,"
        f"training.launch.main_process_ip={HOSTS[0]},training.launch.main_process_port={port},"
        f"training.launch.hostfile={hostfile},training.launch.no_ssh=true"
    )
    return [
        [
            "bin/kedro",
            "run",
            "--pipelines",
            "training",
            "--params",
            f"{launch},{train_params}",
        ],
        [sys.executable, "-m", "edu_bias_pipeline.dpo.launch", f"{OUTPUT_DIR}/.run/run.json"]
        + ["--machine-rank", "1", "--wait", str(wait_s)],
    ]


# ------------------------------------------------------------------------------------ launch lines


def _config(**launch):
    params = {"mode": "accelerate", "launch": {"num_machines": 2, "num_processes": 2, **launch}}
    return resolve_training_config(params, {}, check_model=False)


def test_two_cpu_machines_get_ranked_processes_not_two_lone_trainers():
    """`--cpu` would start each machine's process without a rank (accelerate leaves multi-CPU ranks to
    mpirun): two models trained alone, both written to final/. One process per machine, ranked by torchrun."""
    plans = [
        plan_launch(_config(main_process_ip="10.0.0.1", machine_rank=rank), "run.json", CPU)
        for rank in (0, 1)
    ]
    for rank, plan in enumerate(plans):
        argv = " ".join(plan.argv)
        assert "--cpu" not in plan.argv and "--multi_gpu" in plan.argv
        assert "--num_processes 2 --num_machines 2" in argv and f"--machine_rank {rank}" in argv
        assert "--main_process_ip 10.0.0.1" in argv and plan.num_processes == 2 and plan.use_cpu
        assert not any("single CPU process" in w for w in plan.warnings)
    differ = [(a, b) for a, b in zip(plans[0].argv, plans[1].argv, strict=True) if a != b]
    assert differ == [("0", "1")]


def test_deepspeed_no_ssh_starts_this_machines_runner_only():
    params = {
        "mode": "deepspeed",
        "deepspeed": {"launcher": "deepspeed"},
        "launch": {"num_machines": 2, "num_processes": 16, "hostfile": "hosts", "no_ssh": True},
    }
    config = resolve_training_config({**params, "launch": {**params["launch"], "machine_rank": 1}}, {})
    argv = " ".join(plan_launch(config, "run.json", GPU8, deepspeed_config_path="ds.json").argv)
    assert (
        "deepspeed.launcher.runner" in argv
        and "--hostfile hosts --num_nodes 2 --no_ssh --node_rank 1" in argv
    )
    # through accelerate: torchrun on each machine instead of pdsh from rank 0
    params["deepspeed"]["launcher"] = "accelerate"
    params["launch"]["main_process_ip"] = "10.0.0.1"
    argv = plan_launch(resolve_training_config(params, {}), "run.json", GPU8, deepspeed_config_path="d").argv
    assert argv[argv.index("--deepspeed_multinode_launcher") + 1] == "standard"
    assert "--deepspeed_hostfile" not in argv


@pytest.mark.parametrize(
    ("launch", "match"),
    [
        ({"machine_rank": 2, "main_process_ip": "h"}, r"launch\.machine_rank=2 but num_machines=2"),
        ({}, r"launch\.main_process_ip: num_machines=2 needs the address"),
    ],
)
def test_multi_node_settings_that_cannot_rendezvous_are_refused(launch, match):
    with pytest.raises(TrainingConfigError, match=match):
        plan_launch(_config(**launch), "run.json", CPU)


def test_deepspeed_launcher_across_machines_needs_a_hostfile():
    params = {"mode": "deepspeed", "deepspeed": {"launcher": "deepspeed"}, "launch": {"num_machines": 2}}
    with pytest.raises(
        TrainingConfigError, match=r"launch\.hostfile: the deepspeed launcher needs a hostfile"
    ):
        plan_launch(resolve_training_config(params, {}), "r.json", CPU, deepspeed_config_path="d")


def test_gpu_processes_must_divide_among_the_machines():
    with pytest.raises(TrainingConfigError, match=r"num_processes=3 is not a multiple of num_machines=2"):
        plan_launch(_config(num_processes=3, main_process_ip="h"), "run.json", GPU8)


def test_device_cpu_hides_the_gpus_of_every_machine_not_only_machine_0():
    """Machine 0's node plans with `hardware_for(config)`; machines 1.. (node_plan) on a GPU host must too,
    or they would start GPU processes while machine 0 starts CPU ones."""
    params = {"mode": "accelerate", "device": "cpu", "launch": {"num_machines": 2, "num_processes": 2}}
    config = resolve_training_config({**params, "launch": {**params["launch"], "main_process_ip": "h0"}}, {})
    spec = {"config": config.model_dump(mode="json"), "runtime": {}}
    machine0 = plan_launch(config, "run.json", CPU)
    machine1 = node_plan(spec, "run.json", 1, GPU8)
    assert machine1.use_cpu and machine1.num_processes == machine0.num_processes == 2
    assert "--multi_gpu" in machine1.argv and machine1.env.get("CUDA_VISIBLE_DEVICES") == ""
    differ = [(a, b) for a, b in zip(machine0.argv, machine1.argv, strict=True) if a != b]
    assert differ == [("0", "1")]


def test_a_machine_waiting_for_the_run_spec_says_who_writes_it(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "edu_bias_pipeline.dpo.launch", str(tmp_path / "run.json")]
        + ["--machine-rank", "1", "--wait", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert (
        "run.json: it does not exist after 1 s" in proc.stderr
        and "kedro run --pipelines training" in proc.stderr
    )


# ---------------------------------------------------------------------------- two machines, one host


def _run_machines(project: Path, commands: list[list[str]], timeout_s: int = 900) -> list[str]:
    """Start every machine's command at once (own process group each); their outputs, once all exited 0."""
    # COLUMNS: Kedro's rich log lines unwrapped, so a launch line can be found in them
    env = {
        **os.environ,
        "OUTPUT_DIR": OUTPUT_DIR,
        "CUDA_VISIBLE_DEVICES": "",
        "COLUMNS": "100000",
        "EDU_BIAS_PYTHON": sys.executable,
    }
    logs = [project / f"machine{rank}.log" for rank in range(len(commands))]
    procs = []
    try:
        for cmd, log in zip(commands, logs, strict=True):
            with log.open("w") as fh:
                procs.append(
                    subprocess.Popen(
                        cmd, cwd=project, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
                    )
                )
        deadline = time.monotonic() + timeout_s
        # until all exited, one failed (the others would wait at the rendezvous), or the time is up
        while any(p.poll() is None for p in procs) and not any(p.poll() for p in procs):
            if time.monotonic() > deadline:
                pytest.fail(f"machines still running after {timeout_s} s; logs in {project}")
            time.sleep(1)
    finally:
        for proc in procs:  # a timeout or a failed machine: nothing stays at the rendezvous
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    outputs = [log.read_text(errors="replace") for log in logs]
    for rank, (proc, out) in enumerate(zip(procs, outputs, strict=True)):
        assert proc.wait() == 0, f"machine {rank} exited {proc.returncode}:\n{out[-5000:]}"
    return outputs


def _weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """One process trained on both machines' batches (per-device batch x 2): data parallelism over two ranks
    takes the same steps."""
    project = make_project_copy(tmp_path_factory.mktemp("single") / "project")
    write_splits(project, limit=48)
    params = TINY.replace("per_device_train_batch_size=4", "per_device_train_batch_size=8")
    cmd = [sys.executable, "-m", "kedro", "run", "--pipelines", "training", "--params", params]
    _run_machines(project, [cmd])
    return _weights(project / OUTPUT_DIR / "final")


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_two_machines_train_one_model_written_once_by_rank_0(tmp_path, reference, mode):
    project = make_project_copy(tmp_path / "project")
    (project / "bin").mkdir()
    shutil.copy2(PROJECT_ROOT / "bin/kedro", project / "bin/kedro")
    write_splits(project, limit=48)
    hostfile = ".slurm/hostfile-test"
    (project / ".slurm").mkdir()
    (project / hostfile).write_text("".join(f"{h} slots=1\n" for h in HOSTS), encoding="utf-8")
    commands = machine_commands(hostfile, free_port(), f"{MODES[mode]},{TINY}")
    # the launcher of machine 1, which its command execs: the line of machine 0 but for the machine rank
    machine0, machine1 = _run_machines(project, commands)
    out = project / OUTPUT_DIR
    spec = json.loads((out / ".run/run.json").read_text(encoding="utf-8"))
    lines = [node_plan(spec, f"{OUTPUT_DIR}/.run/run.json", rank, CPU).argv for rank in (0, 1)]
    assert shlex.join(lines[0][1:]) in machine0 and shlex.join(lines[1][1:]) in machine1
    assert [(a, b) for a, b in zip(*lines, strict=True) if a != b] == [("0", "1")]
    if mode == "deepspeed":
        # DeepSpeed's runner turned the hostfile into the per-node line pdsh would have run on each machine
        world = base64.urlsafe_b64encode(json.dumps({h: [0] for h in HOSTS}).encode()).decode()
        for rank, log in enumerate((machine0, machine1)):
            assert f"deepspeed.launcher.launch --world_info={world} --master_addr=127.0.0.1" in log
            assert f"--node_rank={rank}" in log

    zero = "DeepSpeed ZeRO stage 2 engine"
    assert all((zero in log) == mode.startswith("deepspeed") for log in (machine0, machine1))
    # one world of two ranks, one per machine
    assert "training process 0/2" in machine0 and "training process 1/2" in machine1
    assert "training process 1/2" not in machine0 and "training process 0/2" not in machine1
    log = (out / "train.log").read_text(encoding="utf-8")
    assert "training process 0/2" in log and "training process 1/2" not in log
    metrics = json.loads((project / "data/08_reporting/training_metrics.json").read_text(encoding="utf-8"))
    assert metrics["run"]["num_processes"] == 2 and metrics["run"]["global_step"] == 2

    # final/ written once, by rank 0
    assert "final model written to" in machine0 and "final model written to" not in machine1
    assert sorted(p.name for p in out.iterdir() if "final" in p.name) == ["final"]
    trained_model = json.loads((project / "data/06_models/dpo_model/trained_model.json").read_text("utf-8"))
    assert Path(trained_model["model_dir"]) == Path(OUTPUT_DIR) / "final"

    # the model two ranks trained is the one a single process takes from both ranks' batches
    weights, ref = _weights(out / "final"), reference
    base = _weights(project / "data/06_models/base_model")
    # DeepSpeed's save writes the tied output embedding out as well
    assert set(weights) - set(ref) <= {"lm_head.weight"} and set(ref) <= set(weights)
    if "lm_head.weight" in set(weights) - set(ref):
        assert weights["lm_head.weight"].equal(weights["model.embed_tokens.weight"])
    for name in ref:
        moved = (ref[name] - base[name]).abs().max().item()
        assert (weights[name] - ref[name]).abs().max().item() <= 1e-3 * max(moved, 1e-6), name
    assert any((weights[n] - base[n]).abs().max().item() > 0 for n in ref)


# --------------------------------------------------------------------------------------------- Slurm


def test_the_sbatch_script_gives_each_node_the_lines_the_multinode_test_runs(tmp_path):
    """Slurm faked: `scontrol show hostnames` and `srun` stubs on PATH. The batch step's srun starts the
    script once per node (SLURM_NODEID 0, 1); with EDU_BIAS_DRY_RUN each node prints its command."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(
        '#!/bin/sh\n[ "$1 $2 $3" = "show hostnames node[1-2]" ] || exit 9\nprintf "%s\\n" '
        + " ".join(HOSTS)
        + "\n"
    )
    # srun: options up to the command, then the command once per node, each node's output in its own file
    (bin_dir / "srun").write_text(
        "#!/bin/bash\n"
        'echo "$@" > "$STUB_DIR/srun.args"\n'
        "while [[ $1 == -* ]]; do shift; done\n"
        "for n in $(seq 0 $((SLURM_NNODES - 1))); do\n"
        '  SLURM_NODEID=$n "$@" > "$STUB_DIR/node$n" || exit\n'
        "done\n"
    )
    for stub in ("scontrol", "srun"):
        (bin_dir / stub).chmod(0o755)
    project = make_project_copy(tmp_path / "project")
    (project / "scripts/slurm").mkdir(parents=True)
    (project / "scripts/slurm/train_multinode.sbatch").write_text(SBATCH.read_text(encoding="utf-8"))
    out = project / OUTPUT_DIR / ".run"
    out.mkdir(parents=True)
    (out / "run.json").write_text("{}")  # a previous run's spec
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "STUB_DIR": str(tmp_path),
        "SLURM_JOB_ID": "4711",
        "SLURM_JOB_NODELIST": "node[1-2]",
        "SLURM_NNODES": "2",
        "EDU_BIAS_PYTHON": sys.executable,
        "MAIN_PROCESS_PORT": "29611",
        "TRAIN_PARAMS": f"{MODES['deepspeed']},{TINY}",
        "RUN_SPEC_WAIT_S": "600",
        "EDU_BIAS_DRY_RUN": "1",
    }
    env.pop("OUTPUT_DIR", None)
    env.pop("SLURM_GPUS_ON_NODE", None)
    proc = subprocess.run(
        ["bash", str(SBATCH)], cwd=project, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    got = [(tmp_path / f"node{n}").read_text().rstrip("\0").split("\0") for n in (0, 1)]
    hostfile = ".slurm/hostfile-4711"
    assert got == machine_commands(hostfile, "29611", f"{MODES['deepspeed']},{TINY}")
    assert (project / hostfile).read_text() == "127.0.0.1 slots=1\nlocalhost slots=1\n"
    assert "--nodes=2 --ntasks-per-node=1 --kill-on-bad-exit=1" in (tmp_path / "srun.args").read_text()
    assert not (out / "run.json").exists()  # node 1 can only start from this job's spec
