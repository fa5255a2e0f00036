"""The deployment files (docker/, charts/) are well-formed and agree with the settings.

No Docker engine or Helm runs here: these checks cover what can be read without them — YAML
that parses, a compose file valid against the Compose specification, services wired to
settings the platform really reads, a chart whose templates only use values that exist — and
that WhiteNoise serves the collected static files (Swagger UI) without DEBUG.
"""

from __future__ import annotations

import json
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
# Read by a program other than the settings module: gunicorn's worker count, the OpenTelemetry
# SDK's own variables, and the metrics port the Celery process hooks read.
NOT_SETTINGS = {
    "WEB_CONCURRENCY",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "FLOWPLATFORM_WORKER_METRICS_PORT",
    "FLOWPLATFORM_METRICS_TOKEN",
}


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
    assert compose["services"]["worker"]["healthcheck"]["test"] == [
        "CMD", "python", "manage.py", "workerping", "--timeout", "10",
    ]  # fmt: skip


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


def test_chart_probes_web_on_healthz_and_readyz_and_workers_with_workerping() -> None:
    web = template_text("deployment-web.yaml")
    readiness = web[web.index("readinessProbe:") : web.index("livenessProbe:")]
    liveness = web[web.index("livenessProbe:") : web.index("resources:")]
    assert "path: /readyz" in readiness and "path: /healthz" in liveness
    assert "value: localhost" in readiness and "value: localhost" in liveness
    assert '(list "localhost")' in template_text("configmap.yaml")
    worker = template_text("deployment-worker.yaml")
    assert "command: [python, manage.py, workerping, --timeout" in worker


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


# --- chart: optional parts, values schema, security ---------------------------------------------
# No helm binary here (Debian ships none): the chart cannot be rendered. Each template's
# structure is checked as text, and values files against values.schema.json with jsonschema,
# which is what `helm install/lint/template` applies before rendering.

SCHEMA = CHART / "values.schema.json"

#: Every optional part switched on, as an operator would in a values file.
ALL_ON: dict[str, Any] = {
    "scheduleWorker": {"enabled": True},
    "workerPools": [{"name": "heavy", "queues": ["heavy"], "replicas": 1, "concurrency": 1}],
    "config": {"FLOWPLATFORM_SCHEDULE_QUEUE": "schedules"},
    "metrics": {
        "enabled": True,
        "serviceMonitor": {
            "enabled": True,
            "labels": {"release": "kube-prometheus-stack"},
            "bearerTokenSecret": {"name": "metrics", "key": "token"},
        },
    },
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
        "tls": [{"secretName": "flowplatform-tls", "hosts": ["flowplatform.example.com"]}],
    },
    "podDisruptionBudget": {"web": {"enabled": True, "minAvailable": "50%"}},
    "autoscaling": {
        "enabled": True,
        "minReplicas": 1,
        "maxReplicas": 20,
        "keda": {"enabled": True, "passwordSecret": {"name": "redis", "key": "password"}},
    },
}


def merged(base: Any, override: Any) -> Any:
    """``helm --values``: maps merge key by key, anything else replaces."""
    if isinstance(base, dict) and isinstance(override, dict):
        return {k: merged(base.get(k), v) if k in base else v for k, v in override.items()} | {
            k: v for k, v in base.items() if k not in override
        }
    return override


def schema_errors(data: Any) -> list[tuple[str, str]]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    return [(e.json_path, e.message) for e in validator.iter_errors(data)]


def test_values_schema_is_a_valid_schema_and_accepts_the_defaults(values: dict[str, Any]) -> None:
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA.read_text()))
    assert schema_errors(values) == []


def test_values_schema_accepts_every_optional_part_on(values: dict[str, Any]) -> None:
    assert schema_errors(merged(values, ALL_ON)) == []


