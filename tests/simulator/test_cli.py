"""The CLI, the READY line, env/CLI webhook settings, and startup failure reporting."""

from __future__ import annotations

import json
import urllib.request

import pytest

from simulator.testing import RunningSimulator, SimulatorStartError


def test_cli_options_reach_config_and_secret_is_masked() -> None:
    env_secret = "whsec_" + "QUJD" * 8
    import os

    env = dict(os.environ, SIM_WEBHOOK_URL="http://127.0.0.1:9/env", SIM_WEBHOOK_SECRET=env_secret)
    with RunningSimulator(
        env=env,
        seed=7,
        run_expires_s=30,
        poll_after_ms=100,
        webhook_url="http://127.0.0.1:9/cli",
        log_level="error",
    ) as sim:
        assert sim.url.startswith("http://127.0.0.1:") and sim.base_url == sim.url + "/v1"
        config = sim.config()
        assert config["webhook_url"] == "http://127.0.0.1:9/cli"
        assert config["webhook_secret"] == "***"
        assert config["run_expires_s"] == 30 and config["poll_after_ms"] == 100
        with urllib.request.urlopen(sim.url + "/_sim/health", timeout=5) as answer:
            assert json.loads(answer.read()) == {"ok": True}
    assert sim.process is not None and sim.process.poll() is not None


def test_start_failure_reports_stderr() -> None:
    with pytest.raises(SimulatorStartError, match="invalid int value"):
        RunningSimulator(seed="not-a-number", start_timeout=10).start()


def test_keep_alive_answers_are_not_delayed_by_nagle(sim: RunningSimulator) -> None:
    """Regression: without TCP_NODELAY each keep-alive answer waited ~40 ms for an ACK."""
    import time

    from openai import OpenAI

    client = OpenAI(base_url=sim.base_url, api_key="sk-sim", max_retries=0)
    created = client.responses.create(model="gpt-4o", input="x")
    started = time.perf_counter()
    for _ in range(20):
        client.responses.retrieve(created.id)
    assert (time.perf_counter() - started) / 20 < 0.02
