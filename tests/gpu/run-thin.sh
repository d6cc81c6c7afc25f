#!/bin/bash
# run-thin.sh: thin and odd shapes on a GPU machine (the device tool): split-K and the thin
# classes against a square of the same work, CLBlast in the same process, cuBLAS FP32
# (TF32 off, PyTorch) at the same shapes, and a sweep of thin tile configurations.
# Build here, then:
#   ../shared/gpu/bundle tools/rxgemm-bench tests/test-gemm
#   cp -L /usr/lib/x86_64-linux-gnu/libclblast.so.1 .gpu/lib/
# and on the GPU machine: bash tests/gpu/run-thin.sh (results under $OUT).
. .gpu/env.sh
cd "$OUT" || exit 1
RXGEMM_TEST_DEVICE=NVIDIA timeout 200 test-gemm > test-gemm.log 2>&1
echo "test-gemm rc=$?" >> test-gemm.log
SHAPES=1024x1024x1024,4096x64x4096,64x4096x4096,4096x32x4096,2048x2048x2048,1000x1000x1000,127x8191x333
{
	rxgemm-bench --sizes 4096 --shapes "$SHAPES"
	rxgemm-bench --transa --transb --shapes 4096x64x4096,64x4096x4096
} > bench.txt 2>&1
{
	for c in reg:64x32x16:8x8:v4x4:p4x4:m2 reg:128x32x16:8x4:v4x4:p4x4:m2 \
		reg:128x64x16:8x4:v4x4:p4x4:m2 reg:64x64x16:4x4:v4x4:p4x4:m2 \
		reg:128x64x32:8x8:v4x4:p4x4:m2 reg:256x64x16:16x4:v4x4:p4x4:m2; do
		rxgemm-bench --no-clblast --shapes 4096x64x4096 --config "$c" | tail -1
	done
	for c in reg:32x64x16:8x8:v4x4:p4x4:m2 reg:32x128x16:4x8:v4x4:p4x4:m2 \
		reg:64x128x16:4x8:v4x4:p4x4:m2 reg:64x64x16:4x4:v4x4:p4x4:m2 \
		reg:64x128x32:8x8:v4x4:p4x4:m2 reg:64x256x16:4x16:v4x4:p4x4:m2; do
		rxgemm-bench --no-clblast --shapes 64x4096x4096 --config "$c" | tail -1
	done
} > sweep.txt 2>&1
# Split-K on and off, per shape, with the default and the sweep's best thin tiles.
{
	for sk in 0 1 2 4 8; do
		echo "--splitk $sk"
		rxgemm-bench --no-clblast --splitk "$sk" --shapes "$SHAPES" | tail -n +3
		rxgemm-bench --no-clblast --splitk "$sk" --shapes 4096x64x4096 \
			--config reg:256x64x16:16x4:v4x4:p4x4:m2 | tail -1
		rxgemm-bench --no-clblast --splitk "$sk" --shapes 64x4096x4096 \
			--config reg:64x256x16:4x16:v4x4:p4x4:m2 | tail -1
	done
} > splitk.txt 2>&1
python3 - > cublas.txt 2>&1 <<'PY'
import torch
torch.backends.cuda.matmul.allow_tf32 = False
for m, n, k in ((1024, 1024, 1024), (4096, 64, 4096), (64, 4096, 4096), (4096, 32, 4096),
                (2048, 2048, 2048), (1000, 1000, 1000), (127, 8191, 333), (4096, 4096, 4096)):
    a = torch.randn(m, k, device='cuda'); b = torch.randn(k, n, device='cuda')
    for _ in range(3): a @ b
    torch.cuda.synchronize()
    s = torch.cuda.Event(enable_timing=True); e = torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(20): a @ b
    e.record(); torch.cuda.synchronize()
    ms = s.elapsed_time(e) / 20
    print(f"cublas fp32 {m}x{n}x{k} {ms:.4f} ms {2*m*n*k/ms/1e9:.1f} TFLOPS")
PY
