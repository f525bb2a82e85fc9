#!/usr/bin/env bash
# The arm64 lane: edge-fer installed and run as a new user would on 64-bit Raspberry Pi OS
# (Debian 12 "bookworm", arm64), in a Debian 12 arm64 root under qemu-user with the CPU model of
# a Raspberry Pi 4 (Cortex-A72) and of a Raspberry Pi 5 (Cortex-A76).
#
#   make check-arm64            (or: sudo firmware_config/arm64/check.sh)
#
# What it does, each step timed, a table at the end (also in $CACHE/last-result.md):
#   1. host tools: debootstrap, qemu-user-static, binfmt-support from Debian's packages; the
#      qemu-aarch64 binfmt handler enabled (binfmt_misc mounted if it is not)
#   2. a Debian 12 arm64 root made by debootstrap (python3, make, git, ca-certificates: what a
#      Raspberry Pi OS Lite image has), cached in $CACHE/base; every run starts from a fresh copy
#   3. the project cloned into it at the host's HEAD (committed work only)
#   4. under QEMU_CPU=cortex-a72: the README's set-up exactly (`make install`, `make models`), then
#      `make demo` (60 s of the demo footage, summaries on stdout: it must find the face), then
#      the test set-up (`make test-packages`) and the tests in $ARM64_TESTS (`make lint` is left
#      out: ruff and mypy read source, the same on every CPU, and take minutes under qemu)
#   5. under QEMU_CPU=cortex-a76 (when qemu offers it): a 20 s demo run and the model tests
#      (the real models on checked-in images against golden outputs)
#   6. `edge-fer bench --json` under each CPU model (emulated: the frames/s say that it runs,
#      not how fast a Pi is)
#
# Faithful to a real board: the host's /sys is NOT bound into the root (a Pi's /sys describes
# its own CPUs; the host's describes x86 ones, which makes ai-edge-litert >= 2.2 crash at the
# first model load: see the README's "Boards" section). /proc and /dev are the root's own mounts.
#
# Environment: EDGE_FER_ARM64_CACHE (default ~/.cache/edge-fer/arm64), ARM64_TESTS (pytest
# arguments), ARM64_TEST_TIMEOUT_S (default 1200), ARM64_CPUS (default "cortex-a72 cortex-a76"),
# ARM64_MIRROR (default http://deb.debian.org/debian), ARM64_REF (default HEAD), ARM64_REUSE=1 (go
# on in the previous run's root: no fresh copy, clone, install or models; for iterating on the
# later steps only, never for the README's figures of the set-up).
# Run time here (2 x86-64 cores): see the README; the base root takes ~5 min once.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
if [ "$(id -u)" -ne 0 ]; then
  exec sudo --preserve-env=EDGE_FER_ARM64_CACHE,ARM64_TESTS,ARM64_TEST_TIMEOUT_S,ARM64_CPUS,ARM64_MIRROR,ARM64_REF,HOME "$0" "$@"
fi

