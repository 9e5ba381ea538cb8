"""Where a batch's files are processed (``IngestOptions.engine``).

- :mod:`vision.engines.local`: in this process, one file after another (the default).
- :mod:`vision.engines.ray_engine`: on a Ray cluster: files planned and cut into
  time segments, segments processed by actors that load the detector once,
  evidence written by the workers, every file written to the store here.

Both run the same pieces of :mod:`vision.ingest` and report through the same
:class:`vision.ingest.Progress`, so they give the same observations.
"""
