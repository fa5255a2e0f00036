from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "flowplatform.alerts"
    label = "alerts"
    verbose_name = "alerts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from flowplatform.alerts import access, details, flowfile, notify
        from flows import hooks
        from flows.access import SectionAccess, register_section_access
        from flows.sections import FlowFileSection, register_run_detail, register_section
        from flows.signals import run_finished

        register_section(
            FlowFileSection(
                key="alerts",
                validate=flowfile.validate_section,
                apply=flowfile.apply_section,
                export=flowfile.export_section,
                editor="alerts/canvas/alerts.js",
            )
        )
        register_section_access(
            SectionAccess(
                key="alerts",
                rights=access.section_rights,
                claim=access.claim,
                check=access.check_connections,
            )
        )
        register_run_detail("alerts", details.run_alerts)
        run_finished.connect(notify.on_run_finished, dispatch_uid="alerts.on_run_finished")
        hooks.concern("alerts", notify.concerned)
