"""Fixtures for the model tests."""

from __future__ import annotations

import pytest
import torch

from tests.model.helpers import make_batch


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    """Four right-padded sequences of lengths 11, 4, 16, 7 in a (4, 16) batch."""
    return make_batch([11, 4, 16, 7], seqlen=16)
