"""Simulators for XAPI and the storage behind it (see DESIGN.md, ``sim/``).

Nothing here imports from the rest of ``xensm_driver``.
"""

from .fabric import Fabric
from .fabric import Lun

__all__ = ['Fabric', 'Lun']
