"""The child-process side of the plugin sandbox: load one untrusted strategy, run it, reply.

`agent.plugins.sandbox` starts this module as `python -I -B -c <bootstrap>` in a fresh
directory with a scrubbed environment. It imports only numpy, pandas and the plugin interface
(never torch, the store or the agent's other modules), so its start-up is cheap and a memory
limit measures the strategy rather than the agent. The parent imports it too, for the wire
format and for `call_strategy`, which trusted strategies share with sandboxed ones.

Wire format, both ways: a message is a 12-byte prefix (header length as big-endian uint32,
payload length as big-endian uint64), a UTF-8 JSON header, then the payload bytes. The request
is one header message followed by one message per array (`.npy`, written without pickle); the
reply is one message per event ("ready", "metadata", "result", "point", "error"). A result's
payload is raw little-endian float64 bytes, one per candle, so the parent never parses an
array format the child chose; reply headers are read with a size and nesting-depth bound
(`MessageReader`). Replies are written to a private copy of the original stdout: fd 1 itself
is pointed at stderr, so whatever the plugin prints cannot corrupt the reply. In the
"incremental" mode (the look-ahead check) the request carries no candles: after "ready", the
parent sends one chunk of bars per cut point, each only once the previous cut is answered, and
the child answers each with a "point" reply holding the signal's value at that cut (8 bytes).

Order of operations: read the request, point stdin at /dev/null, set the resource limits
(CPU, address space, file size, open files, no core dumps), install the audit hook
(`AuditGuard`), and only then load the plugin's code.
"""

from __future__ import annotations

import io
import json
import os
import struct
import sys
import traceback
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from agent.plugins.interface import HIDDEN_ATTR, Strategy, check_metadata

PREFIX = struct.Struct(">IQ")
MAX_HEADER_BYTES = 1 << 20
"""Largest request header (parent to child: the plugin's source travels in it)."""
MAX_REPLY_HEADER_BYTES = 1 << 18
"""Largest reply header (child to parent: metadata at most)."""
MAX_JSON_DEPTH = 8
"""Deepest nesting of arrays and objects a reply header may have."""
CANDLE_COLUMNS = ("open_time", "open", "high", "low", "close", "volume")
PRICE_COLUMNS = CANDLE_COLUMNS[1:]
MAX_MESSAGE_CHARS = 400
"""Longest error text a reply may carry (plugin-controlled text is cut, not trusted)."""
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_PROCESS_EVENTS = frozenset(
    {
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "os.forkpty",
        "subprocess.Popen",
        "pty.spawn",
    }
)
_SIGNAL_EVENTS = frozenset({"os.kill", "os.killpg", "signal.pthread_kill"})
_NETWORK_EVENTS = frozenset(
    {
        "socket.connect",
        "socket.bind",
        "socket.sendto",
        "socket.sendmsg",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyaddr",
    }
)
_NATIVE_EVENTS = frozenset(
    {"ctypes.dlopen", "ctypes.dlsym", "ctypes.dlsym/handle", "ctypes.call_function", "ctypes.cdata"}
)
_NATIVE_MODULES = frozenset({"ctypes", "_ctypes", "cffi", "_cffi_backend", "_posixsubprocess"})
_PATH_EVENTS: Mapping[str, tuple[int, ...]] = {
    "os.remove": (0,),
    "os.rmdir": (0,),
    "os.mkdir": (0,),
    "os.rename": (0, 1),
    "os.link": (0, 1),
    "os.symlink": (1,),
    "os.truncate": (0,),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.utime": (0,),
    "os.setxattr": (0,),
    "os.removexattr": (0,),
    "shutil.copyfile": (1,),
    "shutil.copymode": (1,),
    "shutil.copystat": (1,),
    "shutil.copytree": (1,),
    "shutil.rmtree": (0,),
    "shutil.chown": (0,),
}
"""Audit events that change the file system, with the positions of their path arguments."""


# --- wire format -------------------------------------------------------------------------------
def pack_message(header: Mapping[str, Any], payload: bytes = b"") -> bytes:
    """Return one framed message: prefix, JSON header, payload."""
    blob = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    return PREFIX.pack(len(blob), len(payload)) + blob + payload


