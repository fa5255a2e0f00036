from django.apps import AppConfig


class NodesConfig(AppConfig):
    name = "nodes"
    verbose_name = "Nodes and connections"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from nodes.registry import registry

        registry.load()
