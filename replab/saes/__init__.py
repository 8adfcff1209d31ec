"""Sparse autoencoders: standard, TopK, BatchTopK, JumpReLU and matching-pursuit SAEs.

::

    from replab import saes
    sae = saes.create("topk", d_in=256, d_sae=4096, k=32)
    result = saes.train(sae, store, hook="blocks.2.hook_resid_post", steps=5000, out="runs/x/sae-topk")
    saes.evaluate(sae, store, model=model)          # mse, fvu, l0, dead/dense, CE recovered, KL
    saes.analyze_features(sae, store, model=model, out="runs/x/sae-topk")
    sae.save("my_sae"); saes.load("my_sae")          # SAELens format (cfg.json + sae_weights.safetensors)
"""

from replab.saes import batchtopk, jumprelu, matching_pursuit, standard, synthetic, topk  # noqa: F401  (register)
from replab.saes.base import SAE, SAEConfig, TrainContext, TrainOutput
from replab.saes.batchtopk import BatchTopKConfig, BatchTopKSAE
from replab.saes.evaluate import evaluate
from replab.saes.features import analyze_features
from replab.saes.io import export, load, save
from replab.saes.jumprelu import JumpReLUConfig, JumpReLUSAE
from replab.saes.matching_pursuit import MatchingPursuitConfig, MatchingPursuitSAE
from replab.saes.registry import architectures, create
from replab.saes.standard import StandardConfig, StandardSAE
from replab.saes.topk import TopKConfig, TopKSAE
from replab.saes.train import TrainConfig, TrainResult, train

__all__ = [
    "create",
    "architectures",
    "train",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "analyze_features",
    "save",
    "load",
    "export",
    "synthetic",
    "SAE",
    "SAEConfig",
    "TrainContext",
    "TrainOutput",
    "StandardSAE",
    "StandardConfig",
    "TopKSAE",
    "TopKConfig",
    "BatchTopKSAE",
    "BatchTopKConfig",
    "JumpReLUSAE",
    "JumpReLUConfig",
    "MatchingPursuitSAE",
    "MatchingPursuitConfig",
]
