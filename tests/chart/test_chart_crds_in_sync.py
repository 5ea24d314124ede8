"""The chart ships the API's CRDs as byte-identical copies of crds/ (`make crds` copies them)."""

from __future__ import annotations

from tests.chart.helmchart import CHART


def test_chart_crds_are_exact_copies_of_crds(repo_root):
    source = {path.name: path.read_bytes() for path in sorted((repo_root / "crds").glob("*.yaml"))}
    copied = {path.name: path.read_bytes() for path in sorted((CHART / "crds").glob("*.yaml"))}
    assert source, "crds/ holds no CRDs"
    assert sorted(copied) == sorted(source), "charts/dreambooth-operator/crds/ and crds/ list different files"
    stale = [name for name in source if copied[name] != source[name]]
    assert not stale, f"chart CRDs differ from crds/ (run `make crds`): {stale}"
