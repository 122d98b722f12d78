"""Run untrusted strategy code in a confined child process and read back what it returns.

Third-party code never runs in the agent's process. Each request starts a fresh interpreter
(`python -I -B`, not a fork, so it shares no memory or state with the agent) through the one
launcher, `agent.plugins.launcher`: inside bubblewrap (new user, PID, network, IPC and mount
namespaces; a read-only view of only the runtime, site-packages and the plugin; a private
tmpfs; no data, config, secrets or environment; killed with its parent), with CPU-time,
address-space, file-size and open-file limits, a wall-clock deadline measured here, and an
audit hook as defence in depth. `strategies.sandbox: none` drops bubblewrap (unsafe).

Signal computations (`run_plugin`) start warm: each is a fresh confined process forked from
the plugin's zygote (`agent.plugins.warm`), which never holds plugin code or candles, in new
mount, PID and IPC namespaces with a fresh tmpfs and no capabilities; a zygote that cannot
serve falls back to a cold start. Loading metadata and the look-ahead check start cold.

No reply can hurt the parent: reply headers are bounded in size and nesting depth and checked
field by field; a signal arrives as raw float64 bytes and must have exactly one value per
candle. Timings are measured by the parent, never taken from the child. Every way a run can
go wrong ends in a `SignalResult` with `ok=False` and a specific reason: nothing is raised to
the caller. What this does and does not stop is in docs/plugin-security.md.

Trusted code (the shipped `strategies` package) runs in-process through `run_trusted`, with
the same output checks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import pandas as pd

from agent.config import StrategiesSettings
from agent.errors import PluginError
from agent.plugins import _child, warm
from agent.plugins.interface import HIDDEN_ATTR, Strategy, StrategyInfo, as_signal, check_metadata
from agent.plugins.launcher import CHILD_TMP, child_command, plugin_paths, site_directories
from agent.plugins.launcher import scrubbed_environment as scrubbed_environment

_STDERR_TAIL_BYTES = 8_192
_MAX_CLASSES = 64
"""Most strategy classes one plugin's metadata reply may list."""


@dataclass(frozen=True)
class SandboxLimits:
    """The limits of one child process (see `strategies.*` in docs/config.md)."""

    cpu_seconds: float = 30.0
    memory_mb: int = 1_024
    wall_seconds: float = 60.0
    file_size_mb: int = 16
    sandbox: str = "bubblewrap"
    warm_start: bool = True
    """Fork each signal computation from a warm zygote (bubblewrap only; see `warm`)."""

    @classmethod
    def from_settings(cls, settings: StrategiesSettings) -> SandboxLimits:
        """Return the limits configured in the `strategies` section."""
        return cls(
            cpu_seconds=settings.cpu_seconds,
            memory_mb=settings.memory_mb,
            wall_seconds=settings.wall_seconds,
            file_size_mb=settings.file_size_mb,
            sandbox=settings.sandbox,
        )


@dataclass(frozen=True)
class PluginLocation:
    """Where an untrusted strategy's code lives, found without importing it.

    Attributes:
        kind: "file" (a `.py` file in the plugin directory) or "module" (an installed package,
            reached through its entry point).
        target: the absolute path of the file, or the dotted module name.
        attr: the class (or attribute path) inside; None means every Strategy subclass the
            module defines.
    """

    kind: Literal["file", "module"]
    target: str
    attr: str | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}" + (f":{self.attr}" if self.attr else "")


@dataclass(frozen=True)
class SignalResult:
    """The outcome of running one strategy on one candle frame.

    Attributes:
        name: the strategy's name.
        values: one float64 per candle (NaN only inside the warm-up), or None on failure.
        mask: True where a value is available, or None on failure.
        ok: whether the run produced a valid signal.
        reason: why it did not ("timed out after 5 s"), or None.
        elapsed_s: wall-clock seconds the parent waited for this result (from the previous
            reply), or until the failure; measured by the parent, never reported by the child.
    """

    name: str
    values: np.ndarray | None
    mask: np.ndarray | None
    ok: bool
    reason: str | None
    elapsed_s: float

    @classmethod
    def failure(cls, name: str, reason: str, elapsed_s: float = 0.0) -> SignalResult:
        """Return a failed result."""
        return cls(name, None, None, False, reason, elapsed_s)


