#!/usr/bin/env bash
# Run the device-side measurement code on real aarch64 binaries (ONNX Runtime's and numpy's
# aarch64 wheels) inside an emulated Debian arm64 root, and check its outputs match x86 ONNX Runtime.
#
#   sudo benchmarks/arm_emulated_check.sh            # needs root (debootstrap, chroot, binfmt)
#
# Needs: apt-get install qemu-user-static debootstrap binfmt-support; network on the first run
# (Debian packages and the aarch64 wheels); later runs reuse the cached root.
# Cache: $SHUFFLENAS_ARM_ROOT (default /var/tmp/shufflenas-arm64): rootfs/ and wheels/.
# First run on the 2-core VM: ~10 min (debootstrap's second stage runs emulated); later runs ~20-40 s.
# Knobs: ARCH_MODEL (0.5x), ARCH_INPUT_SIZE (224), ARM_RESULTS_FILE (benchmarks/results/arm_emulated.md).
#
# EMULATED TIMINGS ARE MEANINGLESS: qemu translates every instruction. This checks that the
# aarch64 build runs our device code and computes the same numbers - never report its
# milliseconds as ARM latency.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${SHUFFLENAS_ARM_ROOT:-/var/tmp/shufflenas-arm64}"
ROOT="$CACHE/rootfs"
WHEELS="$CACHE/wheels"
PY="${PYTHON:-$REPO/.venv/bin/python}"
SUITE="${DEBIAN_SUITE:-bookworm}"         # bookworm ships python3.11, matching the cp311 wheels
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ARCH_NAME="${ARCH_MODEL:-0.5x}"
SIZE="${ARCH_INPUT_SIZE:-224}"
RESULTS="${ARM_RESULTS_FILE:-$REPO/benchmarks/results/arm_emulated.md}"

say() { printf '[arm-check] %s\n' "$*"; }
die() { printf '[arm-check] error: %s\n' "$*" >&2; exit 2; }

[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot and binfmt registration need it)"
command -v qemu-aarch64-static >/dev/null || die "qemu-aarch64-static missing: apt-get install qemu-user-static"
command -v debootstrap >/dev/null || die "debootstrap missing: apt-get install debootstrap"
[ -x "$PY" ] || die "no Python at $PY (set PYTHON=...)"

# 1. binfmt: let the kernel run aarch64 ELF files through qemu (F flag: works inside the chroot).
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || die "cannot mount binfmt_misc"
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    conf=/usr/lib/binfmt.d/qemu-aarch64.conf
    [ -f "$conf" ] || die "$conf missing (qemu-user-static too old?)"
    grep -v '^#' "$conf" | head -n1 > /proc/sys/fs/binfmt_misc/register || die "cannot register $conf"
    say "registered binfmt from $conf"
fi

# 2. The arm64 root, built once.
if [ ! -f "$ROOT/.shufflenas-ready" ]; then
    say "debootstrap --arch=arm64 $SUITE into $ROOT (first run: several minutes)"
    rm -rf "$ROOT"
    mkdir -p "$ROOT"
    debootstrap --arch=arm64 --variant=minbase --include=python3 "$SUITE" "$ROOT" "$MIRROR"
    touch "$ROOT/.shufflenas-ready"
fi
PYVER="$(chroot "$ROOT" /usr/bin/python3 -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')"
say "arm64 root python: cp$PYVER ($(chroot "$ROOT" /usr/bin/uname -m))"

