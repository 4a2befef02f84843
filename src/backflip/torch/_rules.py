"""Placeholder: replaced by the nonlinearity-rule work (issue 4)."""

__all__ = ["activation_with_rule", "deconvnet_relu", "guided_relu"]


def activation_with_rule(*args, **kwargs):
    raise NotImplementedError("being written (issue 4)")


guided_relu = deconvnet_relu = activation_with_rule
