"""What every section model of the search-space file shares: the strict base and the value ranges.

Strict means an unknown key, a wrong type or ``.inf`` / ``.nan`` is refused where it is written, and a
validated section is frozen (it is hashed into the sweep id, so nothing may change it afterwards).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

MAX_CONFIGS = 10_000  # configurations one file may expand to (grid arms + grid-sampler points); the
# paper's whole ablation is 33; a product of 1e6 would take gigabytes before anything runs
MAX_SEED = 2**32 - 1  # numpy's seed range (torch takes more); a larger seed overflows in the generator
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]


class Section(BaseModel):
    """Base of every section model: unknown keys refused, frozen, finite floats only."""

    # allow_inf_nan=False: `.inf` / `.nan` in any float field (magnification, cpu_per_fold, beta, ranges)
    # would pass `gt=0` and turn into NaN data or a crash after Ray starts
    model_config = ConfigDict(extra="forbid", strict=False, frozen=True, allow_inf_nan=False)
