"""The ``edgetpu`` back-end: LiteRT with the Coral Edge TPU delegate (``libedgetpu.so.1``).

The Edge TPU runs only full-int8 models compiled by ``edgetpu_compiler``
(``models/compile_edgetpu.sh`` writes ``<model>_edgetpu.tflite`` beside ``<model>.tflite``).
What the host offers — the library, a USB or PCIe device, the delegate loader — is read through
`EdgeTpuHost`, the hardware boundary, so that tests can stand a fake Coral in its place.
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_fer.errors import ModelError
from edge_fer.runtime.base import BACKENDS, ModelFiles
from edge_fer.runtime.litert import LiteRTModel, load_delegate_function

logger = logging.getLogger(__name__)

EDGETPU_LIBRARY = "libedgetpu.so.1"
#: USB ids of the Coral USB Accelerator before (Global Unichip) and after its firmware is loaded (Google).
CORAL_USB_IDS = (("1a6e", "089a"), ("18d1", "9302"))
INSTALL_HINT = "install libedgetpu1-std from Coral's apt repository (see firmware_config/coral/README.md)"


@dataclass(frozen=True)
class EdgeTpuHost:
    """Where a Coral shows up on a Linux host: the hardware boundary of this back-end.

    Args:
        library_globs: where libedgetpu is looked for (Debian multiarch paths of libedgetpu1-std).
        dev_dir: the folder of device nodes (an M.2/PCIe Coral is ``apex_0`` there).
        usb_devices_dir: sysfs' USB devices (each with ``idVendor`` and ``idProduct``).
        load_delegate: ``load_delegate(library_path, options)`` → a delegate for the interpreter;
            None: the interpreter module's own (`tflite_runtime.interpreter.load_delegate`).
    """

    library_globs: tuple[str, ...] = (
        "/usr/lib/*/libedgetpu.so.1*",
        "/usr/lib/libedgetpu.so.1*",
        "/usr/local/lib/libedgetpu.so.1*",
    )
    dev_dir: Path = Path("/dev")
    usb_devices_dir: Path = Path("/sys/bus/usb/devices")
    load_delegate: Callable[..., Any] | None = None

    def library(self) -> Path | None:
        """The libedgetpu file, or None."""
        for pattern in self.library_globs:
            matches = sorted(glob.glob(pattern))
            if matches:
                return Path(matches[0])
        return None

    def devices(self) -> list[str]:
        """The Corals present: ``usb:<vendor>:<product>`` and ``pcie:apex_N``."""
        found = [f"pcie:{p.name}" for p in sorted(self.dev_dir.glob("apex_*"))]
        for vendor_file in sorted(self.usb_devices_dir.glob("*/idVendor")):
            try:
                vendor = vendor_file.read_text().strip()
                product = (vendor_file.parent / "idProduct").read_text().strip()
            except OSError:
                continue
            if (vendor, product) in CORAL_USB_IDS:
                found.append(f"usb:{vendor}:{product}")
        return found


#: The host edge-fer runs on (tests replace it with `tests.fakes.FakeCoral.host()`).
HOST = EdgeTpuHost()


def edgetpu_available(host: EdgeTpuHost | None = None) -> tuple[bool, str]:
    """Whether the Edge TPU library and a device are present: ``(True, "devices…")`` or
    ``(False, why and how to fix it)``."""
    host = host or HOST
    if host.library() is None:
        return False, f"{EDGETPU_LIBRARY} not found: {INSTALL_HINT}"
    devices = host.devices()
    if not devices:
        return False, (
            "no Coral device: no /dev/apex_* (M.2/PCIe: install gasket-dkms) and no USB accelerator "
            "(1a6e:089a / 18d1:9302; check `lsusb` and the udev rules in firmware_config/coral/)"
        )
    return True, ", ".join(devices)


@BACKENDS.register("edgetpu")
class EdgeTpuModel(LiteRTModel):
    """A model compiled for the Edge TPU, run through the libedgetpu delegate.

    Raises:
        ModelError: no ``_edgetpu.tflite`` variant (compile it with
            ``models/compile_edgetpu.sh``), no library or device (the message says which and how
            to fix it), or the delegate failed to load.
    """

    backend = "edgetpu"

    def _plan(self) -> tuple[Path, int | None, Sequence[Any]]:
        files, host = self.files, HOST
        compiled = files.edgetpu
        if compiled is None or not compiled.is_file():
            raise ModelError(
                f"{files.label} has no Edge TPU version ({ModelFiles.edgetpu_name(files.tflite)} is missing): compile it "
                'with models/compile_edgetpu.sh, or set runtime.backend = "auto" to run it on the CPU meanwhile'
            )
        ok, why = edgetpu_available(host)
        if not ok:
            raise ModelError(f"Edge TPU requested for {files.label} but unavailable: {why}")
        library = host.library()
        assert library is not None
        loader = host.load_delegate or load_delegate_function(self._module)
        try:
            delegate = loader(str(library))
        except (ValueError, OSError, RuntimeError) as exc:
            raise ModelError(f"cannot load the Edge TPU delegate {library}: {exc} (is the Coral in use by another process?)") from exc
        logger.info("%s runs on the Edge TPU (%s)", files.label, compiled.name)
        return compiled, None, (delegate,)

    @property
    def provider(self) -> str:
        return "Edge TPU"
