"""The XAPI classes the simulator models: their fields, types and defaults.

Types: ``str``, ``int``, ``float``, ``bool``, ``datetime``, ``map``,
``set`` (of strings), ``ref:<Class>``, ``refs:<Class>`` (a set of refs),
``enum``.  A field marked ``rw`` gets ``set_<field>`` (and for maps
``add_to_``/``remove_from_``; for ``tags`` ``add_tags``/``remove_tags``).
Reverse fields (``SR.VDIs`` ...) are not stored: they are computed from the
index of the field that points back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .wire import NULL_REF
from .wire import epoch_stamp


@dataclass(frozen=True)
class Field:
    type: str
    default: Any = None
    rw: bool = False


def _f(type_: str, default: Any = None, rw: bool = False) -> Field:
    if default is None:
        default = {'str': '', 'int': 0, 'float': 0.0, 'bool': False,
                   'map': {}, 'set': [], 'enum': ''}.get(type_.split(':')[0])
        if type_.startswith('ref:'):
            default = NULL_REF
        elif type_.startswith('refs:'):
            default = []
    return Field(type_, default, rw)


S, I, B, M, L = 'str', 'int', 'bool', 'map', 'set'  # noqa: E741
DT = 'datetime'

CLASSES: dict[str, dict[str, Field]] = {
    'session': {
        'uuid': _f(S), 'this_host': _f('ref:host'), 'this_user': _f(S),
        'last_active': _f(DT), 'pool': _f(B), 'other_config': _f(M, rw=True),
        'is_local_superuser': _f(B, True), 'subject': _f(S, NULL_REF),
        'validation_time': _f(DT), 'auth_user_sid': _f(S),
        'auth_user_name': _f(S), 'rbac_permissions': _f(L),
        'tasks': _f('refs:task'), 'parent': _f(S, NULL_REF),
        'originator': _f(S), 'client_certificate': _f(B),
    },
    'pool': {
        'uuid': _f(S), 'name_label': _f(S, rw=True),
        'name_description': _f(S, rw=True), 'master': _f('ref:host'),
        'default_SR': _f('ref:SR', rw=True),
        'suspend_image_SR': _f('ref:SR', rw=True),
        'crash_dump_SR': _f('ref:SR', rw=True),
        'other_config': _f(M, rw=True), 'ha_enabled': _f(B),
        'ha_configuration': _f(M), 'ha_statefiles': _f(L),
        'ha_host_failures_to_tolerate': _f(I), 'ha_plan_exists_for': _f(I),
        'ha_allow_overcommit': _f(B), 'ha_overcommitted': _f(B),
        'blobs': _f(M), 'tags': _f(L, rw=True), 'gui_config': _f(M, rw=True),
        'health_check_config': _f(M), 'wlb_url': _f(S),
        'wlb_username': _f(S), 'wlb_enabled': _f(B),
        'wlb_verify_cert': _f(B), 'redo_log_enabled': _f(B),
        'redo_log_vdi': _f('ref:VDI'), 'vswitch_controller': _f(S),
        'restrictions': _f(M), 'metadata_VDIs': _f(L),
        'ha_cluster_stack': _f(S, 'xhad'), 'allowed_operations': _f(L),
        'current_operations': _f(M), 'guest_agent_config': _f(M),
        'cpu_info': _f(M), 'policy_no_vendor_device': _f(B),
        'live_patching_disabled': _f(B), 'igmp_snooping_enabled': _f(B),
        'uefi_certificates': _f(S), 'is_psr_pending': _f(B),
        'tls_verification_enabled': _f(B), 'repositories': _f(L),
        'client_certificate_auth_enabled': _f(B),
        'client_certificate_auth_name': _f(S),
        'repository_proxy_url': _f(S), 'repository_proxy_username': _f(S),
        'migration_compression': _f(B), 'coordinator_bias': _f(B, True),
    },
    'host': {
        'uuid': _f(S), 'name_label': _f(S, rw=True),
        'name_description': _f(S, rw=True), 'memory_overhead': _f(I),
        'allowed_operations': _f(L), 'current_operations': _f(M),
        'API_version_major': _f(I, 2), 'API_version_minor': _f(I, 21),
        'API_version_vendor': _f(S, 'XenSource'),
        'API_version_vendor_implementation': _f(M), 'enabled': _f(B, True),
        'software_version': _f(M), 'other_config': _f(M, rw=True),
        'capabilities': _f(L), 'cpu_configuration': _f(M),
        'sched_policy': _f(S, 'credit'), 'supported_bootloaders': _f(L),
        'resident_VMs': _f('refs:VM'), 'logging': _f(M, rw=True),
        'PIFs': _f(L), 'suspend_image_sr': _f('ref:SR', rw=True),
        'crash_dump_sr': _f('ref:SR', rw=True), 'crashdumps': _f(L),
        'patches': _f(L), 'updates': _f(L), 'PBDs': _f('refs:PBD'),
        'host_CPUs': _f(L), 'cpu_info': _f(M), 'hostname': _f(S),
        'address': _f(S), 'metrics': _f(S, NULL_REF),
        'license_params': _f(M), 'ha_statefiles': _f(L),
        'ha_network_peers': _f(L), 'blobs': _f(M), 'tags': _f(L, rw=True),
        'external_auth_type': _f(S), 'external_auth_service_name': _f(S),
        'external_auth_configuration': _f(M), 'edition': _f(S, 'xcp-ng'),
        'license_server': _f(M), 'bios_strings': _f(M),
        'power_on_mode': _f(S), 'power_on_config': _f(M),
        'local_cache_sr': _f('ref:SR'), 'chipset_info': _f(M),
        'PCIs': _f(L), 'PGPUs': _f(L), 'PUSBs': _f(L), 'ssl_legacy': _f(B),
        'guest_VCPUs_params': _f(M), 'display': _f(S, 'enabled'),
        'virtual_hardware_platform_versions': _f(L),
        'control_domain': _f('ref:VM'), 'updates_requiring_reboot': _f(L),
        'features': _f(L), 'iscsi_iqn': _f(S), 'multipathing': _f(B),
        'uefi_certificates': _f(S), 'certificates': _f(L),
        'editions': _f(L), 'pending_guidances': _f(L),
        'tls_verification_enabled': _f(B), 'https_only': _f(B),
    },
    'SR': {
        'uuid': _f(S), 'name_label': _f(S, rw=True),
        'name_description': _f(S, rw=True), 'allowed_operations': _f(L),
        'current_operations': _f(M), 'VDIs': _f('refs:VDI'),
        'PBDs': _f('refs:PBD'), 'virtual_allocation': _f(I),
        'physical_utilisation': _f(I),
        'physical_size': _f(I, rw=True), 'type': _f(S),
        'content_type': _f(S), 'shared': _f(B, rw=True),
        'other_config': _f(M, rw=True), 'tags': _f(L, rw=True),
        'sm_config': _f(M, rw=True), 'blobs': _f(M),
        'local_cache_enabled': _f(B), 'introduced_by': _f(S, NULL_REF),
        'clustered': _f(B), 'is_tools_sr': _f(B),
    },
    'PBD': {
        'uuid': _f(S), 'host': _f('ref:host'), 'SR': _f('ref:SR'),
        'device_config': _f(M, rw=True), 'currently_attached': _f(B),
        'other_config': _f(M, rw=True),
    },
    'VDI': {
        'uuid': _f(S), 'name_label': _f(S, rw=True),
        'name_description': _f(S, rw=True), 'allowed_operations': _f(L),
        'current_operations': _f(M), 'SR': _f('ref:SR'),
        'VBDs': _f('refs:VBD'), 'crash_dumps': _f(L),
        'virtual_size': _f(I), 'physical_utilisation': _f(I),
        'type': _f('enum', 'user'), 'sharable': _f(B, rw=True),
        'read_only': _f(B, rw=True), 'other_config': _f(M, rw=True),
        'storage_lock': _f(B), 'location': _f(S), 'managed': _f(B, True),
        'missing': _f(B), 'parent': _f('ref:VDI'),
        'xenstore_data': _f(M, rw=True), 'sm_config': _f(M, rw=True),
        'is_a_snapshot': _f(B, rw=True), 'snapshot_of': _f('ref:VDI', rw=True),
        'snapshots': _f('refs:VDI'), 'snapshot_time': _f(DT, rw=True),
        'tags': _f(L, rw=True), 'allow_caching': _f(B, rw=True),
        'on_boot': _f('enum', 'persist', rw=True),
        'metadata_of_pool': _f(S, NULL_REF, rw=True),
        'metadata_latest': _f(B), 'is_tools_iso': _f(B),
        'cbt_enabled': _f(B),
    },
    'VBD': {
        'uuid': _f(S), 'allowed_operations': _f(L),
        'current_operations': _f(M), 'VM': _f('ref:VM'),
        'VDI': _f('ref:VDI'), 'device': _f(S), 'userdevice': _f(S, rw=True),
        'bootable': _f(B, rw=True), 'mode': _f('enum', 'RW', rw=True),
        'type': _f('enum', 'Disk', rw=True),
        'unpluggable': _f(B, True, rw=True), 'storage_lock': _f(B),
        'empty': _f(B), 'other_config': _f(M, rw=True),
        'currently_attached': _f(B), 'status_code': _f(I),
        'status_detail': _f(S), 'runtime_properties': _f(M),
        'qos_algorithm_type': _f(S, rw=True),
        'qos_algorithm_params': _f(M, rw=True),
        'qos_supported_algorithms': _f(L), 'metrics': _f(S, NULL_REF),
    },
    'VM': {
        'uuid': _f(S), 'allowed_operations': _f(L),
        'current_operations': _f(M), 'name_label': _f(S, rw=True),
        'name_description': _f(S, rw=True), 'power_state': _f('enum', 'Halted'),
        'user_version': _f(I, 1), 'is_a_template': _f(B),
        'is_default_template': _f(B), 'suspend_VDI': _f('ref:VDI'),
        'resident_on': _f('ref:host'), 'affinity': _f('ref:host'),
        'memory_overhead': _f(I), 'memory_target': _f(I),
        'memory_static_max': _f(I), 'memory_dynamic_max': _f(I),
        'memory_dynamic_min': _f(I), 'memory_static_min': _f(I),
        'VCPUs_params': _f(M), 'VCPUs_max': _f(I, 1),
        'VCPUs_at_startup': _f(I, 1), 'actions_after_shutdown': _f(S, 'destroy'),
        'actions_after_reboot': _f(S, 'restart'),
        'actions_after_crash': _f(S, 'restart'), 'VBDs': _f('refs:VBD'),
        'VIFs': _f(L), 'crash_dumps': _f(L), 'VTPMs': _f(L),
        'PV_bootloader': _f(S), 'PV_kernel': _f(S), 'PV_ramdisk': _f(S),
        'PV_args': _f(S), 'PV_bootloader_args': _f(S),
        'PV_legacy_args': _f(S), 'HVM_boot_policy': _f(S),
        'HVM_boot_params': _f(M), 'HVM_shadow_multiplier': _f('float', 1.0),
        'platform': _f(M), 'PCI_bus': _f(S), 'other_config': _f(M, rw=True),
        'domid': _f(I, -1), 'domarch': _f(S), 'last_boot_CPU_flags': _f(M),
        'is_control_domain': _f(B), 'metrics': _f(S, NULL_REF),
        'guest_metrics': _f(S, NULL_REF), 'last_booted_record': _f(S),
        'recommendations': _f(S), 'xenstore_data': _f(M, rw=True),
        'ha_always_run': _f(B), 'ha_restart_priority': _f(S),
        'is_a_snapshot': _f(B), 'snapshot_of': _f('ref:VM'),
        'snapshots': _f(L), 'snapshot_time': _f(DT), 'transportable_snapshot_id': _f(S),
        'blobs': _f(M), 'tags': _f(L, rw=True), 'blocked_operations': _f(M, rw=True),
        'snapshot_info': _f(M), 'snapshot_metadata': _f(S),
        'parent': _f('ref:VM'), 'children': _f(L), 'bios_strings': _f(M),
        'protection_policy': _f(S, NULL_REF), 'is_snapshot_from_vmpp': _f(B),
        'snapshot_schedule': _f(S, NULL_REF), 'is_vmss_snapshot': _f(B),
        'appliance': _f(S, NULL_REF), 'start_delay': _f(I),
        'shutdown_delay': _f(I), 'order': _f(I), 'VGPUs': _f(L),
        'attached_PCIs': _f(L), 'suspend_SR': _f('ref:SR'), 'version': _f(I),
        'generation_id': _f(S), 'hardware_platform_version': _f(I),
        'has_vendor_device': _f(B), 'requires_reboot': _f(B),
        'reference_label': _f(S), 'domain_type': _f(S, 'pv'),
        'NVRAM': _f(M), 'pending_guidances': _f(L),
    },
    'secret': {
        'uuid': _f(S), 'value': _f(S, rw=True), 'other_config': _f(M, rw=True),
    },
    'SM': {
        'uuid': _f(S), 'name_label': _f(S), 'name_description': _f(S),
        'type': _f(S), 'vendor': _f(S), 'copyright': _f(S),
        'version': _f(S), 'required_api_version': _f(S),
        'configuration': _f(M), 'capabilities': _f(L), 'features': _f(M),
        'other_config': _f(M, rw=True), 'driver_filename': _f(S),
        'required_cluster_stack': _f(L), 'supported_image_formats': _f(L),
    },
    'task': {
        'uuid': _f(S), 'name_label': _f(S), 'name_description': _f(S),
        'allowed_operations': _f(L), 'current_operations': _f(M),
        'created': _f(DT), 'finished': _f(DT),
        'status': _f('enum', 'pending'), 'resident_on': _f('ref:host'),
        'progress': _f('float', 0.0), 'type': _f(S), 'result': _f(S),
        'error_info': _f(L), 'other_config': _f(M, rw=True),
        'subtask_of': _f('ref:task'), 'subtasks': _f('refs:task'),
        'backtrace': _f(S),
    },
}

# Reverse (computed) set fields: (Class, field) -> (child Class, child field)
REVERSE: dict[tuple[str, str], tuple[str, str]] = {
    ('SR', 'VDIs'): ('VDI', 'SR'),
    ('SR', 'PBDs'): ('PBD', 'SR'),
    ('host', 'PBDs'): ('PBD', 'host'),
    ('host', 'resident_VMs'): ('VM', 'resident_on'),
    ('VDI', 'VBDs'): ('VBD', 'VDI'),
    ('VDI', 'snapshots'): ('VDI', 'snapshot_of'),
    ('VM', 'VBDs'): ('VBD', 'VM'),
    ('task', 'subtasks'): ('task', 'subtask_of'),
}

# Child fields that are indexed (so the reverse fields are cheap).
INDEXED: dict[str, tuple[str, ...]] = {}
for (_cls, _field), (_child, _cfield) in REVERSE.items():
    INDEXED.setdefault(_child, ())
    if _cfield not in INDEXED[_child]:
        INDEXED[_child] = INDEXED[_child] + (_cfield,)

# Classes a client can list and query (session/task records are private to
# their callers in XAPI but still listable).
PUBLIC = ('session', 'pool', 'host', 'SR', 'PBD', 'VDI', 'VBD', 'VM',
          'secret', 'SM', 'task')

# Classes with a name_label (get_by_name_label).
NAMED = tuple(c for c in PUBLIC if 'name_label' in CLASSES[c])


def default_record(cls: str) -> dict[str, Any]:
    """A record of ``cls`` with every stored field at its default."""
    out: dict[str, Any] = {}
    for name, f in CLASSES[cls].items():
        if (cls, name) in REVERSE:
            continue
        d = f.default
        if f.type == DT:
            d = epoch_stamp()
        elif isinstance(d, (dict, list)):
            d = type(d)(d)
        out[name] = d
    return out
