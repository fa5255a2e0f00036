"""JSON log lines: one object per line, the run they belong to, secrets redacted."""

from __future__ import annotations

import io
import json
import logging

import pytest

from flowplatform.logs import JsonFormatter, RunContextFilter, run_context
from nodes import redaction
from nodes.redaction import RedactingFilter, Redactor


@pytest.fixture
def capture() -> io.StringIO:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    handler.addFilter(RunContextFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("flowplatform.tests.logs")
    logger.handlers, logger.propagate, logger.level = [handler], False, logging.INFO
    return stream


def lines(stream: io.StringIO) -> list[dict[str, str]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_inside_a_run_carries_the_run_node_and_flow(capture: io.StringIO) -> None:
    logger = logging.getLogger("flowplatform.tests.logs")
    logger.info("outside")
    with run_context(run_id="r-1", flow="orders"), run_context(node_key="load"):
        logger.warning("inside %s", "the node")
    first, second = lines(capture)
    assert first.keys() == {"time", "level", "logger", "message"}
    assert second["message"] == "inside the node"
    assert second["level"] == "WARNING"
    assert second["logger"] == "flowplatform.tests.logs"
    assert (second["run_id"], second["node_key"], second["flow"]) == ("r-1", "load", "orders")
    assert second["time"].endswith("+00:00")


@pytest.mark.parametrize("secret", ["s3cr3t-Value-42", 'tok"en\\with\nodd chars'])
def test_secrets_are_redacted_in_json_lines_and_their_exceptions(
    capture: io.StringIO, secret: str
) -> None:
    logger = logging.getLogger("flowplatform.tests.logs")
    redactor = Redactor()
    redactor.add([secret])
    with redaction.scope(redactor), run_context(run_id="r-2"):
        try:
            raise ValueError(f"the peer echoed {secret}")
        except ValueError:
            logger.exception("failed with %s", secret)
    (line,) = lines(capture)
    text = json.dumps(line)
    assert secret not in line["message"] and secret not in line["exc_info"]
    assert json.dumps(secret)[1:-1] not in text
    assert "ValueError" in line["exc_info"]
    assert line["run_id"] == "r-2"
