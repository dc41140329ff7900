"""Fixtures that run the real OpenTelemetry Collector and Jaeger v2 for these tests.

The binaries come from tools/build-otel.sh (built once into a cache outside the
checkout). If the build fails the tests FAIL: a skipped integration test would let CI
go green without ever crossing the collector. Each fixture stops what it started.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .servers import (
    BUILD_SCRIPT,
    COLLECTOR_CONFIG,
    JAEGER_CONFIG,
    Binaries,
    Collector,
    Jaeger,
    Server,
    base_env,
    collector_env,
    free_port,
)
from .stores import AppRun


@pytest.fixture(scope="session")
def binaries() -> Binaries:
    """Build (or find in the cache) the collector and Jaeger; fail the tests if it fails."""
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        pytest.fail(
            f"tools/build-otel.sh failed ({result.returncode}):\n{result.stderr[-4000:]}",
            pytrace=False,
        )
    paths = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    found = Binaries(otelcol=Path(paths["OTELCOL_BIN"]), jaeger=Path(paths["JAEGER_BIN"]))
    for path in (found.otelcol, found.jaeger):
        assert path.is_file() and os.access(path, os.X_OK), f"build-otel.sh named {path}"
    return found


@pytest.fixture(scope="module")
def start_jaeger(
    binaries: Binaries, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Jaeger]]:
    """Factory: start a fresh, empty Jaeger v2 all-in-one on free ports.

    `otlp_grpc_port` lets a test hand the port to a collector before Jaeger is up.
    """
    started: list[Server] = []

    def start(otlp_grpc_port: int | None = None) -> Jaeger:
        ports = {
            "JAEGER_HEALTH_PORT": free_port(),
            "JAEGER_QUERY_HTTP_PORT": free_port(),
            "JAEGER_QUERY_GRPC_PORT": free_port(),
            "JAEGER_OTLP_GRPC_PORT": otlp_grpc_port or free_port(),
            "JAEGER_OTLP_HTTP_PORT": free_port(),
        }
        workdir = tmp_path_factory.mktemp("jaeger")
        server = Server(
            name="jaeger",
            argv=[str(binaries.jaeger), "--config", str(JAEGER_CONFIG)],
            env=base_env() | {name: str(port) for name, port in ports.items()},
            health_url=f"http://127.0.0.1:{ports['JAEGER_HEALTH_PORT']}/status",
            log_path=workdir / "jaeger.log",
        )
        started.append(server)
        server.start()
        return Jaeger(
            server=server,
            otlp_grpc=f"127.0.0.1:{ports['JAEGER_OTLP_GRPC_PORT']}",
            otlp_http=f"http://127.0.0.1:{ports['JAEGER_OTLP_HTTP_PORT']}",
            query_url=f"http://127.0.0.1:{ports['JAEGER_QUERY_HTTP_PORT']}",
        )

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def start_collector(
    binaries: Binaries, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Collector]]:
    """Factory: start the real collector on collector-config.yaml.

    `jaeger` is the OTLP/gRPC host:port that gets every span; `tempo` is the OTLP/HTTP
    URL that gets the tail-sampled copy (in these tests a second Jaeger stands in for
    Tempo, or a closed port). Extra keyword arguments become environment variables.
    """
    started: list[Server] = []

    def start(jaeger: str, tempo: str, **extra_env: str) -> Collector:
        workdir = tmp_path_factory.mktemp("collector")
        env, ports = collector_env(jaeger_otlp_grpc=jaeger, tempo_otlp_http=tempo, workdir=workdir)
        server = Server(
            name="otelcol",
            argv=[str(binaries.otelcol), "--config", str(COLLECTOR_CONFIG)],
            env=env | extra_env,
            health_url=f"http://127.0.0.1:{ports['health']}/",
            log_path=workdir / "otelcol.log",
        )
        started.append(server)
        server.start()
        return Collector(
            server=server,
            otlp_http=f"http://127.0.0.1:{ports['http']}",
            otlp_grpc=f"127.0.0.1:{ports['grpc']}",
            traces_dir=workdir / "traces",
            metrics_dir=workdir / "metrics",
        )

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def start_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., AppRun]]:
    """Factory: run tests/integration/app.py exporting OTLP/HTTP to `endpoint`.

    The batch span processor exports every 100 ms so spans leave the app while it runs
    (the default 5 s would hide a restart between two exports).
    """
    runs: list[AppRun] = []
    tmp_path = tmp_path_factory.mktemp("app")

    def start(*args: str, endpoint: str, service: str, **env: str) -> AppRun:
        full_env = (
            base_env()
            | {
                "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_SERVICE_NAME": service,
                "OTEL_BSP_SCHEDULE_DELAY": "100",
                "CANARYTRACE_TRACES_DIR": str(tmp_path / "embedded-traces"),
                "PYTHONUNBUFFERED": "1",
            }
            | env
        )
        run = AppRun(["--service-name", service, *args], full_env, tmp_path / f"app{len(runs)}.log")
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.close()
