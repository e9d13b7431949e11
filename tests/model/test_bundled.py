"""ase_unimat.model.bundled: named models and the reference set shipped beside a model."""

from __future__ import annotations

from types import SimpleNamespace

from ase_unimat.model.bundled import DEFAULT_MODEL, REFERENCE_FILE, model_reference, resolve_model_path


def test_model_reference_is_the_file_beside_the_model(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"")
    assert model_reference(tmp_path) is None  # a model without a shipped reference
    (tmp_path / REFERENCE_FILE).write_bytes(b"")
    assert model_reference(tmp_path) == tmp_path / REFERENCE_FILE
    assert model_reference(str(tmp_path / "model.pt")) == tmp_path / REFERENCE_FILE
    assert model_reference(SimpleNamespace(model_path=tmp_path / "model.pt")) == tmp_path / REFERENCE_FILE
    assert model_reference(tmp_path / "missing") is None
    assert model_reference(None) == resolve_model_path(DEFAULT_MODEL).parent / REFERENCE_FILE


def test_template_sources_use_the_models_reference(tmp_path):
    from ase_unimat.search.seed_registry import make_seed_sources

    (tmp_path / "model.pt").write_bytes(b"")
    (tmp_path / REFERENCE_FILE).write_bytes(b"")
    mixed = make_seed_sources("template", model=tmp_path)
    assert mixed.sources["template"].reference == tmp_path / REFERENCE_FILE
    given = make_seed_sources("template", model=tmp_path, template_reference="other.h5")
    assert given.sources["template"].reference == "other.h5"
    default = make_seed_sources("unimat-template")  # no model given: the bundled model's training set
    assert default.sources["unimat-template"].template_reference == model_reference(None)