@dataclass(frozen=True)
class InspectedClass:
    """One strategy class found in a plugin: its metadata, or why it is unusable."""

    attr: str
    info: StrategyInfo | None
    error: str | None


@dataclass(frozen=True)
class Inspection:
    """What loading a plugin in the sandbox found; `error` is set when the module did not load."""

    classes: tuple[InspectedClass, ...]
    error: str | None
    source_sha256: str | None


class _Failed(Exception):
    """A child run ended without the reply expected; the message is the reason."""


def file_sha256(path: Path | str) -> str:
    """Return the hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --- the child process ---------------------------------------------------------------------
class _Child:
    """One sandboxed interpreter: start it, feed it a request, read framed replies.

    Cold (the default), it is a fresh `python -I` started through the launcher. Warm (with a
    `zygote`), it is a fresh confined process forked from the plugin's zygote
    (`agent.plugins.warm`); the streams, the protocol and every check are the same.

    Raises:
        ZygoteError: (warm only) the zygote could not start the call; start a cold one.
    """

    def __init__(
        self,
        limits: SandboxLimits,
        computations: int,
        location: PluginLocation,
        zygote: warm.Zygote | None = None,
    ) -> None:
        self.limits = limits
        self.zygote = zygote
        self.proc: subprocess.Popen[bytes] | None = None
        self.host_dir: str | None = None
        if zygote is not None:
            call = zygote.start_call(4 * limits.file_size_mb << 20)
            self.call_id = call.call_id
            self.workdir = CHILD_TMP
            self.stdin: IO[bytes] = os.fdopen(call.request_fd, "wb")
            self.stdout: IO[bytes] = os.fdopen(call.reply_fd, "rb")
            self.stderr: IO[bytes] = os.fdopen(call.stderr_fd, "rb")
        else:
            self.host_dir = tempfile.mkdtemp(prefix="agora-plugin-")
            try:
                command = child_command(
                    limits.sandbox,
                    self.host_dir,
                    plugin_paths(location.kind, location.target),
                    tmpfs_mb=4 * limits.file_size_mb,
                )
                self.workdir = command.workdir
                self.proc = subprocess.Popen(
                    command.argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    cwd=command.cwd,
                    env=command.env,
                    close_fds=True,
                    start_new_session=True,
                )
            except (OSError, PluginError):
                shutil.rmtree(self.host_dir, ignore_errors=True)
                raise
            assert self.proc.stdin and self.proc.stdout and self.proc.stderr
            self.stdin, self.stdout, self.stderr = (
                self.proc.stdin,
                self.proc.stdout,
                self.proc.stderr,
            )
        self.cpu_limit = max(1, math.ceil(limits.cpu_seconds * max(1, computations)))
        self.stderr_tail = b""
        self._selector = selectors.DefaultSelector()
        for stream in (self.stdout, self.stderr):
            os.set_blocking(stream.fileno(), False)
            self._selector.register(stream, selectors.EVENT_READ)
        self._reader: _child.MessageReader | None = None
        self._replies_left = 0
        self._pending: list[tuple[dict[str, Any], bytes]] = []
        self._writer: threading.Thread | None = None
        self.last_reply_at = time.monotonic()

    def send(
        self,
        header: dict[str, Any],
        arrays: Sequence[np.ndarray],
        max_values: int,
        *,
        keep_open: bool = False,
    ) -> None:
        """Write the request from a helper thread, so a child that stops reading cannot block.

        A reply's payload may hold at most `max_values` float64 values. With `keep_open`, stdin
        stays open for the chunks `send_chunk` writes later (each allows one more reply).
        """
        self._reader = _child.MessageReader(8 * max_values)
        self._replies_left = 1 + len(header.get("frames") or [])
        self.last_reply_at = time.monotonic()
        header = {
            **header,
            "arrays": len(arrays),
            "workdir": self.workdir,
            "max_values": max_values,
            "limits": {
                "cpu_seconds": self.cpu_limit,
                "memory_mb": self.limits.memory_mb,
                "file_size_mb": self.limits.file_size_mb,
            },
        }
        self._write(header, arrays, close=not keep_open)

    def send_chunk(self, header: dict[str, Any], arrays: Sequence[np.ndarray]) -> None:
        """Write one more message group (incremental mode), after the previous one is written."""
        self._replies_left += 1
        self._write({**header, "arrays": len(arrays)}, arrays, close=False)

    def _write(self, header: dict[str, Any], arrays: Sequence[np.ndarray], *, close: bool) -> None:
        blobs = [_child.pack_message(header)]
        blobs.extend(
            _child.pack_message({"array": i}, _child.encode_array(array))
            for i, array in enumerate(arrays)
        )
        stdin = self.stdin
        previous = self._writer

        def write() -> None:
            if previous is not None:
                previous.join()
            with contextlib.suppress(OSError, ValueError):
                for blob in blobs:
                    stdin.write(blob)
                stdin.flush()
                if close:
                    stdin.close()

        self._writer = threading.Thread(target=write, name="agora-plugin-stdin", daemon=True)
        self._writer.start()

    def receive(self) -> tuple[dict[str, Any], bytes]:
        """Return the next reply, waiting at most the wall-clock limit.

        Raises:
            _Failed: the deadline passed, the child died, or it sent something malformed.
        """
        assert self._reader is not None
        deadline = time.monotonic() + self.limits.wall_seconds
        while not self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Failed(f"timed out after {self.limits.wall_seconds:g} s")
            events = self._selector.select(remaining)
            if not events and not self._selector.get_map():
                raise _Failed(self._exit_reason())
            for key, _ in events:
                data = os.read(key.fd, 1 << 20)
                if not data:
                    self._selector.unregister(key.fileobj)
                    if not self._selector.get_map():
                        raise _Failed(self._exit_reason())
                    continue
                if key.fileobj is self.stderr:
                    self.stderr_tail = (self.stderr_tail + data)[-_STDERR_TAIL_BYTES:]
                    continue
                try:
                    replies = list(self._reader.feed(data))
                except ValueError as e:
                    raise _Failed(f"sent {e}") from e
                self._replies_left -= len(replies)
                if self._replies_left < 0:
                    raise _Failed("sent more replies than it was asked for")
                self._pending.extend(replies)
        self.last_reply_at = time.monotonic()
        return self._pending.pop(0)

    def _exit_reason(self) -> str:
        code = self._exit_status()
        if code is None and self.zygote is not None:
            # the zygote, not the plugin, lost the call (its socket failed, it exited): the
            # caller runs the call again cold rather than blame the plugin for a timeout
            raise warm.ZygoteError("the zygote did not report how the call ended")
        if code is not None and code > 128 and self.limits.sandbox == "bubblewrap":
            code = 128 - code  # bwrap exits with 128 + the signal that killed the child
        if code is None:
            return f"timed out after {self.limits.wall_seconds:g} s"
        tail = self.stderr_tail.decode("utf-8", "replace").strip().splitlines()
        last = _child._clip(tail[-1]) if tail else ""
        if code < 0:
            number = -code
            if number == signal.SIGXCPU:
                return f"exceeded the CPU-time limit of {self.cpu_limit} s"
            if number == signal.SIGXFSZ:
                return f"exceeded the file-size limit of {self.limits.file_size_mb} MB"
            if "MemoryError" in self.stderr_tail.decode("utf-8", "replace"):
                return f"exceeded the memory limit of {self.limits.memory_mb} MB"
            try:
                name = signal.Signals(number).name
            except ValueError:
                name = f"signal {number}"
            hint = " (the CPU-time or memory limit)" if number == signal.SIGKILL else ""
            return f"was killed by {name}{hint}"
        return f"exited with status {code} before replying" + (f": {last}" if last else "")

    def _exit_status(self) -> int | None:
        """Wait for the child to exit, without reaping it, and return its status like
        `Popen.returncode` (negative: killed by that signal), or None if it is still running.

        Not reaping keeps its pid (and so its process group id) from being reused before
        `close` kills the group. A warm call's status comes from its zygote, once the call's
        PID namespace is gone, as bubblewrap reports it (128 + the signal).
        """
        if self.zygote is not None:
            return self.zygote.exit_status(self.call_id, self.limits.wall_seconds)
        assert self.proc is not None
        deadline = time.monotonic() + self.limits.wall_seconds
        while time.monotonic() < deadline:
            try:
                info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
            except ChildProcessError:
                return self.proc.returncode
            if info is not None:
                exited = info.si_code == os.CLD_EXITED
                return info.si_status if exited else -info.si_status
            time.sleep(0.01)
        return None

    def close(self) -> None:
        """Kill the whole process group or PID namespace (stray grandchildren too) and clean up.

        A warm call is killed by its zygote, and this waits until nothing of it is left; a
        zygote that does not confirm is closed (which kills it and every call in it).
        """
        if self.zygote is not None:
            try:
                self.zygote.end_call(self.call_id)
            except warm.ZygoteError:
                warm.discard(self.zygote)
            finally:
                self.zygote.lock.release()
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        self._selector.close()
        for stream in (self.stdin, self.stdout, self.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.close()
        if self.host_dir is not None:
            shutil.rmtree(self.host_dir, ignore_errors=True)


def _start_child(
    limits: SandboxLimits, computations: int, location: PluginLocation, code_sha256: str | None
) -> _Child:
    """Start a warm call from the plugin's zygote if one can serve it, else a cold child.

    A zygote that fails to start a call is replaced once; then the call starts cold. Only a
    cold start's failure is raised (OSError, PluginError), so a reason never names a zygote.
    """
    if limits.sandbox == "bubblewrap" and limits.warm_start and warm.supported():
        read_only = plugin_paths(location.kind, location.target)
        for _ in range(2):
            zygote = warm.acquire(
                str(location), code_sha256, limits, read_only, 4 * limits.file_size_mb
            )
            if zygote is None:
                break
            try:
                return _Child(limits, computations, location, zygote)
            except warm.ZygoteError:
                zygote.lock.release()
                warm.discard(zygote)
    return _Child(limits, computations, location)


def _location_header(
    location: PluginLocation, expected_sha256: str | None
) -> tuple[dict[str, Any], str | None]:
    """Return the request's location and the sha256 of the exact source sent (files only)."""
    header: dict[str, Any] = {
        "kind": location.kind,
        "target": location.target,
        "attr": location.attr,
    }
    if location.kind != "file":
        return header, None
    try:
        blob = Path(location.target).read_bytes()
    except OSError as e:
        raise _Failed(f"cannot read {location.target}: {e.strerror}") from e
    digest = hashlib.sha256(blob).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256:
        raise _Failed(
            f"its file {location.target} changed since it was discovered (code hash "
            f"{digest[:12]}, expected {expected_sha256[:12]}); discover it again"
        )
    header["source"] = blob.decode("utf-8", "replace")
    return header, digest


