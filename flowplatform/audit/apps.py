from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "flowplatform.audit"
    label = "audit"
    verbose_name = "audit trail"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from flowplatform.audit import tracking

        tracking.connect()
