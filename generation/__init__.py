"""Framework-free generation core: guided-diffusion UNet steered by BLIP.

Nothing heavy is imported here; import the submodules you need (torch is loaded lazily).
"""
