"""BOP Challenge 2019 metrics: VSD, MSSD, MSPD and their average recall (BOPAR), matching the BOP toolkit."""
from metrics.bop.ar import BOPAR
from metrics.bop.model import ObjectModel

__all__ = ["BOPAR", "ObjectModel"]
