"""The child's audit hook, tested as the pure function it calls (no hook is installed here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.plugins._child import AuditGuard, audit_violation

WRITE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC


@pytest.fixture
def workdir(tmp_path: Path) -> str:
    inside = tmp_path / "sandbox"
    inside.mkdir()
    return os.path.realpath(inside)


def test_writing_inside_the_private_directory_is_allowed(workdir: str) -> None:
    assert audit_violation("open", (f"{workdir}/scratch.npy", "wb", WRITE), workdir) is None
    assert audit_violation("open", (os.devnull, "w", WRITE), workdir) is None
    assert audit_violation("os.mkdir", (f"{workdir}/cache", 0o777, -1), workdir) is None


def test_reading_files_anywhere_is_allowed(workdir: str) -> None:
    assert audit_violation("open", ("/etc/hostname", "r", os.O_RDONLY), workdir) is None


@pytest.mark.parametrize(
    ("event", "args", "reason"),
    [
        ("open", ("/etc/x", "w", WRITE), "tried to write /etc/x outside its directory"),
        ("open", ("/etc/x", None, os.O_RDWR), "tried to write /etc/x outside its directory"),
        ("open", ("/etc/x", "a", 0), "tried to write /etc/x outside its directory"),
        ("open", ("/etc", "r", os.O_RDONLY), "tried to open the directory /etc outside its own"),
        (
            "open",
            (5, "wb", WRITE),
            "tried to write to file descriptor 5, not a file in its directory (as "
            "multiprocessing does to start a process; strategies start no processes)",
        ),
        ("os.remove", ("/etc/x", -1), "tried to change /etc/x outside its directory (os.remove)"),
        ("os.system", (b"ls",), "tried to start a process (os.system)"),
        ("subprocess.Popen", ("ls", [], None, None), "tried to start a process (subprocess.Popen)"),
        ("os.kill", (1, 9), "tried to send a signal to a process (os.kill)"),
        ("socket.connect", (None, ("1.2.3.4", 80)), "tried to use the network (socket.connect)"),
        (
            "ctypes.dlopen",
            ("libc.so.6",),
            "tried to call native code through ctypes (ctypes.dlopen)",
        ),
        ("import", ("_ctypes", None, [], [], []), "tried to import _ctypes"),
        ("resource.setrlimit", (9, (1, 1)), "tried to change its resource limits"),
        (
            "sqlite3.connect",
            ("/home/me/agora.db",),
            "tried to open the database /home/me/agora.db (only in-memory SQLite is allowed)",
        ),
    ],
)
def test_escapes_are_refused_with_a_reason(
    workdir: str, event: str, args: tuple[object, ...], reason: str
) -> None:
    assert audit_violation(event, args, workdir) == reason


def test_renames_and_links_are_checked_on_both_ends(workdir: str) -> None:
    inside = f"{workdir}/a"
    assert audit_violation("os.rename", ("/etc/passwd", inside, -1, -1), workdir) is not None
    assert audit_violation("os.rename", (inside, "/tmp/out", -1, -1), workdir) is not None
    assert audit_violation("os.link", ("/etc/passwd", inside, -1, -1, True), workdir) is not None
    # A symlink may point anywhere: writing through it is checked on the resolved path.
    assert audit_violation("os.symlink", ("/etc/passwd", inside, -1), workdir) is None


def test_a_symlink_inside_does_not_launder_a_write_outside(workdir: str, tmp_path: Path) -> None:
    outside = tmp_path / "victim.txt"
    link = Path(workdir) / "innocent.txt"
    link.symlink_to(outside)
    reason = audit_violation("open", (str(link), "w", WRITE), workdir)
    assert reason == f"tried to write {outside.resolve()} outside its directory"


def test_a_relative_path_escaping_with_dots_is_refused(
    workdir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(workdir)
    reason = audit_violation("open", ("../escaped.txt", "w", WRITE), workdir)
    assert reason == f"tried to write {os.path.dirname(workdir)}/escaped.txt outside its directory"
    assert audit_violation("open", ("./fine.txt", "w", WRITE), workdir) is None


def test_the_guard_raises_and_remembers_every_violation(workdir: str) -> None:
    guard = AuditGuard(workdir)
    guard("open", ("/etc/hostname", "r", 0))
    with pytest.raises(PermissionError, match="tried to write /etc/x outside its directory"):
        guard("open", ("/etc/x", "w", WRITE))
    with pytest.raises(PermissionError):
        guard("os.system", (b"id",))
    assert guard.violations == [
        "tried to write /etc/x outside its directory",
        "tried to start a process (os.system)",
    ]
