"""The one set of transformer layers behind every block, the Thinker LM, the encoders and the Talker."""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RMSNorm(nn.Module):
    """Root-mean-square layer norm with a learned scale."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        # one fused call (fewer dispatches per decoded token); lower precisions normalise in float32
        if x.dtype == torch.float32:
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        return F.rms_norm(x.float(), (x.shape[-1],), None, self.eps).type_as(x) * self.weight


class Rotary(nn.Module):
    """Rotary position embedding; the table grows on demand to any length. `pairs` says which channels
    rotate together: "interleaved" (2i, 2i + 1), or "half" (i, i + d/2) as Llama does.

    A pair is one complex number turned by e^(i * position * inv_freq): one complex multiplication per
    pair instead of slicing, four products and a stack (14x faster at 256 positions on CPU).
    """

    def __init__(self, head_dim: int, base: float = 10000.0, pairs: str = "interleaved"):
        super().__init__()
        if pairs not in ("interleaved", "half"):
            raise ValueError(f"pairs: 'interleaved' or 'half', got {pairs!r}")
        self.pairs = pairs
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2).float() / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._turns: Tensor | None = None  # (positions, head_dim / 2) complex64
        self._turns_real: Tensor | None = None  # its (cos, sin) view, for static-cache steps

    def _table(self, length: int, device: torch.device) -> Tensor:
        turns = self._turns
        if turns is None or turns.shape[0] < length or turns.device != device:
            # Grow by doubling so token-by-token decoding does not rebuild the table every step.
            size = max(length, 64, 2 * turns.shape[0] if turns is not None else 0)
            freqs = torch.outer(torch.arange(size, device=device, dtype=torch.float32), self.inv_freq.to(device))
            self._turns = turns = torch.polar(torch.ones_like(freqs), freqs)
        return turns

    def reserve(self, length: int, device: torch.device) -> None:
        """Build the table for `length` positions now: a static-cache step only indexes it, in its
        real (cos, sin) view, which compiles to plain loads."""
        self._turns_real = torch.view_as_real(self._table(length, device))

    def forward(self, x: Tensor, offset: int | Tensor = 0) -> Tensor:
        """Rotate `x` (B, H, T, Dh) as if its first position were `offset` (an int, or a 0-d tensor
        in a compiled static-cache step, whose table must already cover the positions: `reserve`)."""
        length = x.shape[-2]
        if isinstance(offset, Tensor):
            return self._rotate_real(x, self._turns_real[offset + torch.arange(length, device=x.device)])
        turns = self._table(offset + length, x.device)[offset : offset + length]
        if torch.compiler.is_compiling():
            return self._rotate_real(x, torch.view_as_real(turns))
        if self.pairs == "half":
            x1, x2 = x.float().chunk(2, dim=-1)
            turned = torch.complex(x1, x2) * turns
            return torch.cat((turned.real, turned.imag), dim=-1).type_as(x)
        pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
        return torch.view_as_real(pairs * turns).flatten(-2).type_as(x)


    def _rotate_real(self, x: Tensor, turns: Tensor) -> Tensor:
        """The same rotation in real arithmetic, which Inductor fuses into one kernel (it generates
        no code for complex numbers and would call each complex op on its own)."""
        cos, sin = turns.unbind(-1)
        if self.pairs == "half":
            x1, x2 = x.float().chunk(2, dim=-1)
            return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).type_as(x)
        x1, x2 = x.float().reshape(*x.shape[:-1], -1, 2).unbind(-1)
        return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2).type_as(x)


def reserve_rotary(module: nn.Module, length: int, device: torch.device) -> None:
    """Build the tables of every rotary layer in `module` for `length` positions (static-cache steps)."""
    for m in module.modules():
        if isinstance(m, Rotary):
            m.reserve(length, device)


def static_capacity(tokens: int, limit: int) -> int:
    """The size of static caches for `tokens` positions: a power of two, at least 64 and at most `limit`
    (never below `tokens`), so that generations of other lengths reuse the compiled steps."""
    return max(tokens, min(limit, max(64, 1 << (tokens - 1).bit_length())))


class KVCache:
    """Keys and values of the positions seen so far, per attention layer.

    Preallocated: the first `extend` allocates room for `capacity` positions (or the first chunk,
    doubled), later ones write in place and return views, so decoding does not copy the whole cache
    every token; past the room it grows by doubling. `length` is a Python int (no device sync).
    """

    fixed_size = False  # keys and values end at `length` (StaticKVCache's: at its capacity)

    def __init__(self, capacity: int | None = None):
        self.capacity = capacity
        self._k: Tensor | None = None
        self._v: Tensor | None = None
        self.length = 0

    @property
    def k(self) -> Tensor | None:
        return None if self._k is None else self._k[..., : self.length, :]

    @property
    def v(self) -> Tensor | None:
        return None if self._v is None else self._v[..., : self.length, :]

    def extend(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        end = self.length + k.shape[-2]
        if self._k is None or end > self._k.shape[-2] or self._k.dtype != k.dtype:
            self._grow(k, v, max(end, self.capacity or 0, 2 * self.length))
        self._k[..., self.length:end, :] = k
        self._v[..., self.length:end, :] = v
        self.length = end
        return self.k, self.v

    def fill_from(self, other: "KVCache", tokens: int) -> None:
        """Append the keys and values `other` holds beyond this cache's, i.e. this run's `tokens` (a call
        this run skipped reuses them)."""
        n = other.length - self.length
        if n > 0:
            self.extend(other.k[..., -n:, :], other.v[..., -n:, :])

    def _grow(self, k: Tensor, v: Tensor, size: int) -> None:
        old_k, old_v = self.k, self.v
        self._k = k.new_empty(*k.shape[:-2], size, k.shape[-1])
        self._v = v.new_empty(*v.shape[:-2], size, v.shape[-1])
        if old_k is not None:
            self._k[..., : self.length, :] = old_k
            self._v[..., : self.length, :] = old_v


class StaticKVCache:
    """Keys and values in buffers of a fixed `capacity`, for compiled (and CUDA-graph) decoding.

    The write position is a 0-d device tensor shared by a model's layers and advanced by its driver
    (`ThinkerLM.generate`) after each forward, not a Python int; every call attends over all
    `capacity` slots, the unwritten ones masked out. Shapes never change, so one compiled graph
    serves every decoded token and nothing waits on the host.
    """

    fixed_size = True

    def __init__(self, capacity: int, position: Tensor, static_address: bool = True):
        self.capacity, self.position, self.static_address = capacity, position, static_address
        self._k: Tensor | None = None
        self._v: Tensor | None = None

    @property
    def length(self) -> Tensor:
        return self.position

    def extend(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if self._k is None:  # zeros, not empty: masked slots still meet the values (0 * NaN is NaN)
            self._k = k.new_zeros(*k.shape[:-2], self.capacity, k.shape[-1])
            self._v = v.new_zeros(*v.shape[:-2], self.capacity, v.shape[-1])
            if self.static_address:  # fixed addresses: CUDA graphs may write them in place
                for buffer in (self._k, self._v):
                    torch._dynamo.mark_static_address(buffer)
        at = self.position + torch.arange(k.shape[-2], device=k.device)
        self._k[..., at, :] = k
        self._v[..., at, :] = v
        return self._k, self._v

    def fill_from(self, other: "StaticKVCache", tokens: int) -> None:
        """Write `other`'s keys and values at the `tokens` positions from the current one (a call this
        run skipped reuses them); the position is not advanced."""
        if other._k is None:
            return
        at = self.position + torch.arange(tokens, device=self.position.device)
        self.extend(other._k.index_select(-2, at), other._v.index_select(-2, at))


class Attention(nn.Module):
    """Multi-head attention through `scaled_dot_product_attention`: MHA, GQA or MQA, self or cross.

    `mask` is a (B, S) boolean padding mask over keys (True = attend); with a cache, S counts the
    cached keys too. With `cache`, keys and values are appended and queries sit at the positions
    after the cached ones, so cached decoding equals a full causal forward.

    Queries, keys and values share one projection `qkv` (rows: q, then k, then v): self-attention
    runs it as one matrix multiplication; cross-attention, or keys of another width (`kv_dim`), use
    its row blocks separately (`project_q`, `project_kv`).
    """

    def __init__(self, dim: int, heads: int, kv_heads: int | None = None, causal: bool = False,
                 rotary: bool = True, kv_dim: int | None = None, bias: bool = False,
                 dropout: float = 0.0):
        super().__init__()
        kv_heads = kv_heads or heads
        if dim % heads or heads % kv_heads:
            raise ValueError(f"dim {dim} must divide into heads {heads}, heads into kv_heads {kv_heads}")
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, dim // heads
        self.causal, self.dropout = causal, dropout
        self.dim, self.kv_dim = dim, kv_dim or dim
        if self.kv_dim == dim:
            self.qkv = nn.Linear(dim, dim + 2 * kv_heads * self.head_dim, bias=bias)
        else:
            self.q = nn.Linear(dim, dim, bias=bias)
            self.kv = nn.Linear(self.kv_dim, 2 * kv_heads * self.head_dim, bias=bias)
        self.out = nn.Linear(dim, dim, bias=bias)
        self.rotary = Rotary(self.head_dim) if rotary else None
        self.register_load_state_dict_pre_hook(_fuse_qkv_weights)

    def _rows(self, part: str) -> tuple[Tensor, Tensor | None]:
        """Weight and bias of the q or kv rows of the fused projection."""
        rows = slice(0, self.dim) if part == "q" else slice(self.dim, None)
        bias = self.qkv.bias
        return self.qkv.weight[rows], None if bias is None else bias[rows]

    def project_q(self, x: Tensor) -> Tensor:
        """Queries (B, H, T, Dh) of `x` (B, T, dim), before rotary."""
        q = self.q(x) if self.kv_dim != self.dim else F.linear(x, *self._rows("q"))
        return q.view(*x.shape[:2], self.heads, self.head_dim).transpose(1, 2)

    def project_kv(self, source: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values (B, KVH, S, Dh) of `source` (B, S, kv_dim), before rotary."""
        kv = self.kv(source) if self.kv_dim != self.dim else F.linear(source, *self._rows("kv"))
        k, v = kv.view(*source.shape[:2], 2, self.kv_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return k, v

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None,
                cache: KVCache | None = None) -> Tensor:
        b, t, _ = x.shape
        if context is None and self.kv_dim == self.dim:
            qkv = self.qkv(x)
            q = qkv[..., : self.dim].view(b, t, self.heads, self.head_dim).transpose(1, 2)
            k, v = qkv[..., self.dim:].view(b, t, 2, self.kv_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        else:
            q, (k, v) = self.project_q(x), self.project_kv(x if context is None else context)
        offset = cache.length if cache is not None else 0
        if self.rotary is not None:
            q = self.rotary(q, offset)
            k = self.rotary(k, offset if context is None else 0)
        if cache is not None:
            k, v = cache.extend(k, v)
        s = k.shape[-2]
        # Without padding, SDPA's own causal kernel covers a full sequence, and a single query at
        # the end of the cache sees every key: no explicit mask is needed in either case (a static
        # cache's keys run past the end: it always needs one).
        static = cache is not None and cache.fixed_size
        plain = self.causal and mask is None and (t == s or t == 1) and not static
        attn_mask = None if plain else self._mask(mask, t, s, offset, x.device)
        if static and x.device.type == "cpu" and torch.compiler.is_compiling():
            y = _fused_attention(q, k, v, attn_mask, self.heads // self.kv_heads)  # (a decode step: no dropout)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=plain and t > 1,
                                               dropout_p=self.dropout if self.training else 0.0,
                                               enable_gqa=self.kv_heads != self.heads)
        return self.out(y.transpose(1, 2).reshape(b, t, -1))

    def _mask(self, padding: Tensor | None, t: int, s: int, offset: int | Tensor, device) -> Tensor | None:
        mask = None
        if self.causal:
            q_pos = (offset + torch.arange(t, device=device))[:, None]
            mask = q_pos >= torch.arange(s, device=device)[None, :]  # (t, s)
        if padding is not None:
            pad = padding[:, None, None, :].bool()  # (B, 1, 1, s)
            mask = pad if mask is None else mask & pad
        return mask


def _fused_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, groups: int) -> Tensor:
    """Attention written out, for compiled static-cache steps on the CPU: Inductor fuses it into one kernel,
    where the CPU's flash-attention kernel pays its setup for a handful of queries over the whole buffer
    (BENCHMARKS.md, "generation through static caches")."""
    if groups > 1:
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    scores = (q.float() @ k.float().transpose(-1, -2)) * q.shape[-1] ** -0.5
    weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
    return (weights @ v.float()).type_as(q)


