#!/bin/bash
# run-nas.sh: NAS evaluation on a GPU machine (the device tool): test-nas-daemon against the
# NVIDIA OpenCL driver, DARTS networks through `rxgemm nas` (CIFAR and ImageNet, several
# batches), their logits against PyTorch (tests/nas_torch_ref.py, float32, TF32 off) on
# the same seeded weights and input, PyTorch's own latency, and examples/rank-genotypes.
# Build here, then:
#   ../shared/gpu/bundle daemon/rxgemmd client/rxgemm tests/test-nas-daemon \
#       examples/rank-genotypes
#   cp client/.libs/librxgemm.so.0 .gpu/lib/
# and on the GPU machine: bash tests/gpu/run-nas.sh (results under $OUT).
. .gpu/env.sh
set -x
nvidia-smi -L > $OUT/gpu.txt 2>&1
export RXGEMMD=$(command -v rxgemmd) RXGEMM_TEST_DEVICE=NVIDIA CACHE_DIRECTORY=/tmp/rxcache
timeout 300 test-nas-daemon > $OUT/test-nas-daemon.log 2>&1
echo "test-nas-daemon rc=$?" >> $OUT/test-nas-daemon.log
S=/tmp/rxnas.sock
rxgemmd --socket $S --device NVIDIA --auto-tune never --log-level debug 2> $OUT/daemon.log &
P=$!
for i in $(seq 600); do rxgemm --socket $S status > /dev/null 2>&1 && break; sleep 0.2; done
ref() { timeout 300 python3 tests/nas_torch_ref.py "$@"; echo "torch rc=$?"; }
{
for b in 1 64 256; do
	rxgemm --socket $S nas --genotype DARTS_V2 --batch $b --logits-out /tmp/l$b.npy
	ref --genotype DARTS_V2 --batch $b --compare /tmp/l$b.npy
done
for g in DARTS_V1 NASNet AmoebaNet; do
	rxgemm --socket $S nas --genotype $g --batch 64 --logits-out /tmp/g.npy --repeat 10
	ref --genotype $g --batch 64 --compare /tmp/g.npy --repeat 10
done
for b in 1 32; do
	rxgemm --socket $S nas --genotype DARTS_V2 --dataset imagenet --batch $b --logits-out /tmp/i$b.npy --repeat 10
	ref --genotype DARTS_V2 --dataset imagenet --batch $b --compare /tmp/i$b.npy --repeat 10
done
rxgemm --socket $S nas --genotype DARTS_V2 --batch 64 --json
rank-genotypes --socket $S --batch 64
rank-genotypes --socket $S --dataset imagenet --batch 8
rxgemm --socket $S status
} > $OUT/nas.txt 2>&1
kill -TERM $P; wait $P; echo "daemon rc=$?" >> $OUT/nas.txt
