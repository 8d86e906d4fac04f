"""``biastransfer recommend``: the finetuning set that minimises a gap with AUC kept (docs/recommend.md).

It builds a study of one recommend block from its options (or takes a study file with such blocks), runs it into
``--out`` (the driver's adaptive loop, at most ``--budget`` new runs; runs already in the folder are reused),
writes the report, the recommended finetuning set as a CSV, and prints the answer.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Annotated

import typer
import yaml

from biastransfer.cli.console import err, out
from biastransfer.cli.console import fail as _fail
from biastransfer.cli.errors import folder_errors

BLOCK = "recommendation"


def parse_base(text: str, arch: str) -> tuple[str, dict]:
    """A base named as ``KIND`` or ``KIND:REST`` (each base kind's shorthand: ``scratch``, ``trained:ATTRIBUTE``,
    ``checkpoint:FORMAT:PATH`` …) → (its name in the study, its base section; a checkpoint holds a backbone of
    ``arch``)."""
    from biastransfer import plugins  # noqa: F401  (every base kind registered)
    from biastransfer.models.bases import parse_shorthand, shorthand_forms

    found = parse_shorthand(text, arch)
    if found is None:
        _fail(f"--base {text!r}: give {', '.join(shorthand_forms())} (formats: 'biastransfer bases list')")
    return found


def parse_interventions(text: str) -> list:
    """``collect,reweight[start_level=0.8]`` → ``["collect", {"name": "reweight", "start_level": 0.8}]``."""
    items, depth, word = [], 0, ""
    for ch in text + ",":
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            items.append(word.strip())
            word = ""
        else:
            word += ch
    out: list = []
    for item in filter(None, items):
        name, _, rest = item.partition("[")
        if not rest:
            out.append(name)
            continue
        options = {}
        for pair in rest.rstrip("]").split(","):
            key, eq, value = pair.partition("=")
            if not eq:
                _fail(f"--interventions {item!r}: options are KEY=VALUE, e.g. reweight[start_level=0.8]")
            options[key.strip()] = yaml.safe_load(value)
        out.append({"name": name.strip(), **options})
    return out


def _number_or_name(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def build_study(*, dataset: str, root: Path | None, params: list[str], resolution: int, task: str,
                sensitive: str | None, bases: list[str], arch: str, n: int, n_val: int | None, test: str,
                tolerance: float, gap: str, budget: int | None, seeds: int, min_seeds: int, interventions: str,
                strategy: str = "screen", screen_seeds: int = 1,
                levels: str, epochs: int | None, lr: str | None, kind: str, test_size: int | None = None) -> dict:
    """The study mapping of one recommend block (validated later, like a study file)."""
    from biastransfer import plugins  # noqa: F401
    from biastransfer.data.registry import DATASETS

    dparams = {}
    for item in params:
        key, eq, value = item.partition("=")
        if not eq:
            _fail(f"--param {item!r}: give KEY=VALUE")
        dparams[key] = yaml.safe_load(value)
    if sensitive is not None and dataset in DATASETS and "sensitive" in getattr(DATASETS.get(dataset), "PARAMS", {}):
        dparams["sensitive"] = sensitive  # else checked against the dataset's once loaded (_check_sensitive)
    named = dict(parse_base(b, arch) for b in bases)
    train: dict = {}
    if epochs is not None:
        train["max_epochs"] = epochs
    if lr is not None:
        train["lr"] = [float(x) for x in lr.split(",")]
    block = {"name": BLOCK, "kind": kind, "task": task, "bases": list(named),
             "interventions": parse_interventions(interventions),
             "levels": [float(x) for x in levels.split(",") if x.strip()], "n_train": n, "test": _number_or_name(test),
             "seeds": list(range(seeds)),
             "options": {"auc_tolerance": tolerance, "gap": gap, "budget": budget, "strategy": strategy,
                         "screen_seeds": screen_seeds, "min_seeds": min_seeds}}
    if n_val is not None:
        block["n_val"] = n_val
    study = {"name": f"recommend-{task}", "dataset": {"name": dataset, "resolution": resolution, "params": dparams},
             "model": {"arch": arch}, "bases": named, "train": train, "experiments": [block]}
    if root is not None:
        study["dataset"]["root"] = str(root)
    if test_size is not None:
        study["evaluation"] = {"test_size": test_size}
    return study


def write_set(path: Path, table, rows, weights) -> int:
    """The finetuning set as a CSV: the example's id (the dataset's ``id`` column, e.g. a manifest's path, else
    the row), its row in the dataset, the task label ``y``, the sensitive attribute ``a`` and its ``weight``."""
    frame = table.frame
    ids = frame["id"].to_numpy() if "id" in frame.columns else range(len(frame))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "row", "y", "a", "weight"])
        for i, row in enumerate(rows):
            w = 1.0 if weights is None else float(weights[i])
            writer.writerow([ids[row], int(row), int(table.y[row]), int(table.a[row]), f"{w:.6g}"])
    return len(rows)


def recommend(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder (results.db, report.html, the CSV).")],
    task: Annotated[str | None, typer.Option(help="The target attribute (a binary column of the dataset).")] = None,
    n: Annotated[int | None, typer.Option("--n", min=4, help="The finetuning set size N.")] = None,
    dataset: Annotated[str, typer.Option(help="A registered dataset ('biastransfer datasets list'); "
                                              "'manifest' for your own images.")] = "synthetic",
    root: Annotated[Path | None, typer.Option(help="Folder of a local dataset (e.g. the manifest's).")] = None,
    param: Annotated[list[str] | None, typer.Option(help="A dataset parameter KEY=VALUE (repeatable), e.g. "
                                                         "csv=manifest.csv.")] = None,
    sensitive: Annotated[str | None, typer.Option(help="The sensitive attribute's column (datasets that take "
                                                       "one, e.g. manifest; else checked against the dataset's).")]
    = None,
    base: Annotated[list[str] | None, typer.Option(help="A base (repeatable): scratch, trained:ATTRIBUTE or "
                                                        "checkpoint:FORMAT:PATH.")] = None,
    arch: Annotated[str, typer.Option(help="Architecture ('biastransfer list').")] = "small_resnet",
    resolution: Annotated[int, typer.Option(help="Image size the data is decoded to.")] = 32,
    test: Annotated[str, typer.Option(help="The test level, or 'natural' (the whole test pool).")] = "natural",
    tolerance: Annotated[float, typer.Option(help="ε: AUC may be at most this much below the test-equal "
                                                  "set's (paired 95% lower bound).")] = 0.01,
    gap: Annotated[str, typer.Option(help="The gap to minimise: fpr_diff, tpr_diff or eo_diff.")] = "fpr_diff",
    budget: Annotated[int | None, typer.Option(min=1, help="Most new runs (runs already in --out are free).")]
    = None,
    seeds: Annotated[int, typer.Option(min=2, help="The most seeds a setting gets.")] = 8,
    strategy: Annotated[str, typer.Option(help="screen: every setting on --screen-seeds, then the best confirmed "
                                               "on all seeds, one at a time (accepted or dropped early when a "
                                               "stage decides); screen_full: the same, accepted only on all seeds "
                                               "and dropped early only when inferior; halving: successive halving "
                                               "from --min-seeds.")] = "screen",
    screen_seeds: Annotated[int, typer.Option(min=1, help="Seeds of the screen (--strategy screen or "
                                                        "screen_full; docs/recommend.md).")] = 1,
    min_seeds: Annotated[int, typer.Option(min=2, help="Seeds of the first round (--strategy halving).")] = 3,
    interventions: Annotated[str, typer.Option(help="Interventions searched, comma-separated, each with its "
                                                   "options in brackets: reweight\\[start_level=0.8].")]
    = "collect,subselect,reweight",
    levels: Annotated[str, typer.Option(help="Levels searched, comma-separated.")]
    = "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9",
    n_val: Annotated[int | None, typer.Option(min=4, help="Validation set size (default N).")] = None,
    test_size: Annotated[int | None, typer.Option(min=4, help="Size of the balanced test set when --test is a "
                                                              "level (default 2000).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Most finetuning epochs (default: the study default).")] = None,
    lr: Annotated[str | None, typer.Option(help="Learning rates searched, comma-separated.")] = None,
    study: Annotated[Path | None, typer.Option(help="A study file with recommend blocks, instead of the options "
                                                    "above.")] = None,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Where to write the recommended set (default "
                                                               "OUT/recommended_set.csv).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    cache_dir: Annotated[Path | None, typer.Option(help="Cache folder (default $BIASTRANSFER_CACHE).")] = None,
    workers: Annotated[str, typer.Option(help="'auto' or a number of worker processes.")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Recommend a finetuning set: the intervention setting (collect / subselect / reweight at a level) that
    minimises a group gap while AUC stays within ε of the test-equal set (paired rule), found within --budget new
    runs by screening every setting on one seed and confirming the most promising on all seeds (or by successive
    halving). Writes the report, the set as a CSV and prints the answer."""
    from biastransfer.cli.reporting import write_report
    from biastransfer.experiments.recommend import Recommend

    kind = Recommend.registry_name
    if not (math.isfinite(tolerance) and 0 <= tolerance < 1):  # pydantic would say only "less than 1" for nan
        _fail(f"--tolerance must be a finite number in [0, 1) (the AUC a setting may lose, e.g. 0.01), got "
              f"{tolerance}")
    if study is None:
        if task is None or n is None:
            _fail("give --task and --n (or --study FILE with a recommend block)")
        data = build_study(dataset=dataset, root=root, params=param or [], resolution=resolution, task=task,
                           sensitive=sensitive, bases=base or ["scratch"], arch=arch, n=n, n_val=n_val, test=test,
                           tolerance=tolerance, gap=gap, budget=budget, seeds=seeds, min_seeds=min_seeds,
                           strategy=strategy, screen_seeds=screen_seeds,
                           interventions=interventions, levels=levels, epochs=epochs, lr=lr, kind=kind,
                           test_size=test_size)
        check = None if "sensitive" in data["dataset"]["params"] else sensitive
    else:
        data, check = yaml.safe_load(study.read_text()), None
    with folder_errors(out_dir):  # a read-only or full disk, a name too long, a damaged store: named
        _run(data, out_dir, device=device, cache_dir=cache_dir, quiet=quiet, workers=workers, check=check)
        write_report(out_dir, quiet)
        _answer(out_dir, kind, csv_path, cache_dir)


