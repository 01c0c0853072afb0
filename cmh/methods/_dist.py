"""Data-parallel training of the deep methods over ``torch.distributed`` (torchrun; NCCL on GPUs, gloo on CPU).

``torchrun --nproc-per-node N -m cmh run ssah ...`` starts ``N`` copies of ``cmh run``;
:func:`init_from_env` joins them into one process group, and :meth:`DeepHashMethod.fit
<cmh.methods._train.DeepHashMethod.fit>` then trains data-parallel through :class:`Trainer`, for every deep
method, without per-method code:

- **The objective is the single-process one.** Every rank holds the whole training set, the same seeded
  generator and therefore the same batch order. While ``_train_epoch`` runs, each network in
  ``method.nets`` is wrapped in :class:`Sharded`: a call on a batch whose inputs are data (no input carries
  a gradient) runs the network on this rank's contiguous slice of the rows only, then all-gathers the
  outputs, so every rank sees the whole batch's outputs — this rank's rows with their autograd graph, the
  others' as constants. The method's loss (pairwise terms against the ``n``-item banks, balance and
  quantisation terms, ...) is then computed on the whole batch, identically on every rank, and the banks
  updated from the gathered outputs stay identical on every rank. A call whose input carries a gradient
  (a frozen discriminator on the image network's features, a head on a trunk's output) runs unsharded
  on the gathered rows, so gradients flow back to each row's owner.
- **Gradients.** Each rank's backward gives the gradient of the whole-batch loss through its own rows;
  the gather scales it by the world size, and at the end of every backward pass the gradients it
  accumulated are averaged over the ranks (one flat all-reduce per dtype), which yields the
  single-process gradient — also for loss terms that do not go through a sharded call (computed fully on
  every rank) — before anything reads them (gradient clipping, the optimiser step). This is
  :class:`torch.nn.parallel.DistributedDataParallel`'s reduction without its reducer, which requires each
  forward to be followed by one backward that reaches every parameter of the module: the deep methods'
  alternating steps break that (SSAH calls a discriminator twice before its backward and frozen in the
  generators' step; LabNet's bank pass has no backward).
- **Equal state.** Parameters and buffers are broadcast from rank 0 when training starts; all-reduced
  gradients and gathered outputs are the same bytes on every rank, so networks, optimiser states, banks,
  losses and early-stopping decisions stay identical. Checkpoints and the record are written by rank 0
  only; a resumed run checks that every rank restarted from the same epoch (``checkpoint_dir`` must be on a
  file system all nodes share).
- **Failures.** A collective that fails or times out (``CMH_DIST_TIMEOUT`` seconds, default 600) — a rank
  died, a node became unreachable — raises a one-line :class:`~cmh.errors.CMHError` on the surviving
  ranks; relaunching the same command resumes from the last checkpoint.

Limits: a network called on a batch must return one output row per input row (tensors, or tuples/lists/
dicts of them); networks that do not (list their keys in the method's ``unsharded_nets``) run whole on
every rank. BatchNorm layers become :class:`~torch.nn.SyncBatchNorm` on GPUs (whole-batch statistics); on
CPU they use each rank's rows. Dropout draws differ from one process's.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from cmh.errors import CMHError

TIMEOUT_ENV = "CMH_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 600
T = TypeVar("T")


def world() -> tuple[int, int]:
    """``(rank, world size)`` of the current process group; ``(0, 1)`` when training in one process."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_writer() -> bool:
    """True on the rank that writes checkpoints, records and progress (rank 0, or the only process)."""
    return world()[0] == 0


def timeout_s() -> float:
    """Seconds a collective waits for the other ranks (``CMH_DIST_TIMEOUT``, default 600)."""
    text = os.environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT_S))
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise CMHError(f"{TIMEOUT_ENV}={text!r} is not a positive number of seconds; e.g. {TIMEOUT_ENV}=600")
    return value


