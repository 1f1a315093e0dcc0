"""`python -m bench research --grid models`: which CPU counts get a column, and the GPU row."""

from __future__ import annotations

import pytest

from bench.research import cpu_columns, gpu_note


@pytest.mark.parametrize(
    "spec, have, expected",
    [
        ("", 2, [1, 2]),
        ("", 16, [1, 2, 4, 8, 16]),
        ("", 12, [1, 2, 4, 8, 12]),  # every power of two, and all the CPUs
        ("1,4", 2, [1]),  # never more CPUs than the machine has
        ("8,2,2", 16, [2, 8]),
    ],
)
def test_a_column_for_each_cpu_count_available(spec: str, have: int, expected: list[int]) -> None:
    assert cpu_columns(spec, have) == expected


def test_the_gpu_row_says_why_it_has_no_figure() -> None:
    torch = pytest.importorskip("torch")
    assert gpu_note("cpu") is None
    if not torch.cuda.is_available():
        assert gpu_note("cuda") == "no GPU on this machine"