def _import_hint(message: str) -> str:
    """Say what the sandbox sees when a plugin's import found no module (PYTHONPATH is not)."""
    if not message.startswith("ModuleNotFoundError"):
        return ""
    sites = ", ".join(site_directories()) or "none found"
    return (
        "; the sandbox sees only the plugin's own file or package and the site-packages of "
        f"Agora's environment ({sites}), not PYTHONPATH: pip install the module into Agora's "
        "environment, or package the strategy with its dependencies (contributing guide, "
        "section 7)"
    )


def _exception_reason(message: str, limits: SandboxLimits) -> str:
    """Name the limit behind an OSError the sandbox caused, rather than the bare errno."""
    if message.startswith("OSError: [Errno 27]"):  # EFBIG: the file-size limit
        return f"exceeded the file-size limit of {limits.file_size_mb} MB ({message})"
    if message.startswith("OSError: [Errno 30]"):  # EROFS: outside the private /tmp
        return (
            f"raised {message}: only its private /tmp is writable, so it can write no file "
            "elsewhere and multiprocessing (Pool, ProcessPoolExecutor) cannot start; "
            "strategies start no processes"
        )
    return f"raised {message}"


def _error_reason(reply: Mapping[str, Any], limits: SandboxLimits) -> str:
    kind, message = reply.get("kind"), reply.get("message", "")
    if not isinstance(kind, str) or not isinstance(message, str):
        return "sent a malformed error reply (its kind or message is not text)"
    message = _child._clip(message)
    if kind == "memory":
        return f"exceeded the memory limit of {limits.memory_mb} MB ({message})"
    if kind == "import":
        return f"failed to import: {message}" + _import_hint(message)
    if kind == "init":
        return f"could not be created: {message}"
    if kind == "exception":
        return _exception_reason(message, limits)
    return message or f"failed ({_child._clip(kind)})"


