"""Configuration for a back end on the simulator's default storage.

The demo writes it for the ``xensm`` command, the functional tests and the
benchmarks build their drivers from it: one mapping from the simulator's
topology (``xensm-sim --print-topology``, ``/sim/topology``) to xensm
options. It imports nothing from the simulator, only reads its topology.
"""

from __future__ import annotations

from typing import Any


def backend_section(name: str, sr_type: str, url: str, username: str, password: str,
                    topology: dict[str, Any]) -> dict[str, str]:
    """A back-end section for ``sr_type`` on the simulator's default storage."""
    values = {
        "volume_driver": "xensm_driver.driver.XenAPISMDriver",
        "volume_backend_name": name,
        "xenapi_connection_url": url,
        "xenapi_connection_username": username,
        "xenapi_connection_password": password,
        "xensm_sr_type": sr_type,
    }
    if sr_type == "nfs":
        values.update(xensm_nfs_server=topology["nfs"]["server"],
                      xensm_nfs_serverpath=topology["nfs"]["serverpath"])
    elif sr_type == "lvm":
        values.update(xensm_lvm_device=topology["lvm"]["device"])
    elif sr_type == "lvmoiscsi":
        iscsi = topology["iscsi"]
        values.update(xensm_iscsi_target=iscsi["target"],
                      xensm_iscsi_target_iqn=iscsi["targetIQN"],
                      xensm_iscsi_scsi_id=iscsi["luns"][0]["SCSIid"])
    elif sr_type == "lvmohba":
        values.update(xensm_hba_scsi_id=topology["hba"]["luns"][0]["SCSIid"])
    elif sr_type == "netapp":
        na = topology["netapp"]
        values.update(xensm_netapp_target=na["target"], xensm_netapp_username=na["username"],
                      xensm_netapp_password=na["password"],
                      xensm_netapp_aggregate=na["aggregate"])
    elif sr_type == "equal":
        eq = topology["equal"]
        values.update(xensm_eql_target=eq["target"], xensm_eql_username=eq["username"],
                      xensm_eql_password=eq["password"],
                      xensm_eql_storagepool=eq["storagepool"])
    elif sr_type == "solidfire":
        sf = topology["solidfire"]
        values.update(xensm_sf_mvip=sf["mvip"], xensm_sf_login=sf["login"],
                      xensm_sf_password=sf["password"])
    return values


def render_ini(sections: dict[str, dict[str, str]], masked: bool = False) -> str:
    """The ini text; with ``masked``, passwords shown as asterisks."""
    lines = []
    for section, values in sections.items():
        lines.append("[%s]" % section)
        for key, value in values.items():
            secret = masked and key.endswith("_password")
            lines.append("%s = %s" % (key, "********" if secret else value))
        lines.append("")
    return "\n".join(lines)
