"""Grid carbon intensity: what turns a trial's energy into its emissions, and where the figure came from.

``co2_g`` = energy (J) / 3.6e6 J per kWh × intensity (g CO2 per kWh). That is all it
counts: no embodied carbon of the hardware, no hourly variation of the grid.
The intensity is given in the search file (``carbon: {intensity_g_per_kwh: 56}``),
looked up by region in the offline table ``carbon.yaml`` shipped with
greentune (``carbon: {region: FR}``; each row cites its source and year), or,
with neither, the table's default, labelled as such in ``carbon_source``.

>>> intensity(region="FR")
Intensity(g_per_kwh=56, source='FR: Ember, Yearly electricity data (France), 2023')
>>> grams(3.6e6, intensity(g_per_kwh=100))
100.0
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import yaml

TABLE = Path(__file__).with_name("carbon.yaml")
J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class Intensity:
    """Grams of CO2 per kWh, and the words that say where the number came from (``carbon_source``)."""

    g_per_kwh: float
    source: str

    def as_config(self) -> dict[str, Any]:
        return {"g_per_kwh": self.g_per_kwh, "source": self.source}


@lru_cache(maxsize=1)
def table() -> Mapping[str, Any]:
    """The shipped table: ``{"default": REGION, "regions": {REGION: {g_per_kwh, source, year}}}``."""
    return yaml.safe_load(TABLE.read_text())


def regions() -> list[str]:
    return list(table()["regions"])


def intensity(region: str | None = None, g_per_kwh: float | None = None) -> Intensity:
    """The intensity given (``g_per_kwh``), a region's from the table, or the table's default, labelled "default"."""
    if g_per_kwh is not None:
        return Intensity(g_per_kwh, "given in the search file")
    if region is None:
        default = table()["default"]
        return Intensity(table()["regions"][default]["g_per_kwh"], f"default ({_cite(default)})")
    key = region.upper()
    if key not in table()["regions"]:
        raise ValueError(f"carbon.region {region!r} is not in greentune's table; valid: {', '.join(regions())} "
                         "(or give carbon: {intensity_g_per_kwh: N})")
    return Intensity(table()["regions"][key]["g_per_kwh"], _cite(key))


def _cite(region: str) -> str:
    row = table()["regions"][region]
    return f"{region}: {row['source']}, {row['year']}"


def grams(energy_j: float, of: Intensity) -> float:
    """The CO2 in grams of ``energy_j`` joules at the intensity ``of``."""
    return energy_j / J_PER_KWH * of.g_per_kwh
