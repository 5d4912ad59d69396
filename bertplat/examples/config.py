"""ExamplesConfig: how pretraining examples are built from a corpus and a vocabulary."""

from __future__ import annotations

import json
import math
from typing import Literal

from pydantic import Field, model_validator

from bertplat.config import StageConfig


class ExamplesConfig(StageConfig):
    """BERT (nsp), ALBERT (sop) or RoBERTa (mlm) examples; every field but ``workers`` is fingerprinted."""

    objective: Literal["nsp", "sop", "mlm"] = Field(
        default="nsp", description="nsp: MLM + next-sentence prediction (BERT); sop: MLM + sentence-order "
        "prediction (ALBERT); mlm: MLM only, FULL-SENTENCES packing across documents (RoBERTa).")
    max_seq_length: int = Field(default=128, ge=8, le=8192, description="Tokens per example, special tokens "
                                "included (BERT pretrains at 128, then 512).")
    short_seq_prob: float = Field(default=0.1, ge=0.0, le=1.0,
                                  description="nsp/sop: share of examples with a random shorter target length.")
    masking: Literal["dynamic", "static"] = Field(
        default="dynamic", description="dynamic: masks drawn per batch by the collator at training time "
        "(RoBERTa); static: masked positions and labels written into the examples (BERT's script).")
    mask_prob: float = Field(default=0.15, gt=0.0, lt=1.0,
                             description="Share of maskable tokens to predict (BERT 0.15; MosaicBERT 0.30).")
    max_predictions_per_seq: int | None = Field(
        default=None, ge=1, description="Cap on predictions per example (static). Default: "
        "ceil(max_seq_length * mask_prob), i.e. 20 at 128 and 77 at 512.")
    mask_budget_basis: Literal["maskable", "length"] = Field(
        default="maskable", description="Static masking: predict mask_prob of the maskable tokens "
        "('maskable', as the collator does) or of the whole length with special tokens (BERT's script).")
    whole_word_masking: bool = Field(default=False, description="Mask every piece of a word together.")
    dupe_factor: int = Field(default=1, ge=1, le=100, description="Passes over the corpus, each with new "
                             "random choices (and new masks when static); BERT's script used 10.")
    validation_fraction: float = Field(default=0.01, gt=0.0, lt=0.5, description="Share of documents (chosen "
                                       "by doc_id hash, so no document is in both splits) for validation.")
    balance_nsp: bool = Field(default=True, description="nsp: lean the coin against forced random-next "
                              "examples so labels stay 50/50 (off: the reference's fair coin).")
    seed: int = Field(default=12345, ge=0, description="Seed; output is identical for a seed whatever the workers.")
    max_label_imbalance: float = Field(default=0.02, ge=0.0, le=0.5,
                                       description="Gate: nsp/sop label share must be within 0.5 +- this.")
    mask_rate_tolerance: float = Field(default=0.005, ge=0.0, le=0.5,
                                       description="Gate (static): observed mask rate within mask_prob +- this.")
    cluster: str | None = Field(default=None, description="Dask scheduler to run the tasks on (tcp://host:8786; "
                                "default $BERTPLAT_DASK_ADDRESS, else local worker processes). Not fingerprinted.")
    workers: int | None = Field(default=None, ge=1, description="Worker processes (default: all cores); "
                                "not part of the fingerprint.")

    @model_validator(mode="after")
    def _check(self):
        if self.objective != "mlm" and self.max_seq_length < 5:
            raise ValueError("nsp/sop need max_seq_length >= 5")
        return self

    @property
    def max_predictions(self) -> int:
        return self.max_predictions_per_seq or math.ceil(self.max_seq_length * self.mask_prob)

    def fingerprint_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude={"workers", "cluster"}), sort_keys=True,
                          separators=(",", ":"))
