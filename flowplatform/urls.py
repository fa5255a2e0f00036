from django.contrib import admin
from django.urls import include, path
from rest_framework.routers import DefaultRouter

from flowplatform import health
from flowplatform.api.docs import SchemaView, SwaggerView
from flowplatform.audit.api import AuditEntryViewSet
from flows.api.flows import FlowViewSet
from flows.api.runs import RunViewSet
from nodes.api.views import ConnectionViewSet, NodeTypeViewSet
from scheduling.api import FlowScheduleViewSet
from scheduling.triggers.api import FlowTriggerViewSet
from scheduling.triggers.webhooks import webhook

# The REST API, /api/v1/: one line per resource.
router = DefaultRouter()
router.register("flows", FlowViewSet, basename="flow")
router.register("runs", RunViewSet, basename="run")
router.register("nodes", NodeTypeViewSet, basename="node-type")
router.register("connections", ConnectionViewSet, basename="connection")
router.register("schedules", FlowScheduleViewSet, basename="schedule")
router.register("triggers", FlowTriggerViewSet, basename="trigger")
router.register("audit", AuditEntryViewSet, basename="audit-entry")

urlpatterns = [
    # Probes and metrics (docs/observability.md).
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(router.urls)),
    path("api/schema/", SchemaView.as_view(), name="api-schema"),
    path("api/docs/", SwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/auth/", include("rest_framework.urls")),
    path(
        "hooks/<slug:flow>/<slug:name>", webhook, name="webhook"
    ),  # session log-in for the browsable API
]

# JSON 404s under /api/, Django's page elsewhere.
handler404 = "flowplatform.api.errors.not_found"
