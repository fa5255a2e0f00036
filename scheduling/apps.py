"""Schedules (FlowSchedule kept in sync with django-celery-beat) and triggers."""

from django.apps import AppConfig


class SchedulingConfig(AppConfig):
    name = "scheduling"
    verbose_name = "Scheduling"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_delete, pre_delete

        from flows.access import SectionAccess, register_section_access
        from flows.admin_extensions import register_flow_inline
        from flows.sections import FlowFileSection, register_section
        from scheduling import access as schedule_access
        from scheduling import flowfile
        from scheduling.models import FlowSchedule
        from scheduling.signals import delete_periodic_task, disable_owned_schedules
        from scheduling.triggers import access as trigger_access
        from scheduling.triggers import designer as trigger_designer
        from scheduling.triggers import flowfile as trigger_flowfile
        from scheduling.triggers.hooks import connect as connect_trigger_hooks

        post_delete.connect(
            delete_periodic_task, sender=FlowSchedule, dispatch_uid="scheduling.delete_entry"
        )
        pre_delete.connect(
            disable_owned_schedules,
            sender=get_user_model(),
            dispatch_uid="scheduling.disable_owned_schedules",
        )
        register_flow_inline("scheduling.admin.FlowScheduleInline")
        register_section_access(
            SectionAccess(
                key="schedules", rights=schedule_access.section_rights, claim=schedule_access.claim
            )
        )
        register_section(
            FlowFileSection(
                key="schedules",
                validate=flowfile.validate_section,
                apply=flowfile.apply_section,
                export=flowfile.export_section,
            )
        )
        register_section_access(
            SectionAccess(
                key="triggers", rights=trigger_access.section_rights, claim=trigger_access.claim
            )
        )
        register_section(
            FlowFileSection(
                key="triggers",
                validate=trigger_flowfile.validate_section,
                apply=trigger_flowfile.apply_section,
                export=trigger_flowfile.export_section,
                editor="scheduling/canvas/triggers.js",
                canvas_data=trigger_designer.canvas_data,
            )
        )
        connect_trigger_hooks()
