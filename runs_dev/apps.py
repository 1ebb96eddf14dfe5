from django.apps import AppConfig


class RunsDevConfig(AppConfig):
    """The dev app; listed after ``runs`` in ``INSTALLED_APPS`` (it registers tools there)."""

    name = "runs_dev"
    verbose_name = "OpenAI runs: development tools"

    def ready(self) -> None:
        # Importing example_tools registers ``add`` and ``utc_now`` in every process of the host
        # (web and worker need the same registry): the demo, the chaos run and the docs use them.
        from . import example_tools, worker_probe  # noqa: F401

        # Only a worker started by the chaos driver (its environment names a probe directory)
        # reports readiness and work; in every other process this does nothing.
        worker_probe.install()