# 3. aarch64 wheels, downloaded on the host, unpacked into the root (no pip needed there).
ORT_VERSION="$("$PY" -c 'import onnxruntime; print(onnxruntime.__version__)')"
if [ ! -f "$WHEELS/.ready-$ORT_VERSION-cp$PYVER" ]; then
    mkdir -p "$WHEELS"
    say "pip download onnxruntime==$ORT_VERSION numpy (aarch64, cp$PYVER)"
    "$PY" -m pip download --quiet --only-binary=:all: --no-deps --dest "$WHEELS" \
        --platform manylinux2014_aarch64 --platform manylinux_2_27_aarch64 --platform manylinux_2_28_aarch64 \
        --python-version "$PYVER" --implementation cp --abi "cp$PYVER" \
        "onnxruntime==$ORT_VERSION" numpy
    rm -rf "$ROOT/opt/site"
    mkdir -p "$ROOT/opt/site"
    for wheel in "$WHEELS"/*.whl; do
        "$PY" -m zipfile -e "$wheel" "$ROOT/opt/site/"
    done
    touch "$WHEELS/.ready-$ORT_VERSION-cp$PYVER"
fi

# 4. The model and input on x86; the device code and a runner into the root.
WORK="$ROOT/opt/shufflenas"
rm -rf "$WORK"
mkdir -p "$WORK"
cp "$REPO/latency_models/device_runtime.py" "$WORK/device_runtime.py"
say "exporting $ARCH_NAME at $SIZE px on x86"
"$PY" - "$WORK" "$ARCH_NAME" "$SIZE" <<'EOF'
import sys
from pathlib import Path

import numpy as np

from latency_models.device_runtime import example_input
from latency_models.onnx_export import export_bytes
from search_space import resolve_arch

work, name, size = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
(work / "model.onnx").write_bytes(export_bytes(resolve_arch(name), size))
np.save(work / "input.npy", example_input((1, 3, size, size)))
EOF
cat > "$WORK/run.py" <<'EOF'
import json
import sys

sys.path[:0] = ["/opt/site", "/opt/shufflenas"]
import numpy as np

import device_runtime  # the unmodified module from latency_models/

assert "torch" not in sys.modules
x = np.load("/opt/shufflenas/input.npy")
model = open("/opt/shufflenas/model.onnx", "rb").read()
r = device_runtime.measure_onnx(model, x.shape, input_data=x, threads=1, warmup=1, min_runs=3, max_runs=5,
                                budget_s=0.5, return_output=True)
np.save("/opt/shufflenas/output_arm.npy", r.pop("output"))
with open("/opt/shufflenas/result_arm.json", "w") as handle:
    json.dump(r, handle)
EOF
say "running device_runtime.measure_onnx inside the emulated arm64 root (cpuinfo warnings are expected: /sys is not mounted there)"
started=$(date +%s)
chroot "$ROOT" /usr/bin/python3 /opt/shufflenas/run.py
say "emulated run took $(( $(date +%s) - started )) s wall"

# 5. Compare with x86 ONNX Runtime on the same model and input.
"$PY" - "$WORK" "$RESULTS" "$ARCH_NAME" "$SIZE" <<'EOF'
import json
import sys
from pathlib import Path

import numpy as np

from latency_models.device_runtime import measure_onnx

work = Path(sys.argv[1])
x = np.load(work / "input.npy")
host = measure_onnx((work / "model.onnx").read_bytes(), x.shape, input_data=x, min_runs=3, budget_s=0.2,
                    return_output=True)
arm_out = np.load(work / "output_arm.npy")
arm = json.loads((work / "result_arm.json").read_text())
diff = float(np.max(np.abs(arm_out - host["output"])))
scale = float(np.max(np.abs(host["output"])))
same_top = bool((arm_out.argmax(1) == host["output"].argmax(1)).all())
print(f"[arm-check] device: {arm['machine']} ({arm['cpu']}), onnxruntime {arm['onnxruntime']}, numpy {arm['numpy']}, "
      f"python {arm['python']}, providers {arm['providers']}")
print(f"[arm-check] host:   {host['machine']} ({host['cpu']}), onnxruntime {host['onnxruntime']}")
print(f"[arm-check] max |aarch64 - x86| = {diff:.3e} (output scale {scale:.3e}), same top-1: {same_top}")
print(f"[arm-check] EMULATED timing (meaningless, not ARM latency): median {arm['median_ms']:.1f} ms over "
      f"{arm['runs']} runs under qemu")
ok = arm["machine"] == "aarch64" and np.allclose(arm_out, host["output"], rtol=1e-3, atol=1e-4 * max(scale, 1.0))
verdict = "PASS: aarch64 ONNX Runtime runs device_runtime and matches x86" if ok else "FAIL"
print(f"[arm-check] {verdict}")
Path(sys.argv[2]).parent.mkdir(parents=True, exist_ok=True)
Path(sys.argv[2]).write_text(
    "# Device code on emulated aarch64 (qemu-user, Debian arm64 root)\n\n"
    f"Command: `sudo ARCH_MODEL={sys.argv[3]} ARCH_INPUT_SIZE={sys.argv[4]} benchmarks/arm_emulated_check.sh`\n\n"
    "Machine: 2-core x86 VM, shared; qemu-user-static from Debian bookworm.\n\n"
    f"- device: {arm['machine']}, onnxruntime {arm['onnxruntime']} (aarch64 wheel), numpy {arm['numpy']}, "
    f"python {arm['python']}\n"
    f"- model: {sys.argv[3]} at {sys.argv[4]} px, batch 1; max |aarch64 - x86 output| = {diff:.3e} "
    f"(output scale {scale:.3e}), same top-1: {same_top}\n"
    f"- result: {verdict}\n"
    f"- emulated median {arm['median_ms']:.1f} ms: MEANINGLESS (qemu translation), never ARM latency.\n")
sys.exit(0 if ok else 1)
EOF
