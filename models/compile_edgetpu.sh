#!/bin/sh
# Compile edge-fer's full-int8 models for the Coral Edge TPU.
#
#   models/compile_edgetpu.sh [-o OUT_DIR] [-c COMPILER] [-n] [MODEL.tflite ...]
#
# Without MODEL arguments it compiles every full-int8 model of the project: the *_int8.tflite
# files in this folder (the bundled emotion model, the int8 BlazeFace detectors) and in the
# models folder (EDGE_FER_MODELS__DIR, default ~/.local/share/edge-fer/models). Each
# X.tflite gives X_edgetpu.tflite (and the compiler's X_edgetpu.log) beside it, or in OUT_DIR:
# edge-fer looks for the compiled file beside the model and in models.dir, and with
# runtime.backend = "auto" or "edgetpu" runs it on the Coral. Float models (the face mesh, the
# float detectors) cannot be compiled: the Edge TPU runs only full-integer int8 models.
#
# edgetpu_compiler is not on PyPI and runs only on x86-64 Linux. On an x86-64 Debian/Ubuntu
# machine (compile there and copy the *_edgetpu.tflite files to the device):
#
#   curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg \
#     | sudo gpg --dearmor -o /usr/share/keyrings/coral-edgetpu.gpg
#   echo "deb [signed-by=/usr/share/keyrings/coral-edgetpu.gpg] https://packages.cloud.google.com/apt coral-edgetpu-stable main" \
#     | sudo tee /etc/apt/sources.list.d/coral-edgetpu.list
#   sudo apt-get update && sudo apt-get install edgetpu-compiler
#
# Options:
#   -o OUT_DIR   write the compiled files there (default: beside each model)
#   -c COMPILER  the compiler to run (default: edgetpu_compiler on PATH)
#   -n           only list the models that would be compiled
#   -h           this help
#
# Exit codes: 0 all compiled, 1 a model failed to compile, 2 usage error (bad option, missing
# model, nothing to compile), 127 the compiler is not installed.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
COMPILER=edgetpu_compiler
OUT_DIR=
DRY_RUN=0

usage() { sed -n '2,/^set -eu/p' "$0" | sed -e '/^set -eu/d' -e 's/^# \{0,1\}//'; }
fail() { echo "compile_edgetpu.sh: $1" >&2; exit "$2"; }

while getopts "o:c:nh" opt; do
  case $opt in
    o) OUT_DIR=$OPTARG ;;
    c) COMPILER=$OPTARG ;;
    n) DRY_RUN=1 ;;
    h) usage; exit 0 ;;
    *) echo "usage: models/compile_edgetpu.sh [-o OUT_DIR] [-c COMPILER] [-n] [MODEL.tflite ...] (-h for help)" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))

if [ $# -eq 0 ]; then
  MODELS_DIR=${EDGE_FER_MODELS__DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/edge-fer/models}
  for f in "$HERE"/*_int8.tflite "$MODELS_DIR"/*_int8.tflite; do
    [ -f "$f" ] && set -- "$@" "$f"
  done
  [ $# -gt 0 ] || fail "no *_int8.tflite model in $HERE or $MODELS_DIR; name the models to compile" 2
fi
for model in "$@"; do
  case $model in
    *_edgetpu.tflite) fail "$model is already compiled" 2 ;;
    *.tflite) [ -f "$model" ] || fail "$model does not exist" 2 ;;
    *) fail "$model is not a .tflite file" 2 ;;
  esac
done
if [ -n "$OUT_DIR" ] && [ ! -d "$OUT_DIR" ]; then
  fail "output folder $OUT_DIR does not exist" 2
fi

if [ "$DRY_RUN" -eq 1 ]; then
  for model in "$@"; do
    out=${OUT_DIR:-$(dirname "$model")}
    echo "$model -> $out/$(basename "$model" .tflite)_edgetpu.tflite"
  done
  exit 0
fi

if ! command -v "$COMPILER" >/dev/null 2>&1; then
  if [ "$(uname -m)" != x86_64 ]; then
    fail "$COMPILER not found; it runs only on x86-64 Linux: compile on such a machine and copy the *_edgetpu.tflite files here" 127
  fi
  fail "$COMPILER not found: install edgetpu-compiler from Coral's apt repository (see the top of models/compile_edgetpu.sh)" 127
fi

failed=0
for model in "$@"; do
  out=${OUT_DIR:-$(dirname "$model")}
  compiled="$out/$(basename "$model" .tflite)_edgetpu.tflite"
  echo "compiling $model"
  if "$COMPILER" -s -o "$out" "$model" && [ -f "$compiled" ]; then
    echo "  -> $compiled"
  else
    echo "  FAILED: $model (is it full-integer int8? see $out/$(basename "$model" .tflite)_edgetpu.log)" >&2
    failed=1
  fi
done
exit $failed
