"""Finding a run's tasks in Flower: arguments shown by name, matched exactly by Flower's search."""

from __future__ import annotations

from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

from flower.utils.search import TaskSearchEngine

from runs import flower


def published(task_name: str, *args: object, **kwargs: object) -> dict[str, str]:
    """The display headers a ``runs.*`` task is sent with (what Flower shows and searches)."""
    headers = {"argsrepr": repr(args), "kwargsrepr": repr(kwargs)}
    flower.name_task_arguments(sender=task_name, body=(args, kwargs, {}), headers=headers)
    return headers


def test_run_tasks_show_their_arguments_by_name():
    assert published("runs.poll_run", 42, 7) == {
        "argsrepr": "()",
        "kwargsrepr": "{'run_id': 42, 'generation': 7}",
    }
    assert published("runs.start_run", run_id=42)["kwargsrepr"] == "{'run_id': 42}"


def test_other_tasks_and_odd_calls_are_left_alone():
    assert published("celery.backend_cleanup", 1) == {"argsrepr": "(1,)", "kwargsrepr": "{}"}
    # Arguments that do not fit the signature: shown as sent rather than guessed at.
    assert published("runs.poll_run", 1, 2, 3)["argsrepr"] == "(1, 2, 3)"


def test_the_admin_link_finds_exactly_this_runs_tasks_with_flowers_own_search(settings):
    settings.FLOWER_URL = "http://flower:5555/"
    url = flower.tasks_url(42)
    assert url.startswith("http://flower:5555/tasks?name=")
    # Flower turns ?name=<value> into the query "name:<value>".
    query = "name:" + parse_qs(urlsplit(url).query)["name"][0]

    def task(uuid: str, name: str, *args: int) -> SimpleNamespace:
        kwargsrepr = published(name, *args)["kwargsrepr"]
        return SimpleNamespace(uuid=uuid, name=name, state="SUCCESS", args="()", kwargs=kwargsrepr)

    tasks = [
        task("a", "runs.poll_run", 42, 3),
        task("b", "runs.poll_run", 420, 3),
        task("c", "runs.cancel_run", 42),
        task("d", "runs.start_run", 4),
        task("e", "runs.poll_run", 4, 42),
    ]
    engine = TaskSearchEngine()
    engine.rebuild((t.uuid, t) for t in tasks)
    assert engine.matching_ids(query) == {"a", "c"}
