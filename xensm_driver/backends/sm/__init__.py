"""The SM-native family: nfs, lvm, lvmoiscsi, lvmohba, netapp, equal.

:mod:`.backend` declares the six back ends (one table row each) and
:mod:`.flows` holds their flows.
"""

from xensm_driver.backends.sm.backend import EqualLogicBackend
from xensm_driver.backends.sm.backend import LVMBackend
from xensm_driver.backends.sm.backend import LVMoHBABackend
from xensm_driver.backends.sm.backend import LVMoISCSIBackend
from xensm_driver.backends.sm.backend import NetAppBackend
from xensm_driver.backends.sm.backend import NFSBackend
from xensm_driver.backends.sm.backend import SRBackend

__all__ = ["EqualLogicBackend", "LVMBackend", "LVMoHBABackend", "LVMoISCSIBackend",
           "NFSBackend", "NetAppBackend", "SRBackend"]
