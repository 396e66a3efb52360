"""ThinkerLM <-> a Hugging Face Llama folder (config.json + model.safetensors).

Llama rotates halves (j, j + d/2) of each head. A Thinker with `rope_pairs: half` does too, and converts
as it is; one with interleaved pairs (0, 1), (2, 3), ... has its q and k projections' rows permuted per
head on the way (as Meta -> HF conversions do), so both models compute the same logits. A Llama folder
reads back as a `rope_pairs: half` Thinker (no permutation). A ThinkerLM on its own is one safetensors file with its config in the
metadata (`save_thinker` / `load_thinker`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file, safe_open

from th1nker.errors import CheckpointError
from th1nker.io import atomic_write, atomic_write_json
from th1nker.omni.thinker import ThinkerConfig, ThinkerLM


def _halves(heads: int, head_dim: int) -> torch.Tensor:
    """Row order that takes interleaved pairs to halves, per head: [0, 2, 4, ..., 1, 3, 5, ...]."""
    one = torch.cat([torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)])
    return torch.cat([h * head_dim + one for h in range(heads)])


def to_llama(model: ThinkerLM) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config.json mapping, weights) of `model` as a LlamaForCausalLM."""
    c = model.config
    if c.experts:
        raise CheckpointError("a mixture-of-experts Thinker has no Llama layout; convert a dense one (experts: 0)")
    hd, kvh = c.dim // c.heads, c.kv_heads or c.heads
    same = c.rope_pairs == "half"
    q_order = torch.arange(c.heads * hd) if same else _halves(c.heads, hd)
    k_order = torch.arange(kvh * hd) if same else _halves(kvh, hd)
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    out = {"model.embed_tokens.weight": sd["embed.weight"], "model.norm.weight": sd["norm.weight"]}
    if not c.tie_embeddings:
        out["lm_head.weight"] = sd["head.weight"]
    for i in range(c.layers):
        p, q = f"blocks.{i}.", f"model.layers.{i}."
        wq, k, v = sd[p + "attn.qkv.weight"].split([c.dim, kvh * hd, kvh * hd], dim=0)
        gate, up = sd[p + "mlp.gate_up.weight"].chunk(2, dim=0)
        out |= {q + "input_layernorm.weight": sd[p + "attn_norm.weight"],
                q + "self_attn.q_proj.weight": wq[q_order],
                q + "self_attn.k_proj.weight": k[k_order], q + "self_attn.v_proj.weight": v,
                q + "self_attn.o_proj.weight": sd[p + "attn.out.weight"],
                q + "post_attention_layernorm.weight": sd[p + "mlp_norm.weight"],
                q + "mlp.gate_proj.weight": gate, q + "mlp.up_proj.weight": up,
                q + "mlp.down_proj.weight": sd[p + "mlp.down.weight"]}
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": c.vocab,
              "hidden_size": c.dim, "intermediate_size": c.hidden, "num_hidden_layers": c.layers,
              "num_attention_heads": c.heads, "num_key_value_heads": kvh, "head_dim": hd,
              "max_position_embeddings": c.context, "rms_norm_eps": c.norm_eps, "rope_theta": c.rope_base,
              "tie_word_embeddings": c.tie_embeddings, "hidden_act": "silu", "attention_bias": False,
              "mlp_bias": False, "torch_dtype": "float32", "bos_token_id": 2, "eos_token_id": 3, "pad_token_id": 0}
    return config, {k: v.contiguous() for k, v in out.items()}


def from_llama(config: dict, weights: dict[str, torch.Tensor]) -> ThinkerLM:
    """A ThinkerLM computing what the LlamaForCausalLM of `config` and `weights` computes."""
    try:
        theta = config.get("rope_theta") or (config.get("rope_parameters") or {}).get("rope_theta", 10000.0)
        c = ThinkerConfig(vocab=config["vocab_size"], dim=config["hidden_size"], layers=config["num_hidden_layers"],
                          heads=config["num_attention_heads"], kv_heads=config.get("num_key_value_heads"),
                          hidden=config["intermediate_size"], context=config.get("max_position_embeddings", 2048),
                          tie_embeddings=config.get("tie_word_embeddings", False),
                          norm_eps=config.get("rms_norm_eps", 1e-6), rope_base=theta, rope_pairs="half")
    except KeyError as e:
        raise CheckpointError(f"config.json lacks {e}: not a Llama config") from None
    hd = config.get("head_dim") or c.dim // c.heads
    if hd * c.heads != c.dim or config.get("attention_bias") or config.get("mlp_bias") or config.get("rope_scaling"):
        raise CheckpointError("this Llama folder uses a head size, biases or rope scaling the Thinker does not have")
    sd = {"embed.weight": weights["model.embed_tokens.weight"], "norm.weight": weights["model.norm.weight"],
          "head.weight": weights.get("lm_head.weight", weights["model.embed_tokens.weight"])}
    for i in range(c.layers):
        p, q = f"blocks.{i}.", f"model.layers.{i}."
        sd |= {p + "attn_norm.weight": weights[q + "input_layernorm.weight"],
               p + "attn.qkv.weight": torch.cat([weights[q + "self_attn.q_proj.weight"],
                                                 weights[q + "self_attn.k_proj.weight"],
                                                 weights[q + "self_attn.v_proj.weight"]]),
               p + "attn.out.weight": weights[q + "self_attn.o_proj.weight"],
               p + "mlp_norm.weight": weights[q + "post_attention_layernorm.weight"],
               p + "mlp.gate_up.weight": torch.cat([weights[q + "mlp.gate_proj.weight"],
                                                    weights[q + "mlp.up_proj.weight"]]),
               p + "mlp.down.weight": weights[q + "mlp.down_proj.weight"]}
    model = ThinkerLM(c)
    model.load_state_dict({k: v.float() for k, v in sd.items()})
    return model


def write_llama_folder(model: ThinkerLM, folder: Path) -> None:
    config, weights = to_llama(model)
    folder = Path(folder)
    atomic_write_json(folder / "config.json", config)
    atomic_write(folder / "model.safetensors", lambda tmp: save_file(weights, str(tmp), {"format": "pt"}))


def read_llama_folder(folder: Path) -> ThinkerLM:
    folder = Path(folder)
    files = [folder / "config.json", folder / "model.safetensors"]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise CheckpointError(f"{folder}: missing {', '.join(missing)}; a Llama folder has config.json and one "
                              "model.safetensors (sharded folders: merge the shards first)")
    return from_llama(json.loads(files[0].read_text()), load_file(str(files[1])))


def save_thinker(model: ThinkerLM, path: Path) -> None:
    """One safetensors file: the weights, and the ThinkerConfig in its metadata."""
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_embeddings:
        sd.pop("head.weight")
    atomic_write(Path(path), lambda tmp: save_file(sd, str(tmp), {"thinker_config": model.config.model_dump_json()}))


def load_thinker(path: Path) -> ThinkerLM:
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for a damaged file
        raise CheckpointError(f"{path}: not a safetensors file ({e})") from None
    if "thinker_config" not in meta:
        raise CheckpointError(f"{path}: no thinker_config in its metadata; write it with `th1nker convert from-hf`")
    model = ThinkerLM(ThinkerConfig.model_validate_json(meta["thinker_config"]))
    sd = load_file(str(path))
    if model.config.tie_embeddings:
        sd["head.weight"] = sd["embed.weight"]
    model.load_state_dict(sd)
    return model
