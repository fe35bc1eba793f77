"""A toy world in which the whole study runs offline on a CPU.

32x32 scenes of one to three coloured shapes (:mod:`.scenes`), captions from a small grammar
(:mod:`.captions`), a trained oracle that reads images back (:mod:`.oracle`), and the training
scripts of the tiny UNet and BLIP that ship in ``weights/`` (:mod:`.train_unet`,
:mod:`.train_blip`, :mod:`.train_oracle`). Importing the package loads nothing heavy.
"""

WEIGHTS_DIR_NAME = "weights"
