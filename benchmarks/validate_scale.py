"""Scale benchmark of the data_validation stage: N synthetic pairs through the stage's node functions.

    .venv/bin/python benchmarks/validate_scale.py --n 100000
    .venv/bin/python benchmarks/validate_scale.py --n 1000000 --kedro   # also the real `kedro run`

Prints seconds per phase, rows/s and peak RSS. The synthetic file is ~1% dirty (broken JSON, duplicates,
near-duplicates, empty texts) so the quarantine path is exercised too.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf" / "base"

GROUPS = [
    "女生",
    "男生",
    "农村学生",
    "外地考生",
    "少数民族学生",
    "残障学生",
    "年长学员",
    "贫困生",
    "二本毕业生",
    "留学生",
    "胖学生",
    "信教学生",
    "单亲家庭的孩子",
    "专科生",
    "艺术生",
    "体育生",
]
SUBJECTS = [
    "数学",
    "物理",
    "化学",
    "历史",
    "地理",
    "生物",
    "编程",
    "音乐",
    "美术",
    "英语",
    "政治",
    "经济学",
    "医学",
    "法学",
    "机器人",
    "天文",
]
PLACES = ["课堂", "考试", "招生", "面试", "实验室", "竞赛", "奖学金评选", "班干部选举", "课题组", "实习招聘"]
FAIR = [
    "的表现取决于努力与支持",
    "同样能取得优秀成绩",
    "应当获得平等的机会",
    "的能力与身份无关",
    "值得老师同样的关注",
]
BIASED = ["天生学不好", "不配参加", "只会拖后腿", "不适合从事", "注定比别人差"]


def read_conf(name: str) -> dict:
    """A file of conf/base as written (the stage's own parameters and catalog entries)."""
    return yaml.safe_load((CONF / name).read_text(encoding="utf-8"))


def synth_lines(n: int, bias_types: list[str], seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    lines: list[bytes] = []
    for i in range(n):
        r = rng.random()
        if r < 0.002:
            lines.append(b'{"chosen": "broken')
            continue
        if r < 0.006 and lines:
            lines.append(lines[rng.randrange(len(lines))])  # exact duplicate
            continue
        g, s, p = rng.choice(GROUPS), rng.choice(SUBJECTS), rng.choice(PLACES)
        tag = f"{i:x}"  # keeps texts distinct, as real pairs are
        chosen = f"在{p}中，{g}学{s}{rng.choice(FAIR)}，编号{tag}。"
        rejected = f"在{p}中，{g}{rng.choice(BIASED)}{s}，编号{tag}！"
        if r < 0.008:
            chosen = " "
        meta = {"bias_type": rng.choice(bias_types), "source": "synthetic", "license": "CC0"}
        lines.append(
            json.dumps({"chosen": chosen, "rejected": rejected, "meta": meta}, ensure_ascii=False).encode()
        )
    return lines


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # ru_maxrss is KiB on Linux


def current_rss_gib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024**3


rss: dict[str, tuple[float, float]] = {}  # phase -> (RSS after it, peak so far), GiB
cpu: dict[str, float] = {}  # phase -> CPU seconds (user + system, all threads) of this process


def cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    """CPU time, which other processes on a shared machine distort far less than wall time."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def run_nodes(path: Path, out_dir: Path) -> dict[str, float]:
    """The stage's node functions and catalog datasets, in pipeline order, timed phase by phase."""
    from kedro.io import AbstractDataset

    from edu_bias_pipeline.pipelines.data_validation import nodes

    conf = read_conf("parameters_data_validation.yml")
    taxonomy = conf["taxonomy"]
    params = dict(conf["data_validation"])
    catalog = read_conf("catalog.yml")
    # the catalog's file names, in out_dir (what `data_validation_locations` gives the nodes in a run)
    locations = {
        "input": str(path),
        **{
            key: str(out_dir / Path(catalog[name]["filepath"]).name)
            for key, name in (
                ("summary", "validation_summary"),
                ("quarantine", "quarantined_pairs"),
                ("data_docs", "data_docs"),
            )
        },
    }

    def dataset(name: str, filepath: Path) -> AbstractDataset:
        """The catalog's entry for `name`, writing to `filepath` instead."""
        return AbstractDataset.from_config(name, dict(catalog[name], filepath=str(filepath)))

    times: dict[str, float] = {}
    rss.clear()
    cpu.clear()

    def timed(name, fn, *args):
        start, cpu_start = time.perf_counter(), cpu_seconds()
        result = fn(*args)
        times[name] = time.perf_counter() - start
        cpu[name] = cpu_seconds() - cpu_start
        rss[name] = (current_rss_gib(), peak_rss_gib())
        return result

    raw = timed("load raw lines", dataset("raw_pairs", path).load)
    ingested, stats = timed("ingest_lines", nodes.ingest_lines, raw)
    del raw
    checked = timed("check_pairs", nodes.check_pairs, ingested, taxonomy, params)
    del ingested
    validated, quarantined, summary = timed(
        "partition_pairs", nodes.partition_pairs, checked, stats, params, locations
    )

    def save() -> None:
        for name, data in (
            ("validated_pairs", validated),
            ("quarantined_pairs", quarantined),
            ("validation_summary", summary),
        ):
            dataset(name, out_dir / Path(catalog[name]["filepath"]).name).save(data)

    timed("save outputs", save)
    report = timed(
        "build_data_docs (GX)", nodes.build_data_docs, checked, taxonomy, params, locations["data_docs"]
    )
    timed("enforce_error_rate", nodes.enforce_error_rate, summary, report)
    logging.getLogger(__name__).info(
        "kept %d, quarantined %d", summary["rows_kept"], summary["rows_quarantined"]
    )
    times["_kept"], times["_quarantined"] = summary["rows_kept"], summary["rows_quarantined"]
    return times


def run_kedro(path: Path) -> float:
    """`kedro run --pipelines data_validation --params raw_pairs_path=...` in a throwaway copy of the
    project (its conf/, empty data layers; the package comes from the editable install)."""
    work = Path(tempfile.mkdtemp(prefix="dv_bench_kedro_"))
    try:
        shutil.copytree(ROOT / "conf", work / "conf", ignore=shutil.ignore_patterns("local"))
        (work / "conf" / "local").mkdir()
        shutil.copy2(ROOT / "pyproject.toml", work / "pyproject.toml")
        (work / "src").mkdir()
        for layer in ("01_raw", "02_intermediate", "08_reporting"):
            (work / "data" / layer).mkdir(parents=True)
        start = time.perf_counter()
        subprocess.run(
            [
                str(Path(sys.executable).parent / "kedro"),
                "run",
                "--pipelines",
                "data_validation",
                "--params",
                f"raw_pairs_path={path}",
            ],
            cwd=work,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return time.perf_counter() - start
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100_000, help="number of synthetic pairs")
    parser.add_argument("--kedro", action="store_true", help="also time the real `kedro run` (subprocess)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--generate", metavar="PATH", help=argparse.SUPPRESS)  # internal: write the file only
    args = parser.parse_args()
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
    logging.basicConfig(level=logging.WARNING)

    if args.generate:
        bias_types = list(read_conf("parameters_data_validation.yml")["taxonomy"])
        Path(args.generate).write_bytes(b"\n".join(synth_lines(args.n, bias_types)) + b"\n")
        return
    tmp = Path(tempfile.mkdtemp(prefix="dv_bench_"))
    path = tmp / "pairs.jsonl"
    start = time.perf_counter()
    # A separate process writes the file, so the peak RSS below is the stage's alone.
    subprocess.run([sys.executable, __file__, "--n", str(args.n), "--generate", str(path)], check=True)
    size_mib = path.stat().st_size / 1024**2
    print(f"generated {args.n} pairs ({size_mib:.0f} MiB) in {time.perf_counter() - start:.1f} s")
    rss_before = peak_rss_gib()

    times = run_nodes(path, tmp / "out")
    kept, quarantined = times.pop("_kept"), times.pop("_quarantined")
    total = sum(times.values())
    for name, seconds in times.items():
        now, peak = rss[name]
        print(
            f"  {name:<24} {seconds:8.2f} s  (CPU {cpu[name]:6.2f} s)   "
            f"RSS after {now:5.2f} GiB, peak so far {peak:5.2f} GiB"
        )
    print(
        f"stage core: {args.n} rows in {total:.1f} s (CPU {sum(cpu.values()):.1f} s) = "
        f"{args.n / total:,.0f} rows/s; "
        f"kept {kept:,}, quarantined {quarantined:,}; peak RSS {peak_rss_gib():.2f} GiB "
        f"(before the stage {rss_before:.2f} GiB); cpus {os.cpu_count()}"
    )
    if args.kedro:
        child_cpu = cpu_seconds(resource.RUSAGE_CHILDREN)
        seconds = run_kedro(path)
        child_cpu = cpu_seconds(resource.RUSAGE_CHILDREN) - child_cpu
        rate = args.n / seconds
        # Largest RSS among waited-for children: the kedro run unless the file generator was bigger.
        child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
        print(
            f"kedro run --pipelines data_validation: {seconds:.1f} s (CPU {child_cpu:.1f} s) = {rate:,.0f} "
            f"rows/s (subprocess, peak RSS of children {child_peak:.2f} GiB)"
        )
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"kept {tmp}")


if __name__ == "__main__":
    main()
