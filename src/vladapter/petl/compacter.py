"""Compacter: adapters whose projections are PHM layers, ``W = sum_i A_i (x) B_i``.

With n = 2 each projection keeps n rule matrices ``A_i (n x n)`` (its own, not shared
across layers) and n full-rank factors ``B_i (in/n x out/n)``: about 1/n of a Linear.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from vladapter.errors import ConfigError
from vladapter.petl.adapter import AdapterConfig, Linear


class PHMLinear(nn.Module):
    """``y = x W + b`` with ``W (in, out) = sum_i kron(rules[i], factors[i])``."""

    def __init__(self, in_features: int, out_features: int, n: int = 2, zero: bool = False):
        super().__init__()
        if in_features % n or out_features % n:
            raise ConfigError(f"PHM dimension n={n} must divide both {in_features} and {out_features}")
        self.in_features, self.out_features, self.n = in_features, out_features, n
        self.rules = nn.Parameter(torch.empty(n, n, n))
        self.factors = nn.Parameter(torch.empty(n, in_features // n, out_features // n))
        self.bias = nn.Parameter(torch.zeros(out_features))
        nn.init.normal_(self.rules, std=0.01)
        for factor in self.factors.data:
            nn.init.xavier_uniform_(factor)
        if zero:  # W = 0 at the start; the rules stay non-zero so the factors get gradients
            nn.init.zeros_(self.factors)

    def weight(self) -> torch.Tensor:
        """The ``(in, out)`` matrix: kron(A, B)[a*p + c, b*q + d] = A[a, b] * B[c, d]."""
        w = torch.einsum("iab,icd->acbd", self.rules, self.factors)
        return w.reshape(self.in_features, self.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, x.reshape(-1, self.in_features), self.weight()).view(
            *x.shape[:-1], self.out_features)


@dataclass(frozen=True)
class CompacterConfig(AdapterConfig):
    """An :class:`AdapterConfig` whose projections are :class:`PHMLinear` (``phm_dim`` = n)."""

    method: ClassVar[str] = "compacter"
    phm_dim: int = 2

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.phm_dim, int) or self.phm_dim < 1:
            raise ConfigError(f"compacter phm_dim must be a positive integer, got {self.phm_dim!r}")

    def make_linear(self, zero: bool = False) -> Linear:
        return lambda n_in, n_out: PHMLinear(n_in, n_out, self.phm_dim, zero=zero)
