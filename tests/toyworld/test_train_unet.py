"""The toy UNet's training command: what the manifest records, strict loading of its file, and that
the recorded command (``--steps <steps run>``) rebuilds the same bytes, whatever budget stopped it."""

import shlex

import pytest

from generation.toyworld import store
from generation.toyworld.models import load_toy_unet
from generation.toyworld.train_unet import main as train_main

SMALL = ["--n-train", "16", "--batch-size", "4", "--threads", "1"]


def _recorded_args(info: dict) -> list[str]:
    words = shlex.split(info["command"])
    assert words[:3] == ["python", "-m", "generation.toyworld.train_unet"]
    return words[3:]


def test_the_recorded_command_rebuilds_the_same_file(tmp_path):
    first = tmp_path / "first"
    info = train_main([*SMALL, "--steps", "3", "--max-minutes", "30", "--out", str(first),
                       "--checkpoint-dir", str(tmp_path / "ckpt")])
    assert info["steps"] == 3
    args = _recorded_args(info)
    # the budget and the snapshot folder do not change the weights, so the command leaves them out
    assert "--max-minutes" not in args and "--checkpoint-dir" not in args
    assert args[-2:] == ["--steps", "3"]
    assert "--max-minutes" in info["invocation"] and "--checkpoint-dir" in info["invocation"]
    second = tmp_path / "second"
    out = args.index("--out")
    again = train_main([*args[:out], *args[out + 2:], "--out", str(second), "--checkpoint-dir", str(tmp_path / "ckpt2")])
    a, b = store.entry("unet", first), store.entry("unet", second)
    assert a["sha256"] == b["sha256"] and again["final_loss"] == info["final_loss"]
    # the file loads strictly into the shipped class with the recorded flags, after its checksum
    model = load_toy_unet(first)
    assert model.config.image_size == info["flags"]["image_size"]


def test_a_different_seed_gives_different_weights(tmp_path):
    train_main([*SMALL, "--steps", "2", "--out", str(tmp_path / "a"), "--checkpoint-dir", str(tmp_path / "c")])
    train_main([*SMALL, "--steps", "2", "--seed", "1", "--out", str(tmp_path / "b"), "--checkpoint-dir", str(tmp_path / "c")])
    assert store.entry("unet", tmp_path / "a")["sha256"] != store.entry("unet", tmp_path / "b")["sha256"]


@pytest.mark.parametrize("steps", ["0", "-1", "two"])
def test_junk_steps_get_a_usage_error(tmp_path, steps, capsys):
    with pytest.raises(SystemExit) as exc:
        train_main([*SMALL, "--steps", steps, "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "--steps" in capsys.readouterr().err


@pytest.mark.parametrize("flag,value", [("--batch-size", "0"), ("--n-train", "0"), ("--threads", "0"),
                                        ("--max-minutes", "0"), ("--max-minutes", "nan"), ("--ema", "1"), ("--ema", "-0.1")])
def test_junk_budgets_get_a_usage_error_naming_the_flag(tmp_path, flag, value, capsys):
    with pytest.raises(SystemExit) as exc:
        train_main([*SMALL, "--steps", "1", flag, value, "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert flag in capsys.readouterr().err
    assert not (tmp_path / "unet.pt").exists()
