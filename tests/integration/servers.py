"""Running the real collector and Jaeger v2 as processes, on free loopback ports.

Every server binds free 127.0.0.1 ports handed to it through the environment, so runs
never collide with each other or with a collector the developer already has on
4317/4318.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COLLECTOR_CONFIG = REPO / "collector-config.yaml"
JAEGER_CONFIG = Path(__file__).with_name("jaeger-config.yaml")
BUILD_SCRIPT = REPO / "tools" / "build-otel.sh"

# Generous: a loaded 2-core CI machine starts a Go binary in well under a second, but
# these are upper bounds on waiting, never assertions about speed.
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Binaries:
    """Paths of the collector and Jaeger binaries that tools/build-otel.sh built."""

    otelcol: Path
    jaeger: Path


_handed_out: set[int] = set()


def _ephemeral_range_start() -> int:
    """The lowest port the kernel gives outgoing connections (Linux's default: 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, below the ephemeral range.

    Not one the kernel picks (binding port 0): those come from the range it also gives
    outgoing connections. A collector retrying to reach a Jaeger that is not started
    yet can then connect to itself on that very port (a TCP self-connect) and hold it,
    so that Jaeger cannot bind it (seen: "bind: address already in use"). No port is
    handed out twice in a run.
    """
    candidates = range(10_000, _ephemeral_range_start())
    for port in random.sample(candidates, 200):
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port on 127.0.0.1 between 10000 and {candidates.stop}")


@dataclass
class Server:
    """One real server process that can be stopped and started again on the same ports.

    Output goes to a log file so that a failed start or a failed assertion can show the
    server's own words (`log_tail`).
    """

    name: str
    argv: list[str]
    env: dict[str, str]
    health_url: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> None:
        """Start the process and wait until its health endpoint answers 200."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.log_path.parent
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(
                    f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            if self.healthy():
                return
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"{self.name} not healthy after {START_TIMEOUT_S} s:\n{self.log_tail()}")

    def healthy(self) -> bool:
        """True when the health endpoint answers 200."""
        try:
            with urllib.request.urlopen(self.health_url, timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        """Stop cleanly (SIGTERM, as an orchestrator does) and wait for the exit."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"{self.name} ignored SIGTERM for {STOP_TIMEOUT_S} s:\n{self.log_tail()}")

    def crash(self) -> None:
        """Kill the process (SIGKILL: no shutdown, no flush), as an OOM kill or a power cut."""
        assert self.process is not None and self.process.poll() is None, f"{self.name} is down"
        self.process.kill()
        self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        """The last lines the server wrote."""
        if not self.log_path.exists():
            return "(no output)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Jaeger:
    """A running Jaeger v2 all-in-one: where to send OTLP and where to query."""

    server: Server
    otlp_grpc: str  # host:port
    otlp_http: str  # http://host:port
    query_url: str  # http://host:port


@dataclass
class Collector:
    """A running collector on collector-config.yaml and where its output goes."""

    server: Server
    otlp_http: str  # http://host:port, for OTEL_EXPORTER_OTLP_ENDPOINT
    otlp_grpc: str  # host:port
    traces_dir: Path
    metrics_dir: Path


def base_env() -> dict[str, str]:
    """The test process's environment without OTel settings that would leak in."""
    return {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}


def collector_env(
    *, jaeger_otlp_grpc: str, tempo_otlp_http: str, workdir: Path
) -> tuple[dict[str, str], dict[str, int]]:
    """The environment that points collector-config.yaml at free ports and at folders
    `traces`, `metrics` and `queue` in `workdir`."""
    ports = {
        "grpc": free_port(),
        "http": free_port(),
        "health": free_port(),
        "metrics": free_port(),
    }
    env = base_env() | {
        "CANARYTRACE_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{ports['grpc']}",
        "CANARYTRACE_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{ports['http']}",
        "CANARYTRACE_COLLECTOR_HEALTH_ENDPOINT": f"127.0.0.1:{ports['health']}",
        "CANARYTRACE_COLLECTOR_METRICS_HOST": "127.0.0.1",
        "CANARYTRACE_COLLECTOR_METRICS_PORT": str(ports["metrics"]),
        "CANARYTRACE_TRACES_DIR": str(workdir / "traces"),
        "CANARYTRACE_METRICS_DIR": str(workdir / "metrics"),
        "CANARYTRACE_COLLECTOR_QUEUE_DIR": str(workdir / "queue"),
        "CANARYTRACE_JAEGER_OTLP_ENDPOINT": jaeger_otlp_grpc,
        "CANARYTRACE_TEMPO_OTLP_ENDPOINT": tempo_otlp_http,
        # Decide fast so the sampled copy arrives within a test's patience.
        "CANARYTRACE_TAIL_DECISION_WAIT": "1s",
    }
    return env, ports
