"""The language the catalogues of invalid jobs are written in: a Case names one broken
constraint, the mutation of the valid cloody example that breaks it, and the substring the
apiserver's refusal must contain."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cloody-job.yaml"
Mutation = Callable[[dict[str, Any]], None]


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    breaks: str
    mutate: Mutation
    error: str
    status: int = 422


def valid_job(name: str = "cloody") -> dict[str, Any]:
    job = yaml.safe_load(EXAMPLE.read_text())
    job["metadata"] = {"name": name}
    return job


def invalid_job(case: Case) -> dict[str, Any]:
    job = copy.deepcopy(valid_job())
    case.mutate(job)
    return job


def _node(obj: dict, path: str, create: bool = False) -> tuple[dict, str]:
    *parents, leaf = path.split(".")
    for part in parents:
        if create:
            obj = obj.setdefault(part, {})
        else:
            obj = obj[part]
    return obj, leaf


def set_(path: str, value: Any) -> Mutation:
    """Set ``path`` (dotted, relative to spec; ``/name`` for metadata.name) to ``value``."""

    def mutate(job: dict) -> None:
        root, rel = (job, path[1:]) if path.startswith("/") else (job["spec"], path)
        node, leaf = _node(root, rel, create=True)
        node[leaf] = copy.deepcopy(value)

    return mutate


def drop(path: str) -> Mutation:
    def mutate(job: dict) -> None:
        node, leaf = _node(job["spec"], path)
        del node[leaf]

    return mutate


def all_of(*mutations: Mutation) -> Mutation:
    def mutate(job: dict) -> None:
        for m in mutations:
            m(job)

    return mutate
