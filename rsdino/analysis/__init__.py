"""Property analyses of pretrained backbones: PCA feature maps, feature matching, CLS attention maps."""

from rsdino.analysis.matching import mutual_nearest_neighbours
from rsdino.analysis.pca import principal_components, two_step_pca

__all__ = ["mutual_nearest_neighbours", "principal_components", "two_step_pca"]