def _unexpected(reply: Mapping[str, Any], expected: str, limits: SandboxLimits) -> str:
    kind = reply.get("type")
    if kind == "error":
        return _error_reason(reply, limits)
    shown = _child._clip(kind)[:40] if isinstance(kind, str) else type(kind).__name__
    return f"sent a {shown!r} reply where {expected} was expected"


def _shape_reason(name: str, shape: Any, length: int, payload_bytes: int) -> str:
    """Say what is wrong with a result whose payload is not one float64 per candle."""
    valid = (
        isinstance(shape, list)
        and len(shape) <= 8
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
    )
    if not valid:
        return f"strategy {name!r} sent a malformed result (no valid shape for its values)"
    if len(shape) != 1:
        return f"strategy {name!r} returned an array of shape {tuple(shape)}, not 1-D"
    if shape[0] != length:
        return (
            f"strategy {name!r} returned {shape[0]} values for {length} candles "
            "(one value per candle is required)"
        )
    return (
        f"strategy {name!r} sent a malformed result ({payload_bytes} bytes for {length} "
        "float64 values)"
    )


def _signal_values(name: str, reply: Mapping[str, Any], payload: bytes, length: int) -> np.ndarray:
    """Return a result's values: exactly `length` float64, or raise PluginError saying why."""
    if len(payload) != 8 * length:
        raise PluginError(_shape_reason(name, reply.get("shape"), length, len(payload)))
    return np.frombuffer(payload, dtype="<f8").astype("float64")


