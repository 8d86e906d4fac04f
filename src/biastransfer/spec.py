"""RunSpec: one run, frozen; its key is the hash of one explicit, versioned payload.

A run is a pure function of its RunSpec (DESIGN principle 1), so the key identifies a result in the store: a
study reruns only the keys the store lacks. The payload is the spec's fields as a canonical JSON object, with
one rule that keeps existing results valid when the spec grows:

* **Key version 1** is the layout of biastransfer 0.1: every field of :class:`RunSpec` from ``experiment`` to
  ``options``, with ``train`` holding the study's training settings.
* A field (or nested setting) added later is listed in :data:`ADDED_FIELDS` with its default, and enters the
  payload **only when it differs from that default**. Adding a field with a default therefore changes no key
  of an existing result; setting it to another value gives a new key (tested field by field).
* A change that alters what an existing field means bumps :data:`KEY_VERSION`; from version 2 on the payload
  carries ``key_version``, and a results folder stamped with an older version is refused with a message (see
  :mod:`biastransfer.store.sqlite`).
* A study setting whose meaning changes without changing any stored spec's meaning is split instead: the spec
  keeps the old value and an added field, at a default that means the old behaviour, says which is meant. The
  threshold policy ``val`` is the case (:data:`THRESHOLDS`): its new meaning is ``calibration: "reweighted"`` (a
  new key), its old one ``val-unweighted`` (0.1's key). Stored specs keep their meaning and their keys, so the
  key version stays 1 and 0.1 folders stay usable.

The data's content is part of the key: ``data_fingerprint`` (an added field, so a spec without it keeps its
0.1 key) is the fingerprint of the dataset the run computes on (labels, metadata and pixels), filled in by the
driver once it has loaded the data. A changed dataset (a manifest's labels edited, another generation) gives
new keys and new hyperparameter searches, so its runs are never pooled with, nor reuse the searches of, runs on
the old data. Folders written before the fingerprint was in the key are rewritten once by
:meth:`biastransfer.store.sqlite.ResultStore.upgrade` (each run's fingerprint is in its provenance).

Nothing here imports the rest of the package: plan, plugins and stages all build on it.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

KEY_VERSION = 1
"""The layout of :meth:`RunSpec.key_payload` (see the module docstring)."""

ADDED_FIELDS: dict[tuple[str, ...], Any] = {
    ("train", "compile"): False,          # 0.1, speed issue: torch.compile of the forward pass
    ("train", "precision"): "fp32",       # 0.1, speed issue: bf16 autocast
    ("intervention_options",): {},        # 0.2: typed options of the intervention (e.g. start_level)
    ("calibration",): "unweighted",       # 0.2: threshold 'val' reweighted to the test cells (see THRESHOLDS)
    ("base", "pool"): "pretrain",         # 0.2: the split a trained base trains on (config drops the default)
    ("train", "schedule"): "constant",    # 0.2: cosine learning-rate annealing
    ("data_fingerprint",): None,          # 0.2: the content fingerprint of the run's dataset
    ("objective",): "erm",                # 0.2: the training objective (docs/objectives.md)
    ("objective_options",): {},           # 0.2: its typed options (e.g. GroupDRO's eta)
}
"""Fields added after key version 1 → the default at which they stay out of the payload."""

KEY_OBJECTIVE: str = ADDED_FIELDS[("objective",)]
"""The objective a run without one trains with: its runs keep their 0.1 keys and its searches their payloads, so
the name is fixed here for good, not looked up (spec.py is below every registry). The objective registry marks the
same entry ``baseline`` (``train/objectives.py``; tests/test_capabilities.py checks they agree)."""


THRESHOLDS: dict[str, tuple[str, str]] = {
    "val": ("val", "reweighted"),
    "val-unweighted": ("val", "unweighted"),
}
"""A study's calibrated-on-validation threshold policy → the spec's (``threshold``, ``calibration``).

