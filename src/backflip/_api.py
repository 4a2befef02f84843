"""The functional names every framework adapter exports (a test compares the sets)."""

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
