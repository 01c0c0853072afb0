"""Datasets: the type, splits, the synthetic generator and loaders for the benchmark file layouts."""

from cmh.data.dataset import PARTS, CrossModalDataset, Pairs, Split, one_hot, to_dense
from cmh.data.splits import PROTOCOLS, fixed_split, protocol_split, random_split
from cmh.data.synthetic import make_synthetic

__all__ = [
    "PARTS",
    "PROTOCOLS",
    "CrossModalDataset",
    "Pairs",
    "Split",
    "fixed_split",
    "make_synthetic",
    "one_hot",
    "protocol_split",
    "random_split",
    "to_dense",
]