def _run(data: dict, out_dir: Path, *, device: str, cache_dir: Path | None, quiet: bool, workers: str,
         check: str | None) -> None:
    from biastransfer.backends import JobFailedError
    from biastransfer.config import ConfigError
    from biastransfer.data.table import DataError
    from biastransfer.device import resolve_device
    from biastransfer.driver import run_study
    from biastransfer.plan import parse_study
    from biastransfer.registry import UnknownNameError

    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    try:
        study = parse_study(data, "the recommendation", text)
        if check is not None:
            _check_sensitive(study, check, cache_dir)
        summary = run_study(study, out_dir, device=resolve_device(device), cache_dir=cache_dir, quiet=quiet,
                            workers=workers)
    except ConfigError as exc:
        _fail(str(exc))
    except (DataError, JobFailedError, UnknownNameError, ValueError, FileNotFoundError) as exc:
        _fail(str(exc), 1)
    if not quiet:
        err.print(f"{summary.ran} new runs, {summary.reused} reused from {out_dir}, {summary.trainings} trainings")


def _workspace(cache_dir: Path | None):
    import torch

    from biastransfer.backends import Resources
    from biastransfer.backends.workspace import Workspace
    from biastransfer.paths import default_cache_dir

    return Workspace(Resources(device=torch.device("cpu"), cache_dir=Path(cache_dir or default_cache_dir()),
                               out_dir=Path(".")))


