"""Dataset readers, one module per dataset family; importing this package registers them."""
from importlib import import_module

_READERS = ("coco", "crowdpose", "mpii", "bop", "h36m", "mpi_inf_3dhp", "mp100")

for _name in _READERS:
    try:
        import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as e:  # a reader still being written (only its own module may be missing)
        if e.name != f"{__name__}.{_name}":
            raise
