"""Finetuning number (paper §4.1, Fig. 3; docs/protocols.md §3): AUC and FPR difference against the number of
finetuning examples N, for the biased base, the control chosen by a declared rule, and scratch.

Grid: bases × tasks × N × seeds, N ∈ {2^4 … 2^13, full} by default (``full`` = the whole finetuning pool). Every
set is a uniform random sample of the pool at its natural distribution (the ``natural`` intervention; the paper
draws from CelebA as it is), the test set is the whole natural test pool, and the hyperparameters are searched
once per (base, task, N) on such samples.

**Control choice.** Among the control bases (roles declared in the study or derived from data), the one shown is
the control with the highest mean test AUC at ``N = options.control_at`` (default 1024 = 2^10, as the paper),
per task.

**Agreement.** At each N the biased and the chosen control base are finetuned on the same set at each seed, so
they are compared by the paired difference ``d_s = |FPR diff(biased, s)| − |FPR diff(control, s)|`` with a
Student-t 95% interval over seeds. They *agree* at N when that interval contains 0; the reading reports the
smallest N from which they agree at every larger N of the grid (the paper: about 512 images for Earrings and
4096 for Eyebags), or that they never do.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, ClassVar

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from biastransfer.analysis.aggregate import paired_interval
from biastransfer.analysis.text import fmt, fmt_ci
from biastransfer.data.table import LoadedDataset
from biastransfer.experiments.base import EXPERIMENTS, Column, ExampleData, Results, RunInputs, level_label
from biastransfer.experiments.grid import Seeds, Size, Sizes, TasksAndBases
from biastransfer.experiments.spurious import COLUMNS, FinetuneExperiment, check, correlation_pool, search
from biastransfer.interventions import InfeasibleSelectionError
from biastransfer.render.markup import Page, Section
from biastransfer.render.plots import PALETTE, clip_to_range, gap_label, new_figure, role_order
from biastransfer.spec import RunSpec, StudyDefaults

SAMPLER = "natural"
DEFAULT_SIZES: list[int | str] = [2 ** k for k in range(4, 14)] + ["full"]


class FinetuneNumberOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    control_at: int = Field(1024, ge=4, description="the N at which the control with the highest AUC is chosen")


class FinetuneNumberBlock(TasksAndBases, Sizes, Seeds):
    """bases × tasks × N × seeds, every set a uniform sample of the pool (``full``: all of it)."""

    n_train: list[Size] = Field(default_factory=lambda: list(DEFAULT_SIZES), description="finetuning set sizes")
    options: FinetuneNumberOptions = FinetuneNumberOptions()

    @model_validator(mode="after")
    def _control_at_is_swept(self) -> FinetuneNumberBlock:
        if self.options.control_at not in self.n_train:
            raise ValueError(f"options.control_at {self.options.control_at} must be one of n_train "
                             f"({', '.join(map(str, self.n_train))}): the control is chosen by its AUC there")
        return self


def _abs_fpr(rows: pd.DataFrame) -> pd.Series:
    return rows.groupby("seed")["fpr_diff"].mean().abs()


def compare(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (experiment, task, N): the chosen control, each base's mean AUC and |FPR difference|, and the paired
    difference of |FPR difference| (biased − chosen control) with its interval and whether the two agree."""
    cols = ["experiment", "task", "n_train", "n_label", "biased", "control", "control_at", "biased_abs_fpr",
            "control_abs_fpr", "diff_mean", "diff_low", "diff_high", "n_pairs", "agree"]
    records = []
    for (exp, task), rows in runs.groupby(["experiment", "task"], sort=True):
        biased = sorted(rows.loc[rows["base_role"] == "biased", "base"].unique())
        controls = rows[rows["base_role"] == "control"]
        if not biased or controls.empty:
            continue
        at = int(rows["control_at"].iloc[0])
        at_rows = controls[controls["n_label"] == str(at)]
        if at_rows.empty:
            continue
        chosen = at_rows.groupby("base")["auc"].mean().sort_index().idxmax()
        for (n, label), nrows in rows.groupby(["n_train", "n_label"], sort=True):
            b = _abs_fpr(nrows[nrows["base"] == biased[0]])
            c = _abs_fpr(nrows[nrows["base"] == chosen])
            mean, low, high, k = paired_interval(b, c)
            records.append({"experiment": exp, "task": task, "n_train": n, "n_label": label, "biased": biased[0],
                            "control": chosen, "control_at": at, "biased_abs_fpr": float(b.mean()),
                            "control_abs_fpr": float(c.mean()), "diff_mean": mean, "diff_low": low,
                            "diff_high": high, "n_pairs": k,
                            "agree": bool(k > 1 and not math.isnan(low) and low <= 0 <= high)})
    return pd.DataFrame.from_records(records, columns=cols)


