"""`make test` wall time: the last recorded figure, or a fresh measurement with --run.

    .venv/bin/python benchmarks/make_test.py               # print the figure recorded in README
    .venv/bin/python benchmarks/make_test.py --run         # clone, set up, time `make test`
    .venv/bin/python benchmarks/make_test.py --run --keep  # keep the clone afterwards

By default nothing runs: the suite takes about a quarter of an hour on 2 cores, so `make bench`
only prints the figure last recorded in benchmarks/README.md (the line starting with
`Last recorded:` in the make_test.py section). With `--run`, the committed HEAD of this checkout
is cloned into a temporary directory, its environment is built (`make install npm browser
sandbox`: downloads torch and the npm packages, timed apart as `setup`), then `make test` is
timed alone. Paste the printed line into the README to record it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import print_header, timed

ROOT = Path(__file__).resolve().parents[1]
README = Path(__file__).resolve().parent / "README.md"
MARKER = "Last recorded:"


def recorded() -> str | None:
    """Return the last recorded figure in the README (the `Last recorded:` line), if any."""
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith(MARKER):
            return line[len(MARKER) :].strip()
    return None


def make(clone: Path, *targets: str) -> float:
    """Run `make targets` in `clone`, output passed through; return its wall-clock seconds.

    Raises:
        SystemExit: make failed (its exit code, after the time is printed).
    """
    seconds, done = timed(lambda: subprocess.run(["make", *targets], cwd=clone, check=False))
    print(f"make {' '.join(targets)}: {seconds / 60:.1f} min, exit {done.returncode}", flush=True)
    if done.returncode != 0:
        raise SystemExit(done.returncode)
    return seconds


def run(keep: bool) -> None:
    """Clone HEAD, build its environment, then time `make test` in it."""
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()[:12]
    parent = Path(tempfile.mkdtemp(prefix="agora-make-test-"))
    clone = parent / "agora"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "checkout", "--quiet", head], cwd=clone, check=True)
    print(f"fresh clone of {head} in {clone}", flush=True)
    setup_s = make(clone, "install", "npm", "browser", "sandbox")
    test_s = make(clone, "test")
    print(
        f"{MARKER} {test_s / 60:.1f} min for `make test` ({date.today().isoformat()}, commit "
        f"{head}; setup before it {setup_s / 60:.1f} min)"
    )
    if keep:
        print(f"kept: {clone}")
    else:
        shutil.rmtree(parent, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="store_true", help="measure now (about 15-20 min)")
    parser.add_argument("--keep", action="store_true", help="keep the clone after --run")
    args = parser.parse_args(argv)
    print_header((), "`make test` in a fresh clone")
    if args.run:
        run(args.keep)
        return
    figure = recorded()
    print(f"last recorded: {figure or 'none yet'} (measure with --run: about 15-20 min)")


if __name__ == "__main__":
    main()
