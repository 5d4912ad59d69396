"""Save and load our own model directories: `config.json` (a `ModelConfig`) + `model.safetensors`.

As litgpt does, the config travels beside the weights, so a directory is enough to rebuild the
model. Parameter names are ours; `convert.py` writes the Hugging Face layout instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

from bertplat.model.bert import BertPretrainingModel
from bertplat.model.config import ModelConfig

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def save_checkpoint(model: BertPretrainingModel, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write ``out_dir/config.json`` and ``out_dir/model.safetensors``; the directory appears whole or not at all."""
    out_dir = Path(out_dir)

    def write(tmp: Path) -> None:
        model.config.to_file(tmp / CONFIG_FILE)
        # save_model (not save_file) stores the tied decoder / embedding weight once.
        save_model(model, str(tmp / WEIGHTS_FILE))

    return write_dir_atomically(out_dir, write, overwrite)


def load_checkpoint(model_dir: str | Path, device: str | torch.device = "cpu") -> BertPretrainingModel:
    """Rebuild the model saved by `save_checkpoint` on ``device``."""
    model_dir = Path(model_dir)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (model_dir / name).is_file():
            raise ValueError(f"{model_dir} is not a model checkpoint: {name} is missing "
                             "(a Hugging Face directory? use bertplat.model.import_hf)")
    config = ModelConfig.from_file(model_dir / CONFIG_FILE)
    model = BertPretrainingModel(config)
    try:
        load_model(model, str(model_dir / WEIGHTS_FILE), strict=True, device=str(device))
    except RuntimeError as exc:
        raise ValueError(f"{model_dir / WEIGHTS_FILE} does not fit {model_dir / CONFIG_FILE}: {exc}") from None
    return model.to(device)


def write_dir_atomically(out_dir: Path, write, overwrite: bool) -> Path:
    """Call ``write(tmp_dir)`` on a sibling temp dir, then rename it to ``out_dir``.

    A crash leaves either the old directory or the new one, never a half-written one.
    """
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already exists; pass overwrite=True to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary shared directory
        write(tmp)
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
