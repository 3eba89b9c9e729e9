"""Start-up: wall time of ``mmkd-search --help`` (and of the bare interpreter, for scale).

The console script installed beside the running interpreter is timed (what a virtual
environment runs); when another ``mmkd-search`` comes first on PATH (a pyenv shim, say),
it is timed too. Each command runs as a new process, alternating, and the median of the repeats is
reported. When the target is missed, ``python -X importtime`` names the slowest imports.

    python benchmarks/startup.py              # 5 repeats
    python benchmarks/startup.py --quick      # the same (it takes seconds)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import harness


def wall(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def slowest_imports(count: int = 8) -> list[tuple[float, str]]:
    """The modules with the largest cumulative import time under ``--help``."""
    done = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-c",
            "from search.cli import main; main(['--help'])",
        ],
        capture_output=True,
        text=True,
        cwd=harness.ROOT,
    )
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line[len("import time:") :].split("|")
        # Nested imports are indented by two spaces per level; keep the top level only.
        if not name[1:].startswith(" "):
            rows.append((int(cumulative) / 1e6, name.strip()))
    return sorted(rows, reverse=True)[:count]


def main() -> None:
    args = harness.arguments(__doc__.splitlines()[0], repeats=5).parse_args()
    harness.say_load("start")
    # The console script beside this interpreter is what a virtual environment runs; a
    # different one first on PATH (e.g. a pyenv shim, a bash script) is timed as well.
    script = Path(sys.executable).parent / "mmkd-search"
    if not script.exists():
        raise SystemExit(f"{script} is missing; install the project first (pip install -e .)")
    commands = {
        "mmkd-search --help": [str(script), "--help"],
        "python -c pass": [sys.executable, "-c", "pass"],
    }
    on_path = shutil.which("mmkd-search")
    if on_path and Path(on_path).resolve() != script.resolve():
        commands[f"{on_path} --help (first on PATH)"] = [on_path, "--help"]
    for command in commands.values():
        wall(command)  # warm the file cache
    seconds = {name: [] for name in commands}
    for _ in range(max(args.repeats, 5)):
        for name, command in commands.items():
            seconds[name].append(wall(command))

    harness.say(
        harness.table(
            ["command", "wall s, median [min-max]"],
            [[name, harness.spread(values)] for name, values in seconds.items()],
        )
    )
    help_seconds = harness.median(seconds["mmkd-search --help"])
    harness.say(
        f"target mmkd-search --help < 0.5 s: {help_seconds:.3f} s -> "
        f"{harness.verdict(help_seconds < 0.5)}"
    )
    harness.say()
    harness.say("Largest top-level imports under --help (python -X importtime, cumulative):")
    harness.say(
        harness.table(
            ["module", "seconds"], [[name, f"{sec:.3f}"] for sec, name in slowest_imports()]
        )
    )

    harness.say_load("end")


if __name__ == "__main__":
    main()
