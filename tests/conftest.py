"""Shared fixtures; the model builders they use live in ``helpers.py``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import CASES, MAX_POS, WINDOW, save_base


@pytest.fixture(scope="session")
def base_models(tmp_path_factory) -> dict[str, Path]:
    """Every case saved once per session; tests must not modify these folders."""
    root = tmp_path_factory.mktemp("bases")
    return {case.id: save_base(case, root / case.id) for case in CASES}


@pytest.fixture(scope="session")
def converted(base_models, tmp_path_factory):
    """Every case converted once per session with the test sizes."""
    from longzoo.converters import convert

    root = tmp_path_factory.mktemp("converted")
    return {
        case.id: convert(str(base_models[case.id]), MAX_POS, root / case.id, attention_window=WINDOW) for case in CASES
    }


@pytest.fixture(scope="session")
def converted_full(base_models, tmp_path_factory):
    """Every case converted once per session to the full-attention form (the base's own architecture)."""
    from longzoo.converters import convert

    root = tmp_path_factory.mktemp("converted-full")
    return {case.id: convert(str(base_models[case.id]), MAX_POS, root / case.id, attention="full") for case in CASES}


@pytest.fixture
def base_copy(base_models, tmp_path):
    """A private copy of one base, for tests that damage it."""

    def copy(case_id: str) -> Path:
        target = tmp_path / f"base-{case_id}"
        shutil.copytree(base_models[case_id], target)
        return target

    return copy
