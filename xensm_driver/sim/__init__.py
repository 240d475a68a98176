"""Simulators for XAPI and the storage behind it (see DESIGN.md, ``sim/``).

``Simulator`` serves a XenServer pool's XAPI on loopback, ``SimControl``
drives its control plane from any process, and ``Fabric`` is the simulated
storage network shared with the array simulators.  Nothing here imports
from the rest of ``xensm_driver``.
"""

from .control import SimControl
from .fabric import Fabric
from .fabric import Lun
from .simulator import Simulator

__all__ = ['Fabric', 'Lun', 'SimControl', 'Simulator']
