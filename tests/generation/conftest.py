"""Tiny random models shared by the generation tests (built once per session, frozen)."""

import pytest


@pytest.fixture(scope="session")
def tiny_unet_model():
    from generation.unet import tiny_unet

    return tiny_unet(seed=0)


@pytest.fixture(scope="session")
def tiny_models():
    from generation.pipeline import load_models
    from generation.spec import GenerationSpec

    return load_models(GenerationSpec.tiny(), weights_dir=None, device="cpu")
