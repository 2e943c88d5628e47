"""Write a CRD's served schema as JSON Schema for tests/deploy (descriptions dropped: they validate nothing).

Usage, with the CRD file from the project's release and a note of where it came from:
    python tests/deploy/schemas/vendor_crd.py keda.sh_scaledobjects.yaml \
        "kedacore/keda v2.20.2 config/crd/bases/keda.sh_scaledobjects.yaml"
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent


def without_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        # `description` is a keyword only where its value is text; a property may itself be named "description".
        return {key: without_descriptions(value) for key, value in node.items()
                if not (key == "description" and isinstance(value, str))}
    if isinstance(node, list):
        return [without_descriptions(item) for item in node]
    return node


def schema_file_name(api_version: str, kind: str) -> str:
    return f"{api_version.replace('/', '_')}_{kind}.json"


def vendor(crd_path: Path, source: str) -> list[Path]:
    crd = yaml.safe_load(crd_path.read_text())
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    written = []
    for version in crd["spec"]["versions"]:
        if not version.get("served"):
            continue
        schema = {"$comment": f"openAPIV3Schema of {source}, version {version['name']}, descriptions removed",
                  **without_descriptions(version["schema"]["openAPIV3Schema"])}
        target = HERE / schema_file_name(f"{group}/{version['name']}", kind)
        target.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
        written.append(target)
    return written


if __name__ == "__main__":
    for path in vendor(Path(sys.argv[1]), sys.argv[2]):
        print(path)