def converged_from(comp: pd.DataFrame) -> Any:
    """The smallest N (label) from which every larger N agrees, or None."""
    start = None
    for _, row in comp.sort_values("n_train").iterrows():
        start = (start or row["n_label"]) if row["agree"] else None
    return start


@EXPERIMENTS.register("finetune_number")
class FinetuneNumber(FinetuneExperiment, ExampleData):
    """AUC and FPR difference against the number of finetuning examples (biased, chosen control, scratch)."""

    title = "Finetuning number: bias and AUC against N"
    description = "N from 16 to the full pool: from which N biased and control bases agree on the FPR difference"
    report_order = 25
    Block = FinetuneNumberBlock
    columns = (*COLUMNS,
               Column("n_label", "str", "setting", "N as written in the study ('full': the whole pool)",
                      get=lambda run: level_label(run["spec"]["n_train"])),
               Column("control_at", "int", "setting", "the N at which the shown control is chosen",
                      get=lambda run: run["spec"]["options"].get("control_at", 1024)))
    example: ClassVar[dict[str, Any]] = {
        "tasks": ["t3"], "bases": ["gendered", "control-t0", "control-t2", "scratch"], "n_train": [16, 64, "full"],
        "seeds": [0, 1, 2], "options": {"control_at": 64}
    }
    example_bases: ClassVar[dict[str, dict[str, Any]]] = {"control-t2": {"kind": "trained", "attribute": "t2"}}

    @classmethod
    def tiny_block(cls, block: dict[str, Any]) -> dict[str, Any]:
        """The default shrink (the first 2 sizes, capped), with the control chosen at the largest number left
        (``options.control_at`` must be one of the sizes)."""
        out = super().tiny_block({**block, "n_train": block.get("n_train", list(DEFAULT_SIZES))})
        numbers = [n for n in out["n_train"] if n != "full"]
        if not numbers:
            out["n_train"] = [32, *out["n_train"]]
            numbers = [32]
        options = block.get("options") if isinstance(block.get("options"), dict) else {}
        out["options"] = {**options, "control_at": max(numbers)}
        return out

    def expand(self, name: str, block: FinetuneNumberBlock, study: StudyDefaults) -> list[RunSpec]:
        options = block.options.model_dump(mode="json", exclude_unset=True)
        return [study.spec(experiment=name, kind=self.registry_name, base=base, task=task, seed=seed,
                           intervention=SAMPLER, level="natural", n_train=n, n_val=block.n_val, test="natural",
                           options=options)
                for base, task, n, seed in itertools.product(block.base_names(), block.tasks, block.n_train,
                                                             block.seeds)]

    def check(self, spec: RunSpec, dataset: LoadedDataset) -> None:
        """Sizes fit their pools (``natural`` would otherwise quietly take the whole pool), and the sets draw."""
        for split, n in (("train", spec.n_train), ("val", spec.n_val or spec.n_train)):
            rows, _ = correlation_pool(dataset, split, spec.task)
            if n != "full" and int(n) > len(rows):
                raise InfeasibleSelectionError(
                    f"{split} set of N={n}: the pool '{split}' has {len(rows)} examples with a known task and "
                    f"sensitive attribute; use a smaller N, or 'full' for the whole pool")
        check(spec, dataset, search=(SAMPLER, {}))

    def hparam_payload(self, spec: RunSpec) -> dict[str, Any]:
        return {**spec.hparam_key(), "search_sampler": SAMPLER}

    def search(self, spec: RunSpec, inputs: RunInputs) -> dict[str, Any]:
        return search(spec, inputs, intervention=SAMPLER)

    def reading(self, results: Results) -> list[str]:
        comp = compare(results.runs)
        lines = []
        for (_exp, task), rows in comp.groupby(["experiment", "task"], sort=True):
            first = rows.iloc[0]
            head = (f"{task}: |FPR difference| of the biased base ({first['biased']}) minus the control with the "
                    f"highest AUC at N={first['control_at']} ({first['control']}), paired by seed")
            start = converged_from(rows)
            parts = [f"N={r['n_label']}: {fmt_ci(r['diff_mean'], r['diff_low'], r['diff_high'])}"
                     for _, r in rows.sort_values("n_train").iterrows()]
            if int(rows["n_pairs"].max()) < 2:
                verdict = "one seed only: no interval, so agreement is not established"
            elif start is not None:
                verdict = f"they agree within the 95% interval from N={start} on"
            else:
                verdict = "they do not agree at the largest N of the grid"
            lines.append(f"{head}: {verdict} ({'; '.join(parts)}).")
        return lines

    def sections(self, results: Results, page: Page) -> list[Section]:
        agg = self.aggregate(results.runs)
        comp = compare(results.runs)
        body = [page.note("Every set is a uniform sample of the finetuning pool ('full': all of it); test: the whole "
                          "natural test pool. Bands: 95% CI over seeds (Student-t). The control shown is the one "
                          "with the highest AUC at the marked N; the grey span is where the biased and control "
                          "|FPR differences| agree (paired 95% interval contains 0) at every larger N.")]
        body += page.figure(_curves(agg, comp), "finetune_number", "Finetuning number curves",
                            "AUC (top) and FPR difference (bottom) against the number of finetuning examples.")
        if not comp.empty:
            body.append(page.heading("Biased vs chosen control, paired by seed"))
            body += page.table(pd.DataFrame({
                "task": comp["task"].astype(str), "N": comp["n_label"].astype(str),
                "control": comp["control"].astype(str),
                "|FPR diff| biased": [fmt(x) for x in comp["biased_abs_fpr"]],
                "|FPR diff| control": [fmt(x) for x in comp["control_abs_fpr"]],
                "difference": [fmt_ci(a, b, c) for a, b, c in zip(comp["diff_mean"], comp["diff_low"],
                                                                  comp["diff_high"], strict=True)],
                "seeds": comp["n_pairs"].astype(int), "agree": ["yes" if v else "no" for v in comp["agree"]]}))
        return [Section("finetune_number", self.title, body)]


