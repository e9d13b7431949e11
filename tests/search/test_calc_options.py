"""Calculator options: KEY=VALUE parsing, TOML tables, typed checks, and factories from the current directory."""

from __future__ import annotations

import pytest

from ase_unimat.search.calc_options import (
    CalcOptionError,
    check_options,
    parse_assignments,
    read_config,
    resolve_device,
)
from ase_unimat.search.calculators import CalculatorError, check_calculator_spec, get_calculator


def test_assignments_keep_text_and_fill_tables():
    parsed = parse_assignments(["ecutwfc=30", "pseudopotentials.Si=Si.pz-vbc.UPF", "kpts = 4x4x2"])
    assert parsed == {"ecutwfc": "30", "pseudopotentials": {"Si": "Si.pz-vbc.UPF"}, "kpts": "4x4x2"}
    with pytest.raises(CalcOptionError, match="KEY=VALUE"):
        parse_assignments(["ecutwfc"])


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"ecutwfc": "30"}, {"ecutwfc": 30.0}),
        ({"kpts": "4x4x2"}, {"kpts": [4, 4, 2]}),
        ({"kpts": 3}, {"kpts": [3, 3, 3]}),
        ({"kpts": [2, 2, 1]}, {"kpts": [2, 2, 1]}),
        ({"smearing": "none"}, {"smearing": None}),
        ({"smearing": "0.02"}, {"smearing": 0.02}),
        ({"socket": "false"}, {"socket": False}),
        ({"socket": True, "socket_timeout": "600"}, {"socket": True, "socket_timeout": 600.0}),
        (
            {"pseudopotentials": "Si=Si.pz-vbc.UPF,C=C.pz-rrkjus.UPF"},
            {"pseudopotentials": {"Si": "Si.pz-vbc.UPF", "C": "C.pz-rrkjus.UPF"}},
        ),
    ],
)
def test_espresso_options_are_typed(options, expected):
    assert check_options("espresso", options) == expected


def test_unknown_key_lists_the_known_ones_in_one_line():
    with pytest.raises(CalcOptionError) as err:
        check_options("chgnet", {"ecutwfc": "30"})
    message = str(err.value)
    assert "ecutwfc" in message and "device, model, threads" in message and "\n" not in message
    with pytest.raises(CalcOptionError, match="known: none"):
        check_options("emt", {"device": "cpu"})


@pytest.mark.parametrize(
    ("spec", "options", "match"),
    [
        ("espresso", {"ecutwfc": "-3"}, "positive"),
        ("espresso", {"kpts": "4x4"}, "three"),
        ("espresso", {"kpts": "2", "kspacing": "0.3"}, "not both"),
        ("espresso", {"socket": "maybe"}, "socket=.*true or false"),
        ("espresso", {"socket_timeout": "0"}, "socket_timeout=.*positive"),
        ("chgnet", {"device": "gpu"}, "auto, cpu, cuda"),
    ],
)
def test_bad_values_name_the_key(spec, options, match):
    with pytest.raises(CalcOptionError, match=match):
        check_options(spec, options)


def test_factories_take_any_options_and_devices_resolve():
    assert check_options("mymodule:factory", {"anything": "1"}) == {"anything": "1"}
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda")


def test_config_file_tables(tmp_path):
    path = tmp_path / "calc.toml"
    path.write_text(
        'device = "cpu"\n[refine]\necutwfc = 25\nkpts = [3, 3, 3]\n[refine.pseudopotentials]\nSi = "Si.pz-vbc.UPF"\n'
    )
    calc, refine = read_config(path)
    assert calc == {"device": "cpu"}
    assert check_options("espresso", refine) == {
        "ecutwfc": 25.0,
        "kpts": [3, 3, 3],
        "pseudopotentials": {"Si": "Si.pz-vbc.UPF"},
    }
    for table in ("calculator", "calc"):  # the option's name, and its short alias
        path.write_text(f'[{table}]\ndevice = "cpu"\n[refine]\necutwfc = 25\n')
        assert read_config(path) == ({"device": "cpu"}, {"ecutwfc": 25})
    path.write_text('[calculator]\ndevice = "cpu"\n[calc]\ndevice = "cuda"\n')
    with pytest.raises(CalcOptionError, match="not both"):
        read_config(path)
    path.write_text("ecutwfc = = 3")
    with pytest.raises(CalcOptionError, match="cannot read"):
        read_config(path)


def test_factory_module_in_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / "localcalc_ok.py").write_text(
        "from ase.calculators.emt import EMT\n\ndef factory(**kw):\n    return EMT()\n\n"
        "def broken(**kw):\n    raise RuntimeError('no licence\\nfor this code')\n"
    )
    (tmp_path / "localcalc_bad.py").write_text("def factory(:\n")
    monkeypatch.chdir(tmp_path)
    check_calculator_spec("localcalc_ok:factory")
    assert type(get_calculator("localcalc_ok:factory")).__name__ == "EMT"
    with pytest.raises(CalculatorError, match="raised RuntimeError: no licence for this code"):
        get_calculator("localcalc_ok:broken")
    with pytest.raises(CalculatorError, match="SyntaxError") as err:
        check_calculator_spec("localcalc_bad:factory")
    assert "\n" not in str(err.value)
    with pytest.raises(CalculatorError, match="no localcalc_missing.py"):
        check_calculator_spec("localcalc_missing:factory")


def test_options_a_factory_does_not_take_are_refused_before_it_runs(tmp_path, monkeypatch):
    (tmp_path / "localcalc_opts.py").write_text(
        "from ase.calculators.emt import EMT\n\ndef factory(delay=0):\n    return EMT()\n"
    )
    monkeypatch.chdir(tmp_path)
    check_calculator_spec("localcalc_opts:factory", options={"delay": "1"})
    with pytest.raises(CalculatorError, match="does not take these options.*it takes: delay"):
        check_calculator_spec("localcalc_opts:factory", options={"ecutwfc": "30"})
