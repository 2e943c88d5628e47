"""One vocabulary of errors: every code the code base raises is defined once, and the documents agree."""

import re
from pathlib import Path

from server import error_codes

ROOT = Path(__file__).resolve().parents[2]
# Where codes are given: `code="..."` (raise sites, class attributes), `Outcome.failed("...")`, and the
# `"code": "..."` of error events built by hand.
RAISED = re.compile(r'code ?= ?"([a-z_0-9]+)"|Outcome\.failed\(\s*"([a-z_0-9]+)"|"code": "([a-z_0-9]+)"')
# `code = "error"` is AppError's placeholder, which every subclass overrides.
NOT_A_CODE = {"error"}


def raised_codes() -> dict[str, str]:
    found = {}
    for folder in ("server", "handlers", "inference"):
        for path in (ROOT / folder).rglob("*.py"):
            for match in RAISED.finditer(path.read_text()):
                code = next(group for group in match.groups() if group)
                found.setdefault(code, str(path.relative_to(ROOT)))
    return {code: where for code, where in found.items() if code not in NOT_A_CODE}


def test_every_raised_code_is_defined():
    undefined = {code: where for code, where in raised_codes().items() if code not in error_codes.CODES}
    assert not undefined, f"define these in server/error_codes.py: {undefined}"


def test_every_defined_code_is_used():
    sources = "\n".join(path.read_text() for folder in ("server", "handlers", "inference")
                        for path in (ROOT / folder).rglob("*.py") if path.name != "error_codes.py")
    unused = [code for code in error_codes.CODES if f'"{code}"' not in sources]
    assert not unused, f"codes no longer raised anywhere: {unused}"


def test_the_documents_list_exactly_these_codes():
    protocol = (ROOT / "docs" / "PROTOCOL.md").read_text()
    openapi = (ROOT / "docs" / "openapi.yaml").read_text()
    hint = "run `python -m server.error_codes --write-docs`"
    assert error_codes.protocol_text(protocol) == protocol, hint
    assert error_codes.openapi_text(openapi) == openapi, hint
