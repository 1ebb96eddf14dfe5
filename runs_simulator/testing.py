"""Start a simulator subprocess for tests, demos and benchmarks.

Why a subprocess (not an in-process app): the code under test uses the real ``openai``
SDK over real HTTP, Celery workers may run in other processes, and uvicorn owns its event
loop. Control calls use only ``urllib`` so this helper works from any environment.

Usage::

    with RunningSimulator(seed=1, poll_after_ms=200) as sim:
        client = OpenAI(base_url=sim.base_url, api_key="sk-sim")
        ...
        assert sim.stats()["calls"]["responses.create"] == 1
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Any

READY_PREFIX = "SIMULATOR_READY "
_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)


class SimulatorStartError(RuntimeError):
    """The simulator did not print its READY line in time."""


def _cli_args(options: dict[str, Any]) -> list[str]:
    """``poll_after_ms=200`` -> ``["--poll-after-ms", "200"]`` (``None`` values skipped)."""
    args: list[str] = []
    for key, value in options.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        args.extend([flag] if value is True else [flag, str(value)])
    return args


class RunningSimulator:
    """Context manager around ``python -m runs_simulator --port 0 ...``."""

    def __init__(
        self,
        *,
        start_timeout: float = 20.0,
        host: str = "127.0.0.1",
        env: dict[str, str] | None = None,
        **cli_options: Any,
    ) -> None:
        self.start_timeout = start_timeout
        self.host = host
        self.cli_options = cli_options
        self.env = env
        self.url = ""
        self.process: subprocess.Popen[str] | None = None
        self._stderr_lines: list[str] = []

    @property
    def base_url(self) -> str:
        """The URL to give the SDK (``.../v1``)."""
        return self.url + "/v1"

    def start(self) -> RunningSimulator:
        """Launch the process and wait for ``SIMULATOR_READY <url>``."""
        env = dict(os.environ if self.env is None else self.env)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_PACKAGE_PARENT, env.get("PYTHONPATH", "")) if p
        )
        env.setdefault("PYTHONUNBUFFERED", "1")
        command = [
            sys.executable,
            "-m",
            "runs_simulator",
            "--host",
            self.host,
            "--port",
            "0",
            *_cli_args(self.cli_options),
        ]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        lines: queue.Queue[str | None] = queue.Queue()
        assert self.process.stdout is not None and self.process.stderr is not None
        threading.Thread(target=self._pump, args=(self.process.stdout, lines), daemon=True).start()
        stderr_thread = threading.Thread(
            target=self._drain_stderr, args=(self.process.stderr,), daemon=True
        )
        stderr_thread.start()
        deadline = time.monotonic() + self.start_timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:  # stdout closed: the process exited
                break
            if line.startswith(READY_PREFIX):
                self.url = line[len(READY_PREFIX) :].strip()
                return self
        self.stop()
        stderr_thread.join(timeout=2)
        stderr = "".join(self._stderr_lines).strip() or "(empty)"
        raise SimulatorStartError(
            f"simulator did not become ready within {self.start_timeout:.0f}s "
            f"(exit code {self.process.returncode}); stderr:\n{stderr}"
        )

    @staticmethod
    def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    def _drain_stderr(self, stream: IO[str]) -> None:
        for line in stream:
            if len(self._stderr_lines) < 500:
                self._stderr_lines.append(line)

    def stop(self) -> None:
        """Terminate, then kill after 5 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read() or b"null")

    def stats(self, objects: bool = True) -> dict[str, Any]:
        """``GET /_sim/stats``."""
        path = "/_sim/stats" if objects else "/_sim/stats?objects=0"
        result: dict[str, Any] = self._call("GET", path)
        return result

    def reset(self, keep_config: bool = False) -> None:
        """``POST /_sim/reset`` (restores the startup config unless ``keep_config``)."""
        self._call("POST", "/_sim/reset", {"keep_config": keep_config})

    def configure(self, **changes: Any) -> dict[str, Any]:
        """``POST /_sim/config``; returns the new (masked) config."""
        result: dict[str, Any] = self._call("POST", "/_sim/config", changes)
        return result

    def config(self) -> dict[str, Any]:
        """``GET /_sim/config`` (secret masked)."""
        result: dict[str, Any] = self._call("GET", "/_sim/config")
        return result

    def __enter__(self) -> RunningSimulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
