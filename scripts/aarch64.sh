#!/usr/bin/env bash
# Build and test justround-planner on arm64 without an arm64 machine: an emulated Debian bookworm root
# (qemu-user-static + binfmt_misc, built with mmdebstrap), Python 3.11 and PyPI's aarch64 wheels, as a
# Raspberry Pi OS Bookworm 64-bit user gets them. Not run in CI (about 40 minutes on 2 cores); docs/device.md
# records a run.
#
#   sudo nice -n 5 scripts/aarch64.sh [--root DIR] [--out DIR] [--reuse-root] [--only-to STAGE]
#
# Needs root (mmdebstrap, chroot, bind mounts), Debian or Ubuntu on x86-64, network to deb.debian.org and
# PyPI. Stages, each timed into OUT/timings.tsv (stage, seconds, status), its output in OUT/STAGE.log:
#   host      apt-get install qemu-user-static binfmt-support mmdebstrap if missing; arm64 binfmt enabled
#   root      mmdebstrap bookworm arm64: python3 (3.11), python3-venv, python3-dev, gcc
#   torch     venv in the root, pip install torch==$TORCH (PyPI's aarch64 wheel and what it requires)
#   build     pip wheel: compiles the Cython core with gcc (portable: no JUSTROUND_NATIVE, no -march=native)
#   install   pip install that wheel (replacing an installed one) with its [train,test] extras
#   core      pytest tests/test_cython_core.py tests/test_cython_mixed.py tests/test_escape.py (kernels vs the reference,
#             bit for bit; on aarch64 only the scalar decode path exists)
#   buffers   pytest tests/test_buffers_exact.py
#   planner   pytest: the planner's fast tests (units, quantization, footprint, storages, profiles, fit, ...)
#   validate  planner validate --env Hopper-v5 --algo ppo --steps 4096 --n-steps 1024
# Environment: TORCH (default 2.13.0), QEMU_CPU (default cortex-a72, a Raspberry Pi 4's core; "max" for
# every feature qemu has), MIRROR (default http://deb.debian.org/debian).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
ROOT=/var/tmp/justround-arm64
OUT=$REPO/runs/aarch64
REUSE=0
ONLY_TO=""
TORCH=${TORCH:-2.13.0}
QEMU_CPU=${QEMU_CPU:-cortex-a72}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
STAGES="host root torch build install core buffers planner validate"

usage() { echo "usage: $0 [--root DIR] [--out DIR] [--reuse-root] [--only-to STAGE]" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --root) ROOT=${2:?}; shift 2 ;;
    --out) OUT=${2:?}; shift 2 ;;
    --reuse-root) REUSE=1; shift ;;
    --only-to) ONLY_TO=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,/^set /{/^#/p}' "$0"; exit 0 ;;
    *) usage ;;
  esac
done
[ -z "$ONLY_TO" ] || [[ " $STAGES " == *" $ONLY_TO "* ]] || { echo "--only-to: one of $STAGES" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "$0: needs root (mmdebstrap, chroot, mounts); run it with sudo" >&2; exit 2; }
[ "$(uname -m)" = x86_64 ] || { echo "$0: for an x86-64 host (on arm64, install natively: docs/device.md)" >&2; exit 2; }
if [ -e "$ROOT" ] && [ "$REUSE" = 0 ]; then
  echo "$0: $ROOT exists; remove it (rm -rf $ROOT) or pass --reuse-root" >&2; exit 2
fi

mkdir -p "$OUT"
TIMINGS=$OUT/timings.tsv
printf 'stage\tseconds\tstatus\n' > "$TIMINGS"
FAILED=0

MOUNTED=()
cleanup() {
  local i
  for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTED[i]}" 2>/dev/null || true; done
}
trap cleanup EXIT

