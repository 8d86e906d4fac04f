"""Off-the-shelf bases read from local checkpoint files, with strict key coverage.

A *checkpoint format* knows one published file layout (which container holds the state dict, which prefix
the backbone keys carry, which keys are heads to drop) and converts the file's state dict to the key names of
an architecture's backbone: for the ResNet formats a torchvision ResNet without ``fc`` (``conv1.weight``,
``bn1.running_mean``, ``layer1.0.conv1.weight`` …); for ``timm_vit``, ``timm_convnext`` and ``open_clip`` timm's
own keys (the ViT, ConvNeXt and CLIP image-tower backbones are timm modules).

Loading is strict, unlike the original scripts (``strict=False`` and no check, so a mismatch silently left a
random backbone): every backbone key of the model must come from the file with the right shape, and every
key of the file must be either a backbone key or a head the format deliberately drops. Anything else raises
:class:`CheckpointMismatchError` listing the keys. Files are read with
``torch.load(..., weights_only=True)``, so a file that pickles arbitrary Python objects is refused rather
than executed; ``.safetensors`` files are read by a small built-in reader (no pickle at all). Nothing here
downloads anything.

Formats (``docs/checkpoints.md`` has the layouts and where each was verified):

======================  =================================================================================
``torchvision``         plain torchvision ResNet state dict (``fc.*`` dropped)
``moco_v3``             MoCo v3 ResNet: ``state_dict`` → ``module.base_encoder.*``
``simclr_port``         Spijkervet/SimCLR PyTorch port: ``encoder.*`` + ``projector.*``
``simclr_sthalles``     sthalles/SimCLR: ``state_dict`` → ``backbone.*``, projection MLP in ``backbone.fc``
``simclr_converted``    official TF SimCLR via tonylins/simclr-converter: ``state_dict`` → torchvision keys
``places365``           CSAILVision Places365: ``state_dict`` → ``module.*`` with a 365-way ``fc``
``timm``                timm ResNet weights (``.pth``/``.bin``/``.safetensors``): torchvision keys + ``fc``
``timm_vit``            timm ViT weights (``vit_*``): timm's keys, ``head.*`` dropped
``timm_convnext``       timm ConvNeXt weights (``convnext_*``): timm's keys, ``head.fc.*`` dropped
``open_clip``           OpenCLIP CLIP model: ``visual.*`` renamed to timm's ViT keys, the text tower dropped
======================  =================================================================================

Modules: :mod:`~biastransfer.models.checkpoints.reader` (reading files safely),
:mod:`~biastransfer.models.checkpoints.formats` (the formats and their registry),
:mod:`~biastransfer.models.checkpoints.report` (:class:`CoverageReport`, :class:`CheckpointMismatchError`),
:mod:`~biastransfer.models.checkpoints.loading` (strict loading) and
:mod:`~biastransfer.models.checkpoints.bases` (the ``checkpoint`` and ``torchvision_weights`` base kinds).
Importing this package registers every format and base kind.
"""

from biastransfer.models.checkpoints.bases import CheckpointBase, TorchvisionWeightsBase, torchvision_cached
from biastransfer.models.checkpoints.formats import CHECKPOINT_FORMATS, CheckpointFormat, Conversion, get_format
from biastransfer.models.checkpoints.loading import check_checkpoint, coverage, load_backbone
from biastransfer.models.checkpoints.reader import CheckpointReadError, read_checkpoint
from biastransfer.models.checkpoints.report import CheckpointMismatchError, CoverageReport

__all__ = [
    "CHECKPOINT_FORMATS",
    "CheckpointBase",
    "CheckpointFormat",
    "CheckpointMismatchError",
    "CheckpointReadError",
    "Conversion",
    "CoverageReport",
    "TorchvisionWeightsBase",
    "check_checkpoint",
    "coverage",
    "get_format",
    "load_backbone",
    "read_checkpoint",
    "torchvision_cached",
]
