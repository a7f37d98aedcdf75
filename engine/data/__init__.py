"""engine.data: datasets, a seeded prefetching DataLoader, vectorized batch transforms and file readers."""

from . import readers, transforms
from .dataset import Dataset, Subset, TensorDataset, random_split
from .loader import DataLoader, default_collate
from .readers import DataFormatError, load_image, read_cifar10, read_cifar10_batch, read_idx, read_image_folder
from .workers import WorkerInfo, get_worker_info

__all__ = ["Dataset", "TensorDataset", "Subset", "random_split", "DataLoader", "transforms", "readers",
           "DataFormatError", "read_idx", "read_cifar10", "read_cifar10_batch", "read_image_folder", "load_image",
           "default_collate", "get_worker_info", "WorkerInfo"]
