"""Datasets: the type, splits, the synthetic generator and loaders for the benchmark file layouts."""

from cmh.data.dataset import PARTS, CrossModalDataset, Pairs, Split, one_hot, to_dense
from cmh.data.loaders import drop_unlabelled, save_npz
from cmh.data.mat import read_mat
from cmh.data.splits import PROTOCOLS, fixed_split, protocol_split, random_split
from cmh.data.synthetic import make_synthetic  # noqa: I001  (after the type it builds)

__all__ = [
    "PARTS",
    "PROTOCOLS",
    "CrossModalDataset",
    "Pairs",
    "Split",
    "fixed_split",
    "drop_unlabelled",
    "make_synthetic",
    "one_hot",
    "protocol_split",
    "random_split",
    "read_mat",
    "save_npz",
    "to_dense",
]
