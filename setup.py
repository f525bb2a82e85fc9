"""Packaging for edge-fer: on-device facial emotion statistics published over MQTT."""

from __future__ import annotations

import platform
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

if platform.machine() in ("armv6l", "armv7l", "armv8l"):
    # 32-bit ARM (32-bit Raspberry Pi OS): LiteRT, numpy and OpenCV have no wheel there on PyPI,
    # and building them takes hours, then fails on LiteRT. Say so before pip tries.
    raise SystemExit(
        f"edge-fer needs a 64-bit OS: this is {platform.machine()} (32-bit ARM), for which LiteRT "
        "(ai-edge-litert), numpy and OpenCV publish no wheels on PyPI. On a Raspberry Pi 3, 4, 5 or "
        "Zero 2 W install 64-bit Raspberry Pi OS (Bookworm, arm64); see README.md, Boards."
    )

setup(
    name="edge-fer",
    version="0.1.0",
    description="On-device facial emotion analysis that publishes anonymous statistics over MQTT",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["edge_fer", "edge_fer.*"]),
    package_data={"edge_fer": ["py.typed", "data/*.toml"]},
    include_package_data=True,
    # Ranges stop before the next untested major (OpenCV 5, numpy 3, ...). The exact versions the
    # tests and figures were measured with are in firmware_config/constraints.txt, which the
    # Makefile installs with (`make lock` refreshes it).
    install_requires=[
        "numpy>=1.24,<3",
        "opencv-python-headless>=4.8,<5",
        "paho-mqtt>=2.0,<3",
        "pydantic>=2.5,<3",
        "ai-edge-litert>=1.2,<3; python_version>='3.10' and platform_system=='Linux'",
        "tomli>=2.0,<3; python_version<'3.11'",
    ],
    extras_require={
        # picamera2 on Raspberry Pi OS is best taken from apt (python3-picamera2) in a venv
        # created with --system-site-packages; this extra is for other set-ups.
        "pi": ["picamera2>=0.3.12"],
        # Linters pinned: a new release with new rules must not turn CI red by itself.
        # Jinja2: the tests render the Home Assistant discovery templates with the engine HA uses.
        "dev": ["pytest>=7.4,<10", "hypothesis>=6.80", "ruff==0.17.6", "mypy==2.4.1", "jinja2>=3.1,<4"],
        "eval": ["matplotlib>=3.7,<4", "tqdm>=4.60,<5"],
        # Run time: the `onnx` back-end (on a Jetson use NVIDIA's onnxruntime-gpu wheel instead).
        "onnx": ["onnxruntime>=1.17,<2"],
        # Conversion time only (models/convert_onnx.py): TensorFlow is never needed at run time.
        "convert": ["tensorflow-cpu>=2.15", "tf2onnx>=1.16", "onnx>=1.15", "onnxruntime>=1.17"],
        # Training (PyTorch, bfloat16 on CPU) and conversion (TensorFlow's TFLite converter for the
        # full-int8 export, onnx for the ONNX export). CPU-only torch: see models/training/README.md.
        "train": ["torch>=2.4", "tensorflow-cpu>=2.15", "onnx>=1.16", "tf2onnx>=1.16", "matplotlib>=3.7"],
    },
    entry_points={"console_scripts": ["edge-fer=edge_fer.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Operating System :: POSIX :: Linux",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