def init_from_env(device: str) -> str:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1); returns the device to train on.

    NCCL when ``device`` resolves to CUDA (each rank on ``cuda:LOCAL_RANK``), gloo on CPU. Without torchrun's
    environment (or with one process) nothing happens and ``device`` is returned unchanged.
    """
    from cmh.base import resolve_device

    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size <= 1 or (dist.is_available() and dist.is_initialized()):
        return device
    if not dist.is_available():
        raise CMHError("this torch build has no torch.distributed; install a standard torch to use torchrun")
    dev = resolve_device(device)
    if dev.type == "cuda":
        if dev.index is not None:
            raise CMHError(
                f"--device {device} under torchrun: use --device cuda (or auto); rank k takes cuda:LOCAL_RANK"
            )
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise CMHError(
                f"LOCAL_RANK {local} but only {torch.cuda.device_count()} GPUs on this node; "
                "lower --nproc-per-node"
            )
        torch.cuda.set_device(local)
        device, backend = f"cuda:{local}", "nccl"
    else:
        device, backend = str(dev), "gloo"
    try:
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s()))
    except (RuntimeError, ValueError) as exc:
        raise CMHError(
            f"cannot join the torchrun process group ({_first_line(exc)}); check --rdzv-endpoint / "
            "MASTER_ADDR and that every node can reach it"
        ) from None
    _JOINED.append(True)
    return device


#: non-empty while this module's :func:`init_from_env` holds the process group
_JOINED: list[bool] = []


def close() -> None:
    """Leave the process group :func:`init_from_env` joined (a caller's own group is left alone)."""
    if _JOINED and dist.is_initialized():
        dist.destroy_process_group()
    _JOINED.clear()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else exc.__class__.__name__)[:200]


@contextlib.contextmanager
def _collective(what: str) -> Iterator[None]:
    """Turn a failed or timed-out collective into a one-line CMHError on the surviving ranks."""
    try:
        yield
    except RuntimeError as exc:  # DistBackendError, gloo connection errors and timeouts
        rank, size = world()
        raise CMHError(
            f"distributed training, rank {rank} of {size}: {what} failed ({_first_line(exc)}); another rank "
            "stopped or is unreachable; relaunch the same command to resume from the last checkpoint"
        ) from None


def rank0_value(value: T) -> T:
    """``value`` as rank 0 has it, on every rank (e.g. whether a record exists); unchanged in one process."""
    rank, size = world()
    if size == 1:
        return value
    box = [value if rank == 0 else None]
    with _collective("broadcast"):
        dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[return-value]


def check_same(value: Any, what: str, fix: str) -> None:
    """Raise a one-line CMHError on every rank when ranks disagree about ``value``."""
    rank, size = world()
    if size == 1:
        return
    values: list[Any] = [None] * size
    with _collective("all_gather_object"):
        dist.all_gather_object(values, value)
    if any(v != values[0] for v in values):
        shown = ", ".join(f"rank {r}: {v}" for r, v in enumerate(values))
        raise CMHError(f"ranks disagree about {what} ({shown}); {fix}")


def _bounds(rows: int, rank: int, size: int) -> tuple[int, int, int]:
    """This rank's contiguous slice ``[lo, hi)`` of ``rows`` rows, and the (padded) slice length."""
    chunk = math.ceil(rows / size) if rows else 0
    lo = min(rank * chunk, rows)
    return lo, min(lo + chunk, rows), chunk


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by ``factor`` (the world size, see module doc)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.factor, None


def gather_rows(local: torch.Tensor, rows: int) -> torch.Tensor:
    """All ranks' slices (``local`` = this rank's) of a ``rows``-row output, concatenated in rank order.

    This rank's rows keep their autograd graph (gradient scaled by the world size); the others are constants.
    """
    rank, size = world()
    lo, hi, chunk = _bounds(rows, rank, size)
    if local.dim() == 0 or local.shape[0] != hi - lo:
        raise CMHError(
            f"distributed training: a network returned {tuple(local.shape)} for {hi - lo} input rows; "
            "it must return one row per input row, or be listed in the method's unsharded_nets"
        )
    send = local.detach().new_zeros((chunk, *local.shape[1:]))
    send[: hi - lo] = local.detach()
    parts = [torch.empty_like(send) for _ in range(size)]
    with _collective("all_gather of a batch's outputs"):
        dist.all_gather(parts, send.contiguous())
    pieces = [p[: _bounds(rows, r, size)[1] - _bounds(rows, r, size)[0]] for r, p in enumerate(parts)]
    pieces[rank] = _ScaleGrad.apply(local, float(size)) if local.requires_grad else local
    return torch.cat(pieces)


