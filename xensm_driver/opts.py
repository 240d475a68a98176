"""Every configuration option of xensm-driver.

The options live in a Cinder back-end section (one section per SR), e.g.::

    [xs-nfs]
    volume_driver = xensm_driver.driver.XenAPISMDriver
    xensm_sr_type = nfs
    ...

The driver appends them to its ``configuration`` object (Cinder's
``Configuration`` or the standalone service's), so the same names work in
both. ``list_opts()`` feeds ``oslo-config-generator --namespace xensm_driver``;
the generated sample is ``etc/xensm-driver/xensm.conf.sample``.
"""

from __future__ import annotations

from oslo_config import cfg

#: The SR types this driver can run a back end on. SM-native types share one
#: table-driven back end; ``solidfire`` is VDI-per-LUN with its own.
SR_TYPES = ("nfs", "lvm", "lvmoiscsi", "lvmohba", "netapp", "equal", "solidfire")

#: The section name ``list_opts`` registers the options under. In Cinder the
#: ``[backend_defaults]`` section supplies defaults for every back end; each
#: back-end section can override any of them.
SAMPLE_GROUP = "backend_defaults"

xapi_opts = [
    cfg.URIOpt(
        "xenapi_connection_url",
        schemes=["http", "https"],
        help="URL of the XAPI endpoint of the pool master, e.g. "
             "https://pool-master.example. A pool slave's address also works: "
             "the driver follows HOST_IS_SLAVE to the master."),
    cfg.StrOpt(
        "xenapi_connection_username",
        default="root",
        help="User name for XAPI logins."),
    cfg.StrOpt(
        "xenapi_connection_password",
        secret=True,
        help="Password for XAPI logins. Never logged."),
    cfg.IntOpt(
        "xenapi_connection_pool_size",
        default=4, min=1, max=64,
        help="How many XAPI sessions the driver keeps logged in and shares "
             "between concurrent operations (one session serves one call at a "
             "time). XAPI caps sessions per user at 500 across all clients."),
    cfg.FloatOpt(
        "xenapi_call_timeout",
        default=120.0, min=1.0, max=3600.0,
        help="Seconds to wait for the answer to one XAPI call before failing "
             "it. Long storage operations run as tasks and are bounded by "
             "xenapi_task_timeout instead."),
    cfg.FloatOpt(
        "xenapi_connect_timeout",
        default=10.0, min=0.5, max=300.0,
        help="Seconds to wait for a TCP (and TLS) connection to XAPI."),
    cfg.FloatOpt(
        "xenapi_task_timeout",
        default=3600.0, min=1.0, max=86400.0,
        help="Seconds an asynchronous XAPI task (copy, slow clone) may run "
             "before the driver cancels it and fails the operation."),
    cfg.BoolOpt(
        "xenapi_verify_tls",
        default=True,
        help="Verify the TLS certificate of an https:// XAPI URL. Turning this "
             "off is logged as a warning: anyone on the path can read the "
             "password."),
    cfg.StrOpt(
        "xenapi_ca_bundle",
        help="Path to a PEM file of CA certificates to verify the pool "
             "master's certificate with, instead of the system store."),
    cfg.IntOpt(
        "xenapi_retry_count",
        default=3, min=0, max=20,
        help="How many times a read-only XAPI call, or a call whose request "
             "never left this host, is retried after a connection failure. "
             "Calls that change state and may have reached XAPI are never "
             "repeated blindly."),
    cfg.FloatOpt(
        "xenapi_retry_backoff",
        default=0.5, min=0.0, max=60.0,
        help="Seconds before the first retry; each further retry doubles it."),
]

