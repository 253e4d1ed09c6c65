"""The math of the independence loss and of the measures of codebook dependence: plain torch and numpy.

Imports nothing from audiocraft, Dora, Hydra or OmegaConf, and nothing from the other layers of this package
(`integration`, `apps`): usable in any codec's training loop, testable in milliseconds (tests/test_layers.py).

    kernels.py   kernels and their bandwidths            mmd.py       the MMD^2 estimator (paper eq. 7), tiled
    shuffle.py   factorized copies of joint rows         patterns.py  rows of codes a decoding pattern predicts together
    options.py   the loss's options (one object)         loss.py      the independence loss (paper Algorithm 1)
    sampling.py  permutations, a bounded row sample      metrics/     information measures of discrete codes
    validation.py  checks of input tensors and option values shared by the modules above
"""
