#!/bin/bash
# run-engine.sh: the GEMM engine on a GPU machine (the device tool): correctness of every
# kernel variant on its OpenCL driver (test-gemm), then rxgemm-bench beside CLBlast in the
# same process (square sizes for each transpose pair, odd shapes, a tuning search), and
# cuBLAS FP32 (TF32 off, through PyTorch) at the same square sizes for the ceiling.
# Build here, then:
#   ../shared/gpu/bundle tools/rxgemm-bench tests/test-gemm
#   cp -L /usr/lib/x86_64-linux-gnu/libclblast.so.1 .gpu/lib/
# and on the GPU machine: bash tests/gpu/run-engine.sh (results under $OUT).
. .gpu/env.sh
cd "$OUT" || exit 1
RXGEMM_TEST_DEVICE=NVIDIA timeout 300 test-gemm > test-gemm.log 2>&1
echo "test-gemm rc=$?" >> test-gemm.log
{
	rxgemm-bench --sizes 256,512,1024,2048,4096,8192
	rxgemm-bench --transa --sizes 256,1024,4096
	rxgemm-bench --transb --sizes 256,1024,4096
	rxgemm-bench --transa --transb --sizes 256,1024,4096
	rxgemm-bench --shapes 1000x1000x1000,4096x64x4096,127x8191x333,64x4096x4096
} > bench.txt 2>&1
timeout 240 rxgemm-bench --tune --sizes 256,2048 --repeat 5 > tune.txt 2>&1
python3 - > cublas.txt 2>&1 <<'PY'
import torch
torch.backends.cuda.matmul.allow_tf32 = False
for n in (256, 512, 1024, 2048, 4096, 8192):
    a = torch.randn(n, n, device='cuda'); b = torch.randn(n, n, device='cuda')
    for _ in range(3): a @ b
    torch.cuda.synchronize()
    s = torch.cuda.Event(enable_timing=True); e = torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(10): a @ b
    e.record(); torch.cuda.synchronize()
    ms = s.elapsed_time(e) / 10
    print(f"cublas fp32 n={n} {ms:.3f} ms {2*n**3/ms/1e9:.1f} TFLOPS")
PY
