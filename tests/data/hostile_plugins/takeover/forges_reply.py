"""HOSTILE TEST PLUGIN (a template: tests fill in the @@…@@ values): forge the reply frame.

It finds the sandbox's reply pipe among its own file descriptors (the one pipe that is not
stderr), writes a forged message to it directly and exits, so the parent reads exactly the
bytes the plugin chose. FORGERY picks the forgery; WHEN says whether it happens while the
plugin is loaded (a forged metadata reply) or in signal() (a forged result).
"""

import io
import os
import stat
import struct

import numpy as np
import pandas as pd

from agent.plugins import Strategy

FORGERY = "@@FORGERY@@"
WHEN = "@@WHEN@@"
PREFIX = struct.Struct(">IQ")


def reply_fd() -> int:
    """Return the first pipe above stderr that is not stderr (found with fstat, not /proc,
    which a warm call does not have)."""
    stderr = os.fstat(2)
    for fd in range(3, 256):
        try:
            info = os.fstat(fd)
        except OSError:
            continue
        same = (info.st_dev, info.st_ino) == (stderr.st_dev, stderr.st_ino)
        if stat.S_ISFIFO(info.st_mode) and not same:
            return fd
    raise RuntimeError("no reply pipe found")


def frame(header: bytes, payload: bytes = b"") -> bytes:
    return PREFIX.pack(len(header), len(payload)) + header + payload


def forged(bars: int) -> bytes:
    kind = "metadata" if WHEN == "import" else "result"
    if FORGERY == "deep":
        return frame(b"[" * 100_000 + b"]" * 100_000)
    if FORGERY == "deep-dict":
        return frame(b'{"type":"' + kind.encode() + b'","x":' + b'{"a":' * 50 + b"1" + b"}" * 51)
    if FORGERY == "wrong-types":
        if kind == "metadata":
            return frame(b'{"type":"metadata","strategies":[{"attr":["x"],"info":7}]}')
        header = b'{"type":"result","ok":true,"shape":{"n":"all"},"elapsed_s":"fast"}'
        return frame(header, b"\x00" * 3)
    if FORGERY == "oversized":
        return PREFIX.pack(16, 1 << 62) + b'{"type":"result"'
    if FORGERY == "object-array":
        buffer = io.BytesIO()
        np.save(buffer, np.array([{"x": 1}] * bars, dtype=object), allow_pickle=True)
        header = b'{"type":"result","ok":true,"shape":[' + str(bars).encode() + b"]}"
        return frame(header, buffer.getvalue())
    if FORGERY == "flood":  # far more replies than asked for, each small and well formed
        ready = frame(b'{"type":"ready","name":"forges-flood-on-signal"}')
        return ready * 200_000
    raise ValueError(FORGERY)


def forge(bars: int) -> None:
    fd = reply_fd()
    blob = memoryview(forged(bars))
    while blob:
        blob = blob[os.write(fd, blob) :]
    os._exit(0)


if WHEN == "import":
    forge(0)


class ForgesReply(Strategy):
    name = f"forges-{FORGERY}-on-{WHEN}"
    description = "Writes a forged reply frame to the sandbox's reply pipe."

    def signal(self, candles: pd.DataFrame) -> np.ndarray:
        forge(len(candles))
        return np.zeros(len(candles))
