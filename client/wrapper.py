"""The paper's training harness: ``Embed -> organ -> Head`` with the recipient's frozen ends.

:func:`load_shell` builds the recipient's causal LM with zero decoder layers and
reads into it only the tensors outside the layer list (token and position
embeddings, final norm, LM head), straight from the safetensors shards; the
recipient's other layers are never loaded. :class:`WrapperModel` runs the
organ's layers between the shell's embedding and head.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

from organfed.shared.errors import ModelDirError
from organfed.shared.model_dir import ModelDir
from organfed.shared.organ import Organ
from organfed.shared.safetensors_io import read_tensor


def load_shell(md: ModelDir, *, dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    """The recipient's causal LM with no decoder layers, its end tensors loaded and frozen (requires_grad off).

    Its dropout follows the training mode of the module around it, as in in-situ training and the baselines.
    """
    config = md.adapter.resized_config(md.config, 0)
    kwargs = {"attn_implementation": "eager"} if md.adapter.name == "gpt-oss" else {}
    shell = AutoModelForCausalLM.from_config(config, dtype=dtype, **kwargs)
    available = {key for shard in md.shards for key in shard.entries if md.layer_of(key) is None}
    loaded: dict[str, torch.Tensor] = {}
    for key in shell.state_dict():
        # Hub GPT-2 checkpoints were saved from the bare model: "wte.weight" for "transformer.wte.weight".
        found = next((c for c in (key, key.partition(".")[2]) if c in available), None)
        if found is not None:
            shard, entry = md.entry(found)
            with open(shard.path, "rb") as fh:
                loaded[key] = read_tensor(fh, entry)
    missing = shell.load_state_dict(loaded, strict=False).missing_keys
    params = dict(shell.named_parameters(remove_duplicate=False))
    shared = {params[k].data_ptr() for k in loaded if k in params}
    untied = [k for k in missing if k not in params or params[k].data_ptr() not in shared]
    if untied:
        raise ModelDirError(f"{md.path}: no tensor for {', '.join(untied[:3])} outside the layers")
    shell.requires_grad_(False)
    return shell.eval()


def layer_config(md: ModelDir, shell: PreTrainedModel) -> PretrainedConfig:
    """The recipient's full config with the shell's attention implementation, to build layers from."""
    return md.adapter.resized_config(shell.config, md.num_layers, md.adapter.layer_types(md.config))


class WrapperModel(nn.Module):
    """``logits = head(organ(embed(input_ids)))``; only ``self.organ`` is trainable."""

    def __init__(self, md: ModelDir, organ: Organ, *, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.adapter = md.adapter
        self.shell = load_shell(md, dtype=dtype)
        start, end = organ.manifest.source_layers
        self.organ = organ.build_layers(layer_config(md, self.shell), range(start, end)).to(dtype)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.adapter.forward(self.shell, input_ids, self.organ)
