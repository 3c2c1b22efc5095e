from __future__ import annotations

from pathlib import Path

import pytest

from isthmus.fabric.catalog import Fabric
from isthmus.fabric.loader import load_fabric

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def mini_path() -> Path:
    return FIXTURES / "mini.yaml"


@pytest.fixture(scope="session")
def mini(mini_path: Path) -> Fabric:
    return load_fabric(mini_path)


@pytest.fixture(scope="session")
def example_path() -> Path:
    return REPO / "examples" / "fabric.yaml"