@pytest.mark.parametrize(
    ("override", "path"),
    [
        ({"web": {"replicas": "two"}}, "$.web.replicas"),
        ({"worker": {"concurrency": 0}}, "$.worker.concurrency"),
        ({"metrics": {"port": 70000}}, "$.metrics.port"),
        ({"securityContext": {"readOnlyRootFilesystem": False}}, "$.securityContext.readOnlyRootFilesystem"),
        ({"securityContext": {"allowPrivilegeEscalation": True}}, "$.securityContext.allowPrivilegeEscalation"),
        ({"podSecurityContext": {"runAsNonRoot": False}}, "$.podSecurityContext.runAsNonRoot"),
        (
            {"ingress": {"hosts": [{"host": "a.example", "paths": [{"path": "/", "pathType": "Any"}]}]}},
            "$.ingress.hosts[0].paths[0].pathType",
        ),
        ({"ingress": {"tls": [{"hosts": ["a.example"]}]}}, "$.ingress.tls[0]"),
        ({"autoscaling": {"keda": {"redisAddress": "redis://redis:6379"}}}, "$.autoscaling.keda.redisAddress"),
        ({"podDisruptionBudget": {"web": {"minAvailable": 1, "maxUnavailable": 1}}}, "$.podDisruptionBudget.web"),
        ({"metrics": {"serviceMonitor": {"interval": "often"}}}, "$.metrics.serviceMonitor.interval"),
        ({"wokrer": {"replicas": 3}}, "$"),
    ],
)  # fmt: skip
def test_values_schema_refuses_a_bad_value_naming_its_path(
    values: dict[str, Any], override: dict[str, Any], path: str
) -> None:
    errors = schema_errors(merged(values, override))
    assert errors, override
    assert path in [where for where, _ in errors], errors


def test_a_bad_values_file_fails_with_its_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad-values.yaml"
    bad.write_text("web:\n  replicas: -1\nautoscaling:\n  maxReplicas: none\n")
    paths = {
        where
        for where, _ in schema_errors(merged(load_yaml(CHART / "values.yaml"), load_yaml(bad)))
    }
    assert paths == {"$.web.replicas", "$.autoscaling.maxReplicas"}


#: Each optional template: the switch it sits behind, and the kinds it makes.
OPTIONAL = {
    "ingress.yaml": ("{{- if .Values.ingress.enabled }}", {"networking.k8s.io/v1": ["Ingress"]}),
    "servicemonitor.yaml": (
        "{{- if and .Values.metrics.enabled .Values.metrics.serviceMonitor.enabled }}",
        {"monitoring.coreos.com/v1": ["ServiceMonitor"]},
    ),
    "worker-autoscaling.yaml": (
        "{{- if .Values.autoscaling.enabled }}",
        {
            "keda.sh/v1alpha1": ["TriggerAuthentication", "ScaledObject"],
            "autoscaling/v2": ["HorizontalPodAutoscaler"],
        },
    ),
    "service-metrics.yaml": ("{{- if .Values.metrics.enabled }}", {"v1": ["Service"]}),
    "pdb.yaml": ("{{- if $budget.enabled }}", {"policy/v1": ["PodDisruptionBudget"]}),
}


@pytest.mark.parametrize("name", sorted(OPTIONAL))
def test_each_optional_template_sits_behind_its_switch_and_makes_its_kinds(name: str) -> None:
    switch, kinds = OPTIONAL[name]
    text = template_text(name)
    assert switch in text
    found = re.findall(r"^apiVersion: (\S+)\nkind: (\S+)$", text, flags=re.MULTILINE)
    assert sorted(found) == sorted((api, kind) for api, ks in kinds.items() for kind in ks)


def test_workers_scale_on_the_queue_with_keda_else_on_cpu() -> None:
    text = template_text("worker-autoscaling.yaml")
    keda, hpa = text.split("{{- else }}\napiVersion: autoscaling/v2")
    assert "{{- if $keda.enabled }}" in keda
    assert "- type: redis" in keda
    assert 'listName: {{ .Values.config.CELERY_TASK_DEFAULT_QUEUE | default "flowplatform"' in keda
    assert "listLength: {{ $keda.listLength | quote }}" in keda
    assert "name: cpu" in hpa and "averageUtilization:" in hpa
    # The autoscaler owns the general workers' replica count.
    worker = template_text("deployment-worker.yaml")
    assert '{{- if not (and $.Values.autoscaling.enabled (eq .component "worker")) }}' in worker


def test_ingress_routes_to_the_web_service_with_tls() -> None:
    text = template_text("ingress.yaml")
    assert "tls:" in text and "secretName: {{ .secretName }}" in text
    assert "ingressClassName:" in text
    assert (
        'name: {{ include "flowplatform.componentName" (dict "root" $ "component" "web") }}' in text
    )


