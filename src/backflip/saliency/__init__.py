"""Saliency maps for PyTorch classifiers: which input pixels move a class score.

Every method takes a model, a batch ``inputs`` (N, ...) and ``target`` classes and
returns a tensor shaped like ``inputs``:

==================  ===========================================================
method              map
==================  ===========================================================
gradient            ``d score_t / d x`` (Simonyan et al. 2014)
guided_backprop     the same with every ReLU-like backward replaced by the
                    ``guided`` rule (Springenberg et al. 2015)
deconvnet           the same with the ``deconvnet`` rule (Zeiler & Fergus 2014)
input_x_gradient    ``x * d score_t / d x`` (Shrikumar et al. 2016)
smoothgrad          mean of a method's maps over ``n`` noisy copies of ``x``
                    (Smilkov et al. 2017)
==================  ===========================================================

The rules come from :func:`backflip.torch.override_gradients`, so functional
``F.relu`` calls are covered as well as ``nn.ReLU`` modules, and a model with a
nonlinearity no rule covers raises instead of giving default gradients.
:func:`save_grid` writes a PNG (input, map, overlay per sample).
"""

from backflip._optional import require as _require

_require("torch", purpose="backflip.saliency")

from backflip.saliency._maps import (
    METHODS,
    deconvnet,
    gradient,
    guided_backprop,
    input_x_gradient,
    saliency,
    smoothgrad,
)
from backflip.saliency._plot import save_grid

__all__ = [
    "METHODS",
    "deconvnet",
    "gradient",
    "guided_backprop",
    "input_x_gradient",
    "saliency",
    "save_grid",
    "smoothgrad",
]