def _inspected(entries: Any) -> tuple[InspectedClass, ...]:
    """Rebuild a metadata reply's class list (untrusted JSON), refusing malformed entries."""
    if not isinstance(entries, list) or len(entries) > _MAX_CLASSES:
        raise PluginError(
            f"sent a malformed metadata reply (not a list of {_MAX_CLASSES} or fewer)"
        )
    classes = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("attr"), str):
            raise PluginError("sent a malformed metadata reply (an entry without a class name)")
        attr = _child._clip(entry["attr"])
        if "info" not in entry:
            classes.append(InspectedClass(attr, None, _child._clip(str(entry.get("error")))))
            continue
        try:
            classes.append(InspectedClass(attr, info_from_json(entry["info"]), None))
        except PluginError as e:
            classes.append(InspectedClass(attr, None, str(e)))
    return tuple(classes)


# --- public API ----------------------------------------------------------------------------
def inspect_plugin(location: PluginLocation, limits: SandboxLimits | None = None) -> Inspection:
    """Load a plugin in the sandbox and return the metadata of its strategy classes.

    Never raises for a broken or hostile plugin: the reason is in `Inspection.error`.
    """
    limits = limits or SandboxLimits()
    try:
        header, digest = _location_header(location, None)
    except _Failed as e:
        return Inspection((), str(e), None)
    try:
        child = _Child(limits, 1, location)
    except OSError as e:
        return Inspection((), f"could not start the sandbox: {e}", digest)
    except PluginError as e:
        return Inspection((), str(e), digest)
    try:
        child.send({"mode": "inspect", "location": header, "params": {}, "frames": []}, [], 0)
        reply, _ = child.receive()
        if reply.get("type") != "metadata":
            return Inspection((), _unexpected(reply, "metadata", limits), digest)
        return Inspection(_inspected(reply.get("strategies")), None, digest)
    except (_Failed, PluginError) as e:
        return Inspection((), str(e), digest)
    finally:
        child.close()


