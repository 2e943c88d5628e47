"""docs/openapi.yaml is valid OpenAPI 3.1 and names every API route the app serves."""

import re
from pathlib import Path

import yaml
from openapi_spec_validator import validate

from server.app import make_app

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"


def spec_paths() -> set[str]:
    return set(yaml.safe_load(SPEC.read_text())["paths"])


def test_spec_is_valid_openapi():
    validate(yaml.safe_load(SPEC.read_text()))


def route_as_spec_path(pattern: str) -> str:
    # Regex groups become {param}; the names are the spec's, so compare shapes only.
    return re.sub(r"\([^)]*\)", "{}", pattern.rstrip("$"))


async def test_every_api_route_is_documented(runtime):
    app = make_app(runtime)
    served = {
        route_as_spec_path(rule.matcher.regex.pattern)
        for rule in app.wildcard_router.rules
        if rule.matcher.regex.pattern.startswith(("/api/", "/sdapi/", "/discord/", "/healthz", "/readyz", "/metrics"))
        and ".*" not in rule.matcher.regex.pattern
    }
    documented = {re.sub(r"\{[^}]+\}", "{}", path) for path in spec_paths()}
    assert served - documented == set(), f"undocumented routes: {served - documented}"
    assert documented - served == set(), f"documented but not served: {documented - served}"
