"""refine: RefineNet-family semantic segmentation made practical."""

__version__ = "0.1.0"
