"""Pure logic of the XAPI layer: what may be retried, decoding, errors."""

import testtools

from xensm_driver import exception
from xensm_driver.xapi import errors
from xensm_driver.xapi import session


class TestReadOnly(testtools.TestCase):

    def test_getters_are_read_only(self):
        for method in ("VDI.get_record", "SR.get_all_records_where", "task.get_status",
                       "host.get_all_records", "event.from"):
            self.assertTrue(session.is_read_only(method), method)

    def test_writes_are_not(self):
        for method in ("VDI.create", "VDI.destroy", "VDI.snapshot", "SR.create",
                       "PBD.plug", "VDI.set_other_config", "Async.VDI.copy"):
            self.assertFalse(session.is_read_only(method), method)


class TestTaskResult(testtools.TestCase):

    def test_ref_void_and_set_results(self):
        self.assertEqual("OpaqueRef:abc",
                         session.decode_task_result("<value>OpaqueRef:abc</value>"))
        self.assertEqual("", session.decode_task_result("<value></value>"))
        self.assertEqual("", session.decode_task_result(""))
        self.assertEqual(["a", "b"], session.decode_task_result(
            "<value><array><data><value>a</value><value>b</value></data></array></value>"))


class TestTranslate(testtools.TestCase):

    def test_codes_map_to_types(self):
        cases = {
            "SESSION_INVALID": exception.SessionInvalid,
            "HOST_IS_SLAVE": exception.HostIsSlave,
            "HANDLE_INVALID": exception.HandleInvalid,
            "UUID_INVALID": exception.UuidInvalid,
            "VDI_IN_USE": exception.XapiInUse,
            "SR_OPERATION_NOT_SUPPORTED": exception.OperationNotSupported,
            "SOMETHING_NEW": exception.XapiError,
        }
        for code, cls in cases.items():
            err = errors.translate([code, "p1"], "X.y", "obj")
            self.assertIs(cls, type(err), code)
            self.assertEqual(["p1"], err.params)
            self.assertEqual("X.y", err.method)

    def test_sm_failures_carry_name_and_text(self):
        err = errors.translate(["SR_BACKEND_FAILURE_44", "", "There is insufficient space", ""],
                               "VDI.create", "sr")
        self.assertIsInstance(err, exception.SRNoSpace)
        self.assertEqual((44, "SRNoSpace"), (err.sm_code, err.sm_name))
        err = errors.translate(["SR_BACKEND_FAILURE_96", "", "x", "<xml/>"])
        self.assertIs(exception.SRBackendFailure, type(err))
        self.assertEqual(96, err.sm_code)

    def test_secrets_are_scrubbed_from_params(self):
        err = errors.translate(["SESSION_AUTHENTICATION_FAILED", "root", "pw=hunter2!"],
                               secrets=["hunter2"])
        self.assertNotIn("hunter2", str(err))
        self.assertNotIn("hunter2", repr(err.params))
