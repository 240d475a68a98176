"""Exceptions: complete sentences, actionable fields, no template crashes."""

import testtools

from xensm_driver import exception


class TestExceptions(testtools.TestCase):

    def test_template_is_filled_and_kwargs_kept(self):
        err = exception.ConfigError(option="xensm_sr_type in [xs]", reason="not set")
        self.assertEqual("Invalid configuration: option xensm_sr_type in [xs]: not set",
                         str(err))
        self.assertEqual("xensm_sr_type in [xs]", err.option)

    def test_missing_template_key_still_gives_a_message(self):
        err = exception.VolumeNotFound(volume_id="v1")
        self.assertIn("v1", str(err))

    def test_xapi_error_carries_code_params_method_object(self):
        err = exception.XapiInUse("VDI_IN_USE", ["OpaqueRef:1", "destroy"],
                                  method="VDI.destroy", obj="OpaqueRef:1")
        self.assertEqual("VDI_IN_USE", err.code)
        self.assertEqual(["OpaqueRef:1", "destroy"], err.params)
        self.assertIn("VDI.destroy", str(err))
        self.assertIn("Detach", str(err))
        self.assertIsInstance(err, exception.XapiError)

    def test_sr_backend_failure_parses_sm_code(self):
        err = exception.SRNoSpace(
            "SR_BACKEND_FAILURE_44", ["", "There is insufficient space", ""],
            method="VDI.snapshot", obj="vdi-uuid", sm_name="SRNoSpace")
        self.assertEqual(44, err.sm_code)
        self.assertEqual("There is insufficient space", err.sm_text)
        self.assertIn("SM error 44 SRNoSpace", str(err))
        self.assertIn("vdi-uuid", str(err))

    def test_connection_error_knows_if_request_was_sent(self):
        err = exception.XapiConnectionError(url="https://h", method="VDI.create",
                                            reason="reset", sent=True)
        self.assertTrue(err.sent)
        self.assertFalse(exception.XapiConnectionError(
            url="https://h", method="x", reason="refused").sent)
