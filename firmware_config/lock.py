"""The dependency lock (firmware_config/constraints.txt): write it from a venv, check its wheels.

    python firmware_config/lock.py write VENV_PYTHON CONSTRAINTS   (used by `make lock`)
    python firmware_config/lock.py wheels CONSTRAINTS [--json]      (used by `make check-lock`)
    python firmware_config/lock.py bench BENCH_JSON --max-rss-mb 120 (used by `make check-lock`)

`write` freezes what `pip install '.[dev,eval,onnx]'` resolved in VENV_PYTHON's venv (Python 3.11),
and resolves the same for Python 3.10 without installing: where 3.10 gets another version (or a
backport 3.11 does not need) both are pinned, each under a `python_version` marker.

`wheels` asks PyPI, through `pip download --no-deps --only-binary=:all:`, whether every pinned
version has a wheel for each target board's Python and glibc (manylinux tags up to the glibc of
the OS), without installing anything: Raspberry Pi OS 12 (Debian 12, Python 3.11, glibc 2.36,
aarch64), JetPack 6 (Ubuntu 22.04, Python 3.10, glibc 2.35, aarch64), and 32-bit Raspberry Pi OS
(armv7l), which has no wheel for LiteRT, numpy or OpenCV. Exit code 1 when an aarch64 target
misses a wheel.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXTRAS = ".[dev,eval,onnx]"
SKIP = {"edge-fer", "pip", "setuptools", "wheel"}
#: Runtime dependencies (setup.py's install_requires and what they pull): a missing wheel here
#: means the product does not install; elsewhere only the tests or `eval` do not.
RUNTIME = {"numpy", "opencv-python-headless", "paho-mqtt", "pydantic", "pydantic-core", "annotated-types", "typing-extensions",
           "typing-inspection", "ai-edge-litert", "tomli", "flatbuffers", "backports-strenum", "onnxruntime"}  # fmt: skip
#: (name, python, platform tags) of each board's OS. manylinux_2_N: glibc 2.N or older.
TARGETS = [
    ("Raspberry Pi OS 12 / Debian 12 arm64", "3.11", [f"manylinux_2_{n}_aarch64" for n in range(17, 37)] + ["manylinux2014_aarch64"]),
    ("JetPack 6 / Ubuntu 22.04 arm64", "3.10", [f"manylinux_2_{n}_aarch64" for n in range(17, 36)] + ["manylinux2014_aarch64"]),
    ("Raspberry Pi OS 12 32-bit (armv7l)", "3.11", [f"manylinux_2_{n}_armv7l" for n in range(17, 37)] + ["linux_armv7l"]),
]
LINE = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)\s*(?:;\s*(.+))?$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(constraints: Path) -> list[tuple[str, str, str | None]]:
    out = []
    for raw in constraints.read_text().splitlines():
        match = LINE.match(raw.split("#", 1)[0].strip())
        if match:
            out.append((canonical(match.group(1)), match.group(2), match.group(3)))
    return out


def write(python: str, constraints: Path) -> None:
    listed = json.loads(subprocess.run([python, "-m", "pip", "list", "--format=json"], check=True, capture_output=True, text=True).stdout)
    frozen = {canonical(p["name"]): p["version"] for p in listed if canonical(p["name"]) not in SKIP}
    code = "import sys; print('%d.%d' % sys.version_info[:2])"
    python_version = subprocess.run([python, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    # Python 3.10 (JetPack 6) cannot take every version 3.11 gets (numpy >= 2.3 needs 3.11): its
    # own resolution, pinned under a marker where it differs.
    with tempfile.TemporaryDirectory() as tmp:
        for_310 = {n: v for n, v in resolve_for("3.10", Path(tmp)).items() if n not in SKIP}
    lines = []
    for name in sorted(set(frozen) | set(for_310)):
        mine, other = frozen.get(name), for_310.get(name)
        if mine == other:
            lines.append(f"{name}=={mine}")
            continue
        if mine is not None:
            lines.append(f'{name}=={mine}; python_version >= "3.11"')
        if other is not None:
            lines.append(f'{name}=={other}; python_version < "3.11"')
    header = [
        "# The versions edge-fer's tests and the README's figures were measured with.",
        "# Used by the Makefile's install (pip install -c). Refresh with `make lock` (newest versions setup.py",
        "# allows, then `make check-lock`: the whole test suite, the demo bench and the arm64 wheels).",
        f"# Written {datetime.now(timezone.utc):%Y-%m-%d} by firmware_config/lock.py from a Python {python_version} venv.",
    ]
    constraints.write_text("\n".join(header + lines) + "\n")
    print(f"wrote {len(lines)} pins to {constraints}")


def resolve_for(python_version: str, tmp: Path) -> dict[str, str]:
    """What `pip install EXTRAS` resolves to under another Python, without installing.

    Run by that Python itself (``$PYTHONXY`` or ``pythonX.Y`` on PATH) because pip evaluates environment markers
    (``tomli; python_version < "3.11"``) against the interpreter it runs in, whatever
    ``--python-version`` says.

    Raises:
        SystemExit: no such Python with pip.
    """
    import os
    import shutil

    python = os.environ.get("PYTHON" + python_version.replace(".", "")) or shutil.which(f"python{python_version}")
    if python is None or subprocess.run([python, "-m", "pip", "--version"], capture_output=True).returncode != 0:
        raise SystemExit(
            f"no working python{python_version} with pip (set PYTHON{python_version.replace('.', '')}=/path/to/python{python_version}): "
            f"it resolves the lock for Python {python_version} (JetPack 6)"
        )
    report = tmp / f"report-{python_version}.json"
    cmd = [python, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed", "--report", str(report), EXTRAS]
    subprocess.run(cmd, check=True, cwd=REPO)
    data = json.loads(report.read_text())
    return {canonical(i["metadata"]["name"]): i["metadata"]["version"] for i in data["install"]}


def marker_applies(marker: str | None, python_version: str) -> bool:
    if not marker:
        return True
    match = re.fullmatch(r'python_version\s*(<|>=)\s*"(\d+\.\d+)"', marker.strip())
    if not match:
        return True
    have = tuple(int(x) for x in python_version.split("."))
    bound = tuple(int(x) for x in match.group(2).split("."))
    return have < bound if match.group(1) == "<" else have >= bound


def wheels(constraints: Path, as_json: bool) -> int:
    cache = Path.home() / ".cache" / "edge-fer" / "wheels"
    cache.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, str]] = {}
    failed = False
    for target, python_version, platforms in TARGETS:
        column: dict[str, str] = {}
        for name, version, marker in pins(constraints):
            if not marker_applies(marker, python_version):
                continue
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
                   python_version, "-d", str(cache)]  # fmt: skip
            for plat in platforms:
                cmd += ["--platform", plat]
            done = subprocess.run([*cmd, f"{name}=={version}"], capture_output=True, text=True)
            key = f"{name}=={version}"
            if done.returncode == 0:
                # pip names the wheel it chose: "Saved <path>" or "File was already downloaded <path>"
                chosen = re.findall(r"(?:Saved|already downloaded) (\S+\.whl)", done.stdout)
                column[key] = Path(chosen[-1]).name if chosen else "(wheel)"
            else:
                column[key] = "MISSING"
                if "armv7l" not in target and name in RUNTIME:
                    failed = True
        results[target] = column
    if as_json:
        print(json.dumps(results, indent=1))
    else:
        keys = [f"{n}=={v}" for n, v, _ in pins(constraints)]
        print("| package | " + " | ".join(results) + " |")
        print("|---|" + "---|" * len(results))
        for key in keys:
            cells = [_short(results[t].get(key, "(not needed)")) for t in results]
            print(f"| {key}{' (runtime)' if key.split('==')[0] in RUNTIME else ''} | " + " | ".join(cells) + " |")
    return 1 if failed else 0


def _short(wheel: str) -> str:
    if wheel in ("MISSING", "(not needed)") or not wheel.endswith(".whl"):
        return wheel
    return "-".join(wheel[:-4].split("-")[2:])  # python-abi-platform tags


def bench(path: Path, max_rss_mb: float, max_anon_mb: float = 70.0) -> int:
    """The demo bench of the locked set: print its figures; 1 when memory is over the target.

    Right after a pip install, the kernel maps more of the freshly written shared libraries into
    the process (large page-cache folios: ~40 MB more file-backed RSS for the same files; the
    same venv measures ~101 MB once its files were re-read from disk, e.g. after a reboot). So
    an RSS over `max_rss_mb` passes when the private (anonymous) part is within `max_anon_mb`,
    with a note; a grown private part fails.
    """
    record = json.loads(path.read_text())
    anon, file = record.get("rss_anon_mb"), record.get("rss_file_mb")
    print(f"demo bench: {record['fps']} frames/s, RSS {record['rss_mb']} MB (anonymous {anon}, file-backed {file}; target <= {max_rss_mb:g})")
    print(f"versions: {record.get('versions')}")
    if record["rss_mb"] <= max_rss_mb:
        return 0
    if anon is not None and anon <= max_anon_mb:
        print(
            f"note: RSS is over {max_rss_mb:g} MB in file-backed pages only (freshly installed libraries); "
            f"private memory {anon} MB is within {max_anon_mb:g} MB. Re-measure after a reboot."
        )
        return 0
    print(f"private memory {anon} MB is over {max_anon_mb:g} MB: find the package that grew (bench --json 'versions') and cap it in setup.py")
    return 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write", help="freeze a venv into the constraints file")
    w.add_argument("python", help="the venv's python, after pip install '.[dev,eval,onnx]'")
    w.add_argument("constraints", type=Path)
    c = sub.add_parser("wheels", help="check that every pin has a wheel for each board's Python")
    c.add_argument("constraints", type=Path)
    c.add_argument("--json", action="store_true")
    b = sub.add_parser("bench", help="check the RSS of an `edge-fer bench --json` record")
    b.add_argument("record", type=Path)
    b.add_argument("--max-rss-mb", type=float, default=120.0)
    b.add_argument("--max-anon-mb", type=float, default=70.0)
    args = parser.parse_args()
    if args.command == "bench":
        return bench(args.record, args.max_rss_mb, args.max_anon_mb)
    if args.command == "write":
        write(args.python, args.constraints)
        return 0
    return wheels(args.constraints, args.json)


if __name__ == "__main__":
    sys.exit(main())
