"""Chart fixtures: the pinned helm, isolated from the user's helm config.

Rendering needs no cluster; only the install tests use `cluster`.
"""

from __future__ import annotations

import pytest

from tests.chart.helmchart import Helm


@pytest.fixture(scope="session")
def chart_helm(helm, tmp_path_factory) -> Helm:
    return Helm(helm, tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="session")
def rendered_defaults(chart_helm) -> list[dict]:
    return chart_helm.render()