def encode_array(array: np.ndarray) -> bytes:
    """Return `array` as `.npy` bytes (never pickled)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def decode_array(blob: bytes) -> np.ndarray:
    """Read `.npy` bytes; object arrays (which would need pickle) are refused."""
    return np.load(io.BytesIO(blob), allow_pickle=False)


def json_depth(blob: bytes) -> int:
    """Return the deepest nesting of arrays and objects in JSON text, without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in blob:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def parse_header(blob: bytes, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """Parse an untrusted JSON header: an object, at most `max_depth` deep, finite numbers.

    Raises:
        ValueError: anything else (deeper, not an object, not JSON, NaN or infinite numbers).
    """
    depth = json_depth(blob)
    if depth > max_depth:
        raise ValueError(f"a reply header nested {depth} deep, more than the {max_depth} allowed")

    def refuse(constant: str) -> None:
        raise ValueError(f"a reply header with the number {constant}")

    try:
        header = json.loads(blob.decode("utf-8"), parse_constant=refuse)
    except ValueError as e:  # not UTF-8, not JSON, an over-long integer, NaN
        raise ValueError(f"a reply header that is not JSON ({_clip(str(e))[:120]})") from e
    except RecursionError as e:  # unreachable after the depth check; kept as a guard
        raise ValueError("a reply header nested too deep") from e
    if not isinstance(header, dict):
        raise ValueError("a reply whose header is not a JSON object")
    return header


class MessageReader:
    """Split a byte stream into messages, refusing any larger than allowed.

    Headers are parsed by `parse_header` (bounded depth, objects only); a payload longer than
    `max_payload_bytes` is refused from its prefix, before it is read.
    """

    def __init__(
        self, max_payload_bytes: int, max_header_bytes: int = MAX_REPLY_HEADER_BYTES
    ) -> None:
        self.max_payload_bytes = max_payload_bytes
        self.max_header_bytes = max_header_bytes
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[tuple[dict[str, Any], bytes]]:
        """Add received bytes and yield every message now complete.

        Raises:
            ValueError: a message is larger than allowed or its header is malformed.
        """
        self._buffer += data
        while len(self._buffer) >= PREFIX.size:
            header_len, payload_len = PREFIX.unpack_from(self._buffer)
            if header_len > self.max_header_bytes:
                raise ValueError(
                    f"a reply header of {header_len} bytes, more than the "
                    f"{self.max_header_bytes} allowed"
                )
            if payload_len > self.max_payload_bytes:
                raise ValueError(
                    f"a reply payload of {payload_len} bytes, more than the "
                    f"{self.max_payload_bytes} allowed"
                )
            end = PREFIX.size + header_len + payload_len
            if len(self._buffer) < end:
                return
            header = parse_header(bytes(self._buffer[PREFIX.size : PREFIX.size + header_len]))
            payload = bytes(self._buffer[PREFIX.size + header_len : end])
            del self._buffer[:end]
            yield header, payload


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    chunks = []
    while size:
        chunk = stream.read(size)
        if not chunk:
            raise EOFError("the request ended early")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_request(stream: BinaryIO) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Read the request header and the arrays that follow it."""
    messages = []
    count = None
    while count is None or len(messages) < count + 1:
        header_len, payload_len = PREFIX.unpack(_read_exact(stream, PREFIX.size))
        header = json.loads(_read_exact(stream, header_len))
        payload = _read_exact(stream, payload_len)
        messages.append((header, payload))
        if count is None:
            count = int(header["arrays"])
    return messages[0][0], [decode_array(payload) for _, payload in messages[1:]]


# --- frames --------------------------------------------------------------------------------
def frame_arrays(candles: pd.DataFrame, hidden: Mapping[str, Any]) -> list[np.ndarray]:
    """Return the arrays that carry one frame: open times, prices and volume, hidden series."""
    arrays = [
        candles["open_time"].to_numpy(dtype="int64"),
        candles[list(PRICE_COLUMNS)].to_numpy(dtype="float64"),
    ]
    arrays.extend(np.asarray(hidden[name], dtype="float64") for name in sorted(hidden))
    return arrays


def build_frame(
    open_time: np.ndarray, prices: np.ndarray, hidden: Mapping[str, np.ndarray]
) -> pd.DataFrame:
    """Rebuild the candle frame a strategy sees, with its hidden series in `attrs`."""
    frame = pd.DataFrame({"open_time": np.asarray(open_time, dtype="int64")})
    for i, column in enumerate(PRICE_COLUMNS):
        frame[column] = np.asarray(prices[:, i], dtype="float64")
    if hidden:
        frame.attrs[HIDDEN_ATTR] = dict(hidden)
    return frame


# --- running strategy code (shared with the parent's trusted path) -------------------------
class OutputError(Exception):
    """A strategy returned something that cannot be read as one number per candle."""


def call_strategy(strategy: Strategy, candles: pd.DataFrame) -> np.ndarray:
    """Run `strategy.signal` and return its output as a float64 array (shape unchecked).

    Raises:
        OutputError: the output is not numbers, or a Series not aligned to the candles.
        Exception: whatever the strategy raised.
    """
    output = strategy.signal(candles)
    if (
        isinstance(output, pd.Series | pd.DataFrame)
        and len(output) == len(candles)
        and not output.index.equals(candles.index)
    ):
        raise OutputError("returned a series whose index is not the candles' index")
    try:
        return np.asarray(output, dtype="float64")
    except (TypeError, ValueError) as e:
        raise OutputError(f"returned something that is not numbers: {_clip(str(e))}") from e


def describe_exception(error: BaseException, prefer_file: str | None = None) -> str:
    """Return "ValueError: message (file.py, line 12)", naming the plugin's own line if it can."""
    text = f"{type(error).__name__}: {_clip(str(error))}" if str(error) else type(error).__name__
    if isinstance(error, SyntaxError):
        at = f"{error.filename}, line {error.lineno}"
        return f"{type(error).__name__}: {_clip(error.msg or '')} ({at})"
    frames = traceback.extract_tb(error.__traceback__)
    mine = [f for f in frames if prefer_file and f.filename.startswith(prefer_file)]
    if not frames:
        return text
    where = (mine or frames)[-1]
    return f"{text} ({os.path.basename(where.filename)}, line {where.lineno})"


def _clip(text: str) -> str:
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


# --- the audit hook --------------------------------------------------------------------------
def _real(path: Any) -> str | None:
    try:
        text = os.fsdecode(os.fspath(path))
    except TypeError:
        return None
    return os.path.realpath(text)


def audit_violation(event: str, args: tuple[Any, ...], workdir: str) -> str | None:
    """Return why `event` is refused for a plugin confined to `workdir`, or None to allow it.

    Pure, so it can be tested without installing the hook. `workdir` must be a real path.
    """
    if event == "open":
        return _open_violation(args, workdir)
    if event in _PATH_EVENTS:
        for index in _PATH_EVENTS[event]:
            if index < len(args) and not _inside(_real(args[index]), workdir):
                return f"tried to change {_real(args[index])} outside its directory ({event})"
        return None
    if event in _PROCESS_EVENTS:
        return f"tried to start a process ({event})"
    if event in _SIGNAL_EVENTS:
        return f"tried to send a signal to a process ({event})"
    if event in _NETWORK_EVENTS:
        return f"tried to use the network ({event})"
    if event in _NATIVE_EVENTS:
        return f"tried to call native code through ctypes ({event})"
    if event == "import" and args and args[0] in _NATIVE_MODULES:
        return f"tried to import {args[0]}"
    if event in ("resource.setrlimit", "resource.prlimit"):
        return "tried to change its resource limits"
    if event == "sqlite3.connect" and args and args[0] not in (":memory:", ""):
        return f"tried to open the database {args[0]!s} (only in-memory SQLite is allowed)"
    return None


def _inside(path: str | None, workdir: str) -> bool:
    return path is not None and (path == workdir or path.startswith(workdir + os.sep))


def _open_violation(args: tuple[Any, ...], workdir: str) -> str | None:
    target = args[0] if args else None
    mode = args[1] if len(args) > 1 else None
    flags = args[2] if len(args) > 2 else 0
    writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
        isinstance(flags, int) and bool(flags & _WRITE_FLAGS)
    )
    if isinstance(target, int):
        if writes and target > 2:
            return (
                f"tried to write to file descriptor {target}, not a file in its directory (as "
                "multiprocessing does to start a process; strategies start no processes)"
            )
        return None
    path = _real(target)
    if path is None or _inside(path, workdir) or path == os.devnull:
        return None
    if writes:
        return f"tried to write {path} outside its directory"
    if os.path.isdir(path):
        return f"tried to open the directory {path} outside its own"
    return None


