"""Setting up a training run: the dataset, and the model (fresh, with backbone weights, or from --init).

Every check here runs before any training step, so a wrong path, split or class count fails in
seconds with one clear line instead of after the model was built or an epoch was spent.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from refine_cli.data.format.unified import UnifiedDataset
from refine_cli.engine.train import distributed as dist_utils
from refine_cli.engine.train.config import TrainConfig
from refine_cli.engine.train.distributed import DistContext
from refine_cli.errors import RefineError
from refine_cli.models import create_model
from refine_cli.models.checkpoint import Checkpoint, load_checkpoint, load_checkpoint_weights, set_input_normalization


def open_dataset(cfg: TrainConfig) -> UnifiedDataset:
    """The run's unified dataset, with both splits checked to exist before anything is built."""
    if not cfg.data.root:
        raise RefineError("no training data given", hint="pass --data PATH to a unified dataset (refine prepare)")
    path = Path(cfg.data.root)
    if not path.exists():
        raise RefineError(f"dataset folder {path} does not exist", hint="run `refine prepare` first or fix --data")
    source = UnifiedDataset(path)
    source.split_ids(cfg.data.train_split)  # fail now, not after the model is built
    if cfg.data.val_split:
        source.split_ids(cfg.data.val_split)
    return source


def check_classes(ck: Checkpoint, source: UnifiedDataset, what: str) -> None:
    """Staged training and resuming need the checkpoint's head to match the dataset's classes."""
    if ck.num_classes != source.meta.num_classes:
        raise RefineError(
            f"{what} {ck.path} has {ck.num_classes} classes but dataset {source.meta.name} has "
            f"{source.meta.num_classes}",
            hint="stages must share one class list (e.g. COCO and SBD converted to the 21 VOC classes)",
        )


def build_model(cfg: TrainConfig, source: UnifiedDataset, ctx: DistContext) -> tuple[nn.Module, list[str]]:
    """The model for the run: fresh (optionally with backbone weights) or initialised from `--init`."""
    notes: list[str] = []
    init = load_checkpoint(cfg.model.init) if cfg.model.init else None
    if init is not None:
        check_classes(init, source, "--init checkpoint")
        if init.model != cfg.model.name:
            raise RefineError(
                f"--init checkpoint {init.path} is a {init.model} model, not {cfg.model.name}",
                hint=f"pass --model {init.model}",
            )
        if init.classes != list(source.meta.classes):
            notes.append(f"--init checkpoint class names differ from {source.meta.name}'s (same count, kept)")
    # rank 0 fetches ImageNet weights first so the other ranks read the cache instead of racing
    if not ctx.is_main:
        dist_utils.barrier(ctx)
    model = create_model(
        cfg.model.name,
        num_classes=source.meta.num_classes,
        pretrained_backbone=cfg.model.pretrained_backbone and init is None,
        backbone_weights=cfg.model.backbone_weights if init is None else None,
        **(init.architecture if init is not None else {}),  # e.g. a converted MatConvNet model's
    )
    if ctx.is_main:
        dist_utils.barrier(ctx)
    if init is not None:
        load_checkpoint_weights(model, init.state_dict, str(init.path))
        set_input_normalization(model, init.normalization)  # trained on, and saved with, the weights' own input
    return model, notes