def _map_tensors(out: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    if isinstance(out, torch.Tensor):
        return fn(out)
    if isinstance(out, (tuple, list)):
        return type(out)(_map_tensors(o, fn) for o in out)
    if isinstance(out, dict):
        return {k: _map_tensors(v, fn) for k, v in out.items()}
    return out


class Sharded(nn.Module):
    """A network whose calls on data batches run on this rank's rows and return every rank's outputs.

    Attributes other than ``forward`` (e.g. SSAH's ``codes``) are the wrapped network's, unsharded.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["module"], name)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        if not tensors or tensors[0].dim() == 0 or any(t.requires_grad for t in tensors):
            return self.module(*args, **kwargs)  # constants or features that carry a gradient: whole batch
        rows = tensors[0].shape[0]
        rank, size = world()
        lo, hi, _ = _bounds(rows, rank, size)

        def cut(a: Any) -> Any:
            return a[lo:hi] if isinstance(a, torch.Tensor) and a.dim() > 0 and a.shape[0] == rows else a

        out = self.module(*map(cut, args), **{k: cut(v) for k, v in kwargs.items()})
        return _map_tensors(out, lambda t: gather_rows(t, rows))


def _flat_groups(tensors: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, list[torch.Tensor]]]:
    """``(flat copy, members)`` per (device, dtype) group of ``tensors``."""
    groups: dict[tuple[Any, Any], list[torch.Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.device, t.dtype), []).append(t)
    for members in groups.values():
        yield torch.cat([t.reshape(-1) for t in members]), members


def _unflatten(flat: torch.Tensor, members: list[torch.Tensor]) -> None:
    start = 0
    for t in members:
        t.copy_(flat[start : start + t.numel()].view_as(t))
        start += t.numel()


def average_gradients(params: list[torch.Tensor]) -> None:
    """Replace each parameter's gradient by its mean over the ranks (one flat all-reduce per dtype)."""
    size = world()[1]
    grads = [p.grad for p in params if p.grad is not None]
    for flat, members in _flat_groups(grads):
        with _collective("all_reduce of the gradients"):
            dist.all_reduce(flat)
        _unflatten(flat.div_(size), members)


class _GradientSync:
    """Average, at the end of every backward pass, the gradients that pass accumulated into ``params``."""

    def __init__(self, params: list[nn.Parameter]) -> None:
        unique = list({id(p): p for p in params}.values())
        self.order = {id(p): i for i, p in enumerate(unique)}
        self.touched: dict[int, nn.Parameter] = {}
        self.hooks = [p.register_post_accumulate_grad_hook(self._touch) for p in unique]

    def _touch(self, param: nn.Parameter) -> None:
        if not self.touched:  # first gradient of this backward pass: sync when the pass ends
            torch.autograd.Variable._execution_engine.queue_callback(self._sync)
        self.touched[id(param)] = param

    def _sync(self) -> None:
        params = sorted(self.touched.values(), key=lambda p: self.order[id(p)])  # same order on every rank
        self.touched = {}
        average_gradients(params)

    def remove(self) -> None:
        for hook in self.hooks:
            hook.remove()


def broadcast_state(nets: dict[str, nn.Module]) -> None:
    """Make every rank's parameters and buffers rank 0's."""
    tensors = [t.data for net in nets.values() for t in (*net.parameters(), *net.buffers())]
    for flat, members in _flat_groups(tensors):
        with _collective("broadcast of the networks"):
            dist.broadcast(flat, src=0)
        _unflatten(flat, members)


class Trainer:
    """What :meth:`DeepHashMethod.fit` does differently on several ranks; a no-op in one process."""

    def __init__(self, method: Any) -> None:
        self.method = method
        self.rank, self.size = world()
        self._hooks: list[Any] = []

    @property
    def active(self) -> bool:
        return self.size > 1

    def start(self, fingerprint: str) -> None:
        """After networks, optimisers and a resumed state exist: check, synchronise, hook the gradients."""
        if not self.active:
            return
        m = self.method
        check_same(
            fingerprint,
            "the training data (its fingerprint)",
            "every rank must load the same training set (same --data, --dataset and --split-seed)",
        )
        check_same(
            m.epochs_done,
            "the epoch to resume from",
            "put checkpoint_dir on a file system every node shares (or delete the checkpoint)",
        )
        if m.device.type == "cuda":
            for key, net in m.nets.items():
                m.nets[key] = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        broadcast_state(m.nets)
        self._hooks.append(_GradientSync([p for net in m.nets.values() for p in net.parameters()]))

    @contextlib.contextmanager
    def sharded(self) -> Iterator[None]:
        """While the method trains one epoch, its networks are :class:`Sharded` (except ``unsharded_nets``)."""
        if not self.active:
            yield
            return
        m = self.method
        plain = dict(m.nets)
        skip = set(getattr(m, "unsharded_nets", ()))
        m.nets = {k: v if k in skip else Sharded(v) for k, v in plain.items()}
        try:
            yield
        finally:
            m.nets = plain

    def close(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
