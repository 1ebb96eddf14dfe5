"""A batch's files travel under a deadline of their own (``RUNS_BATCH_FILE_TIMEOUT_S``), not a
create's: an output file of 50,000 responses may take minutes to arrive, and one cut off at 30 s
every time would never be read.

Through the real SDK and real HTTP to the simulator, whose trickle fault sends a file's content a
few bytes at a time: the transfer is slower than ``OPENAI_CREATE_TIMEOUT_S`` yet arrives whole
(streamed to a temporary file), and is cut at the file deadline when that is shorter.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import openai
import pytest

from runs.backends import batch_api
from runs.client import get_client, get_create_client, get_file_client
from runs.engine import batch_files

from .test_batches import jsonl, output_line

if TYPE_CHECKING:
    from runs_simulator.testing import RunningSimulator

#: The trickled download's length: longer than a create's deadline here, shorter than a file's.
TRICKLE_S = 2.5


@pytest.fixture
def sim(settings, simulator: RunningSimulator) -> Iterator[RunningSimulator]:
    """The shared simulator; calls and creates get 1 s, files 10 s. Faults and clients undone."""
    settings.OPENAI_BASE_URL = simulator.base_url
    settings.OPENAI_TIMEOUT_S = 1.0
    settings.OPENAI_CREATE_TIMEOUT_S = 1.0
    settings.RUNS_BATCH_FILE_TIMEOUT_S = 10.0
    get_client.cache_clear()
    get_create_client.cache_clear()
    before = simulator.config()
    yield simulator
    touched = ("fault_trickle_rate", "trickle_s", "trickle_interval_s", "fault_only")
    simulator.configure(**{key: before[key] for key in touched})
    get_client.cache_clear()
    get_create_client.cache_clear()


def trickle_downloads(sim: RunningSimulator) -> None:
    sim.configure(
        fault_trickle_rate=1.0,
        trickle_s=TRICKLE_S,
        trickle_interval_s=0.2,
        fault_only=["files.content"],
    )


def test_the_file_client_has_the_file_deadline_and_follows_the_setting(sim, settings):
    assert get_file_client().timeout == 10.0
    settings.RUNS_BATCH_FILE_TIMEOUT_S = 120.0
    assert get_file_client().timeout == 120.0  # not cached: the setting as it is now
    assert get_create_client().timeout == 1.0


def test_a_slow_output_file_arrives_whole_within_the_file_deadline(sim):
    content = jsonl(*(output_line(run_id, f"answer {run_id}") for run_id in range(1, 41)))
    file_id = batch_api.upload("runs-batch-test.jsonl", content)
    trickle_downloads(sim)

    started = time.monotonic()
    with batch_api.download(file_id) as downloaded:
        assert downloaded.read() == content
        downloaded.seek(0)
        results = batch_files.parse(downloaded)
    assert time.monotonic() - started >= TRICKLE_S * 0.8  # slower than a create may take
    assert sorted(results) == list(range(1, 41))
    assert results[7].output_text == "answer 7"


def test_a_download_longer_than_the_file_deadline_is_cut_and_retried_later(sim, settings):
    settings.RUNS_BATCH_FILE_TIMEOUT_S = 1.0
    file_id = batch_api.upload("runs-batch-test.jsonl", jsonl(output_line(1)))
    trickle_downloads(sim)

    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError), batch_api.download(file_id):
        pass
    assert time.monotonic() - started < TRICKLE_S  # a hang bound, not a benchmark
