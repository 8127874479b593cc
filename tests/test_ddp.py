"""`xrfcore pretrain` under torchrun: 2 CPU processes with gloo, sharded data, identical weights."""
import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pytest
from safetensors.torch import load_file

from tests.test_pretrain import make_project

WORKER = textwrap.dedent('''
    import hashlib, json, os, sys
    import torch
    import xrfcore.train.pretrain as P

    rank, out = int(os.environ["RANK"]), os.environ["DDP_TEST_OUT"]
    seen, orig = [], P.pretrain

    def wrapped(*a, **k):  # watch the batches; the command line itself is unchanged
        k["batch_hook"] = lambda step, idx: seen.append([int(i) for i in idx])
        model, card = orig(*a, **k)
        h = hashlib.sha256()
        for name, t in sorted(model.state_dict().items()):
            h.update(name.encode()); h.update(t.detach().cpu().contiguous().numpy().tobytes())
        with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
            json.dump({"seen": seen, "weights": h.hexdigest(), "world": card["training"]["world_size"]}, f)
        return model, card

    P.pretrain = wrapped
    from xrfcore.cli import main
    sys.exit(main(sys.argv[1:]))
''')


def test_torchrun_two_processes_gloo(tmp_path):
    proj = make_project(tmp_path / "p.h5", cores=(("A", 48, 2048, 0.02), ("B", 16, 2048, 0.02)))
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    out = tmp_path / "model"
    env = dict(os.environ, DDP_TEST_OUT=str(tmp_path), OMP_NUM_THREADS="1", PYTHONPATH=os.getcwd())
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(worker),
           "pretrain", "-p", str(proj), "-o", str(out), "--steps", "4", "--batch-size", "8",
           "--window-channels", "256", "--val-cores", "B", "--device", "cpu", "--threads", "1",
           "--checkpoint-every", "2"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["world"] == r1["world"] == 2
    # 48 training spectra, 24 per rank = 3 steps per epoch; shards of one epoch are disjoint
    epoch0 = [set(sum(r["seen"][:3], [])) for r in (r0, r1)]
    assert epoch0[0].isdisjoint(epoch0[1]) and epoch0[0] | epoch0[1] == set(range(48))
    assert r0["weights"] == r1["weights"]  # DDP kept the replicas identical
    saved = load_file(str(out / "model.safetensors"))
    h = hashlib.sha256()
    for name, t in sorted(saved.items()):
        h.update(name.encode())
        h.update(t.numpy().tobytes())
    assert h.hexdigest() == r0["weights"]  # rank 0 wrote the model
    card = json.loads((out / "model.json").read_text())
    assert card["training"]["world_size"] == 2
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len({json.loads(x)["step"] for x in lines})  # one writer
    assert not list(out.glob("*.tmp"))


@pytest.mark.cuda
def test_torchrun_nccl_single_gpu(tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    proj = make_project(tmp_path / "p.h5", cores=(("A", 32, 2048, 0.02),))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m", "xrfcore",
           "pretrain", "-p", str(proj), "-o", str(tmp_path / "m"), "--steps", "3", "--batch-size", "8",
           "--device", "cuda"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
