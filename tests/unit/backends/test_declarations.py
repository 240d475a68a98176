"""Back ends declare what they can do, and that declaration is the truth."""

import importlib.metadata

import testtools

from xensm_driver import exception
from xensm_driver import opts
from xensm_driver.backends import base
from xensm_driver.backends import sm
from xensm_driver.flows import target
from xensm_driver.flows import vdi as vdis
from xensm_driver.xapi import storage


def registered() -> dict[str, type[base.Backend]]:
    eps = importlib.metadata.entry_points(group=base.ENTRY_POINT_GROUP)
    return {ep.name: base.load(ep.name) for ep in eps}


class TestDeclarations(testtools.TestCase):

    def test_every_entry_point_loads_a_backend_of_its_type(self):
        backends = registered()
        self.assertTrue({"nfs", "lvm", "lvmoiscsi", "lvmohba", "netapp", "equal"}
                        <= set(backends))
        for sr_type, cls in backends.items():
            self.assertEqual(sr_type, cls.SR_TYPE)
            self.assertIn(sr_type, opts.SR_TYPES)

    def test_declared_capabilities_match_implemented_verbs(self):
        for sr_type, cls in registered().items():
            for verb, capability in base.VERB_CAPABILITY.items():
                # Every optional verb is declared on the base class (which
                # refuses it): implemented means overridden.
                implemented = getattr(cls, verb) is not getattr(base.Backend, verb)
                self.assertEqual(
                    capability in cls.CAPABILITIES, implemented,
                    "%s: %s declared=%s implemented=%s" % (
                        sr_type, verb, capability in cls.CAPABILITIES, implemented))

    def test_config_keys_name_real_options(self):
        names = {o.dest for o in opts.ALL_OPTS}
        secret = opts.SECRET_OPTS
        for cls in registered().values():
            for key in cls.CONFIG_KEYS:
                self.assertIn(key.option, names)
                self.assertEqual(key.secret, key.option in secret,
                                 "%s.%s secret flag" % (cls.__name__, key.key))

    def test_unknown_sr_type_is_a_config_error(self):
        err = self.assertRaises(exception.ConfigError, base.load, "nfz")
        self.assertIn("xensm_sr_type", str(err))
        self.assertIn("nfz", str(err))

    def test_require_refuses_centrally_with_reason(self):
        class NoSnap(sm.SRBackend):
            SR_TYPE = "nosnap"
            CAPABILITIES = frozenset({base.EXTEND})
            STORAGE_PROTOCOL = "iSCSI"

        backend = NoSnap.__new__(NoSnap)
        backend.options = type("O", (), {"backend_name": "gold"})()
        err = self.assertRaises(exception.UnsupportedOperation,
                                backend.require, "create_snapshot")
        self.assertIn("gold (nosnap)", str(err))
        self.assertIn("no snapshots", str(err))
        backend.require("extend_volume")
        backend.require("create_volume")

    def test_equallogic_cannot_snapshot_a_snapshot_but_netapp_can(self):
        self.assertNotIn(base.SNAPSHOT_OF_SNAPSHOT, sm.EqualLogicBackend.CAPABILITIES)
        self.assertIn(base.SNAPSHOT_OF_SNAPSHOT, sm.NetAppBackend.CAPABILITIES)

    def test_thin_and_thick_types(self):
        self.assertTrue(sm.NFSBackend.CAPABILITIES >= {base.THIN})
        for cls in (sm.LVMBackend, sm.LVMoISCSIBackend, sm.LVMoHBABackend):
            self.assertNotIn(base.THIN, cls.CAPABILITIES)
            self.assertIn(base.VHD_CHAIN, cls.CAPABILITIES)


class TestCopyGuards(testtools.TestCase):

    def backend(self, cls: type) -> target.SRTarget:
        """The target the family's flows get from a back end of ``cls``."""
        options = type("O", (), {"backend_name": "b", "xensm_snapshot_chain_limit": 28,
                                 "xenapi_call_timeout": 10.0, "values": {}})()
        backend = cls(options, storage=None)
        backend._sr = storage.SR.from_xapi("OpaqueRef:sr", {"uuid": "s1"})
        return backend.target

    def vdi(self, **fields: object) -> storage.VDI:
        rec = {"uuid": "u1", "is_a_snapshot": True, "sm_config": {}}
        rec.update(fields)
        return storage.VDI.from_xapi("OpaqueRef:1", rec)

    def test_equallogic_refuses_to_snapshot_a_snapshot_and_says_what_to_do(self):
        err = self.assertRaises(exception.UnsupportedOperation,
                                vdis.check_copy_allowed, self.backend(sm.EqualLogicBackend),
                                self.vdi(), "snapshot")
        self.assertIn("clone it to a volume first", str(err))
        # Cloning a snapshot is what EqualLogic can do.
        vdis.check_copy_allowed(self.backend(sm.EqualLogicBackend), self.vdi(), "clone")

    def test_netapp_snapshots_a_snapshot(self):
        vdis.check_copy_allowed(self.backend(sm.NetAppBackend), self.vdi(), "snapshot")
