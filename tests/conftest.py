"""Shared fixtures. Real data lives outside the repository: in ``../shared/data``
beside it, or wherever ``ADAPTIVE_DFF_DATA`` points. Tests that need it fail
(never skip) when it is missing."""

import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_root() -> pathlib.Path:
    path = pathlib.Path(os.environ.get("ADAPTIVE_DFF_DATA", ROOT.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.fail(
            f"real data not found at {path}: set ADAPTIVE_DFF_DATA to the data folder "
            "(with videos/, camvid/, flyingchairs_examples/) or place it at ../shared/data"
        )
    return path