``val`` meant the unweighted calibration in 0.1 and means the calibration reweighted to the test set's (a, y)
cells since 0.2 (docs/metrics.md). The spec keeps 0.1's ``threshold: "val"`` and says which calibration in the
added field ``calibration``, whose default ``"unweighted"`` (out of the payload) is what a spec written before the
field existed meant. So ``val-unweighted`` gives 0.1's spec and key exactly (a 0.1 results folder stays usable),
the new default ``val`` gives ``calibration: "reweighted"`` and a new key (never pooled with 0.1's), and a stored
0.1 spec reads back as what it computed. ``test`` and fixed numbers keep ``"unweighted"`` (no weights involved).
"""


def spec_threshold(policy: str | float) -> tuple[str | float, str]:
    """A study's threshold policy → the spec's (``threshold``, ``calibration``) (see :data:`THRESHOLDS`)."""
    return THRESHOLDS.get(policy, (policy, "unweighted")) if isinstance(policy, str) else (policy, "unweighted")


def threshold_policy_of(spec: dict[str, Any]) -> str | float:
    """The policy a stored spec (a dict, possibly written before ``calibration`` existed) was computed with:
    ``val``, ``val-unweighted``, ``test`` or the fixed number; the inverse of :func:`spec_threshold`."""
    threshold, calibration = spec.get("threshold", "val"), spec.get("calibration", "unweighted")
    if threshold == "val":
        return "val" if calibration == "reweighted" else "val-unweighted"
    return threshold


def content_key(payload: Any, length: int = 20) -> str:
    """sha256 of the canonical JSON of ``payload`` (sorted keys, no whitespace), first ``length`` hex digits."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def prune_added(payload: dict[str, Any], prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    """A copy of ``payload`` without the :data:`ADDED_FIELDS` (under ``prefix``) that are at their default."""
    out = copy.deepcopy(payload)
    for path, default in ADDED_FIELDS.items():
        if path[: len(prefix)] != prefix:
            continue
        *parents, leaf = path[len(prefix):]
        node: Any = out
        for name in parents:
            node = node.get(name) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node and node[leaf] == default:
            del node[leaf]
    return out


Level = float | str
"""A correlation level or share in [0, 1], or ``"natural"`` (the pool's own)."""

Size = int | str
"""A set size, or ``"full"`` (the whole pool)."""


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a run's numbers. A run is a pure function of its RunSpec."""

    experiment: str                   # the block's name in the study file
    kind: str                         # the registered experiment kind
    dataset: dict[str, Any]           # DatasetConfig as a dict
    arch: str
    base_name: str                    # the study's name of the base (it seeds the initialisation of scratch)
    base: dict[str, Any]              # {"kind": ..., **options}
    task: str
    seed: int
    intervention: str = "collect"
    level: Level = "natural"          # a float in [0, 1] or "natural"
    n_train: Size = 512               # or "full"
    n_val: Size | None = None         # None: as n_train
    test: Level = "natural"
    test_size: int = 2000
    threshold: str | float = "val"
    train: dict[str, Any] = field(default_factory=dict)        # TrainConfig as a dict (grid included)
    base_training: dict[str, Any] = field(default_factory=dict)
    transfer: str = "full"
    transfer_options: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)      # the experiment kind's options
    intervention_options: dict[str, Any] = field(default_factory=dict)
    calibration: str = "unweighted"   # with threshold "val": "reweighted" (the default of 0.2) or "unweighted"
    data_fingerprint: str | None = None  # the dataset's content fingerprint (the driver fills it in)
    objective: str = KEY_OBJECTIVE    # the training objective (train/objectives.py): erm, group_dro, dfr …
    objective_options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"run spec has unknown field(s) {', '.join(unknown)} (written by a newer biastransfer?)")
        return cls(**data)

    def replace(self, **changes: Any) -> RunSpec:
        return RunSpec.from_dict({**self.to_dict(), **changes})

    def key_payload(self) -> dict[str, Any]:
        """The explicit payload hashed into :attr:`key` (module docstring: version 1 plus added fields)."""
        payload = prune_added(self.to_dict())
        if KEY_VERSION > 1:
            payload["key_version"] = KEY_VERSION
        return payload

    @property
    def key(self) -> str:
        return content_key(self.key_payload())

    @property
    def threshold_policy(self) -> str | float:
        """The threshold policy of this run (``val``, ``val-unweighted``, ``test`` or a number)."""
        return threshold_policy_of(self.to_dict())

    def hparam_key(self) -> dict[str, Any]:
        """What the hyperparameter choice depends on: everything but the finetuning distribution and seed (the
        data's fingerprint included when known, so a changed dataset gets new searches; the objective and its
        options when not ERM, so each objective chooses its own and ERM's searches keep their keys)."""
        key = {"dataset": self.dataset, "arch": self.arch, "base": self.base, "base_training": self.base_training,
               "task": self.task, "n_train": self.n_train, "n_val": self.n_val,
               "train": prune_added(self.train, ("train",)),
               "transfer": self.transfer, "transfer_options": self.transfer_options}
        if self.data_fingerprint is not None:
            key["data_fingerprint"] = self.data_fingerprint
        if self.objective != KEY_OBJECTIVE or self.objective_options:
            key["objective"] = {"name": self.objective, **self.objective_options}
        return key

    def setting_key(self) -> str:
        """The key without the data's fingerprint: what the study asks for, whatever the data now holds."""
        return self.replace(data_fingerprint=None).key

    def base_key(self) -> dict[str, Any]:
        """What a trained base's weights depend on (one base job per distinct value in a study)."""
        return {"base": self.base, "arch": self.arch, "data": self.dataset, "training": self.base_training}

    def describe(self) -> str:
        level = self.level if isinstance(self.level, str) else f"{self.level:g}"
        objective = "" if self.objective == KEY_OBJECTIVE else f" objective={self.objective}"
        return (f"{self.experiment}: {self.base_name} → {self.task} {self.intervention}@{level} "
                f"N={self.n_train}{objective} seed={self.seed}")


