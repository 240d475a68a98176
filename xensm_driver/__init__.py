"""xensm-driver: Cinder-style volumes as VDIs on XenServer / XCP-ng SRs."""
