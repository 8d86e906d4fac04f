"""A reference training pipeline in the style of the original code (princetonvisualai/overcoming-pretraining-bias,
``classifier.py``), for measuring what our engine saves. Not used by the package.

What it keeps from the original, per finetuning run:

* one image file per example, opened and decoded by PIL in ``Dataset.__getitem__`` on every epoch;
* torchvision transforms per sample: ``ToTensor`` → ``Normalize`` → ``RandomHorizontalFlip`` (training), ``ToTensor``
  → ``Normalize`` (evaluation), in the original's order;
* ``DataLoader(batch_size=64, shuffle=True, num_workers=W)`` for train, val and test (the original used W=4 and
  non-persistent workers, so worker processes start again on every epoch);
* the final run's loop: train, then evaluate the **test set every epoch** under ``torch.no_grad()``, the
  validation set only after the last epoch; per-batch ``loss.item()`` and per-sample lists of outputs, and an AUC
  of train and test outputs per epoch;
* eager mode, contiguous (NCHW) memory.

What it leaves out (each would make the reference slower, so the measured speedup is conservative): the
original resized every image to 224×224 on every epoch (here the files are already at the model's resolution),
wrote TensorBoard scalars and kept the training outputs of the first epoch.

The model is the same :class:`~biastransfer.models.architectures.Classifier` as ours; because the pipeline
normalises (``transforms.Normalize``), the model's own normalisation is set to the identity, which is the same
function.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from biastransfer.models.architectures import IMAGENET_MEAN, IMAGENET_STD


def write_pngs(images: np.ndarray, folder: Path, prefix: str = "img") -> list[Path]:
    """Write uint8 NHWC ``images`` as one PNG file each; returns the paths (written once, outside any timing)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        path = folder / f"{prefix}_{i:06d}.png"
        Image.fromarray(np.ascontiguousarray(img)).save(path)
        paths.append(path)
    return paths


class PngDataset(Dataset):
    """One PNG per example, opened with PIL on every access (as the original's ``from_path``)."""

    def __init__(self, paths: list[Path], targets: np.ndarray, transform: transforms.Compose) -> None:
        self.paths = [str(p) for p in paths]
        self.targets = np.asarray(targets, dtype=np.float32).reshape(len(paths), -1)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        image = Image.open(self.paths[index]).convert("RGB")
        return self.transform(image), self.targets[index]


def train_transform() -> transforms.Compose:
    return transforms.Compose([transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
                               transforms.RandomHorizontalFlip()])


def test_transform() -> transforms.Compose:
    return transforms.Compose([transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def _auc(labels: list, scores: list) -> float:
    y, s = np.asarray(labels).ravel(), np.asarray(scores).ravel()
    return float(roc_auc_score(y, s)) if len(np.unique(y)) == 2 else float("nan")


def _train_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                 device: torch.device) -> float:
    model.train()
    all_probs, all_labels, running = [], [], []
    for data, target in loader:
        target = target.float()
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        output = model(data)
        all_labels.extend(target.cpu().numpy())
        all_probs.extend(torch.sigmoid(output).detach().cpu().numpy())
        loss = F.binary_cross_entropy_with_logits(output, target)
        loss.backward()
        optimizer.step()
        running.append(loss.item() * len(data))
    _auc(all_labels, all_probs)
    return float(np.sum(running) / len(all_labels))


def _evaluate(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[float, np.ndarray]:
    model.eval()
    total, probs, labels = 0.0, [], []
    with torch.no_grad():
        for data, target in loader:
            target = target.float()
            data, target = data.to(device), target.to(device)
            output = model(data)
            total += F.binary_cross_entropy_with_logits(output, target).item() * len(target)
            labels.extend(target.cpu().numpy())
            probs.extend(torch.sigmoid(output).cpu().numpy())
    _auc(labels, probs)
    return total / len(labels), np.asarray(probs)


def identity_normalisation(model: nn.Module) -> nn.Module:
    """The pipeline normalises, so the Classifier's own (x − mean) / std becomes the identity."""
    model.mean.zero_()
    model.std.fill_(1.0)
    return model


def reference_finetune(model: nn.Module, train: tuple[list[Path], np.ndarray], val: tuple[list[Path], np.ndarray],
                       test: tuple[list[Path], np.ndarray], *, epochs: int, batch_size: int = 64, lr: float = 0.01,
                       weight_decay: float = 5e-4, momentum: float = 0.9, num_workers: int = 0,
                       seed: int = 0, device: torch.device | str = "cpu") -> dict[str, float]:
    """One finetuning run the original's way; returns seconds and the last losses (for sanity checks)."""
    t0 = time.perf_counter()
    device = torch.device(device)
    torch.manual_seed(seed)
    identity_normalisation(model).to(device)
    train_loader = DataLoader(PngDataset(*train, train_transform()), batch_size=batch_size, shuffle=True,
                              num_workers=num_workers)
    val_loader = DataLoader(PngDataset(*val, test_transform()), batch_size=batch_size, shuffle=False,
                            num_workers=num_workers)
    test_loader = DataLoader(PngDataset(*test, test_transform()), batch_size=batch_size, shuffle=False,
                             num_workers=num_workers)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    train_loss = val_loss = test_loss = float("nan")
    for epoch in range(1, epochs + 1):
        train_loss = _train_epoch(model, train_loader, optimizer, device)
        if epoch == epochs:
            val_loss, _ = _evaluate(model, val_loader, device)
        test_loss, _ = _evaluate(model, test_loader, device)
    return {"seconds": time.perf_counter() - t0, "train_loss": train_loss, "val_loss": val_loss,
            "test_loss": test_loss}