@dataclass(frozen=True)
class StudyDefaults:
    """What every run of a study shares (from the study's dataset, model, train, base_training, bases and
    evaluation sections); experiment plugins build their RunSpecs through :meth:`spec`."""

    dataset: dict[str, Any]
    arch: str
    train: dict[str, Any]
    base_training: dict[str, Any]
    bases: dict[str, dict[str, Any]]          # study name → {"kind": ..., **options}
    test_size: int = 2000
    threshold: str | float = "val"
    transfer: str = "full"
    transfer_options: dict[str, Any] = field(default_factory=dict)
    trained_kinds: tuple[str, ...] = ()
    """The base kinds that we train (their runs carry ``base_training``): plan fills it from the base registry
    (the kinds whose class sets ``trains``)."""

    def base(self, name: str) -> dict[str, Any]:
        """The spec dict of a base named in the study (``scratch`` when the study does not define it)."""
        return dict(self.bases.get(name, {"kind": "scratch"}))

    def spec(self, *, experiment: str, kind: str, base: str, task: str, seed: int, intervention: str = "collect",
             level: Level = "natural", n_train: Size = 512, n_val: Size | None = None, test: Level = "natural",
             options: dict[str, Any] | None = None, intervention_options: dict[str, Any] | None = None,
             test_size: int | None = None, thresholded: bool = True, objective: str = KEY_OBJECTIVE,
             objective_options: dict[str, Any] | None = None) -> RunSpec:
        """One RunSpec of a block, with the study's shared settings filled in. A kind that picks no decision
        threshold passes ``thresholded=False``: its specs keep ``calibration`` at its default, so the meaning of
        ``val`` (:data:`THRESHOLDS`) changes none of its keys."""
        base_dict = self.base(base)
        threshold, calibration = spec_threshold(self.threshold)
        calibration = calibration if thresholded else "unweighted"
        return RunSpec(
            experiment=experiment, kind=kind, dataset=copy.deepcopy(self.dataset), arch=self.arch,
            base_name=base, base=base_dict, task=task, seed=seed, intervention=intervention,
            level=level if isinstance(level, str) else float(level), n_train=n_train, n_val=n_val,
            test=test if isinstance(test, str) else float(test),
            test_size=self.test_size if test_size is None else test_size, threshold=threshold,
            train=prune_added(self.train, ("train",)),
            base_training=copy.deepcopy(self.base_training) if base_dict["kind"] in self.trained_kinds else {},
            transfer=self.transfer, transfer_options=dict(self.transfer_options),
            options=dict(options or {}), intervention_options=dict(intervention_options or {}),
            calibration=calibration, objective=objective, objective_options=dict(objective_options or {}),
        )
