"""The training loop: it learns, it is deterministic, and resume equals an uninterrupted run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge.errors import ConfigError
from edge.training.loop import FitConfig, evaluate, fit, to_input
from edge.training.models import build_model
from edge.vit_spec import BlockSpec, VitSpec

torch.set_num_threads(1)
SPEC = VitSpec(name="tiny", img_size=16, in_chans=1, patch_size=4, embed_dim=16, num_classes=2,
               blocks=[BlockSpec(num_heads=2, head_dim=8, mlp_hidden=32)])


def bright_side_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 1: a bright blob in the upper half; class 0: in the lower half."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.integers(0, 60, (n, 16, 16, 1)).astype(np.uint8)
    for i, label in enumerate(y):
        row = rng.integers(0, 5) if label else rng.integers(9, 13)
        col = rng.integers(0, 12)
        x[i, row : row + 3, col : col + 4] = 230
    return to_input(x), torch.as_tensor(y)


CFG = FitConfig(epochs=4, batch_size=32, lr=3e-3, warmup_epochs=1, patience=10, seed=3)


def fresh_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(SPEC)


def test_fit_learns_an_easy_task():
    train, val = bright_side_data(512, 0), bright_side_data(128, 1)
    model = fresh_model()
    result = fit(model, train, val, FitConfig(epochs=10, batch_size=32, lr=1e-2, warmup_epochs=1, patience=10))
    model.load_state_dict(result.best_state)
    top1, _, _ = evaluate(model, *val)
    assert top1 == result.best_val_top1 >= 0.9
    assert len(result.history) == 10 and result.history[-1]["lr"] < 1e-3  # cosine decayed


def test_resume_equals_uninterrupted_run(tmp_path):
    train, val = bright_side_data(128, 0), bright_side_data(64, 1)
    straight = fresh_model()
    fit(straight, train, val, CFG, checkpoint=tmp_path / "a.pt")

    interrupted = fresh_model()
    first = fit(interrupted, train, val, CFG, checkpoint=tmp_path / "b.pt", stop_after_epochs=2)
    assert len(first.history) == 2
    resumed = fresh_model()  # a new process would start from fresh weights too
    result = fit(resumed, train, val, CFG, checkpoint=tmp_path / "b.pt", resume=True)
    assert [r["epoch"] for r in result.history] == [0, 1, 2, 3]
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_resume_with_other_settings_is_refused(tmp_path):
    train, val = bright_side_data(64, 0), bright_side_data(32, 1)
    fit(fresh_model(), train, val, CFG, checkpoint=tmp_path / "c.pt", stop_after_epochs=1)
    other = FitConfig(**{**CFG.__dict__, "lr": 1e-3})
    with pytest.raises(ConfigError, match=r"checkpoint was made with other settings \(lr\)"):
        fit(fresh_model(), train, val, other, checkpoint=tmp_path / "c.pt", resume=True)


def test_resume_without_checkpoint_says_so(tmp_path):
    train, val = bright_side_data(32, 0), bright_side_data(32, 1)
    with pytest.raises(ConfigError, match="nothing to resume: no checkpoint"):
        fit(fresh_model(), train, val, CFG, checkpoint=tmp_path / "none.pt", resume=True)


def test_hflip_off_never_mirrors():
    """train.hflip=false (digits, text): a left-bright image stays left-bright; with flips some turn."""
    import torch

    from edge.training.loop import augment_batch

    x = torch.full((16, 1, 16, 16), -1.0)
    x[..., :8] = 1.0  # bright left half

    def left_brighter(batch: torch.Tensor) -> torch.Tensor:
        return batch[..., :8].mean(dim=(1, 2, 3)) > batch[..., 8:].mean(dim=(1, 2, 3))

    plain = augment_batch(x, torch.Generator().manual_seed(3), hflip=False)
    assert torch.equal(plain, augment_batch(x, torch.Generator().manual_seed(3), hflip=False))
    assert left_brighter(plain).all()
    assert not left_brighter(augment_batch(x, torch.Generator().manual_seed(3), hflip=True)).all()


def test_schedule_and_patience_follow_the_data():
    """epochs=null: about train.target_steps optimizer steps, 15..max_epochs; patience 30 % of it, >= 6."""
    from edge.config import TrainConfig
    from edge.training.stages.train import epochs_for, patience_for

    train = TrainConfig()
    assert [epochs_for(train, n) for n in (4000, 1259, 318, 100_000)] == [15, 45, 150, 15]
    assert epochs_for(TrainConfig(max_epochs=60), 318) == 60 and epochs_for(TrainConfig(epochs=7), 318) == 7
    assert [patience_for(train, e) for e in (15, 45, 150)] == [6, 14, 45]
    assert patience_for(TrainConfig(early_stop_patience=3), 45) == 3
