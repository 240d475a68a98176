"""The Element simulator and the XAPI simulator on one fabric: an lvmoiscsi SR
made on a SolidFire LUN is found the way XenServer finds it, lives in the
LUN, and travels with array snapshots and clones."""

from __future__ import annotations

import os
import re

import XenAPI

from tests.functional.solidfire import base
from xensm_driver.sim import simulator as xapi_sim

SVIP = '127.0.0.20'


class TestLvmoiscsiOnElement(base.ElementTestCase):

    sim_kwargs = {'svip': SVIP}

    def setUp(self) -> None:
        super().setUp()
        self.xs = xapi_sim.Simulator(fabric=self.fabric, pool_hosts=1, auth_failure_delay=0)
        self.xs.start()
        self.addCleanup(self.xs.stop)
        self.session = XenAPI.Session(self.xs.url)
        self.session.xenapi.login_with_password('root', 'password')
        self.addCleanup(self.session.xenapi.session.logout)
        self.host = self.session.xenapi.host.get_all()[0]
        self.host_iqn = self.session.xenapi.host.get_other_config(self.host)['iscsi_iqn']

    def device_config(self, vol, acct=None, scsi_id=None):
        dc = {'target': SVIP, 'targetIQN': vol['iqn']}
        if acct is not None:
            dc.update(chapuser=acct['username'], chappassword=acct['initiatorSecret'])
        if scsi_id is not None:
            dc['SCSIid'] = scsi_id
        return dc

    def sr_create(self, dc):
        return self.session.xenapi.SR.create(self.host, dc, '0', 'sf', '', 'lvmoiscsi', '',
                                             True, {})

    def test_scsi_id_is_found_as_xenserver_finds_it(self):
        acct = self.account()
        vol = self.create_volume('UUID-sr1', size=4 * base.GB)
        failure = self.assertRaises(XenAPI.Failure, self.sr_create,
                                    self.device_config(vol, acct))
        self.assertEqual('SR_BACKEND_FAILURE_107', failure.details[0])
        found = re.findall(r'<SCSIid>\s*(\S+?)\s*</SCSIid>', ' '.join(failure.details))
        self.assertEqual(['3' + vol['scsiNAADeviceID']], found)

    def test_sr_lives_on_the_lun_and_a_clone_carries_its_identity(self):
        acct = self.account()
        vol = self.create_volume('UUID-sr2', size=4 * base.GB)
        scsi_id = '3' + vol['scsiNAADeviceID']
        sr = self.sr_create(self.device_config(vol, acct, scsi_id))
        sr_uuid = self.session.xenapi.SR.get_uuid(sr)
        self.assertTrue(any(sr_uuid in _read(p) for p in self._files(self.lun(vol).path)))
        cl = self.client.call('CloneVolume', volumeID=vol['volumeID'], name='UUID-sr2c')
        self.client.wait_async(cl['asyncHandle'], 5)
        clone = cl['volume']
        probe = self.session.xenapi.SR.probe(
            self.host, self.device_config(clone, acct, '3' + clone['scsiNAADeviceID']),
            'lvmoiscsi', {})
        # The resign problem, for real: the clone's LUN says it is the source SR.
        self.assertIn('<UUID>%s</UUID>' % sr_uuid, probe)

    def test_access_group_admits_the_pool_host_without_chap(self):
        vol = self.create_volume('UUID-sr3', size=4 * base.GB)
        scsi_id = '3' + vol['scsiNAADeviceID']
        vag = self.client.call('CreateVolumeAccessGroup', name='other-pool',
                               initiators=['iqn.2020-01.org.xen:elsewhere'],
                               volumes=[vol['volumeID']])['volumeAccessGroupID']
        failure = self.assertRaises(XenAPI.Failure, self.session.xenapi.SR.probe, self.host,
                                    self.device_config(vol, scsi_id=scsi_id), 'lvmoiscsi', {})
        self.assertEqual('SR_BACKEND_FAILURE_68', failure.details[0])
        self.client.call('AddInitiatorsToVolumeAccessGroup', volumeAccessGroupID=vag,
                         initiators=[self.host_iqn])
        self.sr_create(self.device_config(vol, scsi_id=scsi_id))

    @staticmethod
    def _files(root):
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                if name.endswith('.json'):
                    yield os.path.join(dirpath, name)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()