sr_opts = [
    cfg.StrOpt(
        "xensm_sr_type",
        choices=[
            ("nfs", "VHD files on an NFS export (thin, shared)"),
            ("lvm", "LVHD on a local block device (thick, not shared)"),
            ("lvmoiscsi", "LVHD on an iSCSI LUN (thick, shared)"),
            ("lvmohba", "LVHD on a Fibre Channel / SAS LUN (thick, shared)"),
            ("netapp", "NetApp FlexVol LUNs with array snapshots and clones"),
            ("equal", "EqualLogic volumes with array snapshots and clones"),
            ("solidfire", "One SolidFire volume and one lvmoiscsi SR per "
                          "Cinder volume, snapshots on the array"),
        ],
        help="The kind of Storage Repository this back end keeps its volumes "
             "on."),
    cfg.StrOpt(
        "xensm_sr_uuid",
        help="UUID of an existing SR to use. When unset, the SR is found by "
             "xensm_sr_name_label, and created if xensm_sr_create is true."),
    cfg.StrOpt(
        "xensm_sr_name_label",
        help="Name label of the SR to use or create. Defaults to "
             "'xensm-<volume_backend_name>'."),
    cfg.BoolOpt(
        "xensm_sr_create",
        default=True,
        help="Create the SR (with a PBD on every host when shared) if no SR "
             "with the configured uuid or name exists."),
    cfg.BoolOpt(
        "xensm_sr_shared",
        help="Whether the SR is shared by every host of the pool. Defaults to "
             "the SR type's nature: true for network storage, false for lvm."),
]

nfs_opts = [
    cfg.HostAddressOpt(
        "xensm_nfs_server",
        help="NFS server holding the SR (device_config 'server')."),
    cfg.StrOpt(
        "xensm_nfs_serverpath",
        help="Exported path on the NFS server (device_config 'serverpath'), "
             "e.g. /export/cinder."),
    cfg.StrOpt(
        "xensm_nfs_version",
        default="3",
        choices=["3", "4", "4.0", "4.1"],
        help="NFS protocol version (device_config 'nfsversion')."),
    cfg.StrOpt(
        "xensm_nfs_options",
        help="Extra NFS mount options (device_config 'options')."),
]

lvm_opts = [
    cfg.StrOpt(
        "xensm_lvm_device",
        help="Local block device(s) for an lvm SR, comma separated "
             "(device_config 'device'), e.g. /dev/sdb."),
]

iscsi_opts = [
    cfg.HostAddressOpt(
        "xensm_iscsi_target",
        help="iSCSI portal address (device_config 'target')."),
    cfg.PortOpt(
        "xensm_iscsi_port",
        default=3260,
        help="iSCSI portal port (device_config 'port')."),
    cfg.StrOpt(
        "xensm_iscsi_target_iqn",
        help="Target IQN (device_config 'targetIQN'); '*' means all targets "
             "of the portal."),
    cfg.StrOpt(
        "xensm_iscsi_scsi_id",
        help="SCSI id of the LUN to put the SR on (device_config 'SCSIid'). "
             "'xensm check' lists the LUNs the target offers."),
    cfg.StrOpt(
        "xensm_iscsi_chap_user",
        help="CHAP user name (device_config 'chapuser')."),
    cfg.StrOpt(
        "xensm_iscsi_chap_password",
        secret=True,
        help="CHAP secret. Handed to XAPI as a secret object, never as "
             "plain device_config, and never logged."),
]

hba_opts = [
    cfg.StrOpt(
        "xensm_hba_scsi_id",
        help="SCSI id of the Fibre Channel / SAS LUN for an lvmohba SR "
             "(device_config 'SCSIid')."),
]

netapp_opts = [
    cfg.HostAddressOpt(
        "xensm_netapp_target",
        help="NetApp filer management address (device_config 'target')."),
    cfg.StrOpt(
        "xensm_netapp_username",
        help="NetApp user (device_config 'username')."),
    cfg.StrOpt(
        "xensm_netapp_password",
        secret=True,
        help="NetApp password; passed to XAPI as a secret, never logged."),
    cfg.StrOpt(
        "xensm_netapp_aggregate",
        help="Aggregate the SR's FlexVols are created in (device_config "
             "'aggregate'); required to create the SR."),
    cfg.IntOpt(
        "xensm_netapp_flexvols",
        default=8, min=1, max=32,
        help="Number of FlexVols the SR spreads its LUNs over "
             "(device_config 'FlexVols')."),
]

