"""What the platform defines once stays defined once: each rule below is written in exactly one
module of the code (tests aside), wherever that module is. A second copy is a copy that drifts
(the zone names that mean UTC had two lists, one without ``Etc/Zulu``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("flowplatform", "flows", "nodes", "scheduling")

#: What only one module may contain (a pattern of its one definition), by concern.
ONE_HOME = {
    "the zone names that mean UTC": r"Etc/Universal",
    "jittered backoff": r"\.uniform\(0, ",
    "a node type missing on a worker": r"not installed on this worker",
    "a node run's duration": r"total_seconds\(\)\s*\*\s*1000",
    "how much of an error message is kept": r"^ERROR_MAX_CHARS = ",
}


def code_files() -> list[Path]:
    return sorted(
        path
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.parts
    )


def homes(pattern: str) -> list[str]:
    """The modules whose text matches ``pattern``."""
    found = re.compile(pattern, re.MULTILINE)
    return [
        str(path.relative_to(ROOT))
        for path in code_files()
        if found.search(path.read_text(encoding="utf-8"))
    ]


@pytest.mark.parametrize("concern", sorted(ONE_HOME))
def test_a_rule_is_written_in_one_module(concern: str) -> None:
    assert len(homes(ONE_HOME[concern])) == 1, homes(ONE_HOME[concern])


#: A cut of a whole message at a length written in place (a thousand characters or more:
#: ``text[:2000]``, ``text[0:10_000]``, ``redactor.cut(text, 2000)``). Shorter cuts quote a
#: part of something (a name, a peer's answer) inside a message and are not matched.
WHOLE_MESSAGE_CUT = r"\[\s*0?\s*:\s*[1-9][0-9_]{3,}\s*\]|\bcut\([^()\n]*,\s*[1-9][0-9_]{3,}\s*\)"


def test_no_message_is_cut_at_a_length_of_its_own() -> None:
    """Error text is cut where the platform says how much of it is kept (``ERROR_MAX_CHARS``)."""
    assert homes(WHOLE_MESSAGE_CUT) == []


@pytest.mark.parametrize(
    ("line", "matched"),
    [
        ("attributes['error'] = message[:2000]", True),
        ("return text[:10000]", True),
        ("return text[: 10_000]", True),
        ("error = str(exc)[0:4096]", True),
        ("return self.redactor.cut(text, 2000)", True),
        ("raise FileFormatError(f'not a Parquet file ({str(exc)[:200]})')", False),
        ("detail = redactor.redact(response.text[:200])", False),
        ("return self.redactor.cut(text, 500)", False),
        ("return text[:ERROR_MAX_CHARS]", False),
        ("rows = items[1000:]", False),
        ("ERROR_MAX_CHARS = 10_000", False),
    ],
)
def test_the_cut_check_tells_a_whole_message_from_a_quote(line: str, matched: bool) -> None:
    assert bool(re.search(WHOLE_MESSAGE_CUT, line)) is matched


def test_the_partition_limit_message_is_written_in_one_module() -> None:
    assert len(homes(r"more than \{MAX_PARTITIONS\} partitions")) == 1


def test_the_check_finds_the_code() -> None:
    assert len(code_files()) > 100
    assert homes(r"^class FlowRun\(") == ["flows/models.py"]
