"""Suite-wide settings. Tests are grouped by directory: core, ops_<framework>, data, dann, saliency."""
import os

# Keep every test on the CPU and quiet; CI has 2 cores and no GPU.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
