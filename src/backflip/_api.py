"""The names every framework adapter exports, in one list (tests/conformance/test_api.py).

Each adapter's ``_ops`` module builds its ``__all__`` from :data:`CORE_OPS`; each
adapter's package lists :data:`ADAPTER_API` plus what is its framework's own (modules,
layers, callbacks) in a literal ``__all__`` that linters and editors can read, and
tests/conformance/test_api.py checks it holds :data:`ADAPTER_API`.
"""

CORE_OPS: tuple[str, ...] = (
    "reverse_gradient",
    "scale_gradient",
    "clip_gradient",
    "clip_gradient_norm",
    "custom_gradient",
    "activation_with_rule",
    "guided_relu",
    "deconvnet_relu",
)

ADAPTER_API: tuple[str, ...] = (*CORE_OPS, "OverrideReport", "override_gradients")
""":data:`CORE_OPS` and ``override_gradients`` with its report: what every adapter has."""
