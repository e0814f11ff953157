"""Training checkpoints: safetensors for tensors, JSON for everything else, written atomically.

A checkpoint directory holds ``state-<step>.safetensors`` (the trainable
parameters and the optimizer's state tensors) and ``state.json`` (the step, the
optimizer's structure and scalars, the random-number generator states, the
run's identity and its progress so far, and the SHA-256 of the tensor file).
The tensor file is written first; writing ``state.json`` commits the
checkpoint, so a crash at any moment leaves the previous one usable. Nothing is
pickled.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from organfed.shared.atomic import atomic_path, write_json_atomic
from organfed.shared.errors import CheckpointError, OrganFormatError
from organfed.shared.safetensors_io import DTYPE_NAMES, StreamingWriter, TensorSpec, read_header, read_tensor

FORMAT = "organfed-train-checkpoint"
FORMAT_VERSION = 1
STATE_NAME = "state.json"
_PARAM, _OPTIM = "param/", "optim/"


@dataclass(frozen=True)
class Checkpoint:
    """Everything needed to continue a run exactly where it stopped."""

    step: int
    params: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: dict[str, Any]
    run: dict[str, Any]
    progress: dict[str, Any]


def capture_rng(device: torch.device) -> dict[str, Any]:
    """The global torch generator states (CPU, and the training GPU's when ``device`` is CUDA) as JSON-ready text.

    Only the training device's generator: the loop forks just that one, so other GPUs are never touched.
    """
    state = {"cpu": _b64(torch.get_rng_state())}
    if device.type == "cuda":
        state["cuda"] = _b64(torch.cuda.get_rng_state(device))
    return state


def restore_rng(state: dict[str, Any], device: torch.device) -> None:
    """Put back generator states captured by :func:`capture_rng` for the same ``device``."""
    torch.set_rng_state(_unb64(state["cpu"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(_unb64(state["cuda"]), device)


def _b64(tensor: torch.Tensor) -> str:
    return base64.b64encode(tensor.cpu().numpy().tobytes()).decode()


def _unb64(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)


def flatten_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer ``state_dict`` into tensors (``optim/<param>/<key>``) and a JSON structure."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, per_param in state_dict["state"].items():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{_OPTIM}{pid}/{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], structure: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`flatten_optimizer`."""
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        if name.startswith(_OPTIM):
            pid, key = name[len(_OPTIM):].split("/", 1)
            state.setdefault(int(pid), {})[key] = tensor
    for pid, values in structure["scalars"].items():
        state.setdefault(int(pid), {}).update(values)
    return {"state": state, "param_groups": structure["param_groups"]}


def save_checkpoint(directory: Path | str, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` into ``directory`` atomically and drop the older tensor files."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    optim_tensors, structure = flatten_optimizer(ckpt.optimizer)
    tensors = {**{_PARAM + k: v for k, v in ckpt.params.items()}, **optim_tensors}
    tensors = {k: tensors[k].detach().to("cpu").contiguous() for k in sorted(tensors)}
    name = f"state-{ckpt.step:08d}.safetensors"
    specs = [TensorSpec(k, DTYPE_NAMES[t.dtype], tuple(t.shape)) for k, t in tensors.items()]
    with atomic_path(directory / name) as tmp, open(tmp, "wb") as fh:
        writer = StreamingWriter(fh, specs, {"format": "pt"})
        for key, tensor in tensors.items():
            writer.write_tensor(key, tensor)
        writer.close()
    state = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "step": ckpt.step,
        "tensors_file": name,
        "tensors_sha256": _sha256(directory / name),
        "optimizer": structure,
        "rng": ckpt.rng,
        "run": ckpt.run,
        "progress": ckpt.progress,
    }
    write_json_atomic(directory / STATE_NAME, state)
    for old in directory.glob("state-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return directory / STATE_NAME


def load_checkpoint(directory: Path | str) -> Checkpoint | None:
    """The checkpoint in ``directory``, or ``None`` if it holds none; :class:`CheckpointError` if damaged."""
    directory = Path(directory)
    path = directory / STATE_NAME
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not an organfed training checkpoint of version {FORMAT_VERSION}")
    name = state.get("tensors_file")
    if not isinstance(name, str) or "/" in name or not (directory / name).is_file():
        raise CheckpointError(f"{path} names a tensor file {name!r} that is missing")
    tensor_path = directory / name
    if _sha256(tensor_path) != state.get("tensors_sha256"):
        raise CheckpointError(f"{tensor_path} does not match the digest in {path} (damaged?)")
    try:
        header = read_header(tensor_path)
        with open(tensor_path, "rb") as fh:
            tensors = {k: read_tensor(fh, e) for k, e in header.entries.items()}
    except OrganFormatError as exc:
        raise CheckpointError(str(exc)) from exc
    try:
        step = state["step"]
        if type(step) is not int or step < 0:
            raise ValueError(f"step {step!r}")
        checkpoint = Checkpoint(
            step=step,
            params={k[len(_PARAM):]: v for k, v in tensors.items() if k.startswith(_PARAM)},
            optimizer=unflatten_optimizer(tensors, state["optimizer"]),
            rng=state["rng"],
            run=state["run"],
            progress=state["progress"],
        )
        if not all(isinstance(x, dict) for x in (checkpoint.rng, checkpoint.run, checkpoint.progress)):
            raise TypeError("rng, run and progress must be objects")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path} is malformed ({exc})") from None
    return checkpoint


def remove_checkpoint(directory: Path | str) -> None:
    """Delete a checkpoint's files, and the directory when nothing else is in it."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    for f in [directory / STATE_NAME, *directory.glob("state-*.safetensors"), *directory.glob(".tmp-state*")]:
        f.unlink(missing_ok=True)
    if not any(directory.iterdir()):
        directory.rmdir()


def _sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()
