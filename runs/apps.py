"""The app's start-up: signal receivers, system checks and the beat schedule it offers."""

from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"
    verbose_name = "OpenAI runs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from celery import current_app
        from celery.signals import before_task_publish, worker_init, worker_ready

        from . import beat, checks, flower, live, metrics  # noqa: F401 - checks registers
        from .backends import registry
        from .signals import run_status_changed

        # Operators (docs/operations.md): live status, metrics, readable tasks in Flower.
        run_status_changed.connect(live.publish_status_change, dispatch_uid="runs.live")
        run_status_changed.connect(metrics.on_status_changed, dispatch_uid="runs.metrics")
        before_task_publish.connect(flower.name_task_arguments, dispatch_uid="runs.flower")
        worker_ready.connect(metrics.on_worker_ready, dispatch_uid="runs.metrics.worker")
        # A worker loads the SDK before its first task, not during it (Backend.warm says why).
        worker_init.connect(registry.warm_all, dispatch_uid="runs.backends.warm")
        # The recovery sweep in the host's beat schedule (runs/beat.py says why here).
        beat.offer_schedule(current_app._get_current_object())