# stage NAME FATAL COMMAND...: run, time, log; a fatal stage that fails ends the script.
stage() {
  local name=$1 fatal=$2 start end status
  shift 2
  echo "== $name ($(date -u +%H:%M:%S) UTC)"
  start=$(date +%s)
  # a background subshell and wait: set -e holds inside it (it does not in a command whose status is tested)
  ( set -e; "$@" ) > "$OUT/$name.log" 2>&1 &
  if wait $!; then status=pass; else status="FAIL($?)"; FAILED=1; fi
  end=$(date +%s)
  printf '%s\t%s\t%s\n' "$name" "$((end - start))" "$status" >> "$TIMINGS"
  echo "   $status in $((end - start)) s; last lines of $OUT/$name.log:"
  tail -n 3 "$OUT/$name.log" | sed 's/^/   | /'
  if [ "$status" != pass ] && [ "$fatal" = 1 ]; then echo "stopping: $name is needed by what follows"; exit 1; fi
  if [ "$name" = "$ONLY_TO" ]; then echo "stopping after $name (--only-to)"; exit "$FAILED"; fi
}

# A command in the root, as root, in the project's copy, with the venv first on PATH.
in_root() {
  chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb QEMU_CPU="$QEMU_CPU" \
    PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin OMP_NUM_THREADS=1 MPLBACKEND=Agg \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_CERT=/etc/ssl/host-ca-certificates.crt \
    /bin/bash -c "cd /src && $*"
}

host() {
  local need=()
  command -v qemu-aarch64-static > /dev/null || need+=(qemu-user-static)
  command -v update-binfmts > /dev/null || need+=(binfmt-support)
  command -v mmdebstrap > /dev/null || need+=(mmdebstrap)
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}"
  fi
  [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
  grep -q '^flags: .*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 \
    || { echo "qemu-aarch64 is registered without the F flag: the chroot cannot find it"; return 1; }
  qemu-aarch64-static --version | head -n 1
  echo "QEMU_CPU=$QEMU_CPU"
}

make_root() {
  if [ "$REUSE" = 1 ] && [ -x "$ROOT/usr/bin/python3" ]; then echo "reusing $ROOT"; return; fi
  mmdebstrap --arch=arm64 --variant=apt \
    --include=python3,python3-venv,python3-dev,gcc,libc6-dev,ca-certificates \
    bookworm "$ROOT" "$MIRROR"
}

mount_root() {
  local fs
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
  # pip in the root trusts what the host trusts (a proxy's own CA included, where the host has one)
  cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/host-ca-certificates.crt"
  for fs in proc sys dev dev/pts dev/shm; do
    mkdir -p "$ROOT/$fs"
    mountpoint -q "$ROOT/$fs" && continue
    case $fs in
      proc) mount -t proc proc "$ROOT/proc" ;;
      dev/shm) mount -t tmpfs shm "$ROOT/dev/shm" ;;
      *) mount --bind "/$fs" "$ROOT/$fs" ;;
    esac
    MOUNTED+=("$ROOT/$fs")
  done
  # qemu-user 7.2 hands an emulated process the host's /proc/cpuinfo (x86 flags, no "CPU part"): torch's cpuinfo
  # library then crashes (SIGSEGV) on the first arithmetic kernel. Give the root the cpuinfo of a Raspberry Pi 4
  # (Cortex-A72, part 0xd08), one entry per host core.
  local i
  for ((i = 0; i < $(nproc); i++)); do
    printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\n' "$i"
    printf 'CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n'
  done > "$ROOT/etc/emulated-cpuinfo"
  mount --bind "$ROOT/etc/emulated-cpuinfo" "$ROOT/proc/cpuinfo"
  MOUNTED+=("$ROOT/proc/cpuinfo")
  # the checkout's tracked and untracked-but-not-ignored files: no host build outputs (x86-64 .so files)
  rm -rf "$ROOT/src" && mkdir -p "$ROOT/src"
  (cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
     | tar --null -T - --ignore-failed-read -cf -) 2>/dev/null | tar -C "$ROOT/src" -xf -
}