def test_service_monitor_scrapes_web_workers_and_beat_with_the_token() -> None:
    monitor = template_text("servicemonitor.yaml")
    assert 'range list "http" "metrics"' in monitor and "path: /metrics" in monitor
    assert "authorization:" in monitor and "type: Bearer" in monitor
    services = template_text("service-metrics.yaml")
    assert '$components := list "worker" "beat"' in services and "clusterIP: None" in services
    for name in ("deployment-worker.yaml", "deployment-beat.yaml"):
        assert '{{- include "flowplatform.metricsPort"' in template_text(name), name
    # Prometheus sends the pod's address as Host: the pod allows it.
    assert "$(POD_IP)" in helper_definition("flowplatform.container")


def test_every_container_runs_locked_down_with_writable_tmp_and_metrics_dirs(
    values: dict[str, Any],
) -> None:
    container = helper_definition("flowplatform.container")
    assert "securityContext:\n  {{- toYaml .Values.securityContext | nindent 2 }}" in container
    workloads = [
        "deployment-web.yaml",
        "deployment-worker.yaml",
        "deployment-beat.yaml",
        "job-migrate.yaml",
    ]
    for name in workloads:
        text = template_text(name)
        assert text.count("- name: ") >= 1
        assert text.count('{{- include "flowplatform.container"') == len(
            re.findall(r"^\s+containers:$", text, flags=re.MULTILINE)
        ), name
        assert "initContainers" not in text, name
        assert '{{- include "flowplatform.podSpec"' in text, name
    assert values["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert values["podSecurityContext"]["runAsNonRoot"] is True
    pod = helper_definition("flowplatform.podSpec")
    assert "- name: tmp\n    emptyDir: {}" in pod and "- name: metrics\n    emptyDir: {}" in pod
    assert "mountPath: /tmp" in container
    assert "mountPath: /var/run/flowplatform/metrics" in container
    assert "- name: PROMETHEUS_MULTIPROC_DIR\n    value: /var/run/flowplatform/metrics" in container


def test_pod_disruption_budgets_cover_web_and_workers(values: dict[str, Any]) -> None:
    assert set(values["podDisruptionBudget"]) == {"web", "worker"}
    assert all(budget["enabled"] for budget in values["podDisruptionBudget"].values())
    text = template_text("pdb.yaml")
    assert "range $component, $budget := .Values.podDisruptionBudget" in text
    assert "app.kubernetes.io/component: {{ $component }}" in text


def test_notes_tell_what_to_do_next() -> None:
    notes = template_text("NOTES.txt")
    for expected in (
        "/readyz",
        "createsuperuser",
        "deploy/grafana/flowplatform.json",
        "FLOWPLATFORM_BASE_URL",
    ):
        assert expected in notes


#: Fields the optional templates write, per kind (``[]``: each item of a list).
K8S_FIELDS = {
    ("networking.k8s.io/v1", "Ingress"): [
        "spec.ingressClassName", "spec.tls[].secretName", "spec.tls[].hosts",
        "spec.rules[].host", "spec.rules[].http.paths[].path",
        "spec.rules[].http.paths[].pathType",
        "spec.rules[].http.paths[].backend.service.name",
        "spec.rules[].http.paths[].backend.service.port.name",
    ],
    ("policy/v1", "PodDisruptionBudget"): [
        "spec.minAvailable", "spec.maxUnavailable", "spec.selector.matchLabels",
    ],
    ("autoscaling/v2", "HorizontalPodAutoscaler"): [
        "spec.scaleTargetRef.apiVersion", "spec.scaleTargetRef.kind", "spec.scaleTargetRef.name",
        "spec.minReplicas", "spec.maxReplicas", "spec.metrics[].type",
        "spec.metrics[].resource.name", "spec.metrics[].resource.target.type",
        "spec.metrics[].resource.target.averageUtilization",
    ],
    ("v1", "Service"): ["spec.clusterIP", "spec.ports[].name", "spec.ports[].targetPort"],
    ("apps/v1", "Deployment"): [
        "spec.template.spec.containers[].livenessProbe.exec.command",
        "spec.template.spec.containers[].readinessProbe.httpGet.httpHeaders[].value",
        "spec.template.spec.containers[].env[].valueFrom.fieldRef.fieldPath",
        "spec.template.spec.containers[].securityContext.readOnlyRootFilesystem",
        "spec.template.spec.volumes[].emptyDir",
    ],
}  # fmt: skip


def k8s_schema_has(definitions: dict[str, Any], schema: dict[str, Any], path: str) -> bool:
    """Whether the dotted ``path`` (``[]``: list items) exists in a strict Kubernetes schema
    (its references point into ``_definitions.json``'s ``$defs``)."""

    def resolved(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = definitions[node["$ref"].rsplit("/", 1)[-1]]
        for option in node.get("allOf", []) + node.get("oneOf", []):
            if "properties" in resolved(option) or "items" in resolved(option):
                return resolved(option)
        return node

    node = resolved(schema)
    for part in path.split("."):
        name = part.removesuffix("[]")
        properties = node.get("properties", {})
        if name not in properties:
            return False
        node = resolved(properties[name])
        if part.endswith("[]"):
            node = resolved(node.get("items", {}))
    return True


def test_chart_fields_exist_in_the_kubernetes_schemas_shipped_offline() -> None:
    # kubernetes-validate ships the API's JSON schemas. Without a renderer the templates cannot
    # be validated whole; instead every field the templates write must exist in the schema of
    # its kind (a misspelt or misplaced field fails here), and each kind must be known.
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    schema_dir = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    schema_dir = schema_dir / f"v{version}-local-strict"
    text = "\n".join(p.read_text() for p in [*TEMPLATES.iterdir(), CHART / "values.yaml"])
    definitions = json.loads((schema_dir / "_definitions.json").read_text())["$defs"]
    missing = []
    for (api, kind), fields in K8S_FIELDS.items():
        group, _, api_version = api.rpartition("/")
        group_part = f"-{group.split('.')[0]}" if group else ""
        schema_file = schema_dir / f"{kind.lower()}{group_part}-{api_version}.json"
        schema = json.loads(schema_file.read_text())
        for field in fields:
            assert f"{field.rsplit('.', 1)[-1].removesuffix('[]')}:" in text, field
            if not k8s_schema_has(definitions, schema, field):
                missing.append(f"{kind}: {field}")
    assert not missing, missing
    ingress = json.loads((schema_dir / "ingress-networking-v1.json").read_text())
    assert not k8s_schema_has(definitions, ingress, "spec.rules[].http.paths[].backend.serviceName")
    made = set(re.findall(r"^apiVersion: (\S+)\nkind: (\S+)$", text, flags=re.MULTILINE))
    custom = {("keda.sh/v1alpha1", "ScaledObject"), ("keda.sh/v1alpha1", "TriggerAuthentication"),
              ("monitoring.coreos.com/v1", "ServiceMonitor")}  # fmt: skip
    assert made - custom <= {
        *K8S_FIELDS,
        ("batch/v1", "Job"),
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
    }


# --- Grafana, Compose observability, Terraform, CI -------------------------------------------------

METRICS = {
    "flowplatform_runs_total", "flowplatform_run_duration_seconds", "flowplatform_node_runs_total",
    "flowplatform_node_duration_seconds", "flowplatform_rows_total",
    "flowplatform_node_retries_total", "flowplatform_active_runs", "flowplatform_queue_depth",
    "flowplatform_schedule_fire_lag_seconds", "flowplatform_reaper_actions_total",
}  # fmt: skip


def test_grafana_dashboard_charts_every_metric() -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "flowplatform.json").read_text())
    assert dashboard["uid"] == "flowplatform"
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert all(p["targets"] and p["title"] for p in dashboard["panels"])
    used = {m for m in METRICS if any(re.search(rf"\b{m}(_bucket)?\b", e) for e in exprs)}
    assert used == METRICS
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("failed runs by flow", "node duration", "rows per second", "queue depth",
                  "schedule fire lag", "reaper"):  # fmt: skip
        assert topic in titles
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_compose_health_checks_use_the_probe_endpoints(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])
    assert "workerping" in services["worker"]["healthcheck"]["test"]
    assert "/healthz" in " ".join(services["beat"]["healthcheck"]["test"])


