"""Adopting an existing VDI as a volume (manage_existing)."""

from __future__ import annotations

from taskflow.patterns import linear_flow

from xensm_driver.flows import common


def manage_existing() -> linear_flow.Flow:
    """manage_existing: AdoptTagsTask -> AdoptNameTask (each restores what
    it changed) -> ResizeVdiTask (up to the whole GiB Cinder records). The
    VDI itself is found and vetted by the back end first. 2-3 calls.
    """
    return linear_flow.Flow("manage_existing").add(
        common.AdoptTagsTask(), common.AdoptNameTask(), common.ResizeVdiTask())
