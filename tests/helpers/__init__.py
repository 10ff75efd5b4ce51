"""What the tests share besides fixtures: a signed-recipe workspace's types, small recipes,
recorded catalog runs, a headless browser, and the hardening scenarios (`harden/`, which
`bench/hardening.py` runs at scale through `tests/hardening/test_guarantees.py`).

Test modules import from here and from `compressgate`, never from another test module or from
`conftest.py` (tests/test_layout.py holds this); `conftest.py` turns these into fixtures.
"""
