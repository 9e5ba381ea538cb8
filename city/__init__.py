"""The city domain: catalogue, departments, jurisdictions, responsibility rules,
cases and their lifecycle, the working-time SLA clock, and the case store.

`city` imports nothing from the rest of xunjian; everything else builds on it.
A city adapts the system by editing the data files under ``city/data/``
(or a copy pointed to by ``XUNJIAN_CITY_DATA``), not the code. Load them all
with :func:`city.bundle.load_city`.
"""
