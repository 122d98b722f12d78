"""The one way third-party strategy code is started: a `python -I` child inside bubblewrap.

`child_command` returns the command, working directory and environment of one sandboxed
child. With `strategies.sandbox: bubblewrap` (the default) the interpreter runs under `bwrap`
in new user, PID, network, IPC, UTS and cgroup namespaces (`--unshare-all`, and no further
user namespaces inside), as `nobody` with no capabilities, in a new session, killed with its
parent. Its file system is built from nothing: a read-only view of the Python runtime
(`sys.base_prefix`, the interpreter and the system libraries it links), the environment's
site-packages, the `agent` package and the plugin's own file or package; a private tmpfs at
/tmp, of bounded size, as its working directory and HOME; a fresh /proc (its own PID
namespace only) and a minimal, read-only /dev. No data directory, database, config file, home
or key material is bound, and the environment is emptied (`--clearenv`) but for a few
constants.

With `zygote=True` it starts a warm zygote instead (`agent.plugins._zygote`) under the same
command, which keeps `ZYGOTE_CAPABILITIES` in its own user namespace to confine each call it
forks; no call keeps them (see `agent.plugins.warm`).

Where bubblewrap cannot run (not installed, or no user namespaces), `child_command` raises a
one-line `PluginError` naming the cause and the setting that allows an unsandboxed run
(`strategies.sandbox: none`, unsafe: the child then runs with only rlimits and an audit hook).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.errors import PluginError

SANDBOX_MODES = ("bubblewrap", "none")
BOOTSTRAP = (
    "import site, sys\n"
    "for path in sys.argv[2:]: site.addsitedir(path)\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "from agent.plugins._child import main; raise SystemExit(main())"
)
"""argv[1]: the directory holding `agent`; argv[2:]: site directories (sandboxed runs)."""
ZYGOTE_BOOTSTRAP = BOOTSTRAP.replace("agent.plugins._child", "agent.plugins._zygote")
"""The same, starting a warm zygote (`agent.plugins._zygote`) instead of one child."""
ZYGOTE_CAPABILITIES = ("CAP_SYS_ADMIN", "CAP_SETPCAP")
"""What a zygote keeps in its own user namespace: to give each call new namespaces and a
fresh tmpfs, and to empty each call's bounding set. No call keeps either."""
CHILD_TMP = "/agora-tmp"
"""The child's private tmpfs (working directory, HOME, TMPDIR) inside the sandbox. Not /tmp: the
runtime, the venv or `agent` may live under the host's /tmp (a checkout there), and a tmpfs
mounted over their parent would hide them; nothing on the host lives under this path. The
sandbox has no writable /tmp at all."""
NOBODY = 65534
DEFAULT_TMPFS_MB = 64
_ENV_CONSTANTS = {
    "PATH": "/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
"""The whole environment of a child, with HOME and TMPDIR: constants, nothing inherited (one
BLAS thread: less address space per child, and no oversubscription of the machine)."""
_SYSTEM_LIBRARIES = ("/usr/lib", "/usr/lib64", "/usr/lib32", "/lib", "/lib64", "/lib32")
_UNSAFE_HINT = "set strategies.sandbox: none to run third-party strategies unsandboxed (unsafe)"


@dataclass(frozen=True)
class ChildCommand:
    """How to start one child: its argv, working directory (on the host) and environment.

    Attributes:
        argv: the command line.
        cwd: the host directory the command starts in.
        env: the environment passed to the command.
        workdir: the child's writable directory as the child sees it.
    """

    argv: tuple[str, ...]
    cwd: str
    env: dict[str, str]
    workdir: str


def agent_root() -> str:
    """Return the directory that holds the `agent` package the parent runs."""
    import agent

    return str(Path(agent.__file__).resolve().parent.parent)


def scrubbed_environment(workdir: Path | str) -> dict[str, str]:
    """Return the whole environment a child gets: constants, a private HOME and TMPDIR.

    Nothing of the agent's environment passes (no AGORA_*, no keys or secrets).
    """
    return {**_ENV_CONSTANTS, "HOME": str(workdir), "TMPDIR": str(workdir)}


def site_directories() -> tuple[str, ...]:
    """Return the environment's site-packages (purelib, platlib), existing ones, deduplicated."""
    paths = sysconfig.get_paths()
    found = []
    for key in ("purelib", "platlib"):
        path = os.path.realpath(paths[key])
        if os.path.isdir(path) and path not in found:
            found.append(path)
    return tuple(found)


def interpreter() -> str:
    """Return the real path of the interpreter (the venv's `python` is a symlink to it)."""
    if not sys.executable:
        raise PluginError("no Python interpreter to start the sandbox with (sys.executable)")
    return os.path.realpath(sys.executable)


def _system_binds() -> list[str]:
    args: list[str] = []
    for path in _SYSTEM_LIBRARIES:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def _read_only(paths: Iterable[str]) -> list[str]:
    args: list[str] = []
    seen: list[str] = []
    for path in paths:
        real = os.path.realpath(path)
        if not os.path.exists(real) or any(real == s or real.startswith(s + "/") for s in seen):
            continue
        seen.append(real)
        args += ["--ro-bind", real, real]
    return args


def bwrap_argv(
    bwrap: str,
    python_argv: Sequence[str],
    read_only: Sequence[str],
    tmpfs_mb: int = DEFAULT_TMPFS_MB,
    capabilities: Sequence[str] = (),
) -> list[str]:
    """Return the bubblewrap command line that runs `python_argv` confined.

    Args:
        bwrap: the `bwrap` executable.
        python_argv: the interpreter and its arguments.
        read_only: host paths the child may read (bound read-only at the same path).
        tmpfs_mb: size of its private tmpfs (tmpfs lives in the host's memory).
        capabilities: capabilities kept in its user namespace (a zygote's; none otherwise).
    """
    kept = [arg for cap in capabilities for arg in ("--cap-add", cap)]
    runtime = [sys.base_prefix, interpreter(), *site_directories(), *read_only]
    env_args = [
        arg
        for name, value in scrubbed_environment(CHILD_TMP).items()
        for arg in ("--setenv", name, value)
    ]
    return [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        *kept,
        "--uid",
        str(NOBODY),
        "--gid",
        str(NOBODY),
        "--clearenv",
        *env_args,
        *_system_binds(),
        *_read_only(runtime),
        "--size",
        str(tmpfs_mb << 20),
        "--tmpfs",
        CHILD_TMP,
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--remount-ro",
        "/dev",
        "--remount-ro",
        "/",  # the root holds only mount points: nothing but the private tmpfs is writable
        "--chdir",
        CHILD_TMP,
        *python_argv,
    ]


@functools.lru_cache(maxsize=8)
def _bubblewrap_works(bwrap: str, python: str) -> str | None:
    """Start an empty sandboxed interpreter once per process; return why it failed, or None."""
    argv = bwrap_argv(bwrap, [python, "-I", "-S", "-c", "pass"], [])
    try:
        done = subprocess.run(argv, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bubblewrap could not start ({e})"
    if done.returncode != 0:
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        cause = lines[-1][:200] if lines else f"exit status {done.returncode}"
        return f"bubblewrap cannot create its namespaces here ({cause})"
    return None


def bubblewrap() -> str:
    """Return the `bwrap` executable, after checking once that it can confine a child.

    Raises:
        PluginError: bubblewrap is not installed, or cannot run here (no user namespaces).
    """
    found = shutil.which("bwrap")
    if found is None:
        raise PluginError(
            "third-party strategies run only inside bubblewrap, and `bwrap` is not on PATH "
            f"(install the Debian package bubblewrap, or {_UNSAFE_HINT})"
        )
    failure = _bubblewrap_works(found, interpreter())
    if failure is not None:
        raise PluginError(
            f"third-party strategies run only inside bubblewrap: {failure}; {_UNSAFE_HINT}"
        )
    return found


def child_command(
    mode: str,
    host_workdir: str,
    read_only: Sequence[str],
    tmpfs_mb: int = DEFAULT_TMPFS_MB,
    *,
    zygote: bool = False,
) -> ChildCommand:
    """Return how to start one plugin child in `mode` ("bubblewrap" or "none").

    Args:
        mode: `strategies.sandbox`.
        host_workdir: a fresh private host directory (the working directory of an unsandboxed
            child; unused by a sandboxed one, which gets its own tmpfs).
        read_only: the plugin's own file or package directories.
        tmpfs_mb: size of a sandboxed child's private tmpfs.
        zygote: start a warm zygote (`agent.plugins._zygote`, bubblewrap only), keeping
            `ZYGOTE_CAPABILITIES` in its user namespace, instead of one child.

    Raises:
        PluginError: the mode is unknown, or bubblewrap cannot run (see `bubblewrap`).
    """
    root = agent_root()
    if mode == "none":
        python = [sys.executable or interpreter(), "-I", "-B", "-c", BOOTSTRAP, root]
        env = scrubbed_environment(host_workdir)
        return ChildCommand(tuple(python), host_workdir, env, host_workdir)
    if mode != "bubblewrap":
        raise PluginError(f"strategies.sandbox is {mode!r}; expected one of {SANDBOX_MODES}")
    bwrap = bubblewrap()
    sites = list(site_directories())
    for path in read_only:
        parent = os.path.dirname(os.path.realpath(path))
        if os.path.isdir(path) and parent not in sites and parent != root:
            sites.append(parent)
    bootstrap = ZYGOTE_BOOTSTRAP if zygote else BOOTSTRAP
    python = [interpreter(), "-I", "-B", "-c", bootstrap, root, *sites]
    kept = ZYGOTE_CAPABILITIES if zygote else ()
    argv = bwrap_argv(bwrap, python, [os.path.join(root, "agent"), *read_only], tmpfs_mb, kept)
    host_env = {"PATH": os.environ.get("PATH", os.defpath)}
    return ChildCommand(tuple(argv), host_workdir, host_env, CHILD_TMP)


def plugin_paths(kind: str, target: str) -> list[str]:
    """Return the host paths of a plugin's own code, found without importing it.

    A file plugin is its file; a module plugin is its top-level package's directories (or
    its single module file).
    """
    if kind == "file":
        return [target]
    try:
        spec = importlib.util.find_spec(target.split(".")[0])
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    if spec.submodule_search_locations:
        return [str(p) for p in spec.submodule_search_locations]
    return [spec.origin] if spec.origin and os.path.isfile(spec.origin) else []