def test_compose_observability_profile_scrapes_web_workers_and_beat(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    optional = {n for n, s in services.items() if "observability" in s.get("profiles", [])}
    assert optional == {"prometheus", "grafana", "otel-collector"}
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    config = load_yaml(ROOT / "deploy" / "prometheus" / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["flowplatform-web"]["static_configs"][0]["targets"] == ["web:8000"]
    assert jobs["flowplatform-worker"]["dns_sd_configs"][0] == {
        "names": ["worker"],
        "type": "A",
        "port": 9808,
    }
    assert jobs["flowplatform-beat"]["static_configs"][0]["targets"] == ["beat:9808"]
    assert "web" in services["web"]["environment"]["FLOWPLATFORM_ALLOWED_HOSTS"].split(",")
    grafana = " ".join(services["grafana"]["volumes"])
    assert "../deploy/grafana/flowplatform.json:/var/lib/grafana/dashboards/" in grafana
    provider = load_yaml(
        ROOT / "deploy" / "grafana" / "provisioning" / "dashboards" / "flowplatform.yml"
    )
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    collector = load_yaml(ROOT / "deploy" / "otel-collector" / "config.yaml")
    assert collector["service"]["pipelines"]["traces"]["receivers"] == ["otlp"]
    # The platform exports over http/protobuf unless told otherwise: the collector's HTTP port.
    receivers = collector["receivers"]["otlp"]["protocols"]
    for service in ("web", "worker", "beat"):
        env = services[service]["environment"]
        assert "OTEL_EXPORTER_OTLP_PROTOCOL" not in env
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"].endswith("otel-collector:4318}")
    assert receivers["http"]["endpoint"].endswith(":4318")
    assert receivers["grpc"]["endpoint"].endswith(":4317")


TERRAFORM = ROOT / "deploy" / "terraform"


def hcl(name: str) -> dict[str, Any]:
    import hcl2

    with (TERRAFORM / name).open() as handle:
        return dict(hcl2.load(handle))


def unquoted(key: str) -> str:
    return key.strip('"')


def blocks(items: list[dict[str, Any]]) -> dict[str, Any]:
    """``[{'"name"': body}, ...]`` (python-hcl2's shape) as ``{name: body}``."""
    return {unquoted(k): v for item in items for k, v in item.items()}


def test_terraform_module_has_the_variables_resources_and_outputs_its_docs_name() -> None:
    readme = (TERRAFORM / "README.md").read_text()
    variables = blocks(hcl("variables.tf")["variable"])
    table = readme.split("| variable | meaning |")[1].split("\n\n")[0]
    documented = set(re.findall(r"`([a-z0-9_]+)`", table))
    documented -= {"DATABASE_URL", "CELERY_BROKER_URL", "FLOW_DATA_STORAGE"}
    documented = {d for d in documented if d.islower()}
    assert documented == set(variables)
    assert all(body.get("description") for body in variables.values())
    for name in ("database_url", "broker_url", "storage_url", "secret_key"):
        assert "default" not in variables[name], f"{name} must be required"
    for name in ("database_url", "broker_url", "secret_key", "encryption_keys", "metrics_token"):
        assert variables[name].get("sensitive") is True, name
    resources = {
        f"{unquoted(kind)}.{unquoted(name)}": body
        for item in hcl("main.tf")["resource"]
        for kind, named in item.items()
        for name, body in named.items()
    }
    named = set(re.findall(r"`((?:helm|kubernetes)_[a-z0-9_]+\.[a-z_]+)`", readme))
    assert (
        named
        == set(resources)
        == {
            "kubernetes_namespace_v1.flowplatform",
            "kubernetes_secret_v1.flowplatform",
            "helm_release.flowplatform",
        }
    )
    outputs = blocks(hcl("outputs.tf")["output"])
    assert set(outputs) == set(
        re.findall(r"Outputs: (.*)\.", readme)[0].replace("`", "").split(", ")
    )
    assert "No Terraform binary is available" in readme


def test_terraform_installs_the_chart_after_the_secret_it_reads() -> None:
    main = hcl("main.tf")
    release = blocks(main["resource"])["helm_release"]['"flowplatform"']
    assert release["depends_on"] == ["${kubernetes_secret_v1.flowplatform}"]
    default_chart = unquoted(blocks(hcl("variables.tf")["variable"])["chart_path"]["default"])
    assert (TERRAFORM / default_chart / "Chart.yaml").is_file()
    providers = hcl("versions.tf")["terraform"][0]["required_providers"][0]
    assert {unquoted(k) for k in providers if not k.startswith("__")} == {"helm", "kubernetes"}
    text = (TERRAFORM / "main.tf").read_text()
    # The Secret's name is the chart's default (<release>-flowplatform), its keys settings.
    assert 'fullname = "${var.release_name}-flowplatform"' in text
    keys = set(re.findall(r"^\s+([A-Z][A-Z0-9_]+)\s+=", text, flags=re.MULTILINE))
    assert (
        keys - {"FLOW_DATA_STORAGE", "AWS_S3_ENDPOINT_URL"} <= settings_env_names() | NOT_SETTINGS
    )


def test_ci_workflow_runs_the_ci_script_with_the_services() -> None:
    workflow = load_yaml(ROOT / ".github" / "workflows" / "ci.yml")
    [job] = workflow["jobs"].values()
    assert set(job["services"]) == {"postgres", "redis", "mariadb"}
    assert {s["ports"][0] for s in job["services"].values()} == {
        "5432:5432",
        "6379:6379",
        "3306:3306",
    }
    assert any(step.get("run") == ".ci/run" for step in job["steps"])
    assert "make test" in (ROOT / ".ci" / "run").read_text()


# -- the chart rendered by Helm itself -------------------------------------------------------
HELM_KUBE_VERSION = "1.29.0"
#: Custom resources of the optional parts (their schemas are the operators', not Kubernetes').
CUSTOM_KINDS = {"ServiceMonitor", "ScaledObject", "TriggerAuthentication"}
SECRET_VALUES = {
    "secret": {
        "create": True,
        "values": {
            "FLOWPLATFORM_SECRET_KEY": "k" * 50,
            "DATABASE_URL": "postgres://flowplatform@db:5432/flowplatform",
            "CELERY_BROKER_URL": "redis://redis:6379/0",
        },
    }
}


@pytest.fixture(scope="module")
def helm() -> str:
    """The helm binary: on the PATH, or unpacked by .ci/install-helm into var/tools."""
    import os
    import shutil

    found = shutil.which("helm") or str(ROOT / "var" / "tools" / "helm" / "helm")
    if not Path(found).is_file():
        reason = "helm is not installed (bash .ci/install-helm)"
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"{reason}; CI must render the chart (.ci/run installs helm)")
        pytest.skip(f"{reason}; chart rendering skipped outside CI")
    return found


