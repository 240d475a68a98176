"""Benchmarks of xensm-driver against the XAPI simulator (``tox -e bench``).

What it measures, and against what (see issue 9 and README "Performance"):

* ``calls``: XAPI requests per driver verb per back end, counted by the
  simulator, beside the floor (the fewest requests any client needs for the
  verb, :mod:`bench.floor`) and the old Cinder XenAPI NFS driver's count.
* ``throughput``: operations per second of a mixed create / snapshot / clone
  / delete workload, 1, 4 and 16 concurrent callers, through the driver and
  through a bare ``XenAPI`` SDK loop making only the floor's calls, at 0 and
  5 ms of simulated per-call latency; reported as driver/floor ratios.
* ``scale``: calls and wall time of stats, create, delete and
  update_provider_info on an SR holding 10, 1,000 and 10,000 VDIs.
* ``memory``: peak RSS of a child process running the mixed workload
  through the driver (and, for comparison, through the bare SDK).
* ``overhead``: the driver's own cost per verb with XAPI taken out (a
  storage stub answering at once), to tell client overhead from round trips.

Every figure comes from a measurement made in the run that writes
``bench/results.json``; no timing is asserted anywhere.
"""
