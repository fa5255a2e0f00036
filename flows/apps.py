from django.apps import AppConfig


class FlowsConfig(AppConfig):
    name = "flows"
    verbose_name = "Flows and runs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from flows import hooks
        from flows.admission import run_finished

        # A run that ends frees a slot: start the runs waiting for one.
        hooks.on_run_finished("flows.admission", run_finished)
