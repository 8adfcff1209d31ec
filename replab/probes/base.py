"""The probe base class, the probe registry and the input checks every probe shares.

A probe is a scikit-learn estimator (``clone``, ``get_params``/``set_params``, ``Pipeline``,
``GridSearchCV``, ``cross_val_score``): its constructor stores the hyperparameters as given and
``fit`` validates them. It takes numpy arrays, torch tensors or store columns (``store[hook]``),
and records where its vector lives: the ``hook``, ``position`` and ``model`` it was fitted on
are provenance, not hyperparameters (``fit(X, y, hook=...)`` or the constructor set them;
``clone`` drops them), and travel with it into the saved files.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable, Mapping, Sequence
from importlib import import_module
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import clone as sk_clone
from sklearn.exceptions import NotFittedError

from replab.errors import DataError, ReplabError

Folds = Sequence[tuple[np.ndarray, np.ndarray]]

_PROBES: dict[str, Callable[[], "Probe"]] = {}
_BUILTIN = ("replab.probes.logistic", "replab.probes.meandiff", "replab.probes.ridge")


class _Registry(Mapping):
    """Read-only view of the registry that first imports the built-in probe modules (which register
    themselves), so it is complete however little of ``replab.probes`` has been imported."""

    def _all(self) -> dict[str, Callable[[], "Probe"]]:
        for module in _BUILTIN:
            import_module(module)
        return _PROBES

    def __getitem__(self, name: str) -> Callable[[], "Probe"]:
        return self._all()[name]

    def __iter__(self):
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


PROBES: Mapping[str, Callable[[], "Probe"]] = _Registry()
"""The probe registry: sweep name (``"logistic"``, ``"ridge"``, ``"meandiff"``, ``"meandiff-iid"``)
-> factory of an unfitted probe. Filled by ``Probe`` subclasses from their ``variants``."""


class ProbeNotFittedError(ReplabError, NotFittedError):
    """A probe was used before ``fit`` (also scikit-learn's ``NotFittedError``)."""


def probe_types() -> dict[str, type["Probe"]]:
    """Probe classes by ``kind`` (``"logistic"``, ``"ridge"``, ``"meandiff"``), from ``PROBES``."""
    out: dict[str, type[Probe]] = {}
    for factory in PROBES.values():
        cls = factory.func
        out.setdefault(cls.kind, cls)
    return out


def make_probe(spec: "str | Probe") -> "Probe":
    """A probe from a name in ``PROBES`` or a configured (unfitted) probe instance (cloned)."""
    if isinstance(spec, Probe):
        return spec.clone()
    if spec not in PROBES:
        raise DataError(f"Unknown probe {spec!r}; use one of {', '.join(PROBES)} or pass a probe instance.")
    return PROBES[spec]()


class FeatureTypeError(DataError, TypeError):
    """Activations that are not numbers (e.g. an object array holding dicts): a ``DataError`` and,
    as scikit-learn raises for this case, a ``TypeError``."""


def as_features(X: Any, what: str = "X") -> torch.Tensor:
    """Coerce activations to a finite float32 ``[n, d]`` tensor (a torch input keeps its device).

    Raises:
        DataError: not 2-D, empty, or holding NaN/inf (the first bad row is named).
    """
    if isinstance(X, torch.Tensor):
        if X.is_complex():
            raise DataError(f"Complex data not supported: {what} is complex; probes read real activations.")
        t = X.detach().to(torch.float32)
    elif hasattr(X, "toarray"):
        raise DataError(f"{what} is a sparse matrix; probes need dense activations: pass {what}.toarray().")
    else:
        arr = np.asarray(X)
        if arr.dtype.kind == "c":
            raise DataError(f"Complex data not supported: {what} is complex; probes read real activations.")
        try:
            t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        except (TypeError, ValueError) as exc:
            raise FeatureTypeError(f"{what} is not a numeric array ({exc}); pass activations as [n_rows, d].") from None
    if t.ndim != 2:
        raise DataError(f"{what} has shape {tuple(t.shape)}; expected 2-D [n_rows, d] activations. Reshape your "
                        "data (one row per activation vector).")
    if t.shape[0] == 0 or t.shape[1] == 0:
        part = "sample" if t.shape[0] == 0 else "feature"
        raise DataError(f"{what} is empty: 0 {part}(s) (shape={tuple(t.shape)}) while a minimum of 1 is required; "
                        "probes need at least one row and one feature.")
    if not bool(torch.isfinite(t.sum(dim=1)).all()):  # cheap pass: NaN/inf propagate into row sums
        bad = torch.nonzero(~torch.isfinite(t).all(dim=1))[:, 0]
        if bad.numel():  # (a row sum can also overflow while every value is finite)
            raise DataError(
                f"{what} contains NaN or inf in {bad.numel()} row(s), first at row {int(bad[0])}; "
                "drop those rows or re-capture the activations."
            )
    return t


def _as_1d(y: Any, n: int, what: str) -> np.ndarray:
    if y is None:
        raise DataError(f"The probe requires y to be passed, but the target y is None; pass one {what} per row.")
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:  # a column vector, as scikit-learn accepts (with the same warning)
        import warnings

        from sklearn.exceptions import DataConversionWarning

        warnings.warn(f"A column-vector y was passed when a 1d array was expected ({what} [n, 1] was "
                      "flattened to [n]).", DataConversionWarning, stacklevel=3)
        arr = arr.ravel()
    if arr.ndim != 1:
        raise DataError(f"{what} has shape {arr.shape}; expected one value per row (1-D).")
    if arr.shape[0] != n:
        raise DataError(f"{what} has {arr.shape[0]} entries but X has {n} rows; pass one {what} per activation row.")
    return arr


def encode_labels(y: Any, n: int, what: str = "y") -> tuple[np.ndarray, np.ndarray]:
    """Class labels -> ``(classes [K] sorted, index [n] int64)``.

    Raises:
        DataError: wrong length, missing values, or fewer than two classes.
    """
    arr = _as_1d(y, n, what)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise DataError(f"{what} contains NaN or inf; every row needs a class label.")
    if arr.dtype == object and any(v is None or (isinstance(v, float) and not np.isfinite(v)) for v in arr):
        raise DataError(f"{what} contains missing labels (None/NaN); every row needs a class label.")
    if arr.dtype.kind in "UO":
        blank = [i for i, v in enumerate(arr) if isinstance(v, str) and not v.strip()]
        if blank:
            raise DataError(f"{what} has {len(blank)} blank label(s), first at row {blank[0]}; fill in or drop "
                            "those rows.")
    if arr.dtype.kind == "f" and not np.array_equal(arr, np.round(arr)):
        raise DataError(f"Unknown label type: {what} holds continuous values; a classifier needs class labels "
                        "(use RidgeProbe / probes=['ridge'] for numeric targets).")
    classes, index = np.unique(arr, return_inverse=True)
    if len(classes) < 2:
        raise DataError(
            f"{what} has a single class (1 class, {classes[0]!r} for all {n} rows); a classifier needs at least "
            "two. Check the label column or the prompt set."
        )
    return classes, index.astype(np.int64)


def as_values(y: Any, n: int, what: str = "y") -> np.ndarray:
    """Numeric targets -> float64 ``[n]``.

    Raises:
        DataError: wrong length, non-numeric, NaN/inf, or constant.
    """
    arr = _as_1d(y, n, what)
    if n < 2:
        raise DataError(f"{what} has 1 sample (n_samples=1); a regression probe needs at least two rows.")
    try:
        arr = arr.astype(np.float64)
    except (TypeError, ValueError):
        raise DataError(
            f"{what} is not numeric; a regression probe needs a number per row (e.g. target=\"target\")."
        ) from None
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise DataError(f"{what} contains NaN or inf, first at row {bad}; drop those rows.")
    if np.ptp(arr) == 0:
        raise DataError(f"{what} is constant ({arr[0]}); a regression probe needs varying targets.")
    return arr


def unit(v: np.ndarray) -> np.ndarray:
    """``v / ||v||`` as float32 (raises on a zero vector)."""
    v = np.asarray(v, dtype=np.float64)
    norm = np.linalg.norm(v)
    if not np.isfinite(norm) or norm == 0:
        raise DataError("The probe's weight vector is zero; the probe learned nothing (check the labels).")
    return (v / norm).astype(np.float32)


class Probe(abc.ABC):
    """Base class: provenance (``hook``, ``position``, ``model``), checks, save/load, registry.

    Subclasses set ``kind`` (saved-file type), ``task`` (``"classification"`` or
    ``"regression"``), ``metric`` (what ``score`` returns) and ``variants`` (registry name ->
    constructor keywords; default ``{kind: {}}``), list a scikit-learn mixin and
    ``BaseEstimator`` after ``Probe``, store their constructor arguments unchanged, and implement
    ``fit``, ``predict``, ``direction``, ``cross_validate`` and the tensor state hooks.
    """

    kind: ClassVar[str] = ""
    task: ClassVar[str] = "classification"
    metric: ClassVar[str] = "accuracy"
    variants: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    # provenance: class-level defaults, so an unfitted probe holds only its hyperparameters
    hook: str | None = None
    position: str | None = None
    model: str | None = None

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.kind:
            for name, params in (cls.variants or {cls.kind: {}}).items():
                _PROBES[name] = functools.partial(cls, **params)

    # ---- what subclasses provide ---------------------------------------------------------
    @abc.abstractmethod
    def fit(self, X, y, *, hook: str | None = None, position: str | None = None, model: str | None = None) -> "Probe":
        """Fit on ``X`` ``[n, d]`` and ``y`` ``[n]``, recording where the activations came from."""

    @abc.abstractmethod
    def predict(self, X) -> np.ndarray:
        """Predicted labels (classifiers) or values (regressors) ``[n]``."""

    def score(self, X, y) -> float:
        """``metric`` on ``(X, y)``: accuracy for classifiers, R^2 for regressors."""
        pred = self.predict(X)
        if self.task == "regression":
            from replab.probes.ridge import r2

            return r2(as_values(y, len(pred)), pred)
        truth = np.asarray(y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y)
        if truth.shape != pred.shape:
            raise DataError(f"y has {truth.shape[0] if truth.ndim else 0} entries for {pred.shape[0]} rows of X.")
        return float(np.mean(pred == truth))

    @property
    def direction(self) -> np.ndarray:
        """Unit vector ``[d]`` in the original (unstandardised) activation coordinates: the
        normalised weight vector ``coef_`` (classifiers with several weight rows override it)."""
        self._check_fitted()
        return unit(self.coef_)

    @property
    def directions(self) -> np.ndarray:
        """Unit direction per weight row ``[k, d]``: ``direction[None]`` unless the probe has several."""
        return self.direction[None]

    @abc.abstractmethod
    def cross_validate(self, X: torch.Tensor, targets: Mapping[str, np.ndarray], folds: Folds, *,
                       refit=None) -> dict[str, np.ndarray]:
        """Test-fold scores ``[n_folds]`` for each target on the same folds (hyperparameters of ``self``).

        Args:
            X: ``[n, d]`` float32 activations (``as_features``).
            targets: name -> ``[n]`` labels or values (e.g. task, control, shuffled).
            folds: train/test index pairs shared by every target.
            refit: optional ``[n]`` labels to also fit ``self`` on all rows (sharing work with CV).
        """

    def cross_validate_stack(self, Xs: torch.Tensor, targets: Mapping[str, np.ndarray], folds: Folds, *,
                             refit=None, progress: Callable[[int], None] | None = None,
                             ) -> list[tuple[dict[str, np.ndarray], "Probe"]]:
        """``cross_validate`` on each feature set of a stack ``[L, n, d]`` (e.g. layers).

        Returns one ``(scores, probe)`` per feature set, the probe a clone of ``self`` (fitted on
        all rows when ``refit`` is given). Probes that can batch the feature sets (logistic)
        override this; the default runs them one at a time.

        ``progress`` is called with the number of fits (feature set x fold x target, and each
        refit) that just finished; the calls add up to ``L x (folds x targets + refit)``.
        """
        out = []
        for X in Xs:
            probe = self.clone()
            out.append((probe.cross_validate(X, targets, folds, refit=refit), probe))
            if progress is not None:
                progress(len(folds) * len(targets) + (refit is not None))
        return out

    @abc.abstractmethod
    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Fitted tensors and JSON-able fitted attributes (classes, alpha, ...)."""

    @abc.abstractmethod
    def _restore(self, tensors: Mapping[str, np.ndarray], fitted: Mapping[str, Any]) -> None:
        """Inverse of ``_state`` (used by ``load``)."""

    # ---- shared --------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """Short label used in sweep tables and file names."""
        return self.kind

    def params(self) -> dict[str, Any]:
        """Hyperparameters (``get_params(deep=False)``: the constructor arguments), JSON-able."""
        return self.get_params(deep=False)

    def clone(self) -> "Probe":
        """An unfitted probe with the same hyperparameters (``sklearn.base.clone``)."""
        return sk_clone(self)

    @property
    def meta(self) -> dict[str, Any]:
        """Free-form provenance saved with the probe (layer, CV score, model hash, ...)."""
        return self.__dict__.setdefault("_meta", {})

    @meta.setter
    def meta(self, value: Mapping[str, Any]) -> None:
        self._meta = dict(value)

    @property
    def d_(self) -> int | None:
        """Activation width the probe was fitted on (``n_features_in_``), ``None`` before ``fit``."""
        return getattr(self, "n_features_in_", None)

    @d_.setter
    def d_(self, d: int) -> None:
        self.n_features_in_ = int(d)

    def _provenance(self, hook: str | None = None, position: str | None = None, model: str | None = None) -> None:
        if hook is not None:
            self.hook = hook
        if position is not None:
            self.position = position
        if model is not None:
            self.model = model

    def _check_fitted(self) -> None:
        if self.d_ is None:
            raise ProbeNotFittedError(f"{type(self).__name__} is not fitted yet; call .fit(X, y) first.")

    def _features(self, X) -> torch.Tensor:
        self._check_fitted()
        t = as_features(X)
        if t.shape[1] != self.d_:
            raise DataError(
                f"X has {t.shape[1]} features, but {type(self).__name__} is expecting {self.d_} features as input "
                f"({t.shape[1]} features but this probe was fitted on {self.d_}, from hook {self.hook!r}); pass "
                "activations from the same hook."
            )
        return t

    def fit_store(self, store, hook: str, target: str = "label") -> "Probe":
        """Fit on ``store[hook]`` against a metadata column, recording hook, position and model."""
        meta = store.metadata
        if target not in meta.columns:
            raise DataError(
                f"The store's metadata has no column {target!r} (columns: {', '.join(map(str, meta.columns))}); "
                "pick one of those as target."
            )
        manifest = getattr(store, "manifest", {}) or {}
        self.fit(store[hook], meta[target].to_numpy(), hook=hook, position=manifest.get("positions"),
                 model=manifest.get("model"))
        if manifest.get("model_hash"):
            self.meta["model_hash"] = manifest["model_hash"]
        return self

    def save(self, path) -> Path:
        """Write ``<path>.safetensors`` + ``<path>.json`` (no pickle); returns the JSON path."""
        from replab.probes.io import save_probe

        return save_probe(self, path)

    @classmethod
    def load(cls, path) -> "Probe":
        """Read a probe written by ``save`` (either file of the pair, or their common stem)."""
        from replab.probes.io import load_probe

        probe = load_probe(path)
        if cls is not Probe and not isinstance(probe, cls):
            raise DataError(f"{path} holds a {type(probe).__name__}, not a {cls.__name__}; use replab.probes.load.")
        return probe

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        where = f", hook={self.hook!r}" if self.hook else ""
        return f"{type(self).__name__}({args}{where})"
