"""The Dockerfile, read (no Docker engine here): torch variant by build argument, non-root, signals reach Python,
and every file it copies exists and is in the build context that .dockerignore leaves."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from config import Settings
from tests.deploy.manifests import ROOT, of_kind, pod_spec

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
# Packages that are not part of the running service.
NOT_SHIPPED = {"tests", "bench"}


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [rest for instruction, rest in self.instructions if instruction == keyword]


def stages() -> list[Stage]:
    """The Dockerfile's stages, continuation lines joined and comments dropped."""
    logical, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        current += line.rstrip("\\").strip() + " " if line.rstrip().endswith("\\") else line.strip()
        if not line.rstrip().endswith("\\"):
            if current.strip():
                logical.append(current.strip())
            current = ""
    found: list[Stage] = []
    for text in logical:
        instruction, _, rest = text.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = rest.split()
            found.append(Stage(image=words[0], name=words[2] if len(words) > 2 and words[1].upper() == "AS" else None))
        elif found:
            found[-1].instructions.append((instruction, rest.strip()))
    return found


def final_stage() -> Stage:
    return stages()[-1]


def copies(stage: Stage) -> list[tuple[dict[str, str], list[str], str]]:
    """(flags, sources, destination) of each COPY."""
    result = []
    for rest in stage.all("COPY"):
        words = shlex.split(rest)
        flags = dict(word[2:].split("=", 1) for word in words if word.startswith("--"))
        paths = [word for word in words if not word.startswith("--")]
        result.append((flags, paths[:-1], paths[-1]))
    return result


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus `**`), anchored at the context root."""
    out, i = "", 0
    pattern = pattern.strip("/")
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def ignored(relative: str) -> bool:
    """Docker's rule: the last matching pattern wins, and a pattern that matches a folder takes its contents."""
    parts = relative.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        regex = pattern_regex(line.lstrip("!"))
        if any(regex.match(prefix) for prefix in prefixes):
            verdict = not negated
    return verdict


def python_files(source: str) -> list[str]:
    return [path.relative_to(ROOT).as_posix() for path in sorted((ROOT / source).rglob("*.py"))]


def test_dockerignore_matcher_follows_docker_rules():
    assert ignored(".git/config") and ignored("frontend/node_modules/vite/package.json")
    assert ignored("server/__pycache__/app.cpython-311.pyc")
    assert not ignored("server/app.py") and not ignored("frontend/src/main.ts")


def test_torch_variant_is_a_build_argument_and_the_version_comes_from_requirements():
    stage = final_stage()
    assert "TORCH_VARIANT=cpu" in stage.all("ARG")
    (install,) = [run for run in stage.all("RUN") if "download.pytorch.org/whl/${TORCH_VARIANT}" in run]
    assert not re.search(r"torch==\d", DOCKERFILE.read_text()), "the torch version is pinned once: requirements.txt"
    # Run the Dockerfile's own extraction of the version against requirements.txt.
    (extract,) = re.findall(r'torch_version="\$\((.+?)\)"', install)
    version = subprocess.run(["bash", "-c", extract], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert re.search(rf"^torch=={re.escape(version.strip())}$", (ROOT / "requirements.txt").read_text(), re.M)
    assert install.index("torch==${torch_version}") < install.index("-r requirements.txt")


def test_runs_as_the_non_root_user_the_manifests_expect():
    user = final_stage().all("USER")[-1]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric, so Kubernetes' runAsNonRoot can verify it"
    for workload in of_kind("Deployment") + of_kind("Job"):
        context = pod_spec(workload)["securityContext"]
        assert context["runAsNonRoot"] is True, str(workload)
        assert context["runAsUser"] == int(uid), str(workload)


def test_signals_reach_python():
    stage = final_stage()
    entrypoint = json.loads(stage.all("ENTRYPOINT")[-1])  # exec form: no shell in between
    assert entrypoint[:2] == ["/usr/bin/tini", "--"] and entrypoint[2:] == ["python", "run.py"]
    assert any("install" in run and "tini" in run for run in stage.all("RUN"))
    assert stage.image.startswith("python:3.11-")


def test_every_copied_file_exists_and_is_in_the_build_context():
    names = {stage.name for stage in stages() if stage.name}
    for stage in stages():
        for flags, sources, _destination in copies(stage):
            if "from" in flags:
                assert flags["from"] in names, flags
                continue
            for source in sources:
                assert list(ROOT.glob(source)), f"COPY {source}: no such file"
                assert not ignored(source), f"COPY {source}: excluded by .dockerignore"
                for module in python_files(source):
                    assert not ignored(module), f"{module}: excluded by .dockerignore"


def test_the_image_holds_the_whole_service():
    stage = final_stage()
    copied = {Path(source).as_posix().rstrip("/") for flags, sources, _ in copies(stage) if "from" not in flags
              for source in sources}
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")} - NOT_SHIPPED
    assert packages | {"run.py"} <= copied
    # The browser app from the node stage, where settings look for it (frontend_dist, relative to the code).
    (frontend,) = [s for s in stages() if s.name and any("npm run build" in run for run in s.all("RUN"))]
    [(_flags, _sources, destination)] = [c for c in copies(stage) if c[0].get("from") == frontend.name]
    workdir = Path(stage.all("WORKDIR")[-1])
    expected = ROOT / Path(workdir / destination).relative_to(workdir)
    assert Path(Settings.model_fields["frontend_dist"].default) == expected.resolve()
    assert any("npm ci" in run for run in frontend.all("RUN"))


def test_variables_the_image_sets_are_settings():
    prefix = Settings.model_config["env_prefix"]
    known = {prefix + name.upper() for name in Settings.model_fields}
    names = set(re.findall(rf"\b({prefix}[A-Z0-9_]+)=", " ".join(final_stage().all("ENV"))))
    assert names and names <= known, names - known
