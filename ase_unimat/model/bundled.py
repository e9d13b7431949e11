"""Where trained models live: ``models/<name>/model.pt`` in the repository or installed as ``ase_unimat._models``.

Torch-free, so the template index (search) can find the bundled training set without loading a network.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL = "unimat-mp20"
MODEL_FILE = "model.pt"


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
