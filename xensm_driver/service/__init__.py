"""The standalone volume service: the driver's verbs without OpenStack.

:class:`Manager` loads back ends from an ini file and runs the driver's verbs;
:class:`Inventory` records volumes, snapshots and groups in SQL. The
``xensm`` command is a thin layer of argument parsing and output over these.
"""

from xensm_driver.service.inventory import Inventory
from xensm_driver.service.manager import Manager

__all__ = ["Inventory", "Manager"]
