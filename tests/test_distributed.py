"""Optional multi-process training under torchrun (DistributedDataParallel, gloo on CPU)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

SCRIPT = textwrap.dedent(
    """
    import sys
    import torch, torch.distributed as dist
    sys.path.insert(0, {tests!r})
    from test_train_loop import SPEC, bright_side_data
    from edge.training.loop import FitConfig, distributed_rank_world, evaluate, fit
    from edge.training.models import build_model

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    torch.manual_seed(0)
    model = build_model(SPEC)
    train, val = bright_side_data(512, 0), bright_side_data(128, 1)
    cfg = FitConfig(epochs=10, batch_size=32, lr=1e-2, warmup_epochs=1, patience=10)
    result = fit(model, train, val, cfg, checkpoint=__import__("pathlib").Path(sys.argv[1]))
    rank, world = distributed_rank_world()
    weights = torch.cat([p.detach().flatten() for p in model.parameters()])
    torch.save({{"rank": rank, "world": world, "val": result.best_val_top1, "w": weights}}, f"{{sys.argv[1]}}.{{rank}}")
    dist.destroy_process_group()
    """
)


@pytest.mark.slow
def test_two_process_training_learns_and_replicas_agree(tmp_path):
    script = tmp_path / "ddp_fit.py"
    script.write_text(SCRIPT.format(tests=str(__import__("pathlib").Path(__file__).parent)))
    ckpt = tmp_path / "ckpt.pt"
    subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), str(ckpt)],
        check=True, capture_output=True, timeout=600,
    )
    r0, r1 = torch.load(f"{ckpt}.0"), torch.load(f"{ckpt}.1")
    assert (r0["world"], r0["rank"], r1["rank"]) == (2, 0, 1)
    assert torch.equal(r0["w"], r1["w"])  # DDP keeps the replicas identical
    assert r0["val"] >= 0.9
    assert ckpt.is_file()  # rank 0 wrote the checkpoint