class AuditGuard:
    """The child's audit hook: refuses (PermissionError) and records every violation.

    The record matters because a plugin may catch the PermissionError and carry on: any
    violation fails the run even when the strategy then returns a valid signal. A hook cannot
    be removed once added, but native code (a C extension, ctypes already loaded) can act
    without raising audit events: this is a tripwire, not a wall (see docs/plugin-security.md).
    """

    def __init__(self, workdir: str) -> None:
        self.workdir = os.path.realpath(workdir)
        self.violations: list[str] = []

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        reason = audit_violation(event, args, self.workdir)
        if reason is not None:
            self.violations.append(reason)
            raise PermissionError(f"Agora plugin sandbox: {reason}")


# --- the child's main loop -----------------------------------------------------------------
def apply_limits(limits: Mapping[str, Any]) -> None:
    """Set this process's CPU, address-space, file-size and open-file limits (Linux/Unix)."""
    import resource

    cpu = max(1, int(limits["cpu_seconds"]))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    memory = int(limits["memory_mb"]) << 20
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    size = int(limits["file_size_mb"]) << 20
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = 256 if hard == resource.RLIM_INFINITY else min(256, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(cap, soft), cap))


def load_classes(location: Mapping[str, Any]) -> tuple[list[tuple[str, Any]], str | None]:
    """Import the plugin and return its candidate (attribute name, object) pairs.

    A file's source text comes in the request (the exact bytes the parent hashed); a module is
    imported by name. Without an attribute, every concrete Strategy subclass the module itself
    defines is a candidate. Returns the candidates and the path prefix of the plugin's code.
    """
    if location["kind"] == "file":
        path = location["target"]
        stem = "".join(c if c.isalnum() else "_" for c in os.path.basename(path)[:-3])
        module = types.ModuleType(f"agora_plugin_{stem}")
        module.__file__ = path
        sys.modules[module.__name__] = module
        exec(compile(location["source"], path, "exec"), module.__dict__)
        prefix: str | None = path
    else:
        import importlib

        module = importlib.import_module(location["target"])
        prefix = os.path.dirname(getattr(module, "__file__", "") or "") or None
    attr = location.get("attr")
    if attr:
        obj: Any = module
        for part in attr.split("."):
            obj = getattr(obj, part)
        if not isinstance(obj, types.ModuleType):
            return [(attr, obj)], prefix
        module = obj
    found = [
        (name, obj)
        for name, obj in vars(module).items()
        if isinstance(obj, type)
        and issubclass(obj, Strategy)
        and obj.__module__ == module.__name__
        and not getattr(obj, "__abstractmethods__", None)
    ]
    return sorted(found, key=lambda item: item[0]), prefix