torch_stage() {
  in_root "uname -m; python3 --version; gcc --version | head -n 1"
  [ -x "$ROOT/opt/venv/bin/python" ] || in_root "python3 -m venv /opt/venv"
  in_root "pip --version && pip install torch==$TORCH"
  in_root "python -c 'import torch, platform; print(platform.machine(), torch.__version__, \"cuda built:\", \
torch.version.cuda, \"cuda available:\", torch.cuda.is_available())'"
  in_root "du -sm /opt/venv/lib/python3.11/site-packages | cut -f1 | sed 's/$/ MiB in site-packages (MiB = 2^20 B)/'"
  in_root "du -sm /opt/venv/lib/python3.11/site-packages/nvidia /opt/venv/lib/python3.11/site-packages/torch \
/opt/venv/lib/python3.11/site-packages/triton 2>/dev/null || true"
}

build_stage() {
  in_root "rm -rf build /tmp/wheel && pip install 'setuptools>=69' 'Cython>=3.0' wheel \
&& pip wheel --no-deps --no-build-isolation -w /tmp/wheel ."
  in_root "ls -l /tmp/wheel"
}

install_stage() {
  # --force-reinstall --no-deps first: on a reused root pip keeps an installed package of the same version
  in_root "pip install --force-reinstall --no-deps /tmp/wheel/justround_planner-*.whl \
&& pip install \"\$(ls /tmp/wheel/justround_planner-*.whl)[train,test]\""
  in_root "pip list 2>/dev/null | grep -iE '^(torch|numpy|mujoco|gymnasium|stable.baselines3|sb3.contrib|memray|Cython|pytest|hypothesis) '"
  in_root "cd / && python -c 'import platform, cython_core._kernels as k, cython_core._mixed as m, \
cython_core._escape as e; print(platform.machine(), k.__file__); print(\"mixed decode path:\", m._simd()); \
print(\"escape read path:\", e._read_path())'"
}

run_pytest() {  # run_pytest NAME TESTS...: the installed package (pytest, not python -m pytest: /src not on sys.path)
  local name=$1
  shift
  in_root "pytest -q -p no:cacheprovider --junitxml=/tmp/$name.xml $*"
}

planner_tests="tests/test_units.py tests/test_quantization.py tests/test_footprint.py tests/test_storages.py \
tests/test_profiles.py tests/test_pools.py tests/test_fit.py tests/test_reproduce.py tests/test_observations.py \
tests/test_calibrated_planner.py"

validate_stage() {
  in_root "rm -rf /tmp/validate && planner validate --env Hopper-v5 --algo ppo --steps 4096 --n-steps 1024 \
--out /tmp/validate"
  mkdir -p "$OUT/validate"
  cp -r "$ROOT/tmp/validate/." "$OUT/validate/" 2>/dev/null || true
}

echo "aarch64 build and test: root $ROOT, results in $OUT, torch $TORCH, QEMU_CPU $QEMU_CPU"
echo "started $(date -u '+%Y-%m-%d %H:%M:%S') UTC on $(uname -m), $(nproc) cores"
stage host 1 host
stage root 1 make_root
mount_root
stage torch 1 torch_stage
stage build 1 build_stage
stage install 1 install_stage
# test_the_no_exception_put_is_cheap bounds a call at 10 us: native speed, which emulation (10-30x slower) cannot meet
stage core 0 run_pytest core tests/test_cython_core.py tests/test_cython_mixed.py tests/test_escape.py \
  --deselect tests/test_cython_mixed.py::test_the_no_exception_put_is_cheap
stage buffers 0 run_pytest buffers tests/test_buffers_exact.py
# shellcheck disable=SC2086
stage planner 0 run_pytest planner $planner_tests
stage validate 0 validate_stage
for name in core buffers planner; do cp "$ROOT/tmp/$name.xml" "$OUT/" 2>/dev/null || true; done
echo "finished $(date -u '+%Y-%m-%d %H:%M:%S') UTC"
column -t "$TIMINGS"
exit "$FAILED"
