"""Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))), mean and std over splits.

The splits are consecutive chunks as in the original code (generated images are i.i.d.). With the
TF-ported Inception the logits are the 1008-way layer without its bias, as the original TensorFlow code
multiplies pool3 by the softmax weights only.
"""

from __future__ import annotations

import numpy as np
import torch

from smallgan.errors import SmallganError


def inception_score(logits: np.ndarray | torch.Tensor, splits: int = 10) -> tuple[float, float]:
    logp = torch.log_softmax(torch.as_tensor(logits).to("cpu", torch.float64), dim=1)
    n = logp.shape[0]
    if n < splits:
        raise SmallganError(f"Inception Score with {splits} splits needs at least {splits} images, got {n}")
    scores = []
    for chunk in torch.tensor_split(logp, splits):
        log_py = torch.logsumexp(chunk, dim=0) - np.log(chunk.shape[0])  # log of the marginal p(y)
        kl = (chunk.exp() * (chunk - log_py)).sum(dim=1).mean()
        scores.append(float(torch.exp(kl)))
    return float(np.mean(scores)), float(np.std(scores))
