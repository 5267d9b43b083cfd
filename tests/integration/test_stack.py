"""deploy/local/stack: `up` is idempotent and `status` tells the truth, on real servers.

The shared stack the other tests use is never stopped here: the up/down/status
cycle runs on a second Kafka with its own cache directory and ports, reusing
the main cache's downloads (symlinked) so nothing is fetched twice.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "deploy" / "local" / "stack"


def _main_cache() -> Path:
    return Path(os.environ.get("KUBEPULSE_CACHE") or Path.home() / ".cache" / "kubepulse").resolve()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stack(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(STACK), *args], env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )


def test_stack_up_when_already_up_is_a_no_op_and_status_reports_both_servers(stack: dict[str, str]) -> None:
    before = _stack("status")
    assert before.returncode == 0, before.stdout + before.stderr
    again = _stack("up")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already up" in again.stdout + again.stderr
    after = _stack("status")
    assert after.returncode == 0
    out = after.stdout
    assert "kafka: up" in out and "es: up" in out
    # The no-op did not restart anything: the same processes answer.
    pids = [line.split("pid ")[1].split(",")[0] for line in before.stdout.splitlines() if "pid " in line]
    assert pids and all(f"pid {p}," in out for p in pids)


def test_status_tells_the_truth_after_down_and_purge_wipes_the_data(tmp_path: Path, stack: dict[str, str]) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    main = _main_cache()
    for shared in ("m2", "dist"):  # downloads only; data, logs and pid files stay separate
        (cache / shared).symlink_to(main / shared)
    env = {
        "KUBEPULSE_CACHE": str(cache),
        "KUBEPULSE_KAFKA_PORT": str(_free_port()),
        "KUBEPULSE_KAFKA_CONTROLLER_PORT": str(_free_port()),
        "KUBEPULSE_KAFKA_HEAP": "256m",
    }
    try:
        up = _stack("up", "kafka", env=env)
        assert up.returncode == 0, up.stdout + up.stderr
        status = _stack("status", "kafka", env=env)
        assert status.returncode == 0 and "kafka: up" in status.stdout
        assert (cache / "kafka" / "data").is_dir()

        down = _stack("down", "kafka", env=env)
        assert down.returncode == 0, down.stdout + down.stderr
        status = _stack("status", "kafka", env=env)
        assert status.returncode != 0
        assert "kafka: up" not in status.stdout
        assert "down" in status.stdout.lower()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", int(env["KUBEPULSE_KAFKA_PORT"])), timeout=2).close()

        purge = _stack("down", "kafka", "--purge", env=env)
        assert purge.returncode == 0, purge.stdout + purge.stderr
        assert not (cache / "kafka" / "data").exists()
    finally:
        _stack("down", "kafka", "--purge", env=env)
    # The shared stack was never touched.
    assert _stack("status").returncode == 0
