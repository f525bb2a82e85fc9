#!/usr/bin/env bash
# Why ai-edge-litert >= 2.2 segfaults in an arm64 root under qemu-user with the host's /sys bound,
# and why a real board is not affected: load one model with each LiteRT version under each
# combination of /proc/cpuinfo and /sys (run after `make check-arm64` has cached the base root).
#
#   sudo firmware_config/arm64/litert_sys.sh [VERSIONS...]   (default: 2.1.6 2.2.0 2.3.0)
#
# qemu-user (7.2, Debian 12) passes the host's x86 /proc/cpuinfo through: no ARM "CPU part"
# (MIDR) lines. The cpuinfo library bundled in libLiteRt.so since 2.2.0 also reads L2 sizes from
# /sys/devices/system/cpu/cpu*/cache/index2; a core whose MIDR decodes to no L2 but whose sysfs
# shows one is skipped when cpuinfo counts its L2 caches and written when it fills them: a write
# through a NULL array (pytorch/cpuinfo pull requests 398, 418, 434, open). The matrix:
#   empty /sys (the lane)                   cpuinfo cannot read the CPU list, falls back: runs
#   host /sys, host x86 /proc/cpuinfo       the bug: crashes from 2.2.0
#   host /sys, Cortex-A72 /proc/cpuinfo     runs
#   Pi-4-like /sys, x86 /proc/cpuinfo       crashes from 2.2.0: any sysfs L2 + no MIDR
#   Pi-4-like /sys and /proc/cpuinfo        runs (what a Raspberry Pi 4 shows)
#   Orin-like (Cortex-A78AE, per-core L2)   runs
set -euo pipefail
[ "$(id -u)" -eq 0 ] || exec sudo --preserve-env=HOME "$0" "$@"
VERSIONS=${*:-2.1.6 2.2.0 2.3.0}
CACHE=${EDGE_FER_ARM64_CACHE:-$HOME/.cache/edge-fer/arm64}
BASE=$CACHE/base
E=$CACHE/litert-sys
MODEL=${EDGE_FER_MODEL:-$HOME/.local/share/edge-fer/models/face_detection_short_range.tflite}
[ -f "$BASE/.edge-fer-base-ok" ] || { echo "no cached base root: run make check-arm64 first"; exit 2; }
[ -f "$MODEL" ] || { echo "$MODEL missing: run make models"; exit 2; }

cleanup() { for m in proc/cpuinfo sys proc; do mountpoint -q "$E/$m" 2>/dev/null && umount "$E/$m"; done; return 0; }
trap cleanup EXIT
cleanup
rm -rf "$E" && cp -a "$BASE" "$E" && mkdir -p "$E/opt/exp" && cp "$MODEL" "$E/opt/exp/model.tflite"
wheels=$(mktemp -d)
pip download -q --only-binary=:all: --platform manylinux_2_27_aarch64 --python-version 3.11 --no-deps -d "$wheels" numpy==2.4.6
mkdir -p "$E/opt/exp/numpy" && (cd "$E/opt/exp/numpy" && unzip -qo "$wheels"/numpy-*.whl)
for v in $VERSIONS; do
  pip download -q --only-binary=:all: --platform manylinux_2_27_aarch64 --python-version 3.11 --no-deps -d "$wheels" "ai-edge-litert==$v"
  mkdir -p "$E/opt/exp/litert-$v" && (cd "$E/opt/exp/litert-$v" && unzip -qo "$wheels"/ai_edge_litert-"$v"-*.whl)
  printf '%s: sysfs cache reads in libLiteRt.so: %s\n' "$v" "$(strings "$E/opt/exp/litert-$v/ai_edge_litert/libLiteRt.so" 2>/dev/null | grep -c 'cache/index' || true)"
