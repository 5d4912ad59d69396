"""Reading and writing Hugging Face model directories: config.json, weights, tokenizer files.

The file-level half of the interop (`convert.py` holds the key and config tables): where the
config and weights of a directory are (a sentence-transformers folder too), reading weights safely
(safetensors, or a pickle only through ``torch.load(weights_only=True)``), checking that the
tokenizer fits the embeddings, and writing a directory atomically.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from bertplat.model.checkpoint import write_dir_atomically

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def write_hf_dir(out_dir: str | Path, hf_config: dict, sd: dict[str, torch.Tensor],
                 tokenizer_dir: str | Path | None, overwrite: bool) -> Path:
    """config.json + model.safetensors + the tokenizer files of ``tokenizer_dir``, renamed into place whole."""
    sd = {k: v.detach().to("cpu").contiguous() for k, v in sd.items()}
    tokenizer_files: list[Path] = []
    if tokenizer_dir is not None:
        tokenizer_files = [Path(tokenizer_dir) / n for n in TOKENIZER_FILES if (Path(tokenizer_dir) / n).is_file()]
        if not any(f.name in ("vocab.txt", "tokenizer.json") for f in tokenizer_files):
            raise ValueError(f"tokenizer_dir {tokenizer_dir} has neither vocab.txt nor tokenizer.json")
        check_vocabulary(Path(tokenizer_dir), hf_config["vocab_size"])

    def write(tmp: Path) -> None:
        (tmp / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n", encoding="utf-8")
        save_file(sd, str(tmp / "model.safetensors"), metadata={"format": "pt"})  # HF requires the format tag
        for f in tokenizer_files:
            shutil.copyfile(f, tmp / f.name)

    return write_dir_atomically(Path(out_dir), write, overwrite)


def read_hf_config(model_dir: str | Path) -> tuple[Path, dict, Path]:
    """``(directory holding the weights, config.json as a dict, its path)``.

    A sentence-transformers directory whose transformer sits in a sub-folder (``modules.json``
    naming it, as older ones such as ``0_Transformer/`` do) resolves to that sub-folder.
    """
    model_dir = Path(model_dir)
    config_path = model_dir / "config.json"
    modules = model_dir / "modules.json"
    if not config_path.is_file() and modules.is_file():
        try:
            entries = json.loads(modules.read_text(encoding="utf-8"))
            sub = next(e["path"] for e in entries if str(e.get("type", "")).endswith("models.Transformer"))
        except (json.JSONDecodeError, StopIteration, KeyError, TypeError, AttributeError):
            raise ValueError(f"{modules} names no sentence_transformers.models.Transformer module with a "
                             "path; it is not a sentence-transformers model directory bertplat can read") from None
        model_dir, config_path = model_dir / sub, model_dir / sub / "config.json"
    try:
        hf = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{config_path} does not exist; is {model_dir} a Hugging Face model directory? "
                         "Point at the folder that holds config.json and the weights") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{config_path} is not valid JSON: {exc}") from None
    if not isinstance(hf, dict):
        raise ValueError(f"{config_path} must hold a JSON object, not {type(hf).__name__}")
    return model_dir, hf, config_path


def tokenizer_size(model_dir: Path) -> tuple[int, Path] | None:
    """Entries of the tokenizer in ``model_dir`` (tokenizer.json, else vocab.txt) and the file; None if neither."""
    tj, vt = model_dir / "tokenizer.json", model_dir / "vocab.txt"
    if tj.is_file():
        try:
            data = json.loads(tj.read_text(encoding="utf-8"))
            vocab = data["model"]["vocab"]
            ids = list(vocab.values()) if isinstance(vocab, dict) else list(range(len(vocab)))  # WordPiece / Unigram
            ids += [t["id"] for t in data.get("added_tokens") or []]
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{tj} is not a tokenizers JSON file ({type(exc).__name__}: {exc}); "
                             "re-save the tokenizer or remove the file") from None
        return (max(ids) + 1 if ids else 0), tj
    if vt.is_file():
        lines = vt.read_bytes().split(b"\n")
        return len(lines) - (lines[-1] in (b"", b"\r")), vt
    return None


def check_vocabulary(model_dir: str | Path, vocab_size: int) -> None:
    """Refuse a tokenizer whose size differs from the embedding's rows (ids past the table, or rows no id reaches)."""
    found = tokenizer_size(Path(model_dir))
    if found is not None and found[0] != vocab_size:
        size, path = found
        raise ValueError(f"{path} has {size} entries but the model's word embedding has vocab_size={vocab_size} "
                         "rows; the tokenizer does not belong to these weights. Put the model's own tokenizer "
                         "files beside its weights (or resize the embeddings and retrain)")


def read_weights(model_dir: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """The state dict in ``model_dir``: model.safetensors (single or sharded), else pytorch_model.bin loaded
    with ``weights_only=True`` (a pickle holding anything but tensors is refused)."""
    single, index, pickle = (model_dir / n for n in
                             ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"))
    try:
        if single.is_file():
            return load_file(str(single)), single
        if index.is_file():  # sharded: {"weight_map": {key: shard file}}
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
            return {k: v for s in shards for k, v in load_file(str(model_dir / s)).items()}, index
        if pickle.is_file():
            return torch.load(pickle, map_location="cpu", weights_only=True), pickle
    except Exception as exc:  # corrupt or truncated files, or a pickle with code in it: say which one
        raise ValueError(f"cannot read weights in {model_dir}: {type(exc).__name__}: {exc}") from None
    present = sorted(p.name for p in model_dir.iterdir()) if model_dir.is_dir() else []
    raise ValueError(f"{model_dir} has no model.safetensors, model.safetensors.index.json or pytorch_model.bin "
                     f"(found: {present})")


