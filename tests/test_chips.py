"""The chip catalog: data with a source per row, and H100-equivalents."""

from __future__ import annotations

import subprocess
import sys

import pytest

from redline.compute import H100E_TFLOPS, Chip, get_chip, h100e, load_catalog, parse_catalog
from redline.errors import MalformedInput

#: Dense BF16 TFLOP/s per chip from the vendors' data sheets (V100: FP16 tensor, no BF16).
EXPECTED = {
    "H100 SXM": 989, "H100 PCIe": 756, "H200": 989, "B200": 2250, "GB200": 2500, "A100": 312, "V100": 125,
    "TPU v4": 275, "TPU v5e": 197, "TPU v5p": 459, "TPU v6e": 918, "MI300X": 1307, "MI325X": 1307,
    "Gaudi 3": 1835, "L40S": 362, "H800": 989, "H20": 148, "A800": 312,
}

HEADER = "chip,vendor,bf16_dense_tflops,source\n"


def test_catalog_loads_with_expected_figures() -> None:
    catalog = load_catalog()
    for name, tflops in EXPECTED.items():
        assert name in catalog, name
        assert catalog[name].bf16_dense_tflops == tflops, name
        assert catalog[name].chip == name
    assert set(catalog) >= set(EXPECTED)


def test_every_row_names_its_source() -> None:
    for chip in load_catalog().values():
        assert chip.vendor in {"NVIDIA", "AMD", "Google", "Intel"}, chip
        assert len(chip.source) > 20, chip
    assert "FP16" in get_chip("V100").source and "no BF16" in get_chip("V100").source
    assert "Trillium" in get_chip("TPU v6e").source
    assert "per" in get_chip("GB200").source and "GPU" in get_chip("GB200").source


def test_h100e() -> None:
    assert H100E_TFLOPS == 989.0 == get_chip("H100 SXM").bf16_dense_tflops
    assert h100e("H100 SXM", 1) == 1.0
    assert h100e("H100 SXM", 100_000) == 100_000.0
    assert h100e("B200", 8) == pytest.approx(8 * 2250 / 989)
    assert h100e("A100", 1000) == pytest.approx(315.47, abs=0.01)
    assert h100e("TPU v5p", 8960) == pytest.approx(4158.3, abs=0.1)
    assert h100e("H200", 0) == 0.0
    assert get_chip("MI300X").h100e == pytest.approx(1307 / 989)
    assert get_chip("H100 SXM").peak_flop_per_s == 989e12


def test_unknown_chip_rejected_by_name() -> None:
    with pytest.raises(MalformedInput, match="unknown chip 'H1000'"):
        h100e("H1000", 1)
    with pytest.raises(MalformedInput, match="unknown chip 'h100 sxm'"):
        get_chip("h100 sxm")  # names are exact


@pytest.mark.parametrize("count", [-1, True, 1.5, "8"])
def test_bad_count_rejected(count: object) -> None:
    with pytest.raises(MalformedInput, match="chip count"):
        h100e("H100 SXM", count)  # type: ignore[arg-type]


def test_catalog_is_cached_and_callers_cannot_change_it() -> None:
    first = load_catalog()
    first["H100 SXM"] = Chip("H100 SXM", "NVIDIA", 1.0, "tampered")
    del first["A100"]
    again = load_catalog()
    assert again["H100 SXM"].bf16_dense_tflops == 989 and "A100" in again
    with pytest.raises(AttributeError):
        again["H200"].bf16_dense_tflops = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(("text", "needle"), [
    ("", "header"),
    ("chip,vendor,tflops,source\n", "header"),
    (HEADER + "X1,Acme,100\n", "line 2: expected 4 columns"),
    (HEADER + "X1,Acme,lots,datasheet\n", "line 2 (chip 'X1'): bf16_dense_tflops 'lots'"),
    (HEADER + "X1,Acme,-5,datasheet\n", "chip 'X1'"),
    (HEADER + "X1,Acme,0,datasheet\n", "chip 'X1'"),
    (HEADER + "X1,Acme,nan,datasheet\n", "chip 'X1'"),
    (HEADER + "X1,Acme,inf,datasheet\n", "chip 'X1'"),
    (HEADER + "X1,Acme,100,\n", "chip 'X1'): source is empty"),
    (HEADER + "X1,,100,datasheet\n", "vendor is empty"),
    (HEADER + "X1,Acme,100,a\nX2,Acme,100,b\nX1,Acme,200,c\n", "line 4 (chip 'X1'): duplicate"),
    (HEADER + " X1,Acme,100,datasheet\n", "chip name"),
    (HEADER + ",Acme,100,datasheet\n", "chip name"),
    (HEADER + "\n", "line 2: empty row"),
    (HEADER + 'X1,Acme,100,"unterminated\n', "not valid CSV"),
])
def test_malformed_catalog_rows_named(text: str, needle: str) -> None:
    with pytest.raises(MalformedInput) as info:
        parse_catalog(text, what="test.csv")
    assert needle in str(info.value)
    assert "test.csv" in str(info.value)


def test_parse_catalog_accepts_a_valid_file() -> None:
    catalog = parse_catalog(HEADER + 'X1,Acme,123.5,"Acme X1 data sheet, p. 3"\n')
    assert catalog == {"X1": Chip("X1", "Acme", 123.5, "Acme X1 data sheet, p. 3")}


def test_compute_package_is_import_light() -> None:
    script = ("import sys, redline.compute\n"
              "print([m for m in ('torch', 'numpy', 'pydantic', 'redline.statements') if m in sys.modules])\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"
