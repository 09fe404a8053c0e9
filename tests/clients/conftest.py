"""Fixtures for the client-compatibility suite.

Every test gets its own broker: `$BASIN_BIN up --listen 127.0.0.1:<free port>
--data-dir <tmp dir>` as a subprocess (BASIN_BIN defaults to
`$CARGO_TARGET_DIR/debug/basin`, CARGO_TARGET_DIR to `~/.cache/basin-target`).
The `broker` fixture yields a `BasinBroker` with `bootstrap`, `data_dir`,
`start()`, `stop()`, `restart()` and `kill9()`. The broker's output goes to a
log file that is attached to the report of a failing test.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
LOG_TAIL_BYTES = 64 * 1024


def basin_bin() -> Path:
    explicit = os.environ.get("BASIN_BIN")
    if explicit:
        return Path(explicit)
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.expanduser("~/.cache/basin-target")
    return Path(target) / "debug" / "basin"


def _die_with_parent() -> None:
    """Runs in the broker child: SIGKILL it if the test process dies (no orphans)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_accepts(port: int, timeout: float = 0.25) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


class BasinBroker:
    """One `basin up` process; restarts keep the same port and data dir."""

    def __init__(self, binary: Path, port: int, data_dir: Path, log_path: Path):
        self.binary = binary
        self.port = port
        self.host = "127.0.0.1"
        self.bootstrap = f"{self.host}:{port}"
        self.data_dir = data_dir
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    # -- lifecycle -----------------------------------------------------------

    def command(self) -> list[str]:
        return [
            str(self.binary),
            "up",
            "--listen",
            self.bootstrap,
            "--data-dir",
            str(self.data_dir),
        ]

    def start(self, timeout: float = READY_TIMEOUT_S) -> None:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("broker already running")
        if not self.binary.exists():
            pytest.fail(
                f"basin binary not found at {self.binary}; build it with "
                "`cargo build -p basin` or set BASIN_BIN",
                pytrace=False,
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        # Hermetic: only the flags above configure the broker, not a caller's BASIN_* variables.
        env = {k: v for k, v in os.environ.items() if not k.startswith("BASIN_")}
        env.setdefault("RUST_BACKTRACE", "1")
        env.setdefault("NO_COLOR", "1")
        with open(self.log_path, "ab") as log:
            log.write(f"\n----- start #{self.starts}: {' '.join(self.command())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(self.data_dir.parent),
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise RuntimeError(
                    f"basin exited with code {code} during startup\n{self.log_tail()}"
                )
            # The listener is bound only after the data dir is recovered.
            if "basin broker listening on" in self._log_text_since_start():
                return
            if port_accepts(self.port):
                return
            time.sleep(0.05)
        self.kill9()
        raise RuntimeError(
            f"basin did not accept connections on {self.bootstrap} within {timeout}s\n"
            f"{self.log_tail()}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """Graceful stop (SIGTERM, then SIGKILL after `timeout`). Returns the exit code."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._note(f"broker ignored SIGTERM for {timeout}s; sending SIGKILL")
                proc.kill()
                proc.wait(timeout=timeout)
        self._note(f"broker exited with {proc.returncode}")
        return proc.returncode

    def kill9(self) -> None:
        """Crash the broker: SIGKILL, no chance to flush anything."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)
        self._note("broker killed with SIGKILL")

    def restart(self) -> None:
        self.stop()
        self.start()

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- logs ----------------------------------------------------------------

    def _note(self, text: str) -> None:
        with open(self.log_path, "ab") as log:
            log.write(f"----- {text}\n".encode())

    def log_text(self) -> str:
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def _log_text_since_start(self) -> str:
        text = self.log_text()
        marker = f"----- start #{self.starts}:"
        idx = text.rfind(marker)
        return text[idx:] if idx >= 0 else text

    def log_tail(self, limit: int = LOG_TAIL_BYTES) -> str:
        text = self.log_text()
        if len(text) > limit:
            text = "[... log truncated ...]\n" + text[-limit:]
        return f"===== basin log ({self.log_path}) =====\n{text}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    broker = getattr(item, "_basin_broker", None)
    if broker is not None and report.failed:
        report.sections.append((f"basin broker log ({report.when})", broker.log_tail()))


@pytest.fixture
def broker(request, tmp_path):
    b = BasinBroker(
        binary=basin_bin(),
        port=free_port(),
        data_dir=tmp_path / "data",
        log_path=tmp_path / "basin.log",
    )
    request.node._basin_broker = b
    b.start()
    try:
        yield b
    finally:
        b.stop()