def fuse_qkv_keys(tensors: dict[str, Tensor], wanted) -> None:
    """Rename, in place, weights saved with separate `q` and `kv` projections (before the fused
    `qkv`) to the fused ones, for each fused key in `wanted`."""
    for key in list(tensors):
        m = re.fullmatch(r"((?:.*\.)?)q\.(weight|bias)", key)
        if m and f"{m[1]}kv.{m[2]}" in tensors and f"{m[1]}qkv.{m[2]}" in wanted:
            tensors[f"{m[1]}qkv.{m[2]}"] = torch.cat([tensors.pop(key), tensors.pop(f"{m[1]}kv.{m[2]}")])


def _fuse_qkv_weights(module: Attention, state_dict: dict, prefix: str, *args) -> None:
    if module.kv_dim == module.dim:
        fuse_qkv_keys(state_dict, {f"{prefix}qkv.weight", f"{prefix}qkv.bias"})


class SwiGLU(nn.Module):
    """Gated feed-forward layer: W2(silu(W1 x) * W3 x)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate_up = nn.Linear(dim, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class MoE(nn.Module):
    """Top-k mixture of SwiGLU experts with the Switch-Transformer load-balancing loss.

    Expert weights are batched tensors; tokens are sorted by expert into padded groups and run
    through all experts at once with `bmm`. A forward leaves in `self.aux_loss`
    E * sum_e f_e * P_e (f_e: share of routed slots, P_e: mean router probability), which is 1 for a
    perfectly balanced router; whoever ran the forward takes it at once with `pop_aux_loss(module)`.
    """

    def __init__(self, dim: int, hidden: int, experts: int, top_k: int = 2):
        super().__init__()
        if not 1 <= top_k <= experts:
            raise ValueError(f"top_k {top_k} must be between 1 and experts {experts}")
        self.experts, self.top_k = experts, top_k
        self.router = nn.Linear(dim, experts, bias=False)
        self.gate_up = nn.Parameter(torch.empty(experts, dim, 2 * hidden))
        self.down = nn.Parameter(torch.empty(experts, hidden, dim))
        nn.init.uniform_(self.gate_up, -dim ** -0.5, dim ** -0.5)  # nn.Linear's default range
        nn.init.uniform_(self.down, -hidden ** -0.5, hidden ** -0.5)
        self.aux_loss: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        probs = self.router(x).float().softmax(dim=-1)  # (N, E)
        weights, chosen = probs.topk(self.top_k, dim=-1)  # (N, k)
        weights = (weights / weights.sum(dim=-1, keepdim=True)).to(x.dtype)

        share = torch.bincount(chosen.flatten(), minlength=self.experts).float() / chosen.numel()
        self.aux_loss = self.experts * (share * probs.mean(dim=0)).sum()

        # Sort the N*k (token, expert) slots by expert; a slot's rank is its row in its group.
        expert, order = chosen.flatten().sort(stable=True)
        token = order // self.top_k
        counts = torch.bincount(expert, minlength=self.experts)
        starts = counts.cumsum(0) - counts
        rank = torch.arange(expert.numel(), device=x.device) - starts[expert]
        groups = x.new_zeros(self.experts, int(counts.max()), shape[-1])
        groups[expert, rank] = x[token]

        gate, up = torch.bmm(groups, self.gate_up).chunk(2, dim=-1)
        y = torch.bmm(F.silu(gate) * up, self.down)  # (E, capacity, dim)
        slots = y[expert, rank] * weights.flatten()[order, None]
        return torch.zeros_like(x).index_add_(0, token, slots).view(shape)


def pop_aux_loss(module: nn.Module) -> Tensor | None:
    """Sum of the load-balancing losses the MoEs inside `module` left at their last forward, taken
    away (so no loss outlives the call that made it); None when none ran."""
    losses = []
    for m in module.modules():
        if isinstance(m, MoE) and m.aux_loss is not None:
            losses.append(m.aux_loss)
            m.aux_loss = None
    return torch.stack(losses).sum() if losses else None


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attn(norm x) [+ cross-attn(norm x, context)] + mlp(norm x).

    The mlp is SwiGLU, or a top-k `MoE` of SwiGLU experts when `experts` > 0.
    """

    def __init__(self, dim: int, heads: int, hidden: int, kv_heads: int | None = None,
                 causal: bool = False, rotary: bool = True, cross: bool = False,
                 experts: int = 0, top_k: int = 2, dropout: float = 0.0):
        super().__init__()
        self.attn_norm = RMSNorm(dim)
        self.attn = Attention(dim, heads, kv_heads, causal=causal, rotary=rotary, dropout=dropout)
        self.cross_norm = RMSNorm(dim) if cross else None
        self.cross = Attention(dim, heads, kv_heads, rotary=False, dropout=dropout) if cross else None
        self.mlp_norm = RMSNorm(dim)
        self.mlp = MoE(dim, hidden, experts, top_k) if experts else SwiGLU(dim, hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None, cache: KVCache | None = None,
                context: Tensor | None = None, context_mask: Tensor | None = None) -> Tensor:
        x = x + self.drop(self.attn(self.attn_norm(x), mask=mask, cache=cache))
        if self.cross is not None and context is not None:
            x = x + self.drop(self.cross(self.cross_norm(x), context=context, mask=context_mask))
        return x + self.drop(self.mlp(self.mlp_norm(x)))