equal_opts = [
    cfg.HostAddressOpt(
        "xensm_eql_target",
        help="EqualLogic group IP address (device_config 'target')."),
    cfg.StrOpt(
        "xensm_eql_username",
        help="EqualLogic group administrator (device_config 'username')."),
    cfg.StrOpt(
        "xensm_eql_password",
        secret=True,
        help="EqualLogic password; passed to XAPI as a secret, never logged."),
    cfg.StrOpt(
        "xensm_eql_storagepool",
        help="EqualLogic storage pool (device_config 'storagepool')."),
]

solidfire_opts = [
    cfg.URIOpt(
        "xensm_sf_mvip",
        schemes=["http", "https"],
        help="SolidFire management VIP as a URL, e.g. https://10.0.0.5 "
             "(port 443 unless given)."),
    cfg.HostAddressOpt(
        "xensm_sf_svip",
        help="SolidFire storage VIP the hosts log in to. Defaults to the "
             "cluster's SVIP from GetClusterInfo."),
    cfg.StrOpt(
        "xensm_sf_login",
        help="SolidFire cluster administrator."),
    cfg.StrOpt(
        "xensm_sf_password",
        secret=True,
        help="SolidFire cluster administrator password. Never logged."),
    cfg.StrOpt(
        "xensm_sf_account_prefix",
        default="xensm",
        help="Prefix of the SolidFire account that owns this back end's "
             "volumes (the account is '<prefix>-<volume_backend_name>')."),
    cfg.BoolOpt(
        "xensm_sf_verify_tls",
        default=True,
        help="Verify the SolidFire MVIP's TLS certificate."),
    cfg.FloatOpt(
        "xensm_sf_api_timeout",
        default=30.0, min=1.0, max=600.0,
        help="Seconds to wait for one Element API call."),
    cfg.FloatOpt(
        "xensm_sf_clone_timeout",
        default=600.0, min=1.0, max=86400.0,
        help="Seconds an array clone may take before the operation fails."),
    cfg.IntOpt(
        "xensm_sf_retry_count",
        default=5, min=0, max=20,
        help="Retries of an Element call that failed with a retryable error "
             "(xDBVersionMismatch, xNotReadyForIO, ...)."),
]

behaviour_opts = [
    cfg.IntOpt(
        "xensm_snapshot_chain_limit",
        default=28, min=1, max=30,
        help="Refuse a snapshot or clone, before asking XAPI, when the VDI's "
             "VHD chain is this deep. XAPI fails at 30 "
             "(SR_BACKEND_FAILURE_109); keeping headroom lets the SR's "
             "garbage collector coalesce first."),
    cfg.IntOpt(
        "xensm_solidfire_snapshot_limit",
        default=32, min=1, max=32,
        help="Snapshots a SolidFire volume may have; the next one is refused "
             "before the array is asked."),
    cfg.StrOpt(
        "xensm_lock_path",
        help="Directory of the driver's lock files when it runs outside "
             "Cinder (the xensm command and service); processes on one host "
             "that share a back end must use the same one. Defaults to "
             "$XDG_STATE_HOME/xensm/locks (~/.local/state/xensm/locks). Under "
             "cinder-volume the driver takes Cinder's coordination locks "
             "([coordination] backend_url) instead, which a cluster of "
             "services (active-active) needs."),
]

#: Everything, in the order the sample lists it.
ALL_OPTS = (xapi_opts + sr_opts + nfs_opts + lvm_opts + iscsi_opts + hba_opts
            + netapp_opts + equal_opts + solidfire_opts + behaviour_opts)

#: Option names whose values are secrets: masked wherever config is shown.
SECRET_OPTS = frozenset(o.dest for o in ALL_OPTS if o.secret)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Options for ``oslo-config-generator --namespace xensm_driver``."""
    return [(SAMPLE_GROUP, list(ALL_OPTS))]


