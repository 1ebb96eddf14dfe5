"""The CLI, the READY line, env/CLI webhook settings, and startup failure reporting."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import urllib.request

import pytest
import uvicorn

from runs_simulator import __main__ as cli
from runs_simulator.testing import RunningSimulator, SimulatorStartError

from .helpers import wait_for


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


def test_keep_alive_answers_are_not_held_back_by_nagle(monkeypatch) -> None:
    """Regression: without TCP_NODELAY each keep-alive answer waited ~40 ms for an ACK (Nagle
    held the body back until the client's delayed ACK of the headers). Checked on the socket the
    server accepted, so a loaded machine cannot make it pass or fail."""
    servers: list[uvicorn.Server] = []

    class Recorded(uvicorn.Server):
        def __init__(self, config: uvicorn.Config) -> None:
            super().__init__(config)
            servers.append(self)

    monkeypatch.setattr(uvicorn, "Server", Recorded)
    args = cli.parse_args(["--port", "0", "--log-level", "error"])
    thread = threading.Thread(target=asyncio.run, args=(cli.serve(args),), daemon=True)
    thread.start()
    try:
        (server,) = wait_for(lambda: servers, lambda got: bool(got) and got[0].started, 10)
        port = server.servers[0].sockets[0].getsockname()[1]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(2):  # the second answer is the keep-alive case
            conn.request("GET", "/_sim/health")
            assert conn.getresponse().read() == b'{"ok":true}'
        (connection,) = server.server_state.connections
        accepted = connection.transport.get_extra_info("socket")
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        conn.close()
    finally:
        if servers:
            servers[0].should_exit = True
        thread.join(timeout=10)