def info_from_json(data: Any) -> StrategyInfo:
    """Rebuild and re-check metadata sent by a child (untrusted JSON, never code).

    Raises:
        PluginError: a field is missing, of the wrong type, or fails `check_metadata`.
    """
    fields = {
        "name": str,
        "version": str,
        "author": str,
        "description": str,
        "warmup_bars": int,
        "params": dict,
        "interface_version": int,
        "hidden_inputs": list,
    }
    if not isinstance(data, dict):
        raise PluginError("the plugin's metadata is not a mapping")
    for key, kind in fields.items():
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            raise PluginError(f"the plugin's metadata field {key!r} is not a {kind.__name__}")
    if not all(isinstance(h, str) for h in data["hidden_inputs"]):
        raise PluginError("the plugin's hidden_inputs are not names")
    payout = data.get("payout_address")
    stub = type(
        "PluginMetadata",
        (Strategy,),
        {
            **{key: data[key] for key in fields if key != "hidden_inputs"},
            "payout_address": payout if isinstance(payout, str) else None,
            "hidden_inputs": tuple(data["hidden_inputs"]),
            "signal": lambda self, candles: None,
        },
    )
    return check_metadata(stub)


def _hidden_for(candles: pd.DataFrame, declared: Sequence[str]) -> dict[str, np.ndarray]:
    """Return the hidden series of `candles` that the strategy declared, and only those."""
    available = candles.attrs.get(HIDDEN_ATTR) or {}
    return {
        name: np.asarray(available[name], dtype="float64") for name in declared if name in available
    }


def _lacks(names: Sequence[str]) -> str:
    return f"needs the hidden series {', '.join(names)}, which this data lacks"


def _missing_hidden(candles: pd.DataFrame, declared: Sequence[str]) -> list[str]:
    available = candles.attrs.get(HIDDEN_ATTR) or {}
    return [name for name in declared if name not in available]


def _check(
    name: str, values: np.ndarray, length: int, warmup_bars: int, allow_nan: bool, elapsed_s: float
) -> SignalResult:
    try:
        warmup = length if allow_nan else warmup_bars
        checked = as_signal(values, length, name=name, warmup_bars=warmup)
    except PluginError as e:
        return SignalResult.failure(name, str(e), elapsed_s)
    return SignalResult(name, checked, ~np.isnan(checked), True, None, elapsed_s)


def run_plugin(
    location: PluginLocation,
    frames: Sequence[pd.DataFrame],
    *,
    name: str,
    params: Mapping[str, Any] | None = None,
    warmup_bars: int = 0,
    hidden_inputs: Sequence[str] = (),
    limits: SandboxLimits | None = None,
    expected_sha256: str | None = None,
    allow_nan: bool = False,
) -> list[SignalResult]:
    """Run an untrusted strategy on each frame in one sandboxed child; one result per frame.

    Args:
        location: where the code is (from discovery).
        frames: candle frames; hidden series in `attrs[HIDDEN_ATTR]` reach the strategy only if
            named in `hidden_inputs`.
        name: the strategy's name, as discovered (a loaded class with another name is refused).
        params: parameter overrides.
        warmup_bars: bars at the start that may be NaN.
        hidden_inputs: the hidden series the strategy declared.
        limits: the child's limits (default `SandboxLimits()`).
        expected_sha256: for files, the code hash from discovery; a changed file is refused.
        allow_nan: accept NaN anywhere (the look-ahead check compares raw outputs).

    After the first failure the remaining frames are not run: they fail with the same reason.
    """
    limits = limits or SandboxLimits()
    arguments = (location, frames, name, params, warmup_bars, hidden_inputs, expected_sha256)
    try:
        return _run_plugin(*arguments, allow_nan, limits)
    except warm.ZygoteError:
        return _run_plugin(*arguments, allow_nan, dataclasses.replace(limits, warm_start=False))


