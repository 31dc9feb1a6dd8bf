"""tools/module_times.py: the time table of tests/README.md from `pytest --durations=0` lines."""

from tools.module_times import module_times, table

LOG = """============================= slowest durations =============================
90.50s setup    tests/test_e2e_a.py::test_one
20.25s call     tests/test_e2e_a.py::test_one
10.00s call     tests/test_e2e_a.py::test_two[x]
5.00s teardown tests/test_e2e_a.py::test_two[x]
1.00s call     tests/test_unit.py::test_three
0.00s setup    tests/test_unit.py::test_three
0.50s call     tests/test_unit.py::test_four[failed from the network]
0.50s call     tests/test_unit.py::test_four[failed from the disk]
======================== 5 passed in 128.00s (0:02:08) =========================
"""


def test_each_module_sums_its_tests_calls_setups_and_teardowns_slowest_first():
    assert module_times(LOG) == {"tests/test_e2e_a.py": (2, 125.75), "tests/test_unit.py": (3, 2.0)}


def test_the_table_has_a_row_a_module_and_the_sum():
    assert table(module_times(LOG)).splitlines() == [
        "| module | tests | seconds |", "| --- | ---: | ---: |",
        "| `tests/test_e2e_a.py` | 2 | 126 |", "| `tests/test_unit.py` | 3 | 2 |", "| all | 5 | 128 |"]
