"""The Kubernetes manifests under deploy/, loaded once, with the lookups the deploy tests share."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


@dataclass(frozen=True)
class Resource:
    path: Path
    doc: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.doc["kind"]

    @property
    def name(self) -> str:
        return self.doc["metadata"]["name"]

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}: {self.kind}/{self.name}"


def manifest_files() -> list[Path]:
    return sorted(DEPLOY.rglob("*.yaml"))


@cache
def resources() -> tuple[Resource, ...]:
    return tuple(Resource(path, doc) for path in manifest_files()
                 for doc in yaml.safe_load_all(path.read_text()) if doc)


def of_kind(kind: str) -> list[Resource]:
    return [resource for resource in resources() if resource.kind == kind]


def one(kind: str, name: str) -> Resource:
    found = [resource for resource in of_kind(kind) if resource.name == name]
    assert len(found) == 1, f"expected one {kind}/{name} under deploy/, found {len(found)}"
    return found[0]


def pod_spec(resource: Resource) -> dict[str, Any]:
    """The pod template's spec of a Deployment or Job."""
    return resource.doc["spec"]["template"]["spec"]


def container_env(resource: Resource, container: dict[str, Any]) -> dict[str, str]:
    """Every variable a container gets: its Secrets' keys (envFrom, from the example Secret) then its `env`."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(one("Secret", source["secretRef"]["name"]).doc["stringData"])
    env.update({item["name"]: item["value"] for item in container.get("env", [])})
    return env


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())
