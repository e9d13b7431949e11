"""Where trained models live: ``models/<name>/model.pt`` in the repository or installed as ``ase_unimat._models``.

Torch-free, so the template index (search) can find the bundled training set without loading a network.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL = "unimat-mp-wide"
MODEL_FILE = "model.pt"
REFERENCE_FILE = "reference.h5"  # a model's training structures, beside its model.pt


def models_dirs() -> list[Path]:
    """Folders searched for named models: the repository's ``models/`` and the installed copy."""
    package = Path(__file__).resolve().parents[1]  # ase_unimat/
    return [d for d in (package.parent / "models", package / "_models") if d.is_dir()]


def resolve_model_path(model: str | Path | None) -> Path:
    """The checkpoint file behind a path (file or model folder) or a model name in ``models/``."""
    name = DEFAULT_MODEL if model is None else model
    candidates = [Path(name)]
    if model is None or not Path(name).exists():
        candidates += [d / str(name) for d in models_dirs()]
    for path in candidates:
        if path.is_file():
            return path
        if path.is_dir() and (path / MODEL_FILE).is_file():
            return path / MODEL_FILE
    if model is None:
        raise FileNotFoundError(
            f"no default model: models/{DEFAULT_MODEL}/{MODEL_FILE} does not exist yet; pass model= a "
            f"checkpoint file (.pt) or a model folder (containing {MODEL_FILE})"
        )
    raise FileNotFoundError(f"model {str(model)!r} not found: expected a .pt checkpoint, a folder with {MODEL_FILE}, "
                            f"or a model name in {[str(d) for d in models_dirs()]}")


def model_reference(model) -> Path | None:
    """``reference.h5`` beside a model (a name, a path, or a loaded model with ``model_path``), if it has one.

    The training structures shipped with a model: the template source's reference and the data of
    the ``spacegroup="auto"`` condition. None when the model has none (or cannot be found).
    """
    path = getattr(model, "model_path", None)
    if path is None and (model is None or isinstance(model, str | Path)):
        try:
            path = resolve_model_path(model)
        except FileNotFoundError:
            return None
    if path is None:
        return None
    reference = Path(path).parent / REFERENCE_FILE
    return reference if reference.is_file() else None
