"""Command line entry point: ``python -m runs_simulator --port 0 ...``.

Why a pre-bound socket: with ``--port 0`` the OS picks a free port; binding it ourselves
lets us print the real port in the ``SIMULATOR_READY <url>`` line that test harnesses
(``runs_simulator.testing.RunningSimulator``) wait for, once uvicorn is accepting connections.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys

import uvicorn

from .app import create_app
from .config import SimConfig, from_env
from .state import SimState


def _port(text: str) -> int:
    """A TCP port (0: any free one), or argparse's usage error."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, not {port}")
    return port


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """CLI options (all optional)."""
    parser = argparse.ArgumentParser(
        prog="python -m runs_simulator", description="Local OpenAI-compatible API simulator."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=_port, default=8765, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=None, help="seed for ids, timelines, faults")
    parser.add_argument(
        "--poll-after-ms",
        type=int,
        default=None,
        help="send openai-poll-after-ms on GETs of non-terminal objects",
    )
    parser.add_argument("--webhook-url", default=None, help="default: $SIM_WEBHOOK_URL")
    parser.add_argument("--webhook-secret", default=None, help="default: $SIM_WEBHOOK_SECRET")
    parser.add_argument(
        "--run-expires-s",
        type=float,
        default=None,
        help="seconds before a run left in requires_action expires (600)",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=None,
        help="compress window-derived waits (2h/8h windows, a batch's 24 h); "
        "default: $RUNS_TIME_SCALE, else 1",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["critical", "error", "warning", "info", "debug", "trace"],
    )
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> SimConfig:
    """Defaults, then environment, then CLI flags."""
    config = SimConfig()
    from_env(config)
    if args.webhook_url:
        config.webhook_url = args.webhook_url
    if args.webhook_secret:
        config.webhook_secret = args.webhook_secret
    if args.poll_after_ms:  # 0: none, as unset
        config.poll_after_ms = args.poll_after_ms
    if args.run_expires_s is not None:
        config.run_expires_s = args.run_expires_s
    if args.time_scale is not None:
        config.time_scale = args.time_scale
    config.validate()
    return config


async def serve(args: argparse.Namespace) -> None:
    """Run uvicorn on a pre-bound socket and announce readiness on stdout."""
    state = SimState(build_config(args), seed=args.seed)
    app = create_app(state)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose
    # proto is TCP; without it Nagle + delayed ACK add ~40 ms to every keep-alive answer.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level=args.log_level,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if server.started:
        host = f"[{args.host}]" if family == socket.AF_INET6 else args.host
        print(f"SIMULATOR_READY http://{host}:{port}", flush=True)
    await task


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = parse_args(argv)
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"simulator: cannot start: {exc}", file=sys.stderr, flush=True)
        return 1
    except ValueError as exc:  # a bad setting (flag or environment), e.g. RUNS_TIME_SCALE
        print(f"simulator: bad configuration: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
