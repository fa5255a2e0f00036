"""The deployment files (docker/, charts/) are well-formed and agree with the settings.

No Docker engine or Helm runs here: these checks cover what can be read without them — YAML
that parses, a compose file valid against the Compose specification, services wired to
settings the platform really reads, a chart whose templates only use values that exist — and
that WhiteNoise serves the collected static files (Swagger UI) without DEBUG.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings as django_settings
from django.core.management import call_command
from django.test import Client

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "docker-compose.yml"
CHART = ROOT / "charts" / "flowplatform"
TEMPLATES = CHART / "templates"

SIX_SERVICES = {"web", "worker", "beat", "postgres", "redis", "minio"}
APP_SERVICES = {"migrate", "web", "worker", "beat"}
# Read by a program other than the settings module.
NOT_SETTINGS = {"WEB_CONCURRENCY"}  # gunicorn's worker count


def settings_env_names() -> set[str]:
    """Names of the environment variables ``flowplatform/settings.py`` reads."""
    source = (ROOT / "flowplatform" / "settings.py").read_text()
    return set(re.findall(r'env_(?:str|bool|int|list)\(\s*"([A-Z][A-Z0-9_]*)"', source))


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return load_yaml(CHART / "values.yaml")


def template_text(name: str) -> str:
    return (TEMPLATES / name).read_text()


# --- docker/ -----------------------------------------------------------------------------------


def test_every_yaml_file_in_docker_parses() -> None:
    files = sorted([*DOCKER.rglob("*.yml"), *DOCKER.rglob("*.yaml")])
    assert COMPOSE_FILE in files
    for path in files:
        assert isinstance(load_yaml(path), dict), path


def test_compose_file_is_valid_against_the_compose_specification(tmp_path: Path) -> None:
    def check(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
             str(path)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    result = check(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    # The validator is really at work: a misspelt service key is refused.
    broken = tmp_path / "compose.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("depends_on:", "depend_on:", 1))
    assert check(broken).returncode != 0


def test_compose_runs_the_six_services_after_migrations(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= SIX_SERVICES | {"migrate", "createbucket"}
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    assert "minio/minio" in services["minio"]["image"]
    assert "minio/mc" in services["createbucket"]["image"]
    for name in ("postgres", "redis", "minio", "web", "worker"):
        assert services[name]["healthcheck"]["test"], name
    for name in ("web", "worker", "beat"):
        depends = services[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
        assert depends["redis"] == {"condition": "service_healthy"}, name
    assert services["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert services["migrate"]["command"][-2:] == ["migrate", "--noinput"]
    for one_shot in ("migrate", "createbucket"):
        assert services[one_shot]["restart"] == "no"


def test_compose_app_services_use_only_settings_the_platform_reads(
    compose: dict[str, Any],
) -> None:
    known = settings_env_names()
    services = compose["services"]
    for name in APP_SERVICES:
        environment = services[name]["environment"]
        unknown = set(environment) - known - NOT_SETTINGS
        assert not unknown, f"{name}: variables no setting reads: {sorted(unknown)}"
        assert {"DATABASE_URL", "CELERY_BROKER_URL", "FLOW_DATA_STORAGE"} <= set(environment)
    env = services["web"]["environment"]
    assert env["FLOW_DATA_STORAGE"].startswith("s3://flowdata/")
    assert env["AWS_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert env["AWS_S3_ADDRESSING_STYLE"] == "path"  # MinIO
    assert "mc mb --ignore-existing flowplatform/flowdata" in " ".join(
        services["createbucket"]["command"]
    )


def test_compose_beat_keeps_the_configured_guarded_scheduler(compose: dict[str, Any]) -> None:
    # CELERY_BEAT_SCHEDULER (settings) names the guarded scheduler; a --scheduler flag would
    # replace it with one that neither holds the lease nor times schedules the same way.
    command = compose["services"]["beat"]["command"]
    assert command[:4] == ["celery", "-A", "flowplatform", "beat"]
    assert not {"-S", "--scheduler"} & set(command)
    assert django_settings.CELERY_BEAT_SCHEDULER == "scheduling.beat:GuardedScheduler"


def test_compose_worker_consumes_the_schedule_queue_when_one_is_set(
    compose: dict[str, Any],
) -> None:
    command = " ".join(compose["services"]["worker"]["command"])
    assert "celery -A flowplatform worker" in command
    assert "FLOWPLATFORM_SCHEDULE_QUEUE:+," in command
    assert "inspect ping" in " ".join(compose["services"]["worker"]["healthcheck"]["test"])


def test_dockerfile_installs_runtime_requirements_and_runs_as_non_root() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text()
    instructions = [line for line in re.sub(r"\\\n", " ", dockerfile).splitlines() if line.strip()]
    instructions = [line for line in instructions if not line.lstrip().startswith("#")]
    assert instructions[0] == "FROM python:3.11-slim"
    assert "pip install -r requirements/base.txt" in dockerfile
    assert "dev.txt" not in dockerfile
    assert "collectstatic --noinput" in dockerfile
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users, "the image must switch to a non-root user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "a numeric non-root uid (runAsNonRoot checks it)"
    cmd = next(line for line in instructions if line.startswith("CMD "))
    assert '"gunicorn", "flowplatform.wsgi:application"' in cmd


def test_dockerfile_copies_every_project_app() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\S+) ", dockerfile, flags=re.MULTILINE))
    local = {
        app for app in django_settings.INSTALLED_APPS if "." not in app and (ROOT / app).is_dir()
    }
    assert local, "INSTALLED_APPS lists the project's apps"
    assert local | {"flowplatform", "examples"} <= copied
    ignored = (DOCKER / "Dockerfile.dockerignore").read_text().split()
    assert {".env", ".venv", ".git"} <= set(ignored)


def test_gunicorn_and_whitenoise_are_pinned_runtime_requirements() -> None:
    base = (ROOT / "requirements" / "base.txt").read_text()
    for package in ("gunicorn", "whitenoise"):
        assert re.search(rf"^{package}==\d", base, flags=re.MULTILINE), package


# --- charts/flowplatform ----------------------------------------------------------------------


def test_chart_metadata_and_templates_are_present(values: dict[str, Any]) -> None:
    chart = load_yaml(CHART / "Chart.yaml")
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "flowplatform"
    assert chart["version"] and chart["appVersion"]
    expected = {
        "_helpers.tpl", "NOTES.txt", "configmap.yaml", "secret.yaml", "service-web.yaml",
        "deployment-web.yaml", "deployment-worker.yaml", "deployment-beat.yaml",
        "job-migrate.yaml",
    }  # fmt: skip
    assert expected <= {path.name for path in TEMPLATES.iterdir()}
    assert values["web"]["replicas"] >= 1 and values["worker"]["replicas"] >= 1


def test_every_values_reference_in_the_templates_exists(values: dict[str, Any]) -> None:
    missing = []
    for path in sorted(TEMPLATES.iterdir()):
        for reference in re.findall(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", path.read_text()):
            node: Any = values
            for key in reference.strip(".").split("."):
                if not isinstance(node, dict) or key not in node:
                    missing.append(f"{path.name}: .Values{reference}")
                    break
                node = node[key]
    assert not missing, missing


def test_every_top_level_value_is_used_by_a_template(values: dict[str, Any]) -> None:
    text = "\n".join(path.read_text() for path in TEMPLATES.iterdir())
    unused = [key for key in values if not re.search(rf"\.Values\.{key}\b", text)]
    assert not unused, unused


def test_chart_settings_are_ones_the_platform_reads(values: dict[str, Any]) -> None:
    known = settings_env_names()
    assert set(values["config"]) <= known
    assert set(values["secretEnv"]) <= known
    assert {"FLOWPLATFORM_SECRET_KEY", "FLOWPLATFORM_ENCRYPTION_KEYS", "DATABASE_URL"} <= set(
        values["secretEnv"]
    )
    assert "FLOWPLATFORM_ALLOWED_HOSTS" in known  # rendered from allowedHosts


def helper_definition(name: str) -> str:
    """The body of ``{{- define "name" -}}`` in _helpers.tpl."""
    match = re.search(
        rf'{{{{- define "{re.escape(name)}" -}}}}\n(.*?)\n{{{{- end }}}}\n(?={{{{/\*|\Z)',
        template_text("_helpers.tpl"),
        flags=re.DOTALL,
    )
    assert match, name
    return match.group(1)


def test_chart_refuses_a_missing_or_empty_secret_key(values: dict[str, Any]) -> None:
    check = helper_definition("flowplatform.checkSecretKey")
    # Rendered by every install and upgrade: the ConfigMap is always part of the release.
    assert '{{- include "flowplatform.checkSecretKey" . }}' in template_text("configmap.yaml")
    # No reference to the key at all.
    assert re.search(r'if not \(hasKey \.Values\.secretEnv "FLOWPLATFORM_SECRET_KEY"\) }}\n'
                     r'{{- fail ', check)  # fmt: skip
    # The chart's own Secret: the value, trimmed, must not be empty.
    assert re.search(
        r"if not \(index \.Values\.secret\.values \$key \| default \"\" \| toString \| trim\) }}"
        r"\n{{- fail ",
        check,
    )
    # A Secret made outside the chart: read back when Helm can see it, its value decoded.
    assert 'lookup "v1" "Secret" .Release.Namespace $name' in check
    assert re.search(r"\| b64dec \| trim\) }}\n{{- fail ", check)
    # The defaults ship no key: an install without one fails instead of starting on a blank.
    assert "FLOWPLATFORM_SECRET_KEY" not in values["secret"]["values"]
    assert values["secretEnv"]["FLOWPLATFORM_SECRET_KEY"] == {"name": "", "key": ""}


def test_every_template_block_is_closed() -> None:
    # No helm binary here: at least each if/range/with/define has its end, in order.
    token = re.compile(r"{{-?\s*(if|range|with|define|block|else|end)\b")
    for path in sorted(TEMPLATES.iterdir()):
        depth = 0
        for match in token.finditer(path.read_text()):
            if match.group(1) == "end":
                depth -= 1
            elif match.group(1) != "else":
                depth += 1
            assert depth >= 0, f"{path.name}: an end without its block at {match.start()}"
        assert depth == 0, f"{path.name}: {depth} block(s) left open"


def test_compose_refuses_an_empty_secret_key(compose: dict[str, Any]) -> None:
    # ":?" fails `docker compose up` when the variable is unset or empty.
    environment = compose["x-app"]["environment"]
    assert re.fullmatch(
        r"\$\{FLOWPLATFORM_SECRET_KEY:\?[^}]+\}", environment["FLOWPLATFORM_SECRET_KEY"]
    )
    example = (DOCKER / ".env.example").read_text()
    assert re.search(r"^FLOWPLATFORM_SECRET_KEY=$", example, flags=re.MULTILINE)


def test_example_settings_ship_no_secret_key() -> None:
    example = (ROOT / ".env.example").read_text()
    assert re.search(r"^FLOWPLATFORM_SECRET_KEY=$", example, flags=re.MULTILINE)


def test_health_checks_say_they_came_over_https() -> None:
    # With FLOWPLATFORM_HTTPS a plain-HTTP request is redirected; the probes pass as the proxy does.
    web = template_text("deployment-web.yaml")
    assert re.search(r"- name: X-Forwarded-Proto\n\s+value: https", web)
    compose = load_yaml(COMPOSE_FILE)
    assert "'X-Forwarded-Proto': 'https'" in " ".join(
        compose["services"]["web"]["healthcheck"]["test"]
    )


def test_chart_runs_exactly_one_beat_with_recreate() -> None:
    beat = template_text("deployment-beat.yaml")
    assert re.search(r"^  replicas: 1$", beat, flags=re.MULTILINE)
    assert re.search(r"strategy:\n    type: Recreate", beat)
    assert "- beat" in beat and "--scheduler" not in beat
    assert "replicas" not in load_yaml(CHART / "values.yaml")["beat"]  # not a knob


def test_chart_migrates_in_a_pre_install_and_pre_upgrade_hook() -> None:
    job = template_text("job-migrate.yaml")
    assert "kind: Job" in job
    assert "helm.sh/hook: pre-install,pre-upgrade" in job
    assert "- migrate" in job
    # The job's ConfigMap (and Secret, when the chart makes it) must exist before it runs.
    for name in ("configmap.yaml", "secret.yaml"):
        text = template_text(name)
        assert "helm.sh/hook: pre-install,pre-upgrade" in text, name
        assert 'helm.sh/hook-weight: "-10"' in text, name


def test_chart_probes_web_over_http_and_workers_with_celery_ping() -> None:
    web = template_text("deployment-web.yaml")
    assert "path: /admin/login/" in web
    assert "value: localhost" in web  # the Host header; the ConfigMap allows it
    assert '(list "localhost")' in template_text("configmap.yaml")
    worker = template_text("deployment-worker.yaml")
    assert 'inspect ping --destination "celery@$HOSTNAME"' in worker


# --- static files without DEBUG ---------------------------------------------------------------


def test_whitenoise_sits_right_after_the_security_middleware() -> None:
    middleware = django_settings.MIDDLEWARE
    security = middleware.index("django.middleware.security.SecurityMiddleware")
    assert middleware[security + 1] == "whitenoise.middleware.WhiteNoiseMiddleware"


def test_swagger_ui_and_its_static_files_are_served_without_debug(
    settings: Any, tmp_path: Path, admin_user: Any
) -> None:
    settings.DEBUG = False
    settings.STATIC_ROOT = tmp_path / "static"
    call_command("collectstatic", interactive=False, verbosity=0)
    client = Client()  # created after STATIC_ROOT changed: WhiteNoise indexes it on first use
    client.force_login(admin_user)  # the API docs are for logged-in users

    page = client.get("/api/docs/")
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.content.decode())
    assert any(asset.endswith("swagger-ui-bundle.js") for asset in assets), assets
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
        served = b"".join(response.streaming_content)
        on_disk = (settings.STATIC_ROOT / asset.removeprefix("/static/")).read_bytes()
        assert served == on_disk, asset
    assert client.get("/static/admin/css/base.css").status_code == 200
    assert client.get("/static/no/such/file.css").status_code == 404