def _run_plugin(
    location: PluginLocation,
    frames: Sequence[pd.DataFrame],
    name: str,
    params: Mapping[str, Any] | None,
    warmup_bars: int,
    hidden_inputs: Sequence[str],
    expected_sha256: str | None,
    allow_nan: bool,
    limits: SandboxLimits,
) -> list[SignalResult]:
    """`run_plugin` once; a warm call whose zygote lost it raises `warm.ZygoteError`."""
    started = time.monotonic()
    results: list[SignalResult] = []

    def fail_rest(reason: str) -> list[SignalResult]:
        elapsed = time.monotonic() - started
        missing = len(frames) - len(results)
        return results + [SignalResult.failure(name, reason, elapsed)] * missing

    if not frames:
        return []
    for frame in frames:
        lacking = _missing_hidden(frame, hidden_inputs)
        if lacking:
            return fail_rest(_lacks(lacking))
    try:
        header, digest = _location_header(location, expected_sha256)
    except _Failed as e:
        return fail_rest(str(e))
    arrays: list[np.ndarray] = []
    specs = []
    for frame in frames:
        hidden = _hidden_for(frame, hidden_inputs)
        arrays.extend(_child.frame_arrays(frame, hidden))
        specs.append({"hidden": sorted(hidden)})
    max_values = max(len(f) for f in frames)
    request = {"mode": "run", "location": header, "params": dict(params or {}), "frames": specs}
    try:
        child = _start_child(limits, len(frames), location, digest)
    except OSError as e:
        return fail_rest(f"could not start the sandbox: {e}")
    except PluginError as e:
        return fail_rest(str(e))
    try:
        child.send(request, arrays, max_values)
        reply, _ = child.receive()
        if reply.get("type") != "ready":
            return fail_rest(_unexpected(reply, "ready", limits))
        loaded = reply.get("name")
        if loaded != name:
            shown = _child._clip(loaded)[:60] if isinstance(loaded, str) else "?"
            return fail_rest(
                f"loads as {shown!r}, not {name!r}: its code changed since it was discovered"
            )
        for frame in frames:
            since = child.last_reply_at
            reply, payload = child.receive()
            elapsed = child.last_reply_at - since
            if reply.get("type") != "result":
                return fail_rest(_unexpected(reply, "a result", limits))
            if reply.get("ok") is not True:
                return fail_rest(_error_reason(reply, limits))
            values = _signal_values(name, reply, payload, len(frame))
            results.append(_check(name, values, len(frame), warmup_bars, allow_nan, elapsed))
            if not results[-1].ok:
                return fail_rest(str(results[-1].reason))
    except warm.ZygoteError:
        raise  # `run_plugin` runs it again cold
    except (_Failed, PluginError) as e:
        return fail_rest(str(e))
    finally:
        child.close()
    return results


def run_trusted(
    strategy_cls: type[Strategy],
    frames: Sequence[pd.DataFrame],
    *,
    params: Mapping[str, Any] | None = None,
    allow_nan: bool = False,
) -> list[SignalResult]:
    """Run a trusted (shipped) strategy in this process, with the same output checks.

    Exceptions from the strategy become failed results, as in the sandbox; no limits apply.
    """
    name = strategy_cls.name
    declared = tuple(strategy_cls.hidden_inputs)
    try:
        strategy = strategy_cls(**dict(params or {}))
    except Exception as e:
        reason = f"could not be created: {_child.describe_exception(e)}"
        return [SignalResult.failure(name, reason)] * len(frames)
    results = []
    for frame in frames:
        missing = _missing_hidden(frame, declared)
        if missing:
            results.append(SignalResult.failure(name, _lacks(missing)))
            continue
        candles = _child.build_frame(
            frame["open_time"].to_numpy(),
            frame[list(_child.PRICE_COLUMNS)].to_numpy(),
            _hidden_for(frame, declared),
        )
        started = time.perf_counter()
        try:
            values = _child.call_strategy(strategy, candles)
        except _child.OutputError as e:
            results.append(SignalResult.failure(name, str(e), time.perf_counter() - started))
            continue
        except Exception as e:
            reason = f"raised {_child.describe_exception(e)}"
            results.append(SignalResult.failure(name, reason, time.perf_counter() - started))
            continue
        elapsed = time.perf_counter() - started
        warmup = strategy_cls.warmup_bars
        results.append(_check(name, values, len(frame), warmup, allow_nan, elapsed))
    return results