def _metadata(candidates: Sequence[tuple[str, Any]]) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for attr, obj in candidates:
        try:
            info = check_metadata(obj)
            params = json.loads(json.dumps(dict(info.params), allow_nan=False))
        except (TypeError, ValueError) as e:
            entries.append({"attr": attr, "error": f"params must be plain JSON values: {e}"})
            continue
        except Exception as e:
            entries.append({"attr": attr, "error": _clip(str(e))})
            continue
        entries.append(
            {
                "attr": attr,
                "info": {
                    "name": info.name,
                    "version": info.version,
                    "author": info.author,
                    "payout_address": info.payout_address,
                    "description": info.description,
                    "warmup_bars": info.warmup_bars,
                    "params": params,
                    "interface_version": info.interface_version,
                    "hidden_inputs": list(info.hidden_inputs),
                },
            }
        )
    return entries


def _frames(request: Mapping[str, Any], arrays: Sequence[np.ndarray]) -> Iterator[pd.DataFrame]:
    at = 0
    for spec in request["frames"]:
        names = sorted(spec["hidden"])
        hidden = {name: arrays[at + 2 + i] for i, name in enumerate(names)}
        yield build_frame(arrays[at], arrays[at + 1], hidden)
        at += 2 + len(names)


def _run(
    request: Mapping[str, Any],
    arrays: Sequence[np.ndarray],
    send: Callable[..., None],
    guard: AuditGuard,
) -> None:
    try:
        candidates, prefix = load_classes(request["location"])
    except MemoryError as e:
        send({"type": "error", "kind": "memory", "message": _clip(str(e))})
        return
    except BaseException as e:
        if not guard.violations:
            send({"type": "error", "kind": "import", "message": describe_exception(e, None)})
            return
    if guard.violations:
        send({"type": "error", "kind": "violation", "message": guard.violations[0]})
        return
    if request["mode"] == "inspect":
        send({"type": "metadata", "strategies": _metadata(candidates)})
        return
    try:
        if len(candidates) != 1:
            raise LookupError(f"expected one Strategy class, found {len(candidates)}")
        strategy = candidates[0][1](**request["params"])
    except BaseException as e:
        message = guard.violations[0] if guard.violations else describe_exception(e, prefix)
        kind = "violation" if guard.violations else "init"
        send({"type": "error", "kind": kind, "message": message})
        return
    send({"type": "ready", "name": str(getattr(strategy, "name", ""))})
    if request["mode"] == "incremental":
        _run_incremental(request, strategy, send, guard, prefix)
        return
    for index, frame in enumerate(_frames(request, arrays)):
        reply: dict[str, Any] = {"type": "result", "frame": index}
        payload = b""
        values = _call(strategy, frame, reply, prefix)
        if values is not None:
            reply.update(ok=True, shape=[int(n) for n in values.shape])
            if values.shape == (len(frame),):
                payload = values.astype("<f8").tobytes()
        if guard.violations:
            reply = {"type": "error", "kind": "violation", "message": guard.violations[0]}
            send(reply)
            return
        send(reply, payload)
        if not reply["ok"]:
            return


