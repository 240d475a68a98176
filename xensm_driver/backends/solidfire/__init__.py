"""The SolidFire family: one Element volume, one lvmoiscsi SR, one VDI per volume.

:mod:`.backend` is the back end, :mod:`.array` what its flows act on (the
array and the LUN's SR), :mod:`.flows` its flows.
"""

from xensm_driver.backends.solidfire.backend import SolidFireBackend

__all__ = ["SolidFireBackend"]
