"""Reading checkpoint files: weights-only by default, pickled extras only when trusted."""

import pytest
import torch

from generation.checkpoints import CheckpointError, read_state_dict


class Extra:  # a plain Python object pickled next to the weights, as training scripts do
    epoch = 3


def test_missing_truncated_and_pickled_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_state_dict(tmp_path / "none.pt")

    good = tmp_path / "good.pt"
    torch.save({"model": {"w": torch.ones(2)}}, good)
    assert torch.equal(read_state_dict(good, inner_key="model")["w"], torch.ones(2))

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_state_dict(truncated)

    pickled = tmp_path / "pickled.pt"
    torch.save({"model": {"w": torch.ones(2)}, "config": Extra()}, pickled)
    with pytest.raises(CheckpointError, match="WEIGHTS_TRUST_PICKLE=1"):
        read_state_dict(pickled, inner_key="model", allow_pickle=False)
    assert torch.equal(read_state_dict(pickled, inner_key="model", allow_pickle=True)["w"], torch.ones(2))