CACHE=${EDGE_FER_ARM64_CACHE:-$HOME/.cache/edge-fer/arm64}
BASE=$CACHE/base
ROOT=$CACHE/run
MIRROR=${ARM64_MIRROR:-http://deb.debian.org/debian}
CPUS=${ARM64_CPUS:-cortex-a72 cortex-a76}
REF=${ARM64_REF:-HEAD}
TEST_TIMEOUT_S=${ARM64_TEST_TIMEOUT_S:-900}
REUSE=${ARM64_REUSE:-0}
# What the emulator runs in reasonable time: it runs the pipeline at ~0.2 frames/s on 2 loaded
# x86 cores (the models' NEON code is translated instruction by instruction), so the tests
# that play footage through the whole pipeline are left out (the privacy tests' 200-frame runs
# time out after their 120 s: 4 of 6 did in the recorded run). In: the real models against
# golden outputs (detector, emotion model), and the real RTSP and MJPEG cameras stopped and
# restarted under `edge-fer run`.
TESTS=${ARM64_TESTS:-tests/vision/test_blazeface.py tests/vision/test_emotion.py tests/capture/test_streams.py}
A76_TESTS=${ARM64_A76_TESTS:-tests/vision/test_blazeface.py tests/vision/test_emotion.py}
RESULTS=$CACHE/last-result.md
LOGDIR=$CACHE/logs

mkdir -p "$CACHE" "$LOGDIR"
declare -a ROWS=()
FAILED=0

now() { date +%s; }
row() { ROWS+=("| $1 | $2 | $3 | $4 |"); printf '[arm64] %-58s %-6s %5ss  %s\n' "$1" "$2" "$3" "$4"; }

# step NAME LOG -- command...: run, time, record; never stops the lane (later steps say more).
step() {
  local name=$1 log=$2; shift 3
  local t0 rc
  t0=$(now)
  set +e
  "$@" >"$LOGDIR/$log" 2>&1
  rc=$?
  set -e
  local dt=$(( $(now) - t0 ))
  if [ $rc -eq 0 ]; then row "$name" pass "$dt" "logs/$log"; else row "$name" "FAIL ($rc)" "$dt" "logs/$log: $(tail -n 1 "$LOGDIR/$log" | cut -c1-120)"; FAILED=1; fi
  return $rc
}

# -- 1. host tools -------------------------------------------------------------------------
host_tools() {
  local missing=""
  command -v debootstrap >/dev/null || missing="$missing debootstrap"
  [ -x /usr/bin/qemu-aarch64-static ] || missing="$missing qemu-user-static"
  command -v update-binfmts >/dev/null || missing="$missing binfmt-support"
  if [ -n "$missing" ]; then
    echo "installing$missing from Debian's packages"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
  fi
  if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  fi
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
  grep -q enabled /proc/sys/fs/binfmt_misc/qemu-aarch64
  qemu-aarch64-static --version | head -n 1
}

# -- 2. the cached base root --------------------------------------------------------------
base_root() {
  if [ -f "$BASE/.edge-fer-base-ok" ]; then
    echo "cached: $BASE ($(cat "$BASE/.edge-fer-base-ok"))"
    return 0
  fi
  rm -rf "$BASE.tmp"
  debootstrap --arch=arm64 --variant=minbase --include=python3,make,git,ca-certificates bookworm "$BASE.tmp" "$MIRROR"
  rm -rf "$BASE"
  mv "$BASE.tmp" "$BASE"
  date -u +%Y-%m-%dT%H:%MZ >"$BASE/.edge-fer-base-ok"
}

umount_root() {
  local m
  for m in dev/pts dev/shm proc; do
    mountpoint -q "$ROOT/$m" 2>/dev/null && umount -l "$ROOT/$m"
  done
  return 0
}

fresh_root() {
  umount_root
  rm -rf "$ROOT"
  cp -a "$BASE" "$ROOT"
  mount -t proc proc "$ROOT/proc"
  mkdir -p "$ROOT/dev/pts" "$ROOT/dev/shm"
  mount -t devpts -o newinstance,ptmxmode=0666 devpts "$ROOT/dev/pts"
  mount -t tmpfs -o mode=1777 tmpfs "$ROOT/dev/shm"
  # /sys stays empty: see the header.
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
  # A TLS-inspecting proxy's CA, when the host has one, so that pip reaches PyPI as on the host.
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/host-ca-bundle.crt"
  fi
  [ -z "$(ls -A "$ROOT/sys")" ] || { echo "$ROOT/sys is not empty"; return 1; }
}

reuse_root() {
  umount_root
  mount -t proc proc "$ROOT/proc"
  mount -t devpts -o newinstance,ptmxmode=0666 devpts "$ROOT/dev/pts"
  mount -t tmpfs -o mode=1777 tmpfs "$ROOT/dev/shm"
  [ -z "$(ls -A "$ROOT/sys")" ] || { echo "$ROOT/sys is not empty"; return 1; }
  git -C "$ROOT/opt/edge-fer" fetch --quiet "$REPO" "$REF" && git -C "$ROOT/opt/edge-fer" checkout --quiet FETCH_HEAD
  echo "edge-fer at $(git -C "$ROOT/opt/edge-fer" rev-parse HEAD) (reused root)"
}

clone() {
  local sha
  sha=$(git -C "$REPO" rev-parse "$REF")
  git clone --quiet --no-hardlinks "$REPO" "$ROOT/opt/edge-fer"
  git -C "$ROOT/opt/edge-fer" checkout --quiet "$sha"
  echo "edge-fer at $sha"
}

# in_root CPU command...: run as root inside the arm64 root with a clean environment.
in_root() {
  local cpu=$1; shift
  chroot "$ROOT" /usr/bin/env -i \
    HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    QEMU_CPU="$cpu" PIP_CERT=/etc/ssl/certs/host-ca-bundle.crt SSL_CERT_FILE=/etc/ssl/certs/host-ca-bundle.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 DEBIAN_FRONTEND=noninteractive \
    /bin/sh -c "cd /opt/edge-fer && $*"
}

demo_found_faces() {
  # The demo's summaries (stdout) must show the actress's face in most windows.
  python3 - "$1" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
summaries = [r for r in rows if r.get("topic", "").endswith("/summary")]
with_face = [r for r in summaries if r["faces"]["distinct"] >= 1]
print(f"{len(summaries)} summaries, {len(with_face)} with a face")
sys.exit(0 if summaries and len(with_face) >= len(summaries) - 1 else 1)
EOF
}

bench_line() {
  python3 - "$1" <<'EOF'
import json, sys
row = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")][-1]
print(f"{row['fps']} frames/s emulated, RSS {row['rss_mb']} MB (qemu's own memory included), faces/frame {row['faces_per_frame']}, runtime {row['runtime']}, versions {row.get('versions')}")
EOF
}

trap umount_root EXIT
trap "exit 143" TERM INT
T0=$(now)
step "host: debootstrap, qemu-user-static, binfmt" host.log -- host_tools
step "Debian 12 arm64 root (debootstrap, cached)" base.log -- base_root
if [ "$REUSE" = 1 ] && [ -x "$ROOT/opt/edge-fer/.venv/bin/edge-fer" ]; then
  step "previous run's root, /proc /dev mounted, no /sys (ARM64_REUSE=1)" root.log -- reuse_root
else
  REUSE=0
  step "fresh copy of the root, /proc /dev mounted, no /sys" root.log -- fresh_root
  step "git clone" clone.log -- clone
fi
in_root cortex-a72 "uname -m; python3 --version" >"$LOGDIR/uname.log" 2>&1 && row "inside: $(tr '\n' ' ' <"$LOGDIR/uname.log")" info 0 ""

first_cpu=${CPUS%% *}
if [ "$REUSE" = 1 ] || { step "[$first_cpu] make install (README set-up)" install.log -- in_root "$first_cpu" make install \
  && step "[$first_cpu] make models" models.log -- in_root "$first_cpu" make models; }; then
  if step "[$first_cpu] make demo (60 s of the demo footage)" demo.log -- in_root "$first_cpu" make demo; then
    step "[$first_cpu] the demo's summaries found the face" demo-check.log -- demo_found_faces "$LOGDIR/demo.log" || true
  fi
  for cpu in $CPUS; do
    if step "[$cpu] edge-fer bench --frames 20 --json" "bench-$cpu.log" -- in_root "$cpu" .venv/bin/edge-fer bench --frames 20 --json; then
      row "[$cpu] bench" info 0 "$(bench_line "$LOGDIR/bench-$cpu.log")"
    fi
  done
  step "[$first_cpu] make test-packages" test-packages.log -- in_root "$first_cpu" make test-packages || true
  step "[$first_cpu] pytest $TESTS" tests.log -- in_root "$first_cpu" timeout "$TEST_TIMEOUT_S" .venv/bin/python -m pytest -q -p no:cacheprovider $TESTS || true
  row "[$first_cpu] pytest summary" info 0 "$(grep -E '(passed|failed|error)' "$LOGDIR/tests.log" | tail -n 1)"
  for cpu in ${CPUS#"$first_cpu"}; do
    # (the list first: with pipefail, `grep -q` closing the pipe early would fail the test)
    offered=$(qemu-aarch64-static -cpu help)
    if grep -qw -- "$cpu" <<<"$offered"; then
      step "[$cpu] edge-fer run --source demo --duration 20" "demo-$cpu.log" -- in_root "$cpu" .venv/bin/edge-fer run --source demo --duration 20 --window 5 \
        && { step "[$cpu] the demo's summaries found the face" "demo-check-$cpu.log" -- demo_found_faces "$LOGDIR/demo-$cpu.log" || true; }
      step "[$cpu] pytest $A76_TESTS" "tests-$cpu.log" -- in_root "$cpu" timeout "$TEST_TIMEOUT_S" .venv/bin/python -m pytest -q -p no:cacheprovider $A76_TESTS || true
      row "[$cpu] pytest summary" info 0 "$(grep -E '(passed|failed|error)' "$LOGDIR/tests-$cpu.log" | tail -n 1)"
    else
      row "[$cpu] not offered by $(qemu-aarch64-static --version | head -n 1)" skip 0 ""
    fi
  done
fi

{
  echo "arm64 lane, $(date -u +%Y-%m-%dT%H:%MZ), edge-fer $(git -C "$REPO" rev-parse --short "$REF"), $(qemu-aarch64-static --version | head -n 1), total $(( $(now) - T0 )) s"
  echo
  echo "| step | result | seconds | detail |"
  echo "|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
} >"$RESULTS"
cat "$RESULTS"
exit $FAILED