def _call(
    strategy: Any, frame: pd.DataFrame, reply: dict[str, Any], prefix: str | None
) -> np.ndarray | None:
    """Run the strategy on `frame`; on failure record why in `reply` and return None."""
    try:
        return call_strategy(strategy, frame)
    except MemoryError as e:
        reply.update(ok=False, kind="memory", message=_clip(str(e)))
    except OutputError as e:
        reply.update(ok=False, kind="output", message=str(e))
    except BaseException as e:
        reply.update(ok=False, kind="exception", message=describe_exception(e, prefix))
    return None


def _run_incremental(
    request: Mapping[str, Any],
    strategy: Any,
    send: Callable[..., None],
    guard: AuditGuard,
    prefix: str | None,
) -> None:
    """Answer cut points in increasing order, each from the candles up to it and no later.

    The parent sends one chunk per cut (the bars after the previous cut, up to and including
    this one) only after the previous answer, so this process never holds a later bar than the
    cut it answers. Each answer is the signal's last value on the candles received so far.
    """
    stream = request["stream"]
    hidden_names = sorted(request["hidden"])
    parts: list[list[np.ndarray]] = [[] for _ in range(2 + len(hidden_names))]
    for index in range(int(request["cuts"])):
        try:
            header, arrays = read_request(stream)
        except (EOFError, ValueError, KeyError):
            return
        for part, array in zip(parts, arrays, strict=True):
            part.append(array)
        joined = [np.concatenate(part) if len(part) > 1 else part[0] for part in parts]
        for part, array in zip(parts, joined, strict=True):
            part[:] = [array]
        frame = build_frame(joined[0], joined[1], dict(zip(hidden_names, joined[2:], strict=True)))
        reply: dict[str, Any] = {"type": "point", "index": index, "cut": header.get("cut")}
        payload = b""
        values = _call(strategy, frame, reply, prefix)
        if values is not None and values.shape != (len(frame),):
            shape = f"returned shape {list(values.shape)} for {len(frame)} candles"
            reply.update(ok=False, kind="output", message=shape)
        elif values is not None:
            reply.update(ok=True)
            payload = values[-1:].astype("<f8").tobytes()
        if guard.violations:
            send({"type": "error", "kind": "violation", "message": guard.violations[0]})
            return
        send(reply, payload)
        if not reply["ok"]:
            return


def main() -> int:
    """Serve one request from stdin; the reply goes to the original stdout."""
    reply_fd = os.dup(1)
    os.dup2(2, 1)
    stream = os.fdopen(os.dup(0), "rb")
    request, arrays = read_request(stream)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    if request.get("mode") == "incremental":
        request["stream"] = stream  # the chunks still to come, one per answered cut
    else:
        stream.close()

    def send(header: Mapping[str, Any], payload: bytes = b"") -> None:
        blob = pack_message(header, payload)
        view = memoryview(blob)
        while view:
            view = view[os.write(reply_fd, view) :]

    sys.dont_write_bytecode = True
    apply_limits(request["limits"])
    guard = AuditGuard(request["workdir"])
    sys.addaudithook(guard)
    _run(request, arrays, send, guard)
    return 0
