"""Sparse autoencoders: standard, TopK, BatchTopK, JumpReLU and matching-pursuit SAEs.

::

    from replab import saes
    sae = saes.create("topk", d_in=256, d_sae=4096, k=32)
    result = saes.train(sae, store, hook="blocks.2.hook_resid_post", steps=5000, out="runs/x/sae-topk")
    saes.evaluate(sae, store, model=model)          # mse, fvu, l0, dead/dense, CE recovered, KL
    saes.analyze_features(sae, store, model=model, out="runs/x/sae-topk")
    sae.save("my_sae"); saes.load("my_sae")          # SAELens format (cfg.json + sae_weights.safetensors)
"""

from replab.lazy import lazy_exports

_EXPORTS = {
    "create": "replab.saes.registry",
    "architectures": "replab.saes.registry",
    "train": "replab.saes.train",
    "TrainConfig": "replab.saes.train",
    "TrainResult": "replab.saes.train",
    "evaluate": "replab.saes.evaluate",
    "analyze_features": "replab.saes.features",
    "save": "replab.saes.io",
    "load": "replab.saes.io",
    "export": "replab.saes.io",
    "SAE": "replab.saes.base",
    "SAEConfig": "replab.saes.config",
    "ARCH_CONFIGS": "replab.saes.config",
    "TrainContext": "replab.saes.base",
    "TrainOutput": "replab.saes.base",
    "StandardSAE": "replab.saes.standard",
    "StandardConfig": "replab.saes.config",
    "TopKSAE": "replab.saes.topk",
    "TopKConfig": "replab.saes.config",
    "BatchTopKSAE": "replab.saes.batchtopk",
    "BatchTopKConfig": "replab.saes.config",
    "JumpReLUSAE": "replab.saes.jumprelu",
    "JumpReLUConfig": "replab.saes.config",
    "MatchingPursuitSAE": "replab.saes.matching_pursuit",
    "MatchingPursuitConfig": "replab.saes.config",
}
__all__ = [*_EXPORTS, "synthetic"]
lazy_exports(__name__, _EXPORTS)
