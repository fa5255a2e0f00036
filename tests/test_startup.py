"""Start-up: no process runs outside the embedded demo without a secret key of its own, and the
documented production settings pass ``manage.py check --deploy``.

Every case starts real processes (``manage.py``, ``celery worker``/``beat``, gunicorn) on the
production settings module, with an environment built from scratch.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"
CONFIG_EXIT_STATUS = 4
KEY_MESSAGE = "flowplatform: configuration error: FLOWPLATFORM_SECRET_KEY"
A_REAL_KEY = "kq3V9fX2-b7wZrT1yHcN0pLmE5sJdA8uGiO4xYeQ6vRtUzW_aSgBnCfMhKjPlDoIy"


def base_env(tmp_path: Path, **values: str) -> dict[str, str]:
    """The production settings module with only ``values`` set (no .env, no test settings)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("FLOWPLATFORM_", "DJANGO_", "CELERY_", "DATABASE_", "FLOW_DATA"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="flowplatform.settings",
        FLOWPLATFORM_VAR_DIR=str(tmp_path / "var"),
        **values,
    )
    return env


def production(tmp_path: Path, **values: str) -> dict[str, str]:
    """PostgreSQL and Redis, as every deployment runs (the database need not exist)."""
    return base_env(
        tmp_path,
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/flowplatform_startup_unused",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/15",
        **values,
    )


def run(
    args: list[str], env: dict[str, str], timeout: float = 60, umask: int = -1
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        umask=umask,
    )


def manage(*args: str) -> list[str]:
    return [sys.executable, "manage.py", *args]


def celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "flowplatform", *args]


def assert_refused_in_one_line(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == CONFIG_EXIT_STATUS, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("flowplatform:")]
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert "Traceback" not in result.stderr


# --- a secret key is required outside the embedded demo -----------------------------------------


@pytest.mark.parametrize("key", [None, "", "   "], ids=["unset", "empty", "blank"])
@pytest.mark.parametrize(
    "command",
    [manage("check"), manage("migrate", "--check"), celery("worker", "--loglevel", "INFO"),
     celery("beat", "--loglevel", "INFO")],
    ids=["manage-check", "manage-migrate", "celery-worker", "celery-beat"],
)  # fmt: skip
def test_no_process_starts_without_a_secret_key(
    tmp_path: Path, command: list[str], key: str | None
) -> None:
    values = {} if key is None else {"FLOWPLATFORM_SECRET_KEY": key}
    result = run(command, production(tmp_path, **values))
    assert_refused_in_one_line(result, f"{KEY_MESSAGE} is not set")


def test_the_wsgi_application_refuses_to_load_and_gunicorn_stops(tmp_path: Path) -> None:
    env = production(tmp_path, FLOWPLATFORM_SECRET_KEY="")
    imported = run([sys.executable, "-c", "import flowplatform.wsgi"], env)
    assert_refused_in_one_line(imported, f"{KEY_MESSAGE} is not set")
    # gunicorn's master stops on that exit status instead of booting new workers forever.
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    served = run([gunicorn, "flowplatform.wsgi:application", "--bind", "127.0.0.1:0"], env)
    assert served.returncode != 0
    assert served.stderr.count(f"{KEY_MESSAGE} is not set") == 1, served.stderr
    assert "App failed to load" in served.stderr