done
cat >"$E/opt/exp/load.py" <<'EOF'
import sys
sys.path[:0] = [f"/opt/exp/litert-{sys.argv[1]}", "/opt/exp/numpy"]
import numpy as np
from ai_edge_litert.interpreter import Interpreter
it = Interpreter(model_path="/opt/exp/model.tflite", num_threads=2)
it.allocate_tensors()
d = it.get_input_details()[0]
it.set_tensor(d["index"], np.zeros(d["shape"], np.float32))
it.invoke()
print("ok")
EOF

# cpuinfo_file NAME PART N: an ARM /proc/cpuinfo of N cores of MIDR part PART.
cpuinfo_file() {
  local f=$E/opt/exp/cpuinfo-$1 c
  : >"$f"
  for c in $(seq 0 $(($3 - 1))); do
    printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: %s\nCPU revision\t: 3\n\n' "$c" "$2" >>"$f"
  done
  echo "$f"
}
# fake_sys N L2_SHARED: a /sys with N cores, 1 cluster, L2 shared by all (Pi) or per core (Orin).
fake_sys() {
  local n=$1 shared=$2 C=$E/sys/devices/system/cpu i x
  mount -t tmpfs tmpfs "$E/sys"
  mkdir -p "$C"
  for x in possible present online; do echo "0-$((n - 1))" >"$C/$x"; done
  for i in $(seq 0 $((n - 1))); do
    mkdir -p "$C/cpu$i/topology" "$C/cpu$i/cache/index0" "$C/cpu$i/cache/index1" "$C/cpu$i/cache/index2"
    echo 0 >"$C/cpu$i/topology/physical_package_id"; echo "$i" >"$C/cpu$i/topology/core_id"
    echo "0-$((n - 1))" >"$C/cpu$i/topology/core_siblings_list"; echo "0-$((n - 1))" >"$C/cpu$i/topology/cluster_cpus_list"
    for x in 0 1; do echo 1 >"$C/cpu$i/cache/index$x/level"; echo 32K >"$C/cpu$i/cache/index$x/size"; echo "$i" >"$C/cpu$i/cache/index$x/shared_cpu_list"; done
    echo 2 >"$C/cpu$i/cache/index2/level"
    if [ "$shared" = yes ]; then echo 1024K >"$C/cpu$i/cache/index2/size"; echo "0-$((n - 1))" >"$C/cpu$i/cache/index2/shared_cpu_list"
    else echo 256K >"$C/cpu$i/cache/index2/size"; echo "$i" >"$C/cpu$i/cache/index2/shared_cpu_list"; fi
  done
}
try() {
  local label=$1 v out
  printf '%-44s' "$label"
  for v in $VERSIONS; do
    out=$(chroot "$E" /usr/bin/env -i PATH=/usr/bin:/bin QEMU_CPU=cortex-a72 timeout 300 python3 /opt/exp/load.py "$v" 2>&1 | tail -n 1 || true)
    case "$out" in ok) printf ' %s:runs' "$v" ;; *) printf ' %s:CRASH(%s)' "$v" "$(echo "$out" | grep -o 'signal [0-9]*' || echo "$out" | cut -c1-40)" ;; esac
  done
  echo
}

mount -t proc proc "$E/proc"
try "empty /sys, host /proc/cpuinfo"
mount --bind /sys "$E/sys"; try "host /sys, host /proc/cpuinfo"
mount --bind "$(cpuinfo_file a72 0xd08 "$(nproc)")" "$E/proc/cpuinfo"; try "host /sys, Cortex-A72 /proc/cpuinfo"
umount "$E/proc/cpuinfo"; umount "$E/sys"
fake_sys 4 yes; try "Pi-4-like /sys, host /proc/cpuinfo"
mount --bind "$(cpuinfo_file pi4 0xd08 4)" "$E/proc/cpuinfo"; try "Pi-4-like /sys and /proc/cpuinfo"
umount "$E/proc/cpuinfo"; umount "$E/sys"
fake_sys 6 no; mount --bind "$(cpuinfo_file orin 0xd42 6)" "$E/proc/cpuinfo"; try "Orin-like /sys and /proc/cpuinfo (A78AE)"
