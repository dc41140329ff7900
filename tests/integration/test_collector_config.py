"""collector-config.yaml against the real collector built from tools/otelcol-builder.yaml.

`otelcol validate` resolves every ${env:...} default, builds every component from its
config and checks the pipelines, so a wrong key, an unknown component or a component
missing from the build fails here rather than at a user's first start.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from .servers import COLLECTOR_CONFIG, Binaries, collector_env

pytestmark = pytest.mark.integration


def _validate(binaries: Binaries, config: Path, env: dict[str, str] | None = None) -> str:
    """Run `otelcol validate` and return its output; raise on a non-zero exit."""
    result = subprocess.run(
        [str(binaries.otelcol), "validate", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise AssertionError(result.stdout + result.stderr)
    return result.stdout + result.stderr


def test_the_real_collector_accepts_the_shipped_config(binaries: Binaries) -> None:
    _validate(binaries, COLLECTOR_CONFIG)


def test_the_config_stays_valid_with_the_test_environment(
    binaries: Binaries, tmp_path: Path
) -> None:
    env, _ = collector_env(
        jaeger_otlp_grpc="127.0.0.1:1",
        tempo_otlp_http="http://127.0.0.1:1",
        workdir=tmp_path,
    )
    _validate(binaries, COLLECTOR_CONFIG, env | {"CANARYTRACE_TEMPO_SAMPLE_PERCENT": "0"})


@pytest.mark.parametrize(
    ("original", "typo", "named"),
    [
        ("send_batch_size: 512", "send_batch_sise: 512", "send_batch_sise"),  # a key
        (
            "processors: [memory_limiter, batch]",
            "processors: [memory_limitter, batch]",
            "memory_limitter",  # a component that is not configured
        ),
        (
            "extensions: [health_check, file_storage/queue]",
            "extensions: [health_check, file_storge/queue]",
            "file_storge",  # an extension that is not configured
        ),
    ],
)
def test_a_typo_fails_validation_and_the_message_names_it(
    binaries: Binaries, tmp_path: Path, original: str, typo: str, named: str
) -> None:
    text = COLLECTOR_CONFIG.read_text()
    assert original in text, f"{original!r} is no longer in collector-config.yaml"
    broken = tmp_path / "collector-config.yaml"
    broken.write_text(text.replace(original, typo, 1))

    with pytest.raises(AssertionError) as failure:
        _validate(binaries, broken)

    assert named in str(failure.value)


def test_the_build_holds_exactly_the_components_the_config_uses(binaries: Binaries) -> None:
    config = yaml.safe_load(COLLECTOR_CONFIG.read_text())
    used: dict[str, set[str]] = {
        kind: {name.split("/")[0] for name in config[kind]}
        for kind in ("receivers", "processors", "exporters", "extensions")
    }
    listing = subprocess.run(
        [str(binaries.otelcol), "components"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    built = yaml.safe_load(listing.stdout)
    for kind, names in used.items():
        assert {c["name"] for c in built[kind]} == names, kind


def test_a_misnamed_queue_storage_passes_validate_but_stops_the_start(
    binaries: Binaries, tmp_path: Path
) -> None:
    # `otelcol validate` does not resolve sending_queue::storage; the start does, and
    # refuses to run rather than queue in memory. The message names the exporter.
    text = COLLECTOR_CONFIG.read_text()
    broken = tmp_path / "collector-config.yaml"
    broken.write_text(text.replace("storage: file_storage/queue", "storage: file_storge/queue", 1))
    env, _ = collector_env(
        jaeger_otlp_grpc="127.0.0.1:1", tempo_otlp_http="http://127.0.0.1:1", workdir=tmp_path
    )
    _validate(binaries, broken, env)

    started = subprocess.run(
        [str(binaries.otelcol), "--config", str(broken)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert started.returncode != 0
    assert 'failed to start "otlp_grpc/jaeger" exporter: no storage client' in started.stderr
