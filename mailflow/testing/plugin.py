"""The pytest plugin of mailflow (entry point ``pytest11``, or ``-p mailflow.testing.plugin``).

In: a test that asks for the ``mailflow_lab`` fixture. Out: a factory,
``mailflow_lab(scenario="mixed-2003", *, speed=0.0, defaults=None)``, that starts a lab
(``mailflow.testing.lab.TestLab``: ports 0, a fresh temporary data directory, a manual
clock unless ``speed`` is given) and returns it; every lab a test started is stopped after
the test. Each test has labs of its own, so tests may run in parallel (pytest-xdist).
The lab is imported only when a test asks for one: installing mailflow costs other test
runs nothing. docs/testing-your-app.md shows it in use.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    from mailflow.testing.lab import TestLab
    from stores.topology import Scenario


class LabFactory(Protocol):
    def __call__(self, scenario: str | Scenario = ..., *, speed: float = ...,
                 defaults: Mapping[str, Any] | None = ...) -> TestLab: ...


@pytest.fixture
def mailflow_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabFactory]:
    """Start labs for this test: ``lab = mailflow_lab("exchange-2010")``."""
    from mailflow.testing.lab import TestLab

    started: list[TestLab] = []

    def start(scenario: str | Scenario = "mixed-2003", *, speed: float = 0.0,
              defaults: Mapping[str, Any] | None = None) -> TestLab:
        lab = TestLab.start(tmp_path_factory.mktemp("mailflow-lab"), scenario, speed=speed,
                            defaults=defaults)
        started.append(lab)
        return lab

    yield start
    while started:
        started.pop().stop()
