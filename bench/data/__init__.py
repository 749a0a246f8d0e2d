"""Dataset readers, one module per dataset family; importing this package registers them."""
from importlib import import_module

_READERS = ("coco", "crowdpose", "mpii", "bop", "h36m", "mpi_inf_3dhp", "threedpw", "mp100")

for _name in _READERS:
    import_module(f"{__name__}.{_name}")
