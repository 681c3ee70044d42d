"""Using a trained model: load a checkpoint alone (its stored config), extract retrieval features
of any images, search a gallery in bounded memory, export to ONNX / TorchScript."""
from .extractor import FeatureExtractor, ImageInputError
from .images import list_images, read_image, read_images
from .loading import checkpoint_config, load_model
from .search import topk_search

__all__ = ["FeatureExtractor", "ImageInputError", "checkpoint_config", "list_images", "load_model", "read_image",
           "read_images", "topk_search"]