def _check_sensitive(study, sensitive: str, cache_dir: Path | None) -> None:
    table = _workspace(cache_dir).dataset(study.expand()[0]).table
    if table.sensitive != sensitive:
        _fail(f"--sensitive {sensitive}: dataset {study.config.dataset.name!r} has the sensitive attribute "
              f"{table.sensitive!r} (it takes no other); its columns: {', '.join(table.attributes)}")


class _Columns:
    def __init__(self, table, task: str) -> None:
        self.frame, self.y, self.a = table.frame, table.column(task), table.column(table.sensitive)


def _answer(out_dir: Path, kind: str, csv_path: Path | None, cache_dir: Path | None) -> None:
    from biastransfer.cli.export import open_store
    from biastransfer.experiments.base import EXPERIMENTS, Results
    from biastransfer.spec import RunSpec
    from biastransfer.store.current import split_runs
    from biastransfer.store.export import runs_frame

    store = open_store(out_dir)
    try:
        current, _ = split_runs(store)
        frame = runs_frame(store, [r for r in current if r["spec"]["kind"] == kind])
        found = EXPERIMENTS.get(kind)().answers(Results(frame)) if not frame.empty else {}
        specs = {r["key"]: r["spec"] for r in current}
        for name, answer in found.items():
            out.print(answer.text, highlight=False)
            key = next(iter(answer.run_keys.values()), None)
            if key is None:
                continue
            artifacts = store.artifacts(key)
            spec = RunSpec.from_dict(specs[key])
            table = _workspace(cache_dir).dataset(spec).table
            target = csv_path or out_dir / (f"recommended_set_{name}.csv" if len(found) > 1 else "recommended_set.csv")
            count = write_set(target, _Columns(table, spec.task), artifacts["train_rows"],
                              artifacts.get("train_weights"))
            out.print(f"Recommended set ({answer.recommended.label}, seed {spec.seed}'s draw, {count} examples): "
                      f"{target}", highlight=False)
    finally:
        store.close()