@pytest.mark.parametrize(
    "values",
    [
        {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/flowplatform_startup_unused"},
        {"CELERY_BROKER_URL": "redis://127.0.0.1:6379/15"},
    ],
    ids=["postgresql-without-broker", "sqlite-with-broker"],
)
def test_only_sqlite_without_a_broker_is_the_embedded_demo(
    tmp_path: Path, values: dict[str, str]
) -> None:
    result = run(manage("check"), base_env(tmp_path, **values))
    assert_refused_in_one_line(result, f"{KEY_MESSAGE} is not set")


@pytest.mark.parametrize(
    "key", ["change-me", "insecure-embedded-default-set-FLOWPLATFORM_SECRET_KEY"]
)
def test_published_example_keys_are_refused(tmp_path: Path, key: str) -> None:
    result = run(manage("check"), production(tmp_path, FLOWPLATFORM_SECRET_KEY=key))
    assert_refused_in_one_line(result, f"{KEY_MESSAGE} is a published example value")


def repository_keys() -> list[str]:
    """The secret keys the test settings and the benchmarks publish."""
    sources = [ROOT / "tests" / "settings.py", ROOT / "bench" / "common.py"]
    return [
        k for path in sources for k in re.findall(r'"([\w-]+never-deploy-it)"', path.read_text())
    ]


def test_the_repository_publishes_two_marked_keys() -> None:
    assert len(repository_keys()) == 2


@pytest.mark.parametrize("key", repository_keys())
@pytest.mark.parametrize("demo", [False, True], ids=["production", "demo"])
def test_keys_published_for_tests_and_benchmarks_are_refused_elsewhere(
    tmp_path: Path, key: str, demo: bool
) -> None:
    env = (base_env if demo else production)(tmp_path, FLOWPLATFORM_SECRET_KEY=key)
    result = run(manage("check"), env)
    assert_refused_in_one_line(result, f"{KEY_MESSAGE} is a key published in the repository")
    env["FLOWPLATFORM_PUBLISHED_KEY_ALLOWED"] = "true"  # as the test and benchmark settings do
    assert run(manage("check"), env).returncode == 0


def test_encryption_keys_alone_do_not_replace_the_secret_key(tmp_path: Path) -> None:
    fernet = "0lUtlW5HvP7zmuQZ6cT3A4xPJ-8nqOo6cPH0b1b0Bzo="
    result = run(manage("check"), production(tmp_path, FLOWPLATFORM_ENCRYPTION_KEYS=fernet))
    assert_refused_in_one_line(result, f"{KEY_MESSAGE} is not set")


def test_a_secret_key_lets_every_process_load_its_settings(tmp_path: Path) -> None:
    env = production(tmp_path, FLOWPLATFORM_SECRET_KEY=A_REAL_KEY)
    assert run(manage("check"), env).returncode == 0
    result = run(celery("inspect", "ping", "--timeout", "0.5"), env)
    assert "configuration error" not in result.stderr  # no worker answers: that is all


def test_the_embedded_demo_runs_without_any_setting(tmp_path: Path) -> None:
    result = run(manage("rundemo", "--orders", "20"), base_env(tmp_path), timeout=120, umask=0o022)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("succeeded"), result.stdout
    assert "Traceback" not in result.stderr, result.stderr  # (e.g. a run-end hook on SQLite)
    # The platform's files are its user's only, whatever the umask.
    var = tmp_path / "var"
    assert stat.S_IMODE(var.stat().st_mode) == 0o700
    assert stat.S_IMODE((var / "flowplatform.sqlite3").stat().st_mode) == 0o600
    assert stat.S_IMODE((var / "demo").stat().st_mode) == 0o700


# --- check --deploy with the documented production settings ------------------------------------


def documented_production_settings() -> dict[str, str]:
    """The ``NAME=value`` lines of the block docs/deployment.md marks as production HTTPS."""
    text = DEPLOYMENT_DOC.read_text()
    block = re.search(r"<!-- production-https:.*?-->\n```sh\n(.*?)```", text, flags=re.DOTALL)
    assert block, "docs/deployment.md lost its production HTTPS block"
    values = dict(line.split("=", 1) for line in block.group(1).splitlines() if "=" in line)
    assert values.pop("FLOWPLATFORM_SECRET_KEY").startswith("<")  # a placeholder: generate one
    return values


def check_deploy(tmp_path: Path, **values: str) -> subprocess.CompletedProcess[str]:
    env = production(tmp_path, FLOWPLATFORM_SECRET_KEY=A_REAL_KEY, **values)
    return run(manage("check", "--deploy", "--fail-level", "WARNING"), env)


def test_check_deploy_is_clean_with_the_documented_production_settings(tmp_path: Path) -> None:
    settings = documented_production_settings()
    assert {"FLOWPLATFORM_HTTPS", "FLOWPLATFORM_PROXY_SSL_HEADER"} <= set(settings)
    result = check_deploy(tmp_path, **settings)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_warns_without_them(tmp_path: Path) -> None:
    result = check_deploy(tmp_path)
    assert result.returncode != 0
    for check in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert check in result.stderr, check


def test_a_malformed_proxy_header_is_refused_in_one_line(tmp_path: Path) -> None:
    env = production(
        tmp_path, FLOWPLATFORM_SECRET_KEY=A_REAL_KEY, FLOWPLATFORM_PROXY_SSL_HEADER="X Proto: https"
    )
    assert_refused_in_one_line(
        run(manage("check"), env),
        "flowplatform: configuration error: FLOWPLATFORM_PROXY_SSL_HEADER",
    )


@pytest.mark.parametrize("roots", ["landing", "/srv/landing,/", "/srv/../"])
def test_a_file_root_that_is_relative_or_the_whole_disk_is_refused(
    tmp_path: Path, roots: str
) -> None:
    env = production(tmp_path, FLOWPLATFORM_SECRET_KEY=A_REAL_KEY, FLOWPLATFORM_FILE_ROOTS=roots)
    assert_refused_in_one_line(
        run(manage("check"), env), "flowplatform: configuration error: FLOWPLATFORM_FILE_ROOTS"
    )