def _curves(agg: pd.DataFrame, comp: pd.DataFrame) -> Any:
    """Per task: AUC and FPR difference against N (log axis), one line per base with its CI band."""
    tasks = sorted(agg["task"].astype(str).unique())
    fig = new_figure(max(6.5 * len(tasks), 7.5), 9.0)
    grid = fig.subplots(2, max(len(tasks), 1), squeeze=False, sharex="col")
    shown = set(comp["biased"]) | set(comp["control"]) | set(agg.loc[agg["base_role"] == "scratch", "base"])
    bases = role_order([b for b in agg["base"].astype(str).unique() if b in shown or comp.empty], agg)
    roles = dict(zip(agg["base"].astype(str), agg["base_role"].astype(str), strict=True))
    role_colour = {"biased": "#d62728", "control": "#1f77b4", "scratch": "0.45"}
    colours = {b: role_colour.get(roles.get(b, ""), PALETTE[(k + 2) % len(PALETTE)]) for k, b in enumerate(bases)}
    for j, task in enumerate(tasks):
        rows = agg[agg["task"].astype(str) == task]
        tcomp = comp[comp["task"].astype(str) == task]
        for i, (metric, label) in enumerate((("auc", "Test AUC"), ("fpr_diff", "FPR difference"))):
            ax = grid[i, j]
            for base in bases:
                b = rows[rows["base"].astype(str) == base].sort_values("n_train")
                x = b["n_train"].to_numpy(float)
                m = b[f"{metric}_mean"].to_numpy(float)
                ax.plot(x, m, "-o", ms=4, color=colours[base], label=f"{base} ({roles.get(base, '')})")
                ax.fill_between(x, clip_to_range(b[f"{metric}_low"].to_numpy(float), metric),
                                clip_to_range(b[f"{metric}_high"].to_numpy(float), metric),
                                color=colours[base], alpha=0.15, lw=0)
            ax.set_xscale("log", base=2)
            ax.set_ylabel(label if metric == "auc" else f"{label} ({gap_label(rows)})")
            ax.grid(True, lw=0.4, alpha=0.5)
            start = converged_from(tcomp) if not tcomp.empty else None
            if start is not None:
                lo = float(tcomp.loc[tcomp["n_label"] == start, "n_train"].iloc[0])
                ax.axvspan(lo, float(tcomp["n_train"].max()), color="0.92", zorder=0,
                           label="biased and control agree (paired 95% CI contains 0)")
            if not tcomp.empty:
                at = rows.loc[rows["n_label"] == str(tcomp["control_at"].iloc[0]), "n_train"]
                if not at.empty:
                    ax.axvline(float(at.min()), ls=":", color="0.4", lw=1, label="control chosen here (best AUC)")
            if metric == "fpr_diff":
                ax.axhline(0.0, ls="--", lw=1.0, color="0.45")
                ax.set_xlabel("Finetuning examples N (log scale; the last point is the full pool)")
            else:
                ax.set_title(task, fontsize=11)
        labels = rows.drop_duplicates("n_train").sort_values("n_train")
        grid[1, j].set_xticks(labels["n_train"].to_numpy(float), labels["n_label"].astype(str).tolist(),
                              rotation=45, fontsize=8)
    handles, names = grid[1, 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="outside lower center", ncols=2, fontsize=9)
    fig.suptitle("Finetuning number: AUC and FPR difference against N", fontsize=13)
    return fig
