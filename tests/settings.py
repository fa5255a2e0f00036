"""Test settings: the production settings module, pointed at the real local services.

Every value can still be overridden from the environment (CI uses the defaults below).
"""

import os
import sys
import tempfile
from pathlib import Path

# A dummy node plugin package, installed the way pip would (a dist-info with entry points).
sys.path.insert(0, str(Path(__file__).resolve().parent / "plugins"))

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/flowplatform")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("CELERY_TASK_DEFAULT_QUEUE", f"flowplatform-test-{os.getpid()}")
os.environ.setdefault("FLOWPLATFORM_HTTP_ALLOW_PRIVATE", "true")
os.environ.setdefault("FLOWPLATFORM_VAR_DIR", tempfile.mkdtemp(prefix="flowplatform-test-"))
# File connections may use the test run's own directory (workers inherit it too).
os.environ.setdefault(
    "FLOWPLATFORM_FILE_ROOTS", os.path.join(os.environ["FLOWPLATFORM_VAR_DIR"], "files")
)
os.environ.setdefault(
    "FLOW_DATA_STORAGE", os.path.join(os.environ["FLOWPLATFORM_VAR_DIR"], "flowdata")
)
os.environ.setdefault("FLOWPLATFORM_LOG_LEVEL", "WARNING")
# Alerts: e-mail to the suite's local SMTP server (a port of this session's own, inherited by
# its worker processes), a link base, and quick retries.
os.environ.setdefault("EMAIL_HOST", "127.0.0.1")
os.environ.setdefault("EMAIL_PORT", str(20000 + os.getpid() % 20000))
os.environ.setdefault("FLOWPLATFORM_BASE_URL", "http://flows.example.test")
os.environ.setdefault("FLOWPLATFORM_ALERT_RETRY_BACKOFF_S", "1")
os.environ.setdefault("FLOWPLATFORM_ALERT_MAX_ATTEMPTS", "3")
# The platform refuses to start without a secret key outside the embedded demo. This one is
# published in the repository: for the test suite only, never for a deployment.
os.environ.setdefault(
    "FLOWPLATFORM_SECRET_KEY", "test-suite-only-key-published-in-the-repository-never-deploy-it"
)
# Keys carrying that mark are refused outside the test suite and the benchmarks.
os.environ["FLOWPLATFORM_PUBLISHED_KEY_ALLOWED"] = "true"

from flowplatform.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# WhiteNoise expects the collected static directory; the tests serve none from it.
Path(STATIC_ROOT).mkdir(parents=True, exist_ok=True)  # noqa: F405

# On SQLite (the embedded path: make test runs the tests marked ``embedded`` there), the test
# database is a file, as the embedded mode's is: an in-memory database shared between threads
# (the heartbeat's and the test's) locks whole tables instead of waiting.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": os.path.join(os.environ["FLOWPLATFORM_VAR_DIR"], "test.sqlite3")
    }
