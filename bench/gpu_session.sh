#!/usr/bin/env bash
# The prepared check for a lent GPU machine (see bench/README.md, "gpu_session.sh"), run from the repository root:
#   1. the recorder's CUDA paths (pinned host copies, CUDA events, the record thread, CUDA RNG) under
#      bench/recorder_overhead.py --device cuda;
#   2. a transcript recorded on CUDA with deterministic algorithms, verified on CUDA bitwise and with a
#      calibrated tolerance (every segment), and a forged copy that must fail;
#   3. bench/recorder_overhead.py on the CPU pinned to two cores of the quiet machine (the CI machine's size).
# Needs: python3 with torch (CUDA build); the wheels in .whl/ for what the image lacks. Writes to $OUT.
set -u
OUT=${OUT:-/tmp/gpu-session}
mkdir -p "$OUT"
python3 -m pip install --no-index --no-deps -q .whl/*.whl > "$OUT/pip.txt" 2>&1
export PYTHONPATH=$PWD/src:$PWD/tests
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.version.cuda)" | tee -a "$OUT/gpu.txt"
timeout 150 python3 bench/recorder_overhead.py --device cuda --reps 5 > "$OUT/recorder_cuda.txt" 2>&1
echo "recorder cuda rc=$?" | tee -a "$OUT/gpu.txt"; tail -3 "$OUT/recorder_cuda.txt"
rm -rf /tmp/tcuda
timeout 150 python3 - > "$OUT/verify_cuda.txt" 2>&1 <<'PY'
import shutil, subprocess, sys, time
from pathlib import Path
t0 = time.time()
subprocess.run([sys.executable, "-m", "redline.transcript.tinygpt", "--steps", "120", "--checkpoint-every", "20",
                "--out", "/tmp/tcuda", "--device", "cuda", "--deterministic"], check=True)
print(f"recorded on cuda in {time.time() - t0:.1f} s")
from redline.transcript import load_transcript
from redline.verify import Tolerance, verify_transcript
from verify_helpers import tamper_checkpoint
t = load_transcript("/tmp/tcuda")
print("manifest environment:", t.manifest.environment.model_dump())
for name, kw in (("bitwise", {"tolerance": Tolerance.exact()}), ("calibrated", {})):
    r = verify_transcript("/tmp/tcuda", seed=b"\x01" * 32, device="cuda", budget=None, workers=1, **kw)
    print(name, r.verdict, [(c.name, c.passed, c.detail[:300]) for c in r.checks])
shutil.copytree("/tmp/tcuda", "/tmp/tcuda-forged")
tamper_checkpoint(Path("/tmp/tcuda-forged"), 60, 1e-3)
r = verify_transcript("/tmp/tcuda-forged", seed=b"\x01" * 32, device="cuda", budget=None, workers=1,
                      tolerance=Tolerance.exact())
print("forged", r.verdict, r.failing_step, [(c.name, c.passed, c.detail[:300]) for c in r.checks if not c.passed])
PY
echo "verify cuda rc=$?" | tee -a "$OUT/gpu.txt"; tail -4 "$OUT/verify_cuda.txt"
timeout 180 taskset -c 0,1 python3 bench/recorder_overhead.py --threads 2 --reps 5 > "$OUT/recorder_cpu2.txt" 2>&1
echo "recorder cpu rc=$?" | tee -a "$OUT/gpu.txt"; tail -3 "$OUT/recorder_cpu2.txt"