def helm_template(
    helm: str, values: dict[str, Any], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    return subprocess.run(
        [
            helm, "template", "fp", str(CHART), "--values", str(values_file),
            "--kube-version", HELM_KUBE_VERSION,
            "--api-versions", "monitoring.coreos.com/v1", "--api-versions", "keda.sh/v1alpha1",
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_helm_lints_the_chart(helm: str, tmp_path: Path) -> None:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(merged(ALL_ON, SECRET_VALUES)))
    result = subprocess.run(
        [helm, "lint", str(CHART), "--values", str(values_file)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_chart_renders_with_every_optional_part_on_into_valid_manifests(
    helm: str, tmp_path: Path
) -> None:
    import kubernetes_validate

    result = helm_template(helm, merged(ALL_ON, SECRET_VALUES), tmp_path)
    assert result.returncode == 0, result.stderr
    manifests = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    kinds = sorted(doc["kind"] for doc in manifests)
    for kind in ("Ingress", "PodDisruptionBudget", "ScaledObject", "ServiceMonitor", "Job"):
        assert kind in kinds, kinds
    assert kinds.count("PodDisruptionBudget") == 2  # web and workers
    for doc in manifests:
        if doc["kind"] in CUSTOM_KINDS:
            continue
        # strict: an unknown field anywhere is an error, as the API server would report it
        kubernetes_validate.validate(doc, HELM_KUBE_VERSION.rsplit(".", 1)[0], strict=True)
    for doc in manifests:
        if doc["kind"] == "Deployment":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                context = container["securityContext"]
                assert context["allowPrivilegeEscalation"] is False
                assert context["readOnlyRootFilesystem"] is True


@pytest.mark.parametrize("blank", ["", "   "])
def test_helm_refuses_to_render_with_an_empty_secret_key(
    helm: str, tmp_path: Path, blank: str
) -> None:
    values = merged(ALL_ON, SECRET_VALUES)
    values["secret"]["values"]["FLOWPLATFORM_SECRET_KEY"] = blank
    result = helm_template(helm, values, tmp_path)
    assert result.returncode != 0
    assert "secret.values.FLOWPLATFORM_SECRET_KEY is empty" in result.stderr


def test_helm_refuses_a_bad_value_naming_its_path(helm: str, tmp_path: Path) -> None:
    values = merged(merged(ALL_ON, SECRET_VALUES), {"autoscaling": {"maxReplicas": "twenty"}})
    result = helm_template(helm, values, tmp_path)
    assert result.returncode != 0
    assert "autoscaling.maxReplicas" in result.stderr
