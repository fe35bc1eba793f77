"""Tiny random models shared by the generation tests (built once per session, frozen)."""

import pytest
import torch

# Tiny models are far too small for intra-op parallelism to pay: on a shared 2-core machine two
# threads made a guided step 10-80x slower (spin-waiting), one thread keeps it at ~30 ms.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_unet_model():
    from generation.unet import tiny_unet

    return tiny_unet(seed=0)


@pytest.fixture(scope="session")
def tiny_models():
    from generation.pipeline import load_models
    from generation.spec import GenerationSpec

    return load_models(GenerationSpec.tiny(), weights_dir=None, device="cpu")
