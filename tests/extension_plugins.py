"""Throwaway entries of every registry, one small plugin each, for ``tests/test_extension_files.py``.

``PLUGINS[registry]`` maps each file the entry needs (its path in the tree, the placeholders of
docs/architecture.md's table filled in) to the file's source. Nothing here is imported by biastransfer.
"""

from __future__ import annotations

KIND, DATASET, INTERVENTION, BASE, ARCH = "ext_tally", "ext_cells", "ext_every_other", "ext_fresh", "ext_linear"
MODE, FORMAT, OBJECTIVE, BACKEND, TRIGGER = "ext_head_first", "ext_flat", "ext_mean_loss", "ext_serial", "ext_dot"

EXPERIMENT = f'''
"""A kind with the required core only: the share of positives of a task among the test rows."""
from typing import Any, ClassVar

from biastransfer.experiments.base import EXPERIMENTS, Column, Experiment, Results, RunInputs, RunOutput
from biastransfer.experiments.grid import Seeds, TasksAndBases
from biastransfer.render.markup import Page, Section
from biastransfer.spec import RunSpec, StudyDefaults


class TallyBlock(TasksAndBases, Seeds):
    """tasks x bases x seeds."""


@EXPERIMENTS.register("{KIND}")
class Tally(Experiment):
    title = "Tally"
    Block = TallyBlock
    columns = (Column("positive_share", "float", "metric", "share of positives among 32 test rows"),
               Column("parameters", "int", "outcome", "parameters of the untrained model"))
    example: ClassVar[dict[str, Any]] = {{"tasks": ["t0"], "seeds": [0, 1]}}

    def expand(self, name: str, block: TallyBlock, study: StudyDefaults) -> list[RunSpec]:
        return [study.spec(experiment=name, kind=self.registry_name, base=base, task=task, seed=seed, n_train=32,
                           thresholded=False)
                for base in block.base_names() for task in block.tasks for seed in block.seeds]

    def run(self, spec: RunSpec, inputs: RunInputs) -> RunOutput:
        table = inputs.dataset.table
        rows = table.split_indices("test")[spec.seed::2][:32]
        y = table.frame[spec.task].to_numpy()[rows]
        model = inputs.new_model(spec)
        parameters = sum(p.numel() for p in model.parameters())
        return RunOutput({{"positive_share": float(y.mean()), "parameters": parameters}})

    def sections(self, results: Results, page: Page) -> list[Section]:
        return [Section("tally", self.title, page.table(self.aggregate(results.runs)))]
'''

DATASET_SOURCE = f'''
"""Two attributes over a 4 x 4 grey image whose brightness is the task."""
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from biastransfer.data.registry import DATASETS, DatasetSource
from biastransfer.data.table import ExampleTable, ImageStore, LoadedDataset


@DATASETS.register("{DATASET}")
class Cells(DatasetSource):
    description = "400 generated images: t0 bright or dark, a a coin"
    needs_root = False

    def load(self, *, root: Path | None, cache_dir: Path, resolution: int, **params: Any) -> LoadedDataset:
        rng = np.random.default_rng(0)
        n = 400
        t0, a = rng.integers(0, 2, n).astype(np.int8), rng.integers(0, 2, n).astype(np.int8)
        split = np.array(["pretrain", "train", "val", "test"])[np.arange(n) % 4]
        images = np.repeat((60 + 120 * t0).astype(np.uint8)[:, None, None, None], resolution, 1)
        images = np.repeat(np.repeat(images, resolution, 2), 3, 3)
        table = ExampleTable(frame=pd.DataFrame({{"split": split, "a": a, "t0": t0}}), sensitive="a",
                             group_names=("a=0", "a=1"), tasks=("t0",))
        store = ImageStore(np.ascontiguousarray(images))
        return LoadedDataset("{DATASET}", table, store, f"{DATASET}-{{store.fingerprint()}}")
'''

INTERVENTION_SOURCE = f'''
"""Every other example of the pool, at the pool's own level."""
from typing import ClassVar

import numpy as np

from biastransfer.interventions.base import INTERVENTIONS, Intervention, Pool, Selection


@INTERVENTIONS.register("{INTERVENTION}")
class EveryOther(Intervention):
    description: ClassVar[str] = "every other example of the pool"
    columns: ClassVar[tuple[str, ...]] = ("y",)
    takes_level: ClassVar[bool] = False

    def select(self, pool: Pool, *, level: float | None, n: int | None, rng: np.random.Generator) -> Selection:
        (y,) = pool.binary("y")
        indices = np.arange(0, len(y), 2)[: n or None]
        return Selection(indices, None, float(y[indices].mean()))
'''

BASE_SOURCE = f'''
"""A random base whose head starts at zero."""
import torch

from biastransfer.models.architectures import Classifier, build_model
from biastransfer.models.bases import BASES, Base, BaseContext


@BASES.register("{BASE}")
class Fresh(Base):
    description = "random initialisation, head at zero"
    per_run = True

    def build(self, ctx: BaseContext) -> Classifier:
        model = build_model(ctx.arch, num_outputs=1, in_channels=ctx.in_channels)
        with torch.no_grad():
            for p in model.head.parameters():
                p.zero_()
        return model
'''

