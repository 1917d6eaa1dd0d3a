"""imgfeat: object-level image features (detection, crop, descriptor, code) on CPU Spark clusters."""

__version__ = "0.1.0"
