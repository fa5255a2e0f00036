"""Redaction cost: a 10,000-character text with JSON escapes or HTML character references
against the same length of text without any (the baseline), through one redactor.

    .venv/bin/python bench/redaction.py [--repeat 7] [--number 50]

The redactor knows a Bearer token, a URL password and a query value (as a node run with an
HTTP connection does). Escapes make the redactor read the text a second time, around each
escape; the last column is each text's time relative to the plain one.
"""

from __future__ import annotations

import argparse
import json
import random
import string
import sys
import timeit
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nodes.redaction import Redactor
from nodes.sdk.context import ConnectionInfo

TOKEN = "tK9_zQ3-vLw8Rb2+Xy/5PqN7mJ4hGf6DsA1cE0uY"
PASSWORD = "p@ss w0rd/ü:long"
URL = "https://etl:" + quote(PASSWORD, safe="") + "@crm.example/api?api_key=k3y-v4lue-123"


def texts(length: int = 10_000) -> dict[str, str]:
    rng = random.Random(1)
    plain = "".join(rng.choices(string.ascii_letters + " .,:=", k=length))
    escaped = json.dumps({"log": plain[:4000] + " path /a/b/c ä é " * 400}).replace("/", "\\/")
    referenced = plain[:3000] + " a &amp; b &#x2F; " * 500
    return {
        "plain (baseline)": plain,
        "JSON, 800 \\uXXXX and 1,200 \\/": escaped[:length],
        "HTML, 1,000 references": referenced[:length],
        "log line, 260 characters": plain[:260],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=50)
    args = parser.parse_args()
    redactor = Redactor()
    redactor.add_connection(ConnectionInfo("crm", URL, {"Authorization": f"Bearer {TOKEN}"}))
    baseline = 0.0
    print(f"{'text':36} {'best ms':>8} {'ratio':>6}")
    for name, text in texts().items():
        runs = timeit.repeat(
            lambda t=text: redactor.redact(t), number=args.number, repeat=args.repeat
        )
        best = min(runs) / args.number * 1000
        baseline = baseline or best
        ratio = f"{best / baseline:6.2f}" if len(text) == 10_000 else "     -"
        print(f"{name:36} {best:8.3f} {ratio}")


if __name__ == "__main__":
    main()