ARCH_SOURCE = f'''
"""A linear backbone: the mean colour of the image."""
import torch
from torch import nn

from biastransfer.models.architectures import ARCHITECTURES


class MeanColour(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


@ARCHITECTURES.register("{ARCH}")
def _linear(in_channels: int) -> tuple[nn.Module, int]:
    return MeanColour(), in_channels


_linear.checkpoint_format = "torchvision"
'''

MODE_SOURCE = f'''
"""Half the epochs on the head, then everything."""
from biastransfer.models.transfer import FREEZE_BACKBONE, TRANSFER_MODES, Phase, TransferMode


@TRANSFER_MODES.register("{MODE}")
class HeadFirst(TransferMode):
    description = "head for half the epochs, then every layer"
    frozen_rank = 2

    def phases(self) -> list[Phase]:
        return [Phase("head", 0.5, freeze=FREEZE_BACKBONE), Phase("all", 0.5)]
'''

FORMAT_SOURCE = f'''
"""Backbone keys under ``encoder.``; the projector dropped."""
from typing import ClassVar

from biastransfer.models.checkpoints.formats import CHECKPOINT_FORMATS, CheckpointFormat


@CHECKPOINT_FORMATS.register("{FORMAT}")
class Flat(CheckpointFormat):
    description = "encoder.* backbone, projector.* dropped"
    layout = "encoder.conv1.*, encoder.layer1-4.*, projector.*"
    prefix: ClassVar[str] = "encoder."
    drop_prefixes: ClassVar[tuple[str, ...]] = ("projector.",)
'''

OBJECTIVE_SOURCE = f'''
"""The unweighted mean loss (intervention weights ignored)."""
from typing import ClassVar

from biastransfer.train.engine import LossHook, Split, WeightedLoss
from biastransfer.train.objectives import OBJECTIVES, TrainingObjective


class MeanLoss(WeightedLoss):
    def loss(self, logits, targets, weights, groups):
        return super().loss(logits, targets, None, groups)


@OBJECTIVES.register("{OBJECTIVE}")
class Mean(TrainingObjective):
    """loss = mean_i l_i, whatever the weights."""

    description: ClassVar[str] = "the unweighted mean loss"
    needs_groups: ClassVar[bool] = False

    def start(self, train: Split, val: Split | None) -> LossHook:
        return MeanLoss()
'''

BACKEND_SOURCE = f'''
"""Every job in this process, in order (what ``inprocess`` does, in a dozen lines)."""
from collections.abc import Iterator
from typing import Any

from biastransfer.backends.base import BACKENDS, Backend, Job, Outcome
from biastransfer.backends.jobs import execute_job
from biastransfer.backends.workspace import Workspace


@BACKENDS.register("{BACKEND}")
class Serial(Backend):
    description = "one job after the other, here"

    def run(self, jobs: list[Job]) -> Iterator[tuple[Job, Outcome]]:
        workspace, products = Workspace(self.resources), {{}}
        for job in jobs:
            outcome = execute_job(job, {{k: products[k] for k in job.needs if k in products}}, workspace)
            products[job.key] = outcome.product
            yield job, outcome
'''

TRIGGER_SOURCE = f'''
"""One white pixel at the top left."""
import numpy as np
import torch

from biastransfer.triggers.base import TRIGGERS, Placement, Trigger


@TRIGGERS.register("{TRIGGER}")
class Dot(Trigger):
    description = "one white pixel at the top left"
    seed: int = 0

    def _apply(self, images: torch.Tensor, rows: np.ndarray) -> tuple[torch.Tensor, Placement]:
        out = images.clone()
        out[:, :, 0, 0] = 255
        n = len(rows)
        return out, Placement(np.zeros(n, np.int64), np.zeros(n, np.int64), 1, 1)
'''

PLUGINS: dict[str, dict[str, str]] = {
    "EXPERIMENTS": {f"experiments/{KIND}.py": EXPERIMENT},
    "DATASETS": {f"data/adapters/{DATASET}.py": DATASET_SOURCE},
    "INTERVENTIONS": {f"interventions/{INTERVENTION}.py": INTERVENTION_SOURCE},
    "BASES": {"models/bases.py": BASE_SOURCE},
    "ARCHITECTURES": {"models/architectures.py": ARCH_SOURCE},
    "TRANSFER_MODES": {"models/transfer.py": MODE_SOURCE},
    "CHECKPOINT_FORMATS": {"models/checkpoints/formats.py": FORMAT_SOURCE},
    "OBJECTIVES": {"train/objectives.py": OBJECTIVE_SOURCE},
    "BACKENDS": {f"backends/{BACKEND}.py": BACKEND_SOURCE},
    "TRIGGERS": {"triggers/kinds.py": TRIGGER_SOURCE},
}
"""registry → {path of a file the entry needs: its source}."""

NAMES = {"EXPERIMENTS": KIND, "DATASETS": DATASET, "INTERVENTIONS": INTERVENTION, "BASES": BASE, "ARCHITECTURES": ARCH,
         "TRANSFER_MODES": MODE, "CHECKPOINT_FORMATS": FORMAT, "OBJECTIVES": OBJECTIVE, "BACKENDS": BACKEND,
         "TRIGGERS": TRIGGER}
"""registry → the name of its throwaway entry (what the table's ``<kind>``/``<name>`` stands for)."""
