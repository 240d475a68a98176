"""Client for the simulator's control plane (usable from another process).

The control plane lives on the pool master's HTTP server under ``/sim/``,
speaks JSON, and needs no XAPI session.  Routes:

==========  ===============================  =====================================
Verb        Path                             Body / answer
==========  ===============================  =====================================
GET         /sim/health                      -> ``{"ok": true}``
GET         /sim/calls                       -> ``{method: count}``; XAPI calls by
                                             dotted name (logins included, underscore
                                             aliases folded in), data path as
                                             ``http:import_raw_vdi`` /
                                             ``http:export_raw_vdi``
GET         /sim/rows                        -> ``{method: rows}``: database rows the
                                             lookups read as a real pool would (a
                                             scan reads the whole table of its
                                             class, get_by_uuid/get_record one)
POST        /sim/calls/reset                 zero the counters (calls and rows)
GET         /sim/faults                      -> list of faults (with seen/fired)
POST        /sim/faults                      ``{method, error, nth, times, latency,
                                             drop, hang, after_bytes}`` -> the fault
POST        /sim/faults/clear                remove every fault
POST        /sim/latency                     ``{seconds}``: added to every XAPI call
POST        /sim/sessions/expire             ``{session_ref}`` (null: all) ->
                                             ``{expired: n}``
POST        /sim/sessions/gc                 run the session GC now (cap per
                                             originator / user name) ->
                                             ``{ended: n}``
GET         /sim/dump                        -> ``{Class: {ref: record}}``
GET         /sim/topology                    -> the default storage (see Simulator)
POST        /sim/gc                          ``{paused}``: hold/release the background
                                             coalescer (release: it catches up now)
POST        /sim/gc/run                      coalesce every SR now
POST        /sim/gc/wait                     ``{timeout}``: wait until the coalescer
                                             has done what deletes and scans asked
                                             (or is held) -> ``{pending: n}``
POST        /sim/state/save                  flush the state to --state-dir now
POST        /sim/vm/write                    ``{vm_uuid, vdi_uuid, offset, data (base64),
                                             timeout}``: a write by a running guest to
                                             its disk; waits while the VM is paused
                                             (or the disk is being snapshotted) ->
                                             ``{seq}``, its place among all guest
                                             writes
GET         /sim/fabric                      -> targets, LUNs, exports, disks, arrays
POST        /sim/fabric/targets              ``{address, iqn, port, chap:[u,p]}``
POST        /sim/fabric/targets/remove       ``{iqn}``
POST        /sim/fabric/luns                 ``{iqn, size_bytes, scsi_id, lun_id,
                                             vendor, serial}`` -> the LUN
POST        /sim/fabric/luns/remove          ``{scsi_id}``
POST        /sim/fabric/luns/resize          ``{scsi_id, size_bytes}`` (grow only)
POST        /sim/fabric/luns/access          ``{scsi_id, initiators}`` (null: any)
POST        /sim/fabric/luns/copy            ``{src_scsi_id, dst_scsi_id}``: copy the
                                             content (and so any SR on it) of a LUN
POST        /sim/fabric/hba_luns             ``{size_bytes, scsi_id}`` -> the LUN
POST        /sim/fabric/nfs_exports          ``{server, path, size_bytes}``
POST        /sim/fabric/local_disks          ``{host_uuid, device, size_bytes}``
==========  ===============================  =====================================

Errors answer 400 (bad argument), 404 (unknown route or object) or 409
(an XAPI error, ``{"error": [code, ...]}``), raised here as
:class:`ControlError`.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from typing import Any


class ControlError(Exception):
    def __init__(self, status: int, message: Any) -> None:
        super().__init__('%s: %s' % (status, message))
        self.status = status
        self.message = message


class SimControl:
    """Drive a running simulator's control plane at ``url``."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip('/')
        self.timeout = timeout
        self._ctx: ssl.SSLContext | None = None
        if self.url.startswith('https:'):
            self._ctx = ssl.create_default_context()
            self._ctx.check_hostname = False
            self._ctx.verify_mode = ssl.CERT_NONE

    def _call(self, verb: str, path: str, body: dict[str, Any] | None = None
              ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path, data=data, method=verb,
            headers={'Content-Type': 'application/json'})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout,
                                        context=self._ctx) as resp:
                return json.loads(resp.read() or b'null')
        except urllib.error.HTTPError as exc:
            try:
                msg = json.loads(exc.read()).get('error')
            except ValueError:
                msg = exc.reason
            raise ControlError(exc.code, msg) from None

    # -- counters and faults ----------------------------------------------------
    def health(self) -> bool:
        return bool(self._call('GET', '/sim/health').get('ok'))

    def calls(self) -> dict[str, int]:
        result: dict[str, int] = self._call('GET', '/sim/calls')
        return result

    def rows(self) -> dict[str, int]:
        """Database rows scanned per lookup verb since the last reset."""
        result: dict[str, int] = self._call('GET', '/sim/rows')
        return result

    def reset_calls(self) -> None:
        self._call('POST', '/sim/calls/reset', {})

    def inject_fault(self, method: str, error: list[str] | None = None,
                     nth: int = 1, times: int = 1,
                     latency: float | None = None, drop: str | None = None,
                     hang: float | None = None,
                     after_bytes: int | None = None) -> dict[str, Any]:
        """Make the ``nth`` next call of ``method`` (and ``times - 1`` more)
        fail with ``error``, sleep, hang or lose its connection.

        ``drop='before'`` closes the connection without running the call,
        ``'after'`` runs it and closes without answering (note that Python's
        ``xmlrpc.client`` transport silently resends a request once when a
        kept-alive connection is closed under it).
        """
        result: dict[str, Any] = self._call('POST', '/sim/faults', {
            'method': method, 'error': error, 'nth': nth, 'times': times,
            'latency': latency, 'drop': drop, 'hang': hang,
            'after_bytes': after_bytes})
        return result

    def faults(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call('GET', '/sim/faults')
        return result

    def clear_faults(self) -> None:
        self._call('POST', '/sim/faults/clear', {})

    def set_latency(self, seconds: float) -> None:
        self._call('POST', '/sim/latency', {'seconds': seconds})

    def expire_sessions(self, session_ref: str | None = None) -> int:
        result = self._call('POST', '/sim/sessions/expire',
                            {'session_ref': session_ref})
        return int(result['expired'])

    def gc_sessions(self) -> int:
        """Run the pool's session GC now; how many sessions it ended."""
        return int(self._call('POST', '/sim/sessions/gc', {})['ended'])

    # -- state -----------------------------------------------------------------
    def dump(self) -> dict[str, dict[str, dict[str, Any]]]:
        result: dict[str, dict[str, dict[str, Any]]] = self._call(
            'GET', '/sim/dump')
        return result

    def topology(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call('GET', '/sim/topology')
        return result

    def pause_gc(self, paused: bool = True) -> None:
        self._call('POST', '/sim/gc', {'paused': paused})

    def run_gc(self) -> None:
        self._call('POST', '/sim/gc/run', {})

    def wait_gc(self, timeout: float = 30.0) -> int:
        """Wait for the background coalescer to finish what it was asked;
        returns how many SRs it still has to do (0 unless held or stuck)."""
        return int(self._call('POST', '/sim/gc/wait',
                              {'timeout': timeout})['pending'])

    def guest_write(self, vm_uuid: str, vdi_uuid: str, offset: int, data: bytes,
                    timeout: float = 20.0) -> int:
        """Write ``data`` at ``offset`` of a running guest's disk, as the
        guest would: it waits while the VM is paused. Its sequence number."""
        result = self._call('POST', '/sim/vm/write', {
            'vm_uuid': vm_uuid, 'vdi_uuid': vdi_uuid, 'offset': offset,
            'data': base64.b64encode(data).decode(), 'timeout': timeout})
        return int(result['seq'])

    def save_state(self) -> None:
        self._call('POST', '/sim/state/save', {})

    # -- fabric ----------------------------------------------------------------
    def fabric(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call('GET', '/sim/fabric')
        return result

    def add_target(self, address: str, iqn: str, port: int = 3260,
                   chap: tuple[str, str] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._call('POST', '/sim/fabric/targets', {
            'address': address, 'iqn': iqn, 'port': port,
            'chap': list(chap) if chap else None})
        return result

    def remove_target(self, iqn: str) -> None:
        self._call('POST', '/sim/fabric/targets/remove', {'iqn': iqn})

    def add_iscsi_lun(self, iqn: str, size_bytes: int,
                      scsi_id: str | None = None, lun_id: int = 0,
                      vendor: str = 'XENSIM',
                      serial: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._call('POST', '/sim/fabric/luns', {
            'iqn': iqn, 'size_bytes': size_bytes, 'scsi_id': scsi_id,
            'lun_id': lun_id, 'vendor': vendor, 'serial': serial})
        return result

    def remove_lun(self, scsi_id: str) -> None:
        self._call('POST', '/sim/fabric/luns/remove', {'scsi_id': scsi_id})

    def resize_lun(self, scsi_id: str, size_bytes: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            'POST', '/sim/fabric/luns/resize',
            {'scsi_id': scsi_id, 'size_bytes': size_bytes})
        return result

    def set_lun_access(self, scsi_id: str,
                       initiators: list[str] | set[str] | None
                       ) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            'POST', '/sim/fabric/luns/access',
            {'scsi_id': scsi_id, 'initiators':
             None if initiators is None else sorted(initiators)})
        return result

    def copy_lun(self, src_scsi_id: str, dst_scsi_id: str) -> dict[str, Any]:
        """Copy a LUN's content onto another LUN, as an array clone does."""
        result: dict[str, Any] = self._call(
            'POST', '/sim/fabric/luns/copy',
            {'src_scsi_id': src_scsi_id, 'dst_scsi_id': dst_scsi_id})
        return result

    def add_hba_lun(self, size_bytes: int,
                    scsi_id: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            'POST', '/sim/fabric/hba_luns',
            {'size_bytes': size_bytes, 'scsi_id': scsi_id})
        return result

    def add_nfs_export(self, server: str, path: str, size_bytes: int) -> str:
        result = self._call('POST', '/sim/fabric/nfs_exports', {
            'server': server, 'path': path, 'size_bytes': size_bytes})
        return str(result['directory'])

    def add_local_disk(self, host_uuid: str, device: str,
                       size_bytes: int) -> str:
        result = self._call('POST', '/sim/fabric/local_disks', {
            'host_uuid': host_uuid, 'device': device,
            'size_bytes': size_bytes})
        return str(result['directory'])
