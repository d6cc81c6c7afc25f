#!/bin/bash
# run-skeleton.sh: the walking skeleton on a GPU machine (the device tool): the kernels' correctness
# on its OpenCL driver (test-gemm), the daemon's timings through the CLI at square and odd
# sizes, and cuBLAS FP32 (TF32 off, through PyTorch) at the same sizes in the same run.
# Build here, then: ../shared/gpu/bundle daemon/rxgemmd client/rxgemm tests/test-gemm,
# cp client/.libs/librxgemm.so.0 .gpu/lib/, and on the GPU machine:
#   bash tests/gpu/run-skeleton.sh   (results under $OUT)
. .gpu/env.sh
set -x
nvidia-smi -L
rxgemmd --list-devices 2>&1 | tee $OUT/devices.txt
RXGEMM_TEST_DEVICE=NVIDIA timeout 300 test-gemm > $OUT/test-gemm.log 2>&1; echo "test-gemm rc=$?" >> $OUT/test-gemm.log
S=/tmp/rx.sock
rxgemmd --socket $S --device NVIDIA --max-frame 2G --log-level debug 2> $OUT/daemon.log &
P=$!
for i in $(seq 600); do [ -S $S ] && break; sleep 0.2; done
{
for n in 256 512 1024 2048; do rxgemm --socket $S gemm -m $n -n $n -k $n --repeat 5 --check; done
for n in 4096 8192; do rxgemm --socket $S gemm -m $n -n $n -k $n --repeat 5; done
rxgemm --socket $S gemm -m 1000 -n 1000 -k 1000 --repeat 5 --check
rxgemm --socket $S gemm -m 4096 -n 64 -k 4096 --repeat 5 --check
rxgemm --socket $S gemm -m 127 -n 8191 -k 333 --repeat 5 --check
rxgemm --socket $S gemm -m 2048 -n 2048 -k 2048 --transa --transb --col-major --repeat 5 --check
rxgemm --socket $S status
} > $OUT/cli.txt 2>&1
kill -TERM $P; wait $P; echo "daemon rc=$?" >> $OUT/cli.txt
python3 - > $OUT/cublas.txt 2>&1 <<'PY'
import torch
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
for n in (256, 512, 1024, 2048, 4096, 8192):
    a = torch.randn(n, n, device='cuda'); b = torch.randn(n, n, device='cuda')
    for _ in range(3): a @ b
    torch.cuda.synchronize()
    s = torch.cuda.Event(enable_timing=True); e = torch.cuda.Event(enable_timing=True)
    r = 10
    s.record()
    for _ in range(r): a @ b
    e.record(); torch.cuda.synchronize()
    ms = s.elapsed_time(e) / r
    print(f"cublas fp32 n={n} {ms:.3f} ms {2*n**3/ms/1e9:.1f} TFLOPS")
PY
