from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"
    verbose_name = "OpenAI runs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Importing registers the example tools the demo and the docs use.
        from . import example_tools  # noqa: F401
